"""The dashboard's JSON reads, through the same JobQueue the gRPC services use (blocking calls:
the app runs them in a worker thread)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from utils.queue.cluster import cluster_view
from utils.queue.jobs import JobRecord, JobStatus
from utils.queue.streams import JobQueue


class NotFound(LookupError):
    """No such job, or it has nothing of the kind asked for."""


def job_view(record: JobRecord) -> dict[str, Any]:
    return {"job_id": record.id, "task_type": record.task_type, "status": record.status.value,
            "progress": record.progress, "error": record.error, "created_at": record.created_at,
            "finished_at": record.finished_at, "device": record.device, "meta": record.meta}


def overview(queue: JobQueue) -> dict[str, Any]:
    """Workers (alive = heartbeat key present) and queue depth per task type: the same read as
    JobService.GetClusterStatus."""
    view = cluster_view(queue)
    return {"workers": [asdict(worker) for worker in view.workers],
            "queues": [asdict(row) for row in view.queues]}


def recent_jobs(queue: JobQueue, task_type: str | None, limit: int) -> list[dict[str, Any]]:
    ids = queue.history(task_type, 0, limit)
    return [job_view(record) for record in queue.get_many(ids) if record is not None]


def job(queue: JobQueue, job_id: str) -> dict[str, Any]:
    record = queue.get(job_id)
    if record is None:
        raise NotFound(f"no job {job_id!r} (ids expire with their results)")
    return job_view(record)


def equity(queue: JobQueue, job_id: str) -> dict[str, Any]:
    """A completed backtest's equity curve, drawdown and metrics."""
    record = queue.get(job_id)
    if record is None or record.status is not JobStatus.COMPLETED:
        raise NotFound(f"no completed job {job_id!r}")
    result = queue.result_head(job_id)  # the curve and metrics; not the trades
    if not isinstance(result, dict) or not isinstance(result.get("equity_curve"), dict):
        raise NotFound(f"job {job_id!r} has no equity curve (only backtests have one)")
    curve = result["equity_curve"]
    return {"job_id": job_id, "time": curve.get("time", []), "equity": curve.get("equity", []),
            "drawdown": curve.get("drawdown", []), "metrics": result.get("metrics", {}),
            "symbols": record.meta.get("symbols") or record.payload.get("symbols", [])}
