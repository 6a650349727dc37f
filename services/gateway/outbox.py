"""A connection's bounded queue of pushes, so a slow client costs only itself.

Fan-out never waits: it appends here and the connection's own sender task writes to the socket.
When the queue is full the oldest droppable push (market data, indicator updates: a newer one
supersedes it) is discarded and counted; when nothing droppable is left the connection is
declared overflowed and closed, rather than lose a job's status or an alert silently.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable

from services.gateway.protocol import DROPPABLE


def kind_of(message: dict[str, Any]) -> str:
    """'indicators' for calc_result indicator updates, else the channel (or 'reply')."""
    if message.get("channel") == "calc_result" and message.get("kind") == "indicators":
        return "indicators"
    return message.get("channel") or "reply"


class Outbox:
    def __init__(self, capacity: int, on_drop: Callable[[str, str], None]) -> None:
        self.capacity = capacity
        self.on_drop = on_drop  # (channel, reason)
        self._items: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: dict[str, Any]) -> None:
        if self.overflowed:
            return
        if len(self._items) >= self.capacity and not self._drop_oldest_droppable():
            if kind_of(message) in DROPPABLE:
                self.on_drop(message["channel"], "slow_consumer")
                return
            self.overflowed = True
            self.on_drop(message.get("channel", "reply"), "overflow_closed")
        self._items.append(message)
        self._ready.set()

    def _drop_oldest_droppable(self) -> bool:
        for index, queued in enumerate(self._items):
            if kind_of(queued) in DROPPABLE:
                del self._items[index]
                self.on_drop(queued["channel"], "slow_consumer")
                return True
        return False

    async def get(self) -> dict[str, Any]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
