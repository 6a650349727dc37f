"""In-process cache of loaded models (model_cache_ttl), counted in cache_hit_rate.

``prepare`` turns a freshly loaded predictor into what Predict serves (``ServingModel``: the
ONNX session, device chain and batcher are built once per load, not per request).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from utils.engine.models import BasePredictor, ModelStore


class ModelCache:
    def __init__(self, store: ModelStore, ttl_seconds: float, stats: Any,
                 prepare: Callable[[BasePredictor, str], Any] | None = None) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self.stats = stats
        self.prepare = prepare or (lambda predictor, model_id: predictor)
        self._entries: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def _cached(self, model_id: str) -> Any:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(model_id)
            if entry and now - entry[1] < self.ttl:
                self._entries[model_id] = (entry[0], now)
                return entry[0]
        return None

    def get(self, model_id: str) -> Any:
        """The loaded (and prepared) model; raises ModelNotFound when it has no artifact."""
        model = self._cached(model_id)
        if model is None:
            with self._lock:
                loading = self._loading.setdefault(model_id, threading.Lock())
            # One load per model at a time: concurrent first requests wait for it and then share
            # the same model (and batcher) instead of each loading their own copy.
            with loading:
                model = self._cached(model_id)
                if model is None:
                    model = self._load(model_id)
                    self.stats.record(hit=False)
                    return model
        self.stats.record(hit=True)
        return model

    def _load(self, model_id: str) -> Any:
        # Outside the cache lock: loading (and an ONNX export) can take a while.
        model = self.prepare(self.store.load(model_id), model_id)
        now = time.monotonic()
        with self._lock:
            self._entries[model_id] = (model, now)
            for stale in [k for k, (_, used) in self._entries.items() if now - used >= self.ttl]:
                del self._entries[stale]
                self._loading.pop(stale, None)
        return model

    def evict(self, model_id: str) -> None:
        with self._lock:
            self._entries.pop(model_id, None)
            self._loading.pop(model_id, None)
