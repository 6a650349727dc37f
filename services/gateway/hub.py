"""One per gateway process: listens to Redis (job announcements, live ticks, alerts, dead
letters, worker heartbeats) and fans each event out to the connections that follow it.

Sources, all shared with the gRPC side (no state of the gateway's own, so gateways scale out):
* ``keys.job(id)`` announcements (PENDING at enqueue, RUNNING at start, ``progress:<fraction>``,
  and the terminal status), with the job hash's type, error and progress detail;
* ``md:live:<symbol>``, published by every server's tick writer while a presence key
  (``md:subscribed:<symbol>``, renewed here) says someone follows the symbol;
* ``keys.ALERTS`` (risk-limit breaches), the dead-letter streams, and worker heartbeat keys.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

import redis
import redis.asyncio as aioredis

from services.gateway import views
from services.gateway.outbox import Outbox
from services.gateway.protocol import Interests, job_status_push, push, result_summary
from utils.data import keys as data_keys
from utils.queue import keys
from utils.queue.jobs import JobStatus
from utils.queue.streams import JobQueue
from utils.realtime.tick_writer import SUBSCRIBER_TTL_SECONDS
from utils.task_types import TASK_TYPES

log = logging.getLogger(__name__)
STATUS_WORDS = frozenset(status.value for status in JobStatus)
JOB_FIELDS = ("type", "status", "progress", "progress_detail", "error")
LIVE_PREFIX = data_keys.live_channel("")
JOB_PREFIX = keys.job("")


class Connection:
    """A client's interests, its outbox, and how to cut it off."""

    def __init__(self, outbox: Outbox, close: Callable[[int, str], None]) -> None:
        self.outbox = outbox
        self.interests = Interests()
        self.close = close

    def send(self, message: dict[str, Any]) -> None:
        self.outbox.put(message)
        if self.outbox.overflowed:
            self.close(1013, "too slow: the push queue overflowed")


