"""Panel features job: many symbols' latest indicator values, computed on the worker's backend.

Symbols that share a bar calendar are stacked into one (time x symbols) panel and computed in
one call; each column is independent, so every symbol gets exactly the values a single-symbol
ComputeFeatures would give (no calendar alignment or forward-fill is applied).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from utils.data.store import BarStore, Bars, SymbolNotFound
from utils.data.timeutil import format_time
from utils.engine.backend import Backend
from utils.engine.indicators.features import UnknownFeatureError, compute_features
from utils.queue.worker import JobContext, PermanentJobError
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
                                                  for k, v in panel.items()})
    host = {key: backend.to_numpy(values).reshape(len(bars[0]), -1) for key, values in series.items()}
    return {b.symbol: {key: _latest(values[:, i]) for key, values in host.items()} for i, b in enumerate(bars)}


def make_features_handler(resources: WorkerResources):
    def handle(context: JobContext) -> dict[str, Any]:
        started = time.perf_counter()
        store, payload = resources.bar_store, context.payload
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
            context.progress(0.5 * (index + 1) / len(symbols))
        features: dict[str, dict[str, float | None]] = {}
        timestamps: dict[str, str] = {}
        for done, group in enumerate(calendars.values(), start=1):
            try:
                features.update(panel_latest(backend, names, group))
            except UnknownFeatureError as exc:
                raise PermanentJobError(str(exc)) from None
            for bars in group:
                timestamps[bars.symbol] = format_time(int(bars.time[-1]))
            context.progress(0.5 + 0.5 * done / len(calendars))
        return {"features": features, "timestamps": timestamps, "device": backend.label,
                "compute_seconds": time.perf_counter() - started, "calendars": len(calendars)}
    return handle
