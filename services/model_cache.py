"""In-process cache of loaded models (model_cache_ttl), counted in cache_hit_rate."""
from __future__ import annotations

import threading
import time
from typing import Any

from utils.engine.models import BasePredictor, ModelStore


class ModelCache:
    def __init__(self, store: ModelStore, ttl_seconds: float, stats: Any) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self.stats = stats
        self._entries: dict[str, tuple[BasePredictor, float]] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> BasePredictor:
        """The loaded model; raises ModelNotFound when it has no artifact."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(model_id)
            if entry and now - entry[1] < self.ttl:
                self._entries[model_id] = (entry[0], now)
                self.stats.record(hit=True)
                return entry[0]
        predictor = self.store.load(model_id)  # outside the lock: loading can take a while
        self.stats.record(hit=False)
        with self._lock:
            self._entries[model_id] = (predictor, now)
            for stale in [k for k, (_, used) in self._entries.items() if now - used >= self.ttl]:
                del self._entries[stale]
        return predictor

    def evict(self, model_id: str) -> None:
        with self._lock:
            self._entries.pop(model_id, None)
