"""Report job: render a completed job's HTML tearsheet on a worker, so the server never computes.

One task type for every kind of report: the payload names the source job (``source_id``; jobs
queued by an older server say ``backtest_id``) and the source's task type picks the renderer — a
backtest's tearsheet or a factor analysis's. GetBacktestReport and GetFactorReport queue one
(task type ``report``, CPU only, one per source job) and wait for its completion announcement;
``main_server.py report`` renders a backtest's HTML locally with ``tearsheet_html``.
"""
from __future__ import annotations

from typing import Any, Callable

from utils.data.timeutil import epoch_to_iso
from utils.queue.jobs import JobRecord, JobStatus
from utils.queue.worker import JobContext, PermanentJobError
from utils.reports import render_factor_tearsheet, render_tearsheet
from utils.tasks.resources import WorkerResources


def _times(record: JobRecord) -> dict[str, Any]:
    return {"device": record.device, "created_at": epoch_to_iso(record.created_at),
            "finished_at": epoch_to_iso(record.finished_at)}


def tearsheet_html(record: JobRecord, result: dict[str, Any]) -> str:
    """The HTML tearsheet of a completed backtest's record and stored result."""
    meta = {**record.meta, "initial_capital": record.payload.get("initial_capital"),
            "commission_rate": record.payload.get("commission_rate"), **_times(record)}
    return render_tearsheet(record.id, result, meta)


def factor_tearsheet_html(record: JobRecord, result: dict[str, Any]) -> str:
    """The HTML tearsheet of a completed factor analysis's record and stored result."""
    payload = record.payload
    meta = {**record.meta, "symbols": list(payload.get("symbols") or record.meta.get("symbols") or []),
            "symbol_count": len(payload.get("symbols") or record.meta.get("symbols") or []),
            "factor": payload.get("expression") or record.meta.get("factor"), "bins": payload.get("bins"),
            **{name: payload[name] for name in ("long_short", "group_adjust", "equal_weight") if name in payload},
            **_times(record)}
    return render_factor_tearsheet(record.id, result, meta)


RENDERERS: dict[str, Callable[[JobRecord, dict[str, Any]], str]] = {
    "backtest": tearsheet_html, "factor": factor_tearsheet_html}


def make_report_handler(resources: WorkerResources):
    queue = resources.queue

    def handle(context: JobContext) -> dict[str, Any]:
        source_id = context.payload.get("source_id") or context.payload.get("backtest_id")
        record, result = queue.get(source_id), queue.result(source_id)
        if record is None or result is None or record.status is not JobStatus.COMPLETED:
            raise PermanentJobError(f"job {source_id} has no stored result to report on "
                                    f"(it expired, or it is not COMPLETED)")
        render = RENDERERS.get(record.task_type)
        if render is None:
            raise PermanentJobError(f"job {source_id} is a {record.task_type} job; reports exist for "
                                    f"{' and '.join(sorted(RENDERERS))} jobs")
        context.progress(0.1)
        return {"source_id": source_id, "task_type": record.task_type, "html": render(record, result)}
    return handle