class Hub:
    def __init__(self, client: aioredis.Redis, queue: JobQueue, system_interval: float) -> None:
        self.redis = client
        self.queue = queue  # blocking reads shared with the gRPC side, run in a thread
        self.system_interval = system_interval
        self.connections: set[Connection] = set()
        self._pubsub: aioredis.client.PubSub | None = None
        self._live: set[str] = set()  # symbols whose channels the pubsub follows now
        self._tasks: list[asyncio.Task] = []
        self._alive_workers: set[str] = set()

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for loop in (self._listen, self._presence, self._dead_letters, self._watch_system):
            self._tasks.append(asyncio.create_task(loop(), name=f"gateway{loop.__name__}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()

    def add(self, connection: Connection) -> None:
        self.connections.add(connection)

    async def remove(self, connection: Connection) -> None:
        self.connections.discard(connection)
        await self.symbols_changed()

    # ------------------------------------------------------------ on demand
    async def symbols_changed(self) -> None:
        """Follow exactly the symbols some connection wants (announcing new ones at once)."""
        wanted = set().union(*(c.interests.symbols for c in self.connections)) if self.connections else set()
        pubsub, added, removed = self._pubsub, wanted - self._live, self._live - wanted
        if pubsub is None or not (added or removed):
            return
        self._live = wanted
        try:
            if added:
                await pubsub.subscribe(*(data_keys.live_channel(s) for s in sorted(added)))
                await self._announce(added)
            if removed:
                await pubsub.unsubscribe(*(data_keys.live_channel(s) for s in sorted(removed)))
        except redis.RedisError as exc:
            log.warning("gateway: could not change symbol subscriptions (%s); the listener resubscribes", exc)

    async def job_snapshot(self, job_id: str) -> dict[str, Any] | None:
        fields = dict(zip(JOB_FIELDS, await self.redis.hmget(keys.job(job_id), *JOB_FIELDS)))
        return job_status_push(job_id, _decoded(fields)) if fields.get("status") else None

    async def system_snapshot(self) -> dict[str, Any]:
        return push("system", **await asyncio.to_thread(views.overview, self.queue))

    # ----------------------------------------------------------------- loops
    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(keys.job("*"))
                await pubsub.subscribe(keys.ALERTS)
                self._pubsub, self._live = pubsub, set()
                await self.symbols_changed()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except redis.RedisError as exc:
                log.warning("gateway listener: %s; resubscribing in 1 s", exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("gateway listener failed; restarting it")
                await asyncio.sleep(1.0)
            finally:
                self._pubsub = None
                try:
                    await pubsub.aclose()
                except Exception:  # closing a broken connection
                    pass

    async def _dispatch(self, message: dict[str, Any]) -> None:
        channel, data = message.get("channel") or "", message.get("data") or ""
        if channel.startswith(LIVE_PREFIX):
            self._on_ticks(channel[len(LIVE_PREFIX):], data)
        elif channel.startswith(JOB_PREFIX):
            await self._on_job(channel[len(JOB_PREFIX):], data)
        elif channel == keys.ALERTS:
            self._on_alert(data)

    def _on_ticks(self, symbol: str, data: str) -> None:
        update = json.loads(data)
        market = indicators = None
        for connection in list(self.connections):
            wants = connection.interests
            if symbol in wants.market_symbols:
                market = market or push("market_data", symbol=symbol, timestamp=update["timestamp"],
                                        price=update["price"], volume=update["volume"])
                connection.send(market)
            if symbol in wants.indicator_symbols and update.get("indicators"):
                indicators = indicators or push("calc_result", kind="indicators", symbol=symbol,
                                                timestamp=update["timestamp"], indicators=update["indicators"])
                connection.send(indicators)

    async def _on_job(self, job_id: str, word: str) -> None:
        word, _, announced_progress = word.partition(":")  # "progress:0.200000"
        if word != "progress" and word not in STATUS_WORDS:
            return
        # Alert subscribers care only about failures; progress reports are the busiest announcements.
        followers = [c for c in self.connections if c.interests.follows_jobs
                     or (c.interests.alerts and word == JobStatus.FAILED.value)]
        if not followers:
            return
        fields = _decoded(dict(zip(JOB_FIELDS, await self.redis.hmget(keys.job(job_id), *JOB_FIELDS))))
        task_type = fields.get("type")
        if not task_type:
            return  # expired
        if word == "progress":
            if announced_progress:  # exact even when the job has moved on since (its end is announced next)
                fields["progress"] = announced_progress
            elif fields.get("status") != JobStatus.RUNNING.value:
                return
        status = JobStatus.RUNNING.value if word == "progress" else word
        update = job_status_push(job_id, fields, status)
        for connection in followers:
            if connection.interests.wants_status(job_id, task_type):
                connection.send(update)
        if status == JobStatus.COMPLETED.value:
            wanting = [c for c in followers if c.interests.wants_result(job_id, task_type)]
            if wanting:
                raw = await self.redis.get(keys.result(job_id))
                result = push("calc_result", kind="job_result", job_id=job_id, task_type=task_type,
                              **result_summary(json.loads(raw) if raw else None))
                for connection in wanting:
                    connection.send(result)
        elif status == JobStatus.FAILED.value:
            self._alert(push("alert", kind="job_failed", job_id=job_id, task_type=task_type,
                             error=fields.get("error", "")))

    def _on_alert(self, data: str) -> None:
        try:
            fields = json.loads(data)
        except json.JSONDecodeError:
            return
        if isinstance(fields, dict):
            self._alert(push("alert", **{k: v for k, v in fields.items() if k not in ("channel", "time")}))

    def _alert(self, message: dict[str, Any]) -> None:
        for connection in list(self.connections):
            if connection.interests.alerts:
                connection.send(message)

    async def _announce(self, symbols: set[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.set(data_keys.subscribed(symbol), "1", ex=SUBSCRIBER_TTL_SECONDS)
        await pipe.execute()

    async def _presence(self) -> None:
        """Renew the presence keys so the servers' tick writers keep publishing our symbols."""
        while True:
            await asyncio.sleep(SUBSCRIBER_TTL_SECONDS / 3)
            if self._live:
                try:
                    await self._announce(set(self._live))
                except redis.RedisError as exc:
                    log.warning("gateway: could not renew symbol presence (%s)", exc)

    async def _dead_letters(self) -> None:
        last = {keys.dead_letter(t.name): "$" for t in TASK_TYPES}
        while True:
            try:
                reply = await self.redis.xread(last, block=1000, count=100)
            except asyncio.CancelledError:
                raise
            except redis.RedisError as exc:
                log.warning("gateway dead-letter reader: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for stream, entries in reply or []:
                for entry_id, fields in entries:
                    last[stream] = entry_id
                    self._alert(push("alert", kind="dead_letter", task_type=stream.rsplit(":", 1)[-1],
                                     job_id=fields.get("job_id", ""), error=fields.get("error", ""),
                                     attempts=int(fields.get("attempts") or 0)))

    async def _watch_system(self) -> None:
        """Every interval: alert on workers whose heartbeat lapsed; push the overview to followers."""
        while True:
            try:
                snapshot = await self.system_snapshot()
                alive = {w["worker_id"] for w in snapshot["workers"] if w["alive"]}
                for worker in snapshot["workers"]:
                    if not worker["alive"] and worker["worker_id"] in self._alive_workers:
                        self._alert(push("alert", kind="worker_lost", worker_id=worker["worker_id"],
                                         device=worker["device"]))
                self._alive_workers = alive
                for connection in list(self.connections):
                    if connection.interests.system:
                        connection.send(snapshot)
            except asyncio.CancelledError:
                raise
            except redis.RedisError as exc:
                log.warning("gateway system watch: %s", exc)
            except Exception:
                log.exception("gateway system watch failed")
            await asyncio.sleep(self.system_interval)


def _decoded(fields: dict[str, Any]) -> dict[str, Any]:
    """Drop missing fields; parse progress_detail (JSON)."""
    fields = {k: v for k, v in fields.items() if v is not None}
    if fields.get("progress_detail"):
        try:
            fields["progress_detail"] = json.loads(fields["progress_detail"])
        except json.JSONDecodeError:
            fields.pop("progress_detail")
    return fields
