"""Shared look-ups of queued jobs for the servicers (status, watch, history paging)."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import grpc

from services.errors import not_found
from utils.queue.jobs import JobRecord
from utils.queue.streams import JobQueue

WATCH_POLL_SECONDS = 0.1


def require_job(queue: JobQueue, job_id: str, task_type: str, noun: str) -> JobRecord:
    record = queue.get(job_id)
    if record is None or record.task_type != task_type:
        raise not_found(f"no {noun} with id {job_id!r} (ids expire with their results)")
    return record


def watch(queue: JobQueue, job_id: str, task_type: str, noun: str,
          context: grpc.ServicerContext) -> Iterator[JobRecord]:
    """Yield the job record whenever its status or progress changes, until it is terminal.
    Wakes on the job's announcements (the queue's one pub/sub listener) and re-reads at least
    every ``WATCH_POLL_SECONDS`` (an announcement can be missed across a reconnect)."""
    last: tuple | None = None
    while context.is_active():
        record = require_job(queue, job_id, task_type, noun)
        state = (record.status, round(record.progress, 4), record.attempts, record.error)
        if state != last:
            last = state
            yield record
        if record.status.is_terminal:
            return
        queue.announcements.wait(job_id, WATCH_POLL_SECONDS)


def wait_for(queue: JobQueue, job_id: str, context: grpc.ServicerContext, default_timeout: float,
             poll_seconds: float = 0.005) -> JobRecord | None:
    """Block until the job is terminal; None if the caller's deadline (or ``default_timeout``)
    passes or the caller goes away first (the job is then cancelled)."""
    remaining = context.time_remaining()
    deadline = time.monotonic() + (min(remaining, default_timeout) if remaining is not None else default_timeout)
    while time.monotonic() < deadline and context.is_active():
        record = queue.get(job_id)
        if record is not None and record.status.is_terminal:
            return record
        time.sleep(poll_seconds)
    queue.cancel(job_id)
    return None


def history_page(queue: JobQueue, task_type: str, offset: int, size: int,
                 keep: Callable[[JobRecord], bool], scan_chunk: int = 200) -> tuple[list[JobRecord], str]:
    """Newest-first records passing ``keep``; the token is the scan position to resume from."""
    found: list[JobRecord] = []
    position = offset
    while len(found) < size:
        ids = queue.history(task_type, position, scan_chunk)
        if not ids:
            return found, ""
        records = queue.get_many(ids)
        for index, record in enumerate(records):
            position_after = position + index + 1
            if record is not None and keep(record):
                found.append(record)
                if len(found) == size:
                    return found, str(position_after)
        position += len(ids)
    return found, str(position)
