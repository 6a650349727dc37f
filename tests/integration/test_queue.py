"""Queue semantics on a real redis-server: the real Worker loop with test handlers."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import InProcessWorker, wait_until
from utils.queue import keys
from utils.queue.jobs import JobSpec, JobStatus
from utils.queue.streams import JobQueue, QueueConfig
from utils.queue.worker import PermanentJobError
from utils.redis_client import redis_from_settings


def spec(payload=None, priority="normal", max_attempts=3):
    return JobSpec("features", payload or {}, priority, max_attempts, {})


@pytest.fixture
def queue(settings):
    q = JobQueue(redis_from_settings(settings), QueueConfig.from_settings(settings))
    q.ensure_groups()
    return q


def run_worker(settings, handler, **overrides):
    worker_settings = settings.model_copy(update=overrides) if overrides else settings
    return InProcessWorker(worker_settings, handlers={"features": handler}).start()


def test_job_runs_once_and_stores_result(settings, queue):
    worker = run_worker(settings, lambda ctx: {"echo": ctx.payload["x"], "attempt": ctx.attempt})
    try:
        job_id = queue.enqueue(spec({"x": 7}))
        record = wait_until(lambda: (r := queue.get(job_id)) and r.status.is_terminal and r)
        assert record.status is JobStatus.COMPLETED and record.progress == 1.0 and record.attempts == 1
        assert queue.result(job_id) == {"echo": 7, "attempt": 1}
        assert queue.redis.xlen(keys.stream("features", "normal")) == 0  # acked entries are deleted
        assert queue.stats("features")["completed"] == 1
    finally:
        worker.stop()


def test_failures_retry_with_backoff_then_succeed(settings, queue):
    def flaky(ctx):
        if ctx.attempt < 3:
            raise RuntimeError(f"transient fault {ctx.attempt}")
        return {"ok": True}
    worker = run_worker(settings, flaky)
    try:
        job_id = queue.enqueue(spec())
        record = wait_until(lambda: (r := queue.get(job_id)) and r.status.is_terminal and r)
        assert record.status is JobStatus.COMPLETED and record.attempts == 3
        assert queue.stats("features")["retried"] == 2
    finally:
        worker.stop()


def test_repeated_failure_goes_to_dead_letter(settings, queue):
    worker = run_worker(settings, lambda ctx: 1 / 0)
    try:
        job_id = queue.enqueue(spec())
        record = wait_until(lambda: (r := queue.get(job_id)) and r.status.is_terminal and r)
        assert record.status is JobStatus.FAILED and record.attempts == 3
        assert "ZeroDivisionError" in record.error
        dead = queue.redis.xrange(keys.dead_letter("features"))
        assert len(dead) == 1 and dead[0][1]["job_id"] == job_id
    finally:
        worker.stop()


def test_permanent_error_fails_without_retry(settings, queue):
    def bad(ctx):
        raise PermanentJobError("symbol XYZ has no bars")
    worker = run_worker(settings, bad)
    try:
        job_id = queue.enqueue(spec())
        record = wait_until(lambda: (r := queue.get(job_id)) and r.status.is_terminal and r)
        assert record.status is JobStatus.FAILED and record.attempts == 1 and record.error == "symbol XYZ has no bars"
    finally:
        worker.stop()


def test_cancel_pending_job_is_never_run(settings, queue):
    ran = []
    job_id = queue.enqueue(spec())
    assert queue.cancel(job_id) == "cancelled"
    worker = run_worker(settings, lambda ctx: ran.append(ctx.job_id) or {})
    try:
        wait_until(lambda: queue.redis.xlen(keys.stream("features", "normal")) == 0)
        assert queue.get(job_id).status is JobStatus.CANCELLED and ran == []
    finally:
        worker.stop()


def test_cancel_running_job_stops_it_before_it_finishes(settings, queue):
    started, finished, returned = threading.Event(), threading.Event(), threading.Event()

    def long_job(ctx):  # 1000 s of work unless the cancel stops it at a progress check
        started.set()
        try:
            for step in range(100_000):
                ctx.progress(step / 100_000)
                time.sleep(0.01)
            finished.set()
        finally:
            returned.set()
        return {}
    worker = run_worker(settings, long_job)
    try:
        job_id = queue.enqueue(spec())
        assert started.wait(60)
        assert queue.cancel(job_id) == "requested"
        # CANCELLED is written by the worker only once the handler has raised JobCancelled.
        wait_until(lambda: queue.get(job_id).status is JobStatus.CANCELLED, timeout=60)
        assert returned.wait(60) and not finished.is_set()
        assert queue.result(job_id) is None
    finally:
        worker.stop()


def test_concurrency_cap_is_respected(settings, queue):
    running, peak, lock, release = [0], [0], threading.Lock(), threading.Event()

    def slow(ctx):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(60)  # held until the test has seen the cap reached, however slow the machine
        with lock:
            running[0] -= 1
        return {}
    worker = run_worker(settings, slow, max_concurrent_features=2)
    try:
        ids = [queue.enqueue(spec()) for _ in range(8)]
        wait_until(lambda: running[0] >= 2, timeout=60)
        release.set()
        wait_until(lambda: all(queue.get(i).status is JobStatus.COMPLETED for i in ids), timeout=60)
        assert peak[0] == 2
    finally:
        worker.stop()


def test_higher_priority_runs_first(settings, queue):
    order = []
    low, normal, high = (queue.enqueue(spec({"name": p}, priority=p)) for p in ("low", "normal", "high"))
    worker = run_worker(settings, lambda ctx: order.append(ctx.payload["name"]) or {}, max_concurrent_features=1)
    try:
        wait_until(lambda: len(order) == 3)
        assert order == ["high", "normal", "low"]
    finally:
        worker.stop()


def test_job_of_a_dead_consumer_is_reclaimed_after_its_lease(settings, queue):
    job_id = queue.enqueue(spec())
    delivery = queue.read("dead-consumer", [keys.stream("features", "normal")], block_ms=None)[0]
    assert queue.start(delivery, "dead-consumer", "cpu") is not None  # then it "dies": no renewals
    worker = run_worker(settings, lambda ctx: {"attempt": ctx.attempt})
    try:
        record = wait_until(lambda: (r := queue.get(job_id)) and r.status.is_terminal and r, timeout=60)
        assert record.status is JobStatus.COMPLETED and record.attempts == 2
        assert queue.result(job_id) == {"attempt": 2}
    finally:
        worker.stop()


def test_late_duplicate_finish_does_not_overwrite_the_result(settings, queue):
    job_id = queue.enqueue(spec())
    delivery = queue.read("a", [keys.stream("features", "normal")], block_ms=None)[0]
    queue.start(delivery, "a", "cpu")
    assert queue.finish(delivery, JobStatus.COMPLETED, {"by": "a"}) is True
    assert queue.finish(delivery, JobStatus.COMPLETED, {"by": "b"}) is False
    assert queue.result(job_id) == {"by": "a"}


def test_shutdown_returns_running_job_to_the_queue(settings, queue):
    started = threading.Event()

    def endless(ctx):
        started.set()
        while True:
            ctx.progress(0.5)
            time.sleep(0.01)
    worker = InProcessWorker(settings, handlers={"features": endless})
    worker.worker.config = worker.worker.config.__class__(worker_id="draining", block_ms=200,
                                                          heartbeat_seconds=0.2, shutdown_grace_seconds=0.3)
    worker.start()
    job_id = queue.enqueue(spec())
    assert started.wait(60)
    worker.stop()
    record = queue.get(job_id)
    assert record.status is JobStatus.PENDING and record.attempts == 0
    assert queue.redis.xlen(keys.stream("features", "normal")) == 1


def test_enqueue_is_idempotent_per_job_id(settings, queue):
    from utils.queue.jobs import new_job_id
    job_id = new_job_id("features")
    assert queue.enqueue(spec({"x": 1}), job_id) == job_id
    assert queue.enqueue(spec({"x": 2}), job_id) == job_id  # a retry after a lost reply
    assert queue.get(job_id).payload == {"x": 1}
    assert queue.redis.xlen(keys.stream("features", "normal")) == 1
    assert queue.stats("features")["submitted"] == 1
