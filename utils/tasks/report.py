"""Report job: render a completed backtest's HTML tearsheet on a worker, so the server never computes.

GetBacktestReport queues one (task type ``report``, CPU only) and waits for its completion
announcement; ``main_server.py report`` renders the same HTML locally with ``tearsheet_html``.
"""
from __future__ import annotations

from typing import Any

from utils.data.timeutil import epoch_to_iso
from utils.queue.jobs import JobRecord, JobStatus
from utils.queue.worker import JobContext, PermanentJobError
from utils.reports import render_tearsheet
from utils.tasks.resources import WorkerResources


def tearsheet_html(record: JobRecord, result: dict[str, Any]) -> str:
    """The HTML tearsheet of a completed backtest's record and stored result."""
    meta = {**record.meta, "initial_capital": record.payload.get("initial_capital"),
            "commission_rate": record.payload.get("commission_rate"), "device": record.device,
            "created_at": epoch_to_iso(record.created_at), "finished_at": epoch_to_iso(record.finished_at)}
    return render_tearsheet(record.id, result, meta)


def make_report_handler(resources: WorkerResources):
    queue = resources.queue

    def handle(context: JobContext) -> dict[str, Any]:
        backtest_id = context.payload["backtest_id"]
        record, result = queue.get(backtest_id), queue.result(backtest_id)
        if record is None or result is None or record.status is not JobStatus.COMPLETED:
            raise PermanentJobError(f"backtest {backtest_id} has no stored result to report on "
                                    f"(it expired, or it is not COMPLETED)")
        context.progress(0.1)
        return {"backtest_id": backtest_id, "html": tearsheet_html(record, result)}
    return handle
