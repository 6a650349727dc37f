"""A bounded cache of recently read bar ranges in Redis, shared by every process on every machine
(the parquet store's second level, after each process's own LRU).

A worker that reads a range from the files (local disk or S3) puts it here, so the next worker
or server needing the same (symbol, interval, version, range) gets it with one GET instead of a
file read. Keys carry the version: an entry is never stale, a new import simply stops matching.

Bound: entries live HOT_CACHE_TTL_SECONDS and none is larger than HOT_CACHE_ENTRY_MB. Each put
adds its size to the current minute's counter (``md:hot-bytes:<minute>``) first; when the
counters of the minutes an entry can still be alive in add up to more than HOT_CACHE_MB, the put
is taken back and skipped. Every live entry was counted in one of those minutes, so the cache's
bytes never exceed HOT_CACHE_MB (concurrent puts can only skip more, never overshoot). Only
single-key commands: keys of a Redis Cluster may live in any slot.
"""
from __future__ import annotations

import math
import time

import numpy as np
import redis

from utils.data import keys
from utils.data.store import COLUMNS, Bars

BUCKET_SECONDS = 60
ROW_BYTES = 8 * (1 + len(COLUMNS))


class HotRangeCache:
    def __init__(self, client: redis.Redis, max_bytes: int, ttl_seconds: int, max_entry_bytes: int,
                 clock=time.time) -> None:
        self.redis = client
        self.max_bytes = max_bytes
        self.ttl = max(1, int(ttl_seconds))
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self.clock = clock
        # minutes whose puts may still be alive: an entry put in minute b expires before b+1+ttl
        self.window = math.ceil(self.ttl / BUCKET_SECONDS) + 2

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def get(self, symbol: str, interval: str, version: int, start_ns: int | None, end_ns: int | None) -> Bars | None:
        if not self.enabled:
            return None
        try:
            raw = self.redis.get(keys.hot_range(symbol, interval, version, start_ns, end_ns))
        except redis.RedisError:
            return None  # a cache: the files answer
        return self._decode(symbol, version, raw)

    def get_many(self, wanted: list[tuple[str, int]], interval: str, start_ns: int | None,
                 end_ns: int | None) -> dict[str, Bars]:
        """The cached ranges of (symbol, version) pairs, in one pipelined round trip."""
        if not self.enabled or not wanted:
            return {}
        try:
            pipe = self.redis.pipeline(transaction=False)
            for symbol, version in wanted:
                pipe.get(keys.hot_range(symbol, interval, version, start_ns, end_ns))
            replies = pipe.execute()
        except redis.RedisError:
            return {}
        found = {symbol: self._decode(symbol, version, raw) for (symbol, version), raw in zip(wanted, replies)}
        return {symbol: bars for symbol, bars in found.items() if bars is not None}

    @staticmethod
    def _decode(symbol: str, version: int, raw: bytes | None) -> Bars | None:
        if raw is None or len(raw) % ROW_BYTES:
            return None
        rows = len(raw) // ROW_BYTES
        time_ = np.frombuffer(raw, dtype="<i8", count=rows)
        values = np.frombuffer(raw, dtype="<f8", offset=rows * 8).reshape(len(COLUMNS), rows)
        return Bars(symbol, time_, *values, version=version)

    def put(self, bars: Bars, interval: str, start_ns: int | None, end_ns: int | None) -> bool:
        """Store a range unless it is too large or the budget is spent; True when stored."""
        size = len(bars) * ROW_BYTES
        if not self.enabled or size == 0 or size > self.max_entry_bytes:
            return False
        bucket = int(self.clock() // BUCKET_SECONDS)
        counter = keys.hot_bytes(bucket)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incrby(counter, size)
            pipe.expire(counter, self.ttl + 3 * BUCKET_SECONDS)
            for older in range(bucket - self.window + 1, bucket):
                pipe.get(keys.hot_bytes(older))
            replies = pipe.execute()
            used = int(replies[0]) + sum(int(value) for value in replies[2:] if value is not None)
            if used > self.max_bytes:
                self.redis.decrby(counter, size)
                return False
            payload = bars.time.astype("<i8").tobytes() + b"".join(
                getattr(bars, name).astype("<f8").tobytes() for name in COLUMNS)
            self.redis.set(keys.hot_range(bars.symbol, interval, bars.version, start_ns, end_ns), payload, ex=self.ttl)
            return True
        except redis.RedisError:
            return False
