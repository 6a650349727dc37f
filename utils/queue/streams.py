"""The job queue on Redis Streams with one consumer group per stream.

Producer side: ``enqueue``, ``get``, ``cancel``. Consumer side (workers): ``read``, ``start``,
``renew``, ``finish``, ``fail``, ``requeue``, ``reclaim`` (XAUTOCLAIM of entries whose lease
lapsed) and ``promote_due`` (retries whose backoff has passed). Semantics are at-least-once
delivery with exactly one stored result: see scripts.py.
"""
from __future__ import annotations

import json
import time
from functools import cached_property
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import redis

from utils import task_types
from utils.queue import keys, result_parts, scripts
from utils.queue.announcements import JobAnnouncements
from utils.redis_client import is_cluster
from utils.queue.jobs import Delivery, JobRecord, JobSpec, JobStatus, initial_hash, new_job_id


PARTS_PER_ROUND_TRIP = 8  # result chunks per pipeline (~16 MB of trades)


@dataclass(frozen=True)
class QueueConfig:
    lease_seconds: float = 30.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 1.0
    result_ttl_seconds: int = 7 * 24 * 3600
    result_chunk_rows: int = result_parts.CHUNK_ROWS

    @classmethod
    def from_settings(cls, settings: Any) -> "QueueConfig":
        return cls(lease_seconds=settings.job_lease_seconds, max_attempts=settings.job_max_attempts,
                   retry_backoff_seconds=settings.job_retry_backoff_seconds,
                   result_ttl_seconds=settings.result_ttl_seconds,
                   result_chunk_rows=settings.result_chunk_rows)


@dataclass(frozen=True)
class StartedJob:
    """A delivery the worker now owns and must run."""

    delivery: Delivery
    record: JobRecord


def all_streams(type_names: Iterable[str] | None = None) -> list[str]:
    """Streams in read order (every registered type by default): high before normal before low."""
    return [keys.stream(t, p) for t in (type_names or task_types.names()) for p in keys.PRIORITIES]


