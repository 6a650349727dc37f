"""Compile every indicator's numba drivers ahead of the first request.

The drivers are built per kind in each process (they cannot be cached on disk), about a second
each; without this the first tick or feature request after a start would wait for them.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from utils.engine.indicators.features import KINDS, compute_features
from utils.engine.indicators.streaming import StreamState

log = logging.getLogger(__name__)


def warm_up_indicators(names: list[str] | None = None, rows: int = 64) -> float:
    """Run the features (default: every kind) once in batch (series and panel) and streaming
    form; returns seconds."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    close = 10 + np.cumsum(rng.normal(0, 0.1, (rows, 9)), axis=0)  # > 8 columns: the panel driver
    bars = {"open": close, "high": close + 0.5, "low": close - 0.5, "close": close,
            "volume": np.full_like(close, 100.0), "time": np.arange(rows, dtype=np.int64) * 86_400 * 10**9}
    names = list(names) if names is not None else list(KINDS)
    compute_features(np, names, bars)
    compute_features(np, names, {key: (value[:, 0] if value.ndim == 2 else value) for key, value in bars.items()})
    stream = StreamState.create(names)
    stream.update(open=10.0, high=10.5, low=9.5, close=10.0, volume=100.0, new_session=True)
    stream.update_many(*(np.ascontiguousarray(bars[k][:, 0]) for k in ("open", "high", "low", "close", "volume")),
                       np.zeros(rows, dtype=np.bool_))
    seconds = time.perf_counter() - started
    log.info("indicator kernels compiled in %.1f s", seconds)
    return seconds


def warm_up_in_background(names: list[str] | None) -> None:
    """Compile in a daemon thread so start-up is not delayed; ``[]`` does nothing."""
    if names == []:
        return
    threading.Thread(target=warm_up_indicators, args=(names,), name="indicator-warm-up", daemon=True).start()
