"""Following symbols' live updates: the ticks every server's tick writer publishes (pub/sub, one
channel per symbol) for as long as someone follows them.

A follower announces itself with a short-TTL key per symbol (so the writers of every server
process publish those symbols) and to this process's writer directly, and renews the announcement
while it follows. Used by RealTimeService.SubscribeMarketData and PortfolioService.WatchRisk.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

import redis

from utils.data import keys
from utils.realtime.tick_writer import SUBSCRIBER_TTL_SECONDS, TickWriter


class LiveFeed:
    def __init__(self, client: redis.Redis, writer: TickWriter) -> None:
        self.redis = client
        self.writer = writer

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
        message, until the caller's RPC ends."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(*(keys.live_channel(s) for s in symbols))
        self.announce(symbols)
        announced = time.monotonic()
        try:
            while context.is_active():
                if time.monotonic() - announced > SUBSCRIBER_TTL_SECONDS / 3:
                    self.announce(symbols)
                    announced = time.monotonic()
                message = pubsub.get_message(timeout=poll_seconds)
                if message is None or message.get("type") != "message":
                    continue
                yield message["channel"].split(":", 2)[2], json.loads(message["data"])
        finally:
            pubsub.close()