class JobQueue:
    def __init__(self, client: redis.Redis, config: QueueConfig | None = None) -> None:
        # The client must be created with decode_responses=True.
        self.redis = client
        self.config = config or QueueConfig()
        self._enqueue = client.register_script(scripts.ENQUEUE)
        self._start = client.register_script(scripts.START)
        self._renew = client.register_script(scripts.RENEW)
        self._finish = client.register_script(scripts.FINISH)
        self._fail = client.register_script(scripts.FAIL)
        self._cancel = client.register_script(scripts.CANCEL)
        self._requeue = client.register_script(scripts.REQUEUE)
        self._promote = client.register_script(scripts.PROMOTE)
        self._progress = client.register_script(scripts.PROGRESS)
        self._clustered = is_cluster(client)  # every queue key is in the {gq} slot (keys.py)

    @cached_property
    def announcements(self) -> JobAnnouncements:
        """Wakes waiters on a job's progress/status announcements (one listener per queue)."""
        return JobAnnouncements(self.redis)

    # ----------------------------------------------------------------- set-up
    def ensure_groups(self) -> None:
        """Create every stream's consumer group (idempotent; also after a Redis wipe)."""
        for stream in all_streams():
            try:
                self.redis.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # --------------------------------------------------------------- producer
    def enqueue(self, spec: JobSpec, job_id: str | None = None) -> str:
        """Queue one job: one round trip. Idempotent per ``job_id``: a producer that did not get
        the reply (connection lost) retries with the same id and never creates a second job."""
        return self.enqueue_many([spec], [job_id] if job_id else None)[0]

    def enqueue_many(self, specs: list[JobSpec], job_ids: list[str] | None = None) -> list[str]:
        """Queue several jobs in one MULTI/EXEC round trip (all or none; ids that already exist
        are left alone). The way past the loopback round-trip ceiling for producers that submit
        many jobs at once."""
        job_ids = job_ids or [new_job_id(spec.task_type) for spec in specs]
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        for job_id, spec in zip(job_ids, specs):
            fields = [item for pair in initial_hash(job_id, spec, now).items() for item in pair]
            script_keys = [keys.job(job_id), keys.stream(spec.task_type, spec.priority),
                           keys.history(spec.task_type), keys.stats(spec.task_type), keys.HISTORY_ALL]
            if self._clustered:  # redis-py's cluster pipeline refuses EVALSHA; EVAL is allowed
                pipe.execute_command("EVAL", scripts.ENQUEUE, len(script_keys), *script_keys, job_id, now, *fields)
            else:
                self._enqueue(keys=script_keys, args=[job_id, now, *fields], client=pipe)
        pipe.execute()
        return job_ids

    def get(self, job_id: str) -> JobRecord | None:
        fields = self.redis.hgetall(keys.job(job_id))
        return JobRecord.from_hash(fields) if fields else None

    def get_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))
        return [JobRecord.from_hash(f) if f else None for f in pipe.execute()]

    def result(self, job_id: str) -> dict[str, Any] | None:
        """The whole result, its split lists (result_parts.py) joined back; None once expired."""
        head = self.result_head(job_id)
        if head is None:
            return None
        for found in result_parts.descriptors(head):
            rows = self._chunks(job_id, found, range(found.chunks))
            if rows is None:
                return None
            head[found.field] = rows
        return head

    def result_head(self, job_id: str) -> dict[str, Any] | None:
        """The result with its long lists left as descriptors: cheap whatever their length."""
        raw = self.redis.get(keys.result(job_id))
        return json.loads(raw) if raw else None

    def result_page(self, job_id: str, head: dict[str, Any], field: str, offset: int,
                    size: int) -> tuple[list[Any], int] | None:
        """(rows [offset, offset + size) of the result's list ``field``, its length), reading only
        the chunks they lie in; None if they have expired. ``head`` is ``result_head``'s."""
        found = result_parts.descriptor(head, field)
        if found is None:
            rows = head.get(field) or []
            return rows[offset:offset + size], len(rows)
        span = found.chunk_span(offset, size)
        rows = self._chunks(job_id, found, span)
        if rows is None:
            return None
        start = offset - span.start * found.chunk_rows if span else 0  # into the first chunk read
        return rows[start:start + size], found.count

    def _chunks(self, job_id: str, found: result_parts.PartsDescriptor, span: range) -> list[Any] | None:
        pipe = self.redis.pipeline(transaction=False)
        for index in span:
            pipe.get(keys.result_part(job_id, found.field, found.generation, index))
        rows: list[Any] = []
        for raw in pipe.execute() if span else []:
            if raw is None:
                return None
            rows.extend(json.loads(raw))
        return rows

    def result_ttl(self, task_type: str) -> int:
        """Seconds a finished job's record and result are kept: its type's, else the queue's."""
        try:
            declared = task_types.get(task_type).result_ttl_seconds
        except task_types.UnknownTaskType:  # a record written by a newer/older release
            declared = None
        return declared or self.config.result_ttl_seconds

    def cancel(self, job_id: str) -> str:
        """Cancel a job: pending ones at once, running ones at their next progress check."""
        record_type = self.redis.hget(keys.job(job_id), "type") or "backtest"
        return self._cancel(keys=[keys.job(job_id), keys.DELAYED, keys.stats(record_type)],
                            args=[time.time(), job_id, self.result_ttl(record_type)])

    def history(self, task_type: str | None, offset: int, count: int) -> list[str]:
        """Job ids of one type (every type when None), newest first."""
        key = keys.history(task_type) if task_type else keys.HISTORY_ALL
        return self.redis.zrevrange(key, offset, offset + count - 1)

    def trim_history(self, now: float | None = None) -> None:
        """Forget history entries older than the result TTL (their job records have expired)."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        for name in task_types.names():
            pipe.zremrangebyscore(keys.history(name), "-inf", now - self.result_ttl(name))
        # Shorter-lived types' ids linger here until this cutoff; listings drop them as they meet them.
        pipe.zremrangebyscore(keys.HISTORY_ALL, "-inf", now - self.config.result_ttl_seconds)
        pipe.execute()

    def forget(self, task_type: str | None, job_ids: list[str]) -> None:
        """Drop expired job ids from a history listing."""
        if job_ids:
            self.redis.zrem(keys.history(task_type) if task_type else keys.HISTORY_ALL, *job_ids)

    def stats(self, task_type: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.redis.hgetall(keys.stats(task_type)).items()}

    # --------------------------------------------------------------- consumer
    def read(self, consumer: str, streams: list[str], block_ms: int | None,
             count: int = 1) -> list[Delivery]:
        """New entries from ``streams``; ``block_ms=None`` does not wait."""
        if not streams:
            return []
        try:
            reply = self.redis.xreadgroup(keys.GROUP, consumer, {s: ">" for s in streams},
                                          count=count, block=block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_groups()  # Redis lost its data (restart without AOF): recreate
            return []
        deliveries = []
        for stream, entries in reply or []:
            for msg_id, fields in entries:
                deliveries.append(Delivery(stream=stream, msg_id=msg_id, job_id=fields.get("job_id", "")))
        return deliveries

    def start(self, delivery: Delivery, consumer: str, device: str) -> StartedJob | None:
        """Take ownership; None when the job is finished, cancelled, missing or dead-lettered."""
        task_type = delivery.task_type
        reply = self._start(
            keys=[keys.job(delivery.job_id), delivery.stream, keys.stats(task_type),
                  keys.dead_letter(task_type)],
            args=[keys.GROUP, delivery.msg_id, consumer, time.time(), device, delivery.job_id])
        if reply[0] != "RUNNING":
            return None
        flat = reply[2]
        return StartedJob(delivery, JobRecord.from_hash(dict(zip(flat[::2], flat[1::2]))))

    def renew(self, delivery: Delivery, consumer: str) -> tuple[bool, bool]:
        """Extend the lease. Returns (still_owner, cancel_requested)."""
        owned, cancel = self._renew(keys=[keys.job(delivery.job_id), delivery.stream],
                                    args=[keys.GROUP, delivery.msg_id, consumer, time.time()])
        return bool(owned), bool(cancel)

    def touch(self, delivery: Delivery, consumer: str) -> None:
        """Keep a held-but-not-started entry from being reclaimed."""
        self.redis.xclaim(delivery.stream, keys.GROUP, consumer, 0, [delivery.msg_id], justid=True)

    def set_progress(self, job_id: str, fraction: float, detail: dict[str, Any] | None = None) -> None:
        progress = f"{min(max(fraction, 0.0), 1.0):.6f}"  # published as "progress:<fraction>" for the gateway
        detail_json = json.dumps(detail, allow_nan=False) if detail is not None else ""
        self._progress(keys=[keys.job(job_id)], args=[progress, "1" if detail is not None else "0", detail_json])

    def finish(self, delivery: Delivery, status: JobStatus, result: dict[str, Any] | None) -> bool:
        """Store the result and mark COMPLETED (or CANCELLED); False if someone finished first."""
        counter = "completed" if status is JobStatus.COMPLETED else "cancelled"
        ttl = self.result_ttl(delivery.task_type)
        head, parts = result_parts.split(result, self.config.result_chunk_rows) if result is not None else (None, {})
        part_keys = self._write_parts(delivery.job_id, parts, ttl)
        payload = result_parts.dumps(head) if head is not None else ""
        written = self._finish(
            keys=[keys.job(delivery.job_id), delivery.stream, keys.stats(delivery.task_type),
                  keys.result(delivery.job_id)],
            args=[keys.GROUP, delivery.msg_id, time.time(), status.value, payload, ttl, counter])
        if not written and part_keys:  # another delivery finished first: its result stands, ours goes
            self.redis.delete(*part_keys)  # one job's chunks: one hash slot, one command
        return bool(written)

    def _write_parts(self, job_id: str, parts: dict[result_parts.PartsDescriptor, Iterator[str]], ttl: int) -> list[str]:
        """Store the split lists' chunks (before the result that points at them) with its TTL, a
        few per round trip: the chunks are made as they are written, never all held at once."""
        written: list[str] = []
        pipe = self.redis.pipeline(transaction=False)
        for found, chunks in parts.items():
            for index, chunk in enumerate(chunks):
                key = keys.result_part(job_id, found.field, found.generation, index)
                pipe.set(key, chunk, ex=ttl)
                written.append(key)
                if len(pipe) >= PARTS_PER_ROUND_TRIP:
                    pipe.execute()
        if len(pipe):
            pipe.execute()
        return written

    def fail(self, delivery: Delivery, error: str, retryable: bool) -> str:
        """Record a failed attempt: 'retry' (backoff, then re-queued) or 'failed' (dead-letter)."""
        task_type = delivery.task_type
        return self._fail(
            keys=[keys.job(delivery.job_id), delivery.stream, keys.stats(task_type),
                  keys.dead_letter(task_type), keys.DELAYED],
            args=[keys.GROUP, delivery.msg_id, time.time(), error[:2000], "1" if retryable else "0",
                  self.config.retry_backoff_seconds, delivery.job_id, self.result_ttl(task_type)])

    def requeue(self, delivery: Delivery, consumer: str) -> str:
        return self._requeue(keys=[keys.job(delivery.job_id), delivery.stream, delivery.stream],
                             args=[keys.GROUP, delivery.msg_id, delivery.job_id, consumer, time.time()])

    def reclaim(self, consumer: str, streams: list[str], count: int = 10) -> list[Delivery]:
        """Take over entries idle longer than the lease (their worker died)."""
        min_idle_ms = int(self.config.lease_seconds * 1000)
        claimed: list[Delivery] = []
        for stream in streams:
            try:
                reply = self.redis.xautoclaim(stream, keys.GROUP, consumer, min_idle_ms,
                                              start_id="0-0", count=count)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self.ensure_groups()
                    continue
                raise
            for msg_id, fields in reply[1]:
                if fields:  # a deleted entry comes back without fields
                    claimed.append(Delivery(stream=stream, msg_id=msg_id, job_id=fields.get("job_id", "")))
        return claimed

    def promote_due(self, now: float | None = None, limit: int = 100) -> int:
        """Re-queue retries whose backoff has passed. Safe to call from every worker."""
        now = time.time() if now is None else now
        due = self.redis.zrangebyscore(keys.DELAYED, "-inf", now, start=0, num=limit)
        moved = 0
        for job_id in due:
            task_type, priority = self.redis.hmget(keys.job(job_id), "type", "priority")
            if not task_type:
                self.redis.zrem(keys.DELAYED, job_id)
                continue
            moved += self._promote(keys=[keys.DELAYED, keys.job(job_id), keys.stream(task_type, priority)],
                                   args=[job_id, now])
        return moved

    # ------------------------------------------------------------- inspection
    def depth(self) -> list[tuple[str, str, int, int]]:
        """(task_type, priority, waiting, in_flight) for every stream."""
        pipe = self.redis.pipeline(transaction=False)
        streams = all_streams()
        for stream in streams:
            pipe.xlen(stream)
            pipe.xpending(stream, keys.GROUP)
        replies = pipe.execute(raise_on_error=False)
        rows = []
        for index, stream in enumerate(streams):
            length, pending = replies[2 * index], replies[2 * index + 1]
            length = length if isinstance(length, int) else 0
            in_flight = pending.get("pending", 0) if isinstance(pending, dict) else 0
            _, _, task_type, priority = stream.split(":")
            rows.append((task_type, priority, max(length - in_flight, 0), in_flight))
        return rows

    def dead_letter_size(self, task_type: str) -> int:
        return self.redis.xlen(keys.dead_letter(task_type))
