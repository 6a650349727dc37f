"""One lifecycle code path for every job, whatever its service: look-up, watch, cancel, blocking
wait and history paging. JobService uses it for any id; the per-service RPCs of the seed documents
(GetBacktestStatus, WatchBacktest, CancelTraining...) use it with their task type."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import grpc

from services import validation
from services.errors import ServiceError, failed_precondition, not_found
from utils import task_types
from utils.queue.jobs import JobRecord, JobSpec, JobStatus, derived_job_id, new_job_id
from utils.queue.streams import JobQueue

WATCH_POLL_SECONDS = 0.1  # re-read at least this often: an announcement can be lost across a reconnect
CANCEL_MESSAGES = {"cancelled": "cancelled while pending",
                   "requested": "cancellation requested; the worker stops at its next progress check"}


def _noun(task_type: str | None) -> str:
    if task_type is None:
        return "job"
    try:
        return task_types.get(task_type).noun
    except task_types.UnknownTaskType:
        return task_type


def job_id_field(field: str, value: str, task_type: str | None = None) -> str:
    """A syntactically valid job id from a request field (INVALID_ARGUMENT otherwise)."""
    return validation.identifier(field, value, _noun(task_type))


def require_job(queue: JobQueue, job_id: str, task_type: str | None = None) -> JobRecord:
    """The job's record; NOT_FOUND naming the id when it does not exist (or is not of
    ``task_type`` when one is given)."""
    record = queue.get(job_id)
    if record is None or (task_type is not None and record.task_type != task_type):
        raise not_found(f"no {_noun(task_type)} with id {job_id!r} (ids expire with their results)")
    return record


def watch(queue: JobQueue, job_id: str, context: grpc.ServicerContext,
          task_type: str | None = None) -> Iterator[JobRecord]:
    """Yield the job record whenever its status or progress changes, until it is terminal.
    Wakes on the job's announcements (the queue's one pub/sub listener)."""
    last: tuple | None = None
    with queue.announcements.listening(job_id) as changed:
        while context.is_active():
            changed.clear()
            record = require_job(queue, job_id, task_type)
            state = (record.status, round(record.progress, 4), record.attempts, record.error,
                     tuple(sorted(record.progress_detail.items(), key=str)) if record.progress_detail else ())
            if state != last:
                last = state
                yield record
            if record.status.is_terminal:
                return
            changed.wait(WATCH_POLL_SECONDS)


def cancel(queue: JobQueue, job_id: str, task_type: str | None = None) -> tuple[JobRecord, str]:
    """Cancel a job; returns its record afterwards and a sentence saying what happened."""
    require_job(queue, job_id, task_type)
    outcome = queue.cancel(job_id)
    record = require_job(queue, job_id, task_type)
    return record, CANCEL_MESSAGES.get(outcome, f"already {outcome.lower()}; nothing to cancel")


def completed_result(queue: JobQueue, job_id: str, task_type: str, follow: str,
                     whole: bool = True) -> tuple[JobRecord, dict]:
    """Record and stored result of a COMPLETED job of ``task_type`` (``whole=False``: its head,
    long lists left as descriptors for ``queue.result_page``): NOT_FOUND for an unknown id or an
    expired result, FAILED_PRECONDITION (naming its state, and ``follow``: how to wait for it)
    while it is not COMPLETED."""
    record = require_job(queue, job_id, task_type)
    noun = _noun(task_type)
    if record.status is not JobStatus.COMPLETED:
        detail = f": {record.error}" if record.error else ""
        raise failed_precondition(f"{noun} {job_id} is {record.status.value} (progress {record.progress:.0%})"
                                  f"{detail}; results exist only once it is COMPLETED ({follow})")
    result = queue.result(job_id) if whole else queue.result_head(job_id)
    if result is None:
        raise not_found(f"the result of {noun} {job_id} has expired")
    return record, result


def wait_for(queue: JobQueue, job_id: str, context: grpc.ServicerContext, default_timeout: float) -> JobRecord | None:
    """Block until the job is terminal, woken by its completion announcement; None if the
    caller's deadline (or ``default_timeout``) passes or the caller goes away first (the job is
    then cancelled, so nobody computes an answer nobody reads)."""
    remaining = context.time_remaining()
    deadline = time.monotonic() + (min(remaining, default_timeout) if remaining is not None else default_timeout)
    with queue.announcements.listening(job_id) as changed:
        while context.is_active():
            changed.clear()
            record = queue.get(job_id)
            if record is not None and record.status.is_terminal:
                return record
            left = deadline - time.monotonic()
            if left <= 0:
                break
            changed.wait(min(left, WATCH_POLL_SECONDS))
    queue.cancel(job_id)
    return None


def run_job(queue: JobQueue, spec: JobSpec, context: grpc.ServicerContext, timeout: float,
            job_id: str | None = None) -> tuple[str, dict]:
    """Queue a job and block until its result (a request/response RPC backed by a queued job):
    (job id, result). DEADLINE_EXCEEDED when it does not finish in time (it is then cancelled);
    FAILED_PRECONDITION with its error when it fails."""
    job_id = queue.enqueue(spec, job_id)
    record = wait_for(queue, job_id, context, timeout)
    noun = _noun(spec.task_type)
    if record is None:
        raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"{noun} {job_id} did not finish in time (workers busy, or none running?); it was cancelled")
    result = queue.result(job_id) if record.status is JobStatus.COMPLETED else None
    if result is None:
        raise failed_precondition(f"{noun} {job_id} {record.status.value.lower()}: {record.error or 'no result'}")
    return job_id, result


REPORT_CONTENT_TYPE = "text/html; charset=utf-8"
REPORT_TIMEOUT_SECONDS = 60.0  # a tearsheet renders in well under a second on a worker


def render_report(queue: JobQueue, source: JobRecord, context: grpc.ServicerContext, max_attempts: int,
                  timeout: float = REPORT_TIMEOUT_SECONDS) -> str:
    """The HTML tearsheet of a COMPLETED job, rendered by a worker as a ``report`` job (its
    renderer is picked by the source's task type, ``utils/tasks/report.py``). One report job per
    source (``derived_job_id``), reused while it lives; a failed or cancelled one is replaced."""
    report_id = derived_job_id("report", source.id)
    earlier = queue.get(report_id)
    if earlier is not None and earlier.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        report_id = new_job_id("report")
    spec = JobSpec("report", {"source_id": source.id}, "high", max_attempts,
                   {"source_id": source.id, "source_type": source.task_type})
    _, result = run_job(queue, spec, context, timeout, report_id)
    return result["html"]


def history_page(queue: JobQueue, task_type: str | None, offset: int, size: int,
                 keep: Callable[[JobRecord], bool], scan_chunk: int = 200) -> tuple[list[JobRecord], str]:
    """Newest-first records passing ``keep`` (every type when ``task_type`` is None); the token
    is the scan position to resume from. Ids whose records expired are dropped from the listing."""
    found: list[JobRecord] = []
    position = offset
    while len(found) < size:
        ids = queue.history(task_type, position, scan_chunk)
        if not ids:
            return found, ""
        records = queue.get_many(ids)
        queue.forget(task_type, [job_id for job_id, record in zip(ids, records) if record is None])
        alive = 0  # positions after the forgotten ids move up by one each
        for record in records:
            if record is None:
                continue
            alive += 1
            if keep(record):
                found.append(record)
                if len(found) == size:
                    return found, str(position + alive)
        position += alive
    return found, str(position)


def status_filter(wanted: JobStatus | None) -> Callable[[JobRecord], bool]:
    return lambda record: wanted is None or record.status is wanted
