"""What the sharded-job suites share: real workers on the test Redis with the sample bars of some
symbols stored, a job run to its end, and shard handlers that fail once or wait to be released."""
from __future__ import annotations

import threading

from tests.conftest import InProcessWorker, wait_until
from utils.data.sample import sample_bars
from utils.data.store import bar_store_from_settings
from utils.queue.jobs import JobSpec
from utils.redis_client import redis_from_settings


class ShardedWorkers:
    """``settings`` with each symbol's sample bars stored; ``start`` starts real in-process workers
    (stopped by ``stop``)."""

    def __init__(self, settings, symbols: list[str]) -> None:
        self.settings = settings
        store = bar_store_from_settings(redis_from_settings(settings, decode=False), settings)
        for index, symbol in enumerate(symbols):
            store.write(sample_bars(symbol, 10.0 + index), replace=True, synthetic=True)
        self.started: list[InProcessWorker] = []

    def start(self, handlers=None, count: int = 2) -> list[InProcessWorker]:
        for _ in range(count):
            self.started.append(InProcessWorker(self.settings, handlers).start())
        return self.started

    def stop(self) -> None:
        for worker in self.started:
            worker.stop()


def run_to_end(queue, task_type: str, payload: dict, timeout: float = 120.0):
    """(job id, its final record, the progress values seen while it ran)."""
    job_id = queue.enqueue(JobSpec(task_type, payload))
    seen = []

    def finished():
        record = queue.get(job_id)
        seen.append(record.progress)
        return record.status.is_terminal and record
    record = wait_until(finished, timeout=timeout, interval=0.02)
    return job_id, record, seen


def failing_once(handler):
    """(a handler whose first attempt of the first shard to arrive raises, the ids it failed)."""
    failed: list[str] = []
    lock = threading.Lock()

    def flaky(context):
        with lock:
            fail = not failed and context.attempt == 1
            if fail:
                failed.append(context.job_id)
        if fail:
            raise RuntimeError("injected shard fault")
        return handler(context)
    return flaky, failed


def cancel_with_shards_running(settings, start_workers, shard_type: str, spec: JobSpec, shards) -> None:
    """Start workers whose ``shard_type`` shards never finish by themselves, submit ``spec``, cancel
    it once two shards run, and wait until it and every shard (``shards(queue, job_id)``) are
    CANCELLED."""
    from utils.engine.backend import cpu_backend
    from utils.queue.jobs import JobStatus
    from utils.tasks.runtime import build_handlers
    handlers = build_handlers(settings, cpu_backend())
    release = threading.Event()
    queue = start_workers({**handlers, shard_type: held_until(release, handlers[shard_type])})[0].queue
    job_id = queue.enqueue(spec)
    wait_until(lambda: sum(c is not None and c.status is JobStatus.RUNNING for c in shards(queue, job_id)) == 2)
    queue.cancel(job_id)
    try:
        wait_until(lambda: queue.get(job_id).status is JobStatus.CANCELLED)
        wait_until(lambda: all(c.status is JobStatus.CANCELLED for c in shards(queue, job_id)))
    finally:
        release.set()


def held_until(release: threading.Event, handler):
    """A handler that waits (checking for cancellation) until ``release`` is set: a long shard."""
    def slow(context):
        while not release.is_set():
            context.progress(0.0)
            release.wait(0.05)
        return handler(context)
    return slow
