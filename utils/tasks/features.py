"""Panel features job: many symbols' latest indicator values, computed on the worker's backend.

Symbols that share a bar calendar are stacked into one (time x symbols) panel and computed in
one call; each column is independent, so every symbol gets exactly the values a single-symbol
ComputeFeatures would give (no calendar alignment or forward-fill is applied).

A job over more than ``SHARD_SYMBOLS`` symbols fans out into symbol shards (``panel_shard`` child
jobs, ``utils/tasks/panel_shards.py``) that any worker runs; the parent merges their values. Each
symbol's values depend on its own bars only, so the merged result is the unsharded one exactly
(``calendars`` is then the sum of the shards' calendar groups).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from utils.data.store import BarStore, Bars, SymbolNotFound
from utils.data.timeutil import format_time
from utils.engine.backend import Backend
from utils.engine.indicators.features import UnknownFeatureError, compute_features
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks import panel_shards
from utils.tasks.resources import WorkerResources

COLUMNS = ("open", "high", "low", "close", "volume")


def _load(store: BarStore, symbol: str, interval: str) -> Bars:
    return store.read_interval_bars(symbol, interval) if interval else store.read(symbol)


def _latest(column: np.ndarray) -> float | None:
    """The last value; None (JSON null) during warm-up, as job results are strict JSON."""
    value = float(column[-1])
    return value if np.isfinite(value) else None


def panel_latest(backend: Backend, names: list[str], bars: list[Bars]) -> dict[str, dict[str, float | None]]:
    """Latest values per symbol for bars that share one calendar (same ``time`` array)."""
    panel = {name: np.column_stack([getattr(b, name) for b in bars]) for name in COLUMNS}
    panel["time"] = bars[0].time
    series = compute_features(backend.xp, names, {k: (backend.asarray(v) if k != "time" else v)
                                                  for k, v in panel.items()}, on_device=backend.is_gpu)
    host = {key: backend.to_numpy(values).reshape(len(bars[0]), -1) for key, values in series.items()}
    return {b.symbol: {key: _latest(values[:, i]) for key, values in host.items()} for i, b in enumerate(bars)}


def panel_features(resources: WorkerResources, payload: dict[str, Any], progress,
                   shard_scale: float = 1.0) -> dict[str, Any]:
    """The job's result for ``payload["symbols"]`` computed here (a whole job, or one shard's).
    ``shard_scale`` < 1 (a retry after a GPU out-of-memory, ``utils/gpu/oom.py``) computes each
    calendar's panel in column chunks of that share of its symbols: columns are independent, so
    the values are the same."""
    started = time.perf_counter()
    store = resources.bar_store
    backend = resources.backend_for(payload.get("device", "auto"))
    symbols, names, interval = payload["symbols"], payload["features"], payload.get("interval", "")
    calendars: dict[bytes, list[Bars]] = {}
    for index, symbol in enumerate(symbols):
        try:
            bars = _load(store, symbol, interval)
        except SymbolNotFound as exc:
            raise PermanentJobError(str(exc)) from None
        if len(bars):
            calendars.setdefault(bars.time.tobytes(), []).append(bars)
        progress(0.5 * (index + 1) / len(symbols))
    features: dict[str, dict[str, float | None]] = {}
    timestamps: dict[str, str] = {}
    for done, group in enumerate(calendars.values(), start=1):
        width = max(1, math.ceil(len(group) * shard_scale))
        try:
            for first in range(0, len(group), width):
                features.update(panel_latest(backend, names, group[first:first + width]))
        except UnknownFeatureError as exc:
            raise PermanentJobError(str(exc)) from None
        for bars in group:
            timestamps[bars.symbol] = format_time(int(bars.time[-1]))
        progress(0.5 + 0.5 * done / len(calendars))
    return {"features": features, "timestamps": timestamps, "device": backend.label,
            "compute_seconds": time.perf_counter() - started, "calendars": len(calendars)}


def sharded_features(resources: WorkerResources, context: JobContext) -> dict[str, Any]:
    """The job as symbol shards of ``SHARD_SYMBOLS`` run by ``panel_shard`` child jobs; their
    results merged in symbol order (each symbol's values are its shard's: exact)."""
    started = time.perf_counter()
    payload, settings = context.payload, resources.settings
    symbols, size = payload["symbols"], settings.shard_symbols
    chunks = [symbols[first:first + size] for first in range(0, len(symbols), size)]
    merged: dict[str, Any] = {"features": {}, "timestamps": {}, "calendars": 0, "device": "", "shards": len(chunks)}

    def fold(index: int, result: dict[str, Any]) -> None:
        merged["features"].update(result["features"])
        merged["timestamps"].update(result["timestamps"])
        merged["calendars"] += result["calendars"]  # calendars per shard, summed
        merged["device"] = merged["device"] or result["device"]
    ids = [panel_shards.child_id(context.job_id, "features", index) for index in range(len(chunks))]
    panel_shards.run(resources.queue, context, ids,
                     [{**payload, "kind": "features", "symbols": chunk} for chunk in chunks],
                     fold, context.progress, settings.shard_wait_seconds)
    merged["features"] = {symbol: merged["features"][symbol] for symbol in symbols if symbol in merged["features"]}
    merged["compute_seconds"] = time.perf_counter() - started
    return merged


def make_features_handler(resources: WorkerResources):
    def handle(context: JobContext) -> dict[str, Any]:
        if 0 < resources.settings.shard_symbols < len(context.payload["symbols"]):
            return sharded_features(resources, context)
        return panel_features(resources, context.payload, context.progress, context.shard_scale)
    return handle
