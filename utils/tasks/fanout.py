"""Fan a job out into child jobs on the same Redis Streams queue, wait for them, fold their results.

The machinery every sharded job shares (symbol shards of backtests and sweeps in
``utils/tasks/shards.py``, symbol shards of feature panels and date shards of factor analyses in
``utils/tasks/panel_shards.py``):

- child ids derive from the parent's id, the round's name and the shard's index
  (``child_job_id``), so a retried parent finds the children it already enqueued: enqueue is
  idempotent per id, and a child that finished is never run again;
- children are enqueued one by one (each job's keys are one Redis Cluster slot), as their own task
  type (own per-worker slots: a parent waiting in its slot never holds the slot a child needs);
- the parent polls its children (bounded by ``wait_seconds``), reports their mean progress (never
  backwards), and folds each child's result in shard order as soon as it and all shards before it
  have completed (``fold(index, result)``; one child's result held at a time);
- a child's failures are retried by the queue as that child's own attempts (never the whole job);
  the parent fails only when a child failed after its attempts, was cancelled or expired;
- the parent cancels its children when it is cancelled or fails, not when it lost its lease or its
  worker shuts down (its next attempt reuses them).
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Callable

from utils.queue.jobs import JobSpec, JobStatus
from utils.queue.worker import JobCancelled, JobContext, PermanentJobError

POLL_SECONDS = 0.1


def child_job_id(prefix: str, parent_id: str, round_name: str, index: int) -> str:
    """The id of the parent's child ``index`` of ``round_name`` (the same on every attempt)."""
    digest = hashlib.sha256(f"{parent_id}:{round_name}:{index}".encode()).hexdigest()[:32]
    return f"{prefix}-{digest}"


def fan_out(queue: Any, context: JobContext, task_type: str, ids: list[str], payloads: list[dict[str, Any]],
            fold: Callable[[int, dict[str, Any]], None], progress: Callable[[float], None],
            wait_seconds: float) -> None:
    """Enqueue child ``ids[i]`` (``task_type``, ``payloads[i]``), wait for all, ``fold`` their
    results in index order. Raises PermanentJobError when a child failed, was cancelled or
    expired, or the children did not finish within ``wait_seconds``; JobCancelled when the parent
    was cancelled or lost its lease."""
    for job_id, payload in zip(ids, payloads):  # one by one: each job's keys are one Redis Cluster slot
        queue.enqueue(JobSpec(task_type, payload, meta={"parent": context.job_id}), job_id)
    deadline = time.monotonic() + wait_seconds
    shown = 0.0
    folded = 0  # children 0..folded-1 are folded in
    try:
        while True:
            records = queue.get_many(ids)
            fractions = []
            for index, record in enumerate(records):
                label = f"shard {index + 1} of {len(ids)} ({ids[index]})"
                if record is None:
                    raise PermanentJobError(f"{label} has expired")
                if record.status is JobStatus.FAILED:
                    raise PermanentJobError(f"{label} failed after {record.attempts} attempts: {record.error}")
                if record.status is JobStatus.CANCELLED:
                    raise PermanentJobError(f"{label} was cancelled")
                fractions.append(1.0 if record.status is JobStatus.COMPLETED else record.progress)
            while folded < len(ids) and records[folded].status is JobStatus.COMPLETED:
                result = queue.result(ids[folded])
                if result is None:
                    raise PermanentJobError(f"shard {folded + 1} of {len(ids)} ({ids[folded]}): result expired")
                fold(folded, result)
                folded += 1
            shown = max(shown, sum(fractions) / len(fractions))
            progress(shown)  # raises JobCancelled when the parent was cancelled
            if folded == len(ids):
                return
            if context.lost.is_set():
                raise JobCancelled(context.job_id)
            if time.monotonic() > deadline:
                raise PermanentJobError(f"shards not finished within the wait limit ({wait_seconds:g} s; "
                                        f"SHARD_WAIT_SECONDS)")
            time.sleep(POLL_SECONDS)
    except (JobCancelled, PermanentJobError):
        if not context.lost.is_set():  # a lost attempt's children stay for the parent's next attempt
            for job_id in ids:  # finished ones are left alone by cancel
                queue.cancel(job_id)
        raise
