"""Following symbols' live updates: the ticks every server's tick writer publishes (pub/sub, one
channel per symbol) for as long as someone follows them.

A follower announces itself with a short-TTL key per symbol (so the writers of every server
process publish those symbols) and to this process's writer directly, and renews the announcement
while it follows. Used by RealTimeService.SubscribeMarketData and PortfolioService.WatchRisk.
"""
from __future__ import annotations

import queue
import time
from typing import Any, Iterator

import redis

from services.errors import resource_exhausted
from utils.data import keys
from utils.realtime.live_hub import Follower, LiveHub
from utils.realtime.tick_writer import SUBSCRIBER_TTL_SECONDS, TickWriter

READY_TIMEOUT_SECONDS = 10.0


class LiveFeed:
    def __init__(self, client: redis.Redis, writer: TickWriter) -> None:
        self.redis = client
        self.writer = writer
        self.hub = LiveHub(client)

    def announce(self, symbols: list[str]) -> None:
        """Tell every server's tick writer (via a TTL key) and ours (directly) to publish these."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.set(keys.subscribed(symbol), "1", ex=SUBSCRIBER_TTL_SECONDS)
        pipe.execute()
        self.writer.note_subscribers(symbols)

    def follow(self, symbols: list[str], context: Any, poll_seconds: float = 0.25
               ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(symbol, columnar update: timestamp, price, volume, indicators lists) per published
        message, until the caller's RPC ends. Every follower of this process shares one pub/sub
        connection (LiveHub); the update dicts are shared, so treat them as read-only."""
        for waiting in self.follow_waiting(symbols, context, poll_seconds, most=1):
            yield from waiting

    def follow_waiting(self, symbols: list[str], context: Any, poll_seconds: float = 0.25, most: int = 1000,
                       window_seconds: float = 0.0) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """``follow``, but every update waiting (up to ``most``) at once, oldest first: a reader
        that fell behind catches up in one step; with ``window_seconds``, also what arrives that
        long after the first."""
        follower = self.hub.add(symbols)
        try:
            if not follower.ready.wait(READY_TIMEOUT_SECONDS):
                raise redis.ConnectionError(f"could not subscribe to live ticks within {READY_TIMEOUT_SECONDS:.0f} s")
            self._check(follower)
            self.announce(symbols)
            announced = time.monotonic()
            while context.is_active():
                if time.monotonic() - announced > SUBSCRIBER_TTL_SECONDS / 3:
                    self.announce(symbols)
                    announced = time.monotonic()
                try:
                    waiting = [follower.updates.get(timeout=poll_seconds)]
                except queue.Empty:
                    self._check(follower)
                    continue
                closes = time.monotonic() + window_seconds
                while len(waiting) < most:
                    try:
                        left = closes - time.monotonic()
                        waiting.append(follower.updates.get(timeout=left) if left > 0 else follower.updates.get_nowait())
                    except queue.Empty:
                        break
                yield waiting
        finally:
            self.hub.remove(follower)

    @staticmethod
    def _check(follower: Follower) -> None:
        if follower.failure is not None:
            raise follower.failure
        if follower.overflowed:
            raise resource_exhausted(f"this subscriber fell more than {follower.max_queued:,} updates behind; "
                                     "read faster or follow fewer symbols")
