"""The worker loop: read jobs within the scheduler's caps, run them, keep their leases alive.

Threads: the loop (read + dispatch), a heartbeat (lease renewal, cancel flags, reclaiming
entries of dead workers, promoting due retries) and a pool that runs handlers.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import redis

from utils.gpu.scheduler import Scheduler
from utils.logging_setup import bind_log_context, restore_log_context
from utils.queue import keys
from utils.queue.jobs import Delivery, JobRecord, JobStatus
from utils.queue.streams import JobQueue, StartedJob
from utils.redis_client import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a handler (by ``JobContext.progress``) when the job was cancelled."""


class PermanentJobError(Exception):
    """The job cannot succeed however often it is retried (bad input found at run time)."""


@dataclass
class JobContext:
    """What a handler gets: its job, a progress reporter, and cancellation."""

    record: JobRecord
    attempt: int
    report: Callable[..., None]  # (job_id, fraction, detail=None)
    cancelled: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    # Set by the GPU out-of-memory policy (utils/gpu/oom.py): 1.0 on the first try, smaller on
    # retries; handlers that cut work into chunks multiply their chunk size by it.
    shard_scale: float = 1.0
    _last_report: float = 0.0

    @property
    def job_id(self) -> str:
        return self.record.id

    @property
    def payload(self) -> dict[str, Any]:
        return self.record.payload

    def on_device(self, device: str) -> "JobContext":
        """This job with its payload's ``device`` replaced (the OOM policy's CPU fallback); the
        cancel/lost flags and the progress reporter are shared with this context."""
        record = replace(self.record, payload={**self.record.payload, "device": device})
        return JobContext(record=record, attempt=self.attempt, report=self.report, cancelled=self.cancelled,
                          lost=self.lost, shard_scale=self.shard_scale)

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled(self.job_id)

    def progress(self, fraction: float, detail: dict[str, Any] | None = None) -> None:
        """Report progress (rate-limited) and stop here if the job was cancelled. ``detail`` (a
        small JSON object, e.g. trees done and the validation loss) is shown with the status."""
        self.check_cancelled()
        now = time.monotonic()
        if now - self._last_report >= 0.1 or fraction >= 1.0:
            self._last_report = now
            if detail is None:
                self.report(self.job_id, fraction)
            else:
                self.report(self.job_id, fraction, detail)


Handler = Callable[[JobContext], dict]


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str
    device_label: str = "cpu"
    # Short enough that a slot freed for another task type is used promptly.
    block_ms: int = 200
    heartbeat_seconds: float = 0.5
    shutdown_grace_seconds: float = 30.0


def _retry_redis(action: Callable[[], Any], attempts: int = 20, delay: float = 0.25) -> Any:
    """Retry a final bookkeeping call across a brief Redis outage."""
    for attempt in range(attempts):
        try:
            return action()
        except REDIS_UNAVAILABLE:
            if attempt == attempts - 1:
                raise
            time.sleep(min(delay * (2 ** attempt), 2.0))


