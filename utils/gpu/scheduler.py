"""Per-device job scheduling: which streams a worker may read, and which held job runs next.

Caps are per worker process, i.e. per device, because what they protect is that device's
memory and compute (the seed's max_concurrent_backtests 5 / max_concurrent_training 3).
A worker reads only task types with a free slot, sized to those slots; one blocking read
across the high/normal/low streams can return one batch per stream, so a few entries may be
held briefly beyond the free slots (their leases are renewed while held, and they go back to
the queue on shutdown). Idle workers elsewhere get everything else.
"""
from __future__ import annotations

import threading
from collections import Counter

from utils import task_types
from utils.queue import keys
from utils.queue.jobs import Delivery

_PRIORITY_RANK = {name: rank for rank, name in enumerate(keys.PRIORITIES)}


class Scheduler:
    def __init__(self, caps: dict[str, int]) -> None:
        """``caps``: slots per task type; a registered type missing here would never be read."""
        unknown = set(caps) - set(task_types.names())
        if unknown:
            raise ValueError(f"caps for unknown task types: {sorted(unknown)}")
        bad = {name: cap for name, cap in caps.items() if not isinstance(cap, int) or cap < 1}
        if bad:
            raise ValueError(f"caps must be >= 1 (a type with no slot is never read): {bad}")
        self.caps = dict(caps)
        self._running: Counter[str] = Counter()
        self._held: list[Delivery] = []
        self._lock = threading.Lock()
        self.slot_freed = threading.Event()

    def _free(self, task_type: str) -> int:
        held = sum(1 for d in self._held if d.task_type == task_type)
        return self.caps.get(task_type, 0) - self._running[task_type] - held

    def readable_streams(self) -> list[str]:
        """Streams of task types with a free slot, high priority first within each type."""
        with self._lock:
            return [keys.stream(t, p) for t in self.caps if self._free(t) > 0 for p in keys.PRIORITIES]

    def read_count(self) -> int:
        """Entries to ask for per stream: the smallest number of free slots among readable types."""
        with self._lock:
            free = [self._free(t) for t in self.caps if self._free(t) > 0]
        return min(free) if free else 0

    def hold(self, deliveries: list[Delivery]) -> None:
        with self._lock:
            self._held.extend(deliveries)
            self._held.sort(key=lambda d: _PRIORITY_RANK[d.priority])

    def held(self) -> list[Delivery]:
        with self._lock:
            return list(self._held)

    def take_runnable(self) -> Delivery | None:
        """Pop the highest-priority held delivery whose type has a running slot, and claim it."""
        with self._lock:
            for index, delivery in enumerate(self._held):
                if self._running[delivery.task_type] < self.caps.get(delivery.task_type, 0):
                    self._running[delivery.task_type] += 1
                    return self._held.pop(index)
            return None

    def drop_held(self) -> list[Delivery]:
        with self._lock:
            held, self._held = self._held, []
            return held

    def release(self, task_type: str) -> None:
        with self._lock:
            self._running[task_type] -= 1
        self.slot_freed.set()

    def running(self) -> dict[str, int]:
        with self._lock:
            return {t: self._running[t] for t in self.caps}