class Worker:
    def __init__(self, queue: JobQueue, handlers: dict[str, Handler], scheduler: Scheduler,
                 config: WorkerConfig, metrics: Any | None = None) -> None:
        self.queue = queue
        self.handlers = handlers
        self.scheduler = scheduler
        self.config = config
        self.metrics = metrics
        self._running: dict[str, tuple[Delivery, JobContext]] = {}
        self._running_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(sum(scheduler.caps.values()), 1),
                                        thread_name_prefix=f"job-{config.worker_id}")
        self._stop = threading.Event()

    @property
    def consumer(self) -> str:
        return self.config.worker_id

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event, warm_up: Callable[[threading.Event], Any] | None = None) -> None:
        """Run until ``stop`` is set, then drain gracefully. ``warm_up(stop)`` runs first, before
        the worker announces itself and takes jobs (compiling the kernels its handlers need)."""
        self._stop = stop
        if warm_up is not None:
            try:
                warm_up(stop)
            except Exception:  # a failed warm-up only means the first jobs compile for themselves
                log.exception("warm-up failed; taking jobs anyway")
        self._call_until_ok(self.queue.ensure_groups, stop)
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        heartbeat.start()
        log.info("worker %s started on %s, caps %s", self.consumer, self.config.device_label,
                 self.scheduler.caps)
        failures = 0
        while not stop.is_set():
            try:
                self._dispatch_held()
                streams = self.scheduler.readable_streams()
                if not streams:
                    self.scheduler.slot_freed.wait(0.05)
                    self.scheduler.slot_freed.clear()
                    continue
                deliveries = self.queue.read(self.consumer, streams, block_ms=self.config.block_ms,
                                             count=max(self.scheduler.read_count(), 1))
                self.scheduler.hold(deliveries)
                self._dispatch_held()
                failures = 0
            except REDIS_UNAVAILABLE as exc:
                failures += 1
                log.warning("redis unavailable (%s); retrying", exc)
                stop.wait(min(0.2 * 2 ** failures, 5.0))
        self._drain()
        heartbeat.join(timeout=2)

    def _call_until_ok(self, action: Callable[[], Any], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                action()
                return
            except REDIS_UNAVAILABLE as exc:
                log.warning("redis unavailable at start-up (%s); retrying", exc)
                stop.wait(1.0)

    def _dispatch_held(self) -> None:
        while (delivery := self.scheduler.take_runnable()) is not None:
            started = self.queue.start(delivery, self.consumer, self.config.device_label)
            if started is None:  # cancelled/finished meanwhile, or dead-lettered by start
                self.scheduler.release(delivery.task_type)
                continue
            context = JobContext(record=started.record, attempt=started.record.attempts,
                                 report=self.queue.set_progress)
            with self._running_lock:
                self._running[delivery.job_id] = (delivery, context)
            self._pool.submit(self._execute, started, context)

    # ------------------------------------------------------------- execution
    def _execute(self, started: StartedJob, context: JobContext) -> None:
        delivery, record = started.delivery, started.record
        began = time.time()
        outcome = "failed"
        # Pool threads are reused: bound here, restored in finally, so ids never leak to the next job.
        bound = bind_log_context(job_id=record.id, task_type=record.task_type, worker_id=self.consumer)
        if self.metrics:
            self.metrics.job_started(record.task_type, max(began - record.enqueued_at, 0.0))
        try:
            handler = self.handlers.get(record.task_type)
            if handler is None:
                raise PermanentJobError(f"this worker has no handler for task type {record.task_type!r}")
            result = handler(context)
            if context.lost.is_set():
                outcome = "lost"
            else:
                _retry_redis(lambda: self.queue.finish(delivery, JobStatus.COMPLETED, result))
                outcome = "completed"
        except JobCancelled:
            if not context.lost.is_set():
                _retry_redis(lambda: self.queue.finish(delivery, JobStatus.CANCELLED, None))
            outcome = "cancelled" if not context.lost.is_set() else "lost"
        except PermanentJobError as exc:
            reason = str(exc)
            _retry_redis(lambda: self.queue.fail(delivery, reason, retryable=False))
        except Exception as exc:  # a handler bug or a transient fault: retry with backoff
            log.error("job %s attempt %d failed: %s\n%s", record.id, context.attempt, exc,
                      traceback.format_exc())
            message = f"{type(exc).__name__}: {exc}"
            try:
                outcome = "retry" if _retry_redis(lambda: self.queue.fail(delivery, message, True)) == "retry" else "failed"
            except redis.RedisError:
                log.error("could not record failure of %s; its lease will lapse and it is retried", record.id)
        finally:
            with self._running_lock:
                self._running.pop(delivery.job_id, None)
            self.scheduler.release(record.task_type)
            if self.metrics:
                self.metrics.job_finished(record.task_type, outcome, time.time() - began)
            restore_log_context(bound)

    # ------------------------------------------------------------- heartbeat
    def _heartbeat_loop(self) -> None:
        reclaim_every = max(self.queue.config.lease_seconds / 2, 0.2)
        last_reclaim = 0.0
        while not self._stop.is_set():
            try:
                self._renew_leases()
                self.queue.promote_due()  # every beat, so retry backoff is honoured to ~0.5 s
                now = time.monotonic()
                if now - last_reclaim >= reclaim_every:
                    last_reclaim = now
                    readable = self.scheduler.readable_streams()
                    self.scheduler.hold(self.queue.reclaim(self.consumer, readable))
                    self.queue.trim_history()
                    self._announce()
            except REDIS_UNAVAILABLE:
                pass  # the loop reports it; leases lapse and jobs are reclaimed, never lost
            except Exception:
                log.exception("heartbeat error")
            self._stop.wait(self.config.heartbeat_seconds)

    def _renew_leases(self) -> None:
        with self._running_lock:
            running = list(self._running.values())
        for delivery, context in running:
            owned, cancel = self.queue.renew(delivery, self.consumer)
            if not owned:
                record = self.queue.get(delivery.job_id)
                if record is None or record.status.is_terminal:
                    continue  # it finished (most often: this attempt, just now) - nothing to abandon
            if not owned and not context.lost.is_set():
                log.warning("lost the lease of job %s; abandoning this attempt", delivery.job_id)
                context.lost.set()
                context.cancelled.set()
            elif cancel:
                context.cancelled.set()
        for delivery in self.scheduler.held():
            self.queue.touch(delivery, self.consumer)

    def _announce(self) -> None:
        pipe = self.queue.redis.pipeline(transaction=False)
        pipe.set(keys.worker_alive(self.consumer), self.config.device_label,
                 ex=max(int(self.queue.config.lease_seconds * 2), 5))
        pipe.hset(keys.WORKERS, self.consumer, self.config.device_label)
        pipe.execute()

    # --------------------------------------------------------------- shutdown
    def _drain(self) -> None:
        """Return held entries to the queue, let running jobs finish within the grace period,
        and put back whatever is still running after it (that attempt is not counted)."""
        for delivery in self.scheduler.drop_held():
            self._safe(lambda d=delivery: self.queue.requeue(d, self.consumer))
        deadline = time.monotonic() + self.config.shutdown_grace_seconds
        while time.monotonic() < deadline:
            with self._running_lock:
                if not self._running:
                    break
            time.sleep(0.05)
        with self._running_lock:
            leftovers = list(self._running.values())
        for delivery, context in leftovers:
            context.lost.set()
            context.cancelled.set()
            self._safe(lambda d=delivery: self.queue.requeue(d, self.consumer))
            log.info("returned running job %s to the queue", delivery.job_id)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._safe(lambda: self.queue.redis.hdel(keys.WORKERS, self.consumer))
        log.info("worker %s stopped", self.consumer)

    @staticmethod
    def _safe(action: Callable[[], Any]) -> None:
        try:
            action()
        except redis.RedisError as exc:
            log.warning("shutdown bookkeeping failed (%s); lease expiry will recover it", exc)

