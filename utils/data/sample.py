"""Deterministic synthetic daily bars for the usage guide's symbols (labelled synthetic).

They exist so the guide's example runs out of the box; they are NOT market prices. Each
symbol's path is a geometric random walk seeded from the symbol's CRC32, so every machine
generates the same bars.
"""
from __future__ import annotations

import zlib

import numpy as np

from utils.data.store import Bars, BarStore

SAMPLE_SYMBOLS = {"000001.SZ": 10.0, "600000.SH": 9.0, "000002.SZ": 20.0}
SAMPLE_SOURCE = "sample (synthetic, deterministic)"
SAMPLE_START, SAMPLE_END = "2015-01-01", "2025-12-31"


def sample_bars(symbol: str, start_price: float = 10.0) -> Bars:
    days = np.arange(np.datetime64(SAMPLE_START), np.datetime64(SAMPLE_END) + 1, dtype="datetime64[D]")
    days = days[np.is_busday(days)]
    rng = np.random.default_rng(zlib.crc32(symbol.encode()))
    n = days.shape[0]
    # Regime-switching drift gives the trend-following example something to find.
    regime = np.repeat(rng.normal(0.0, 0.0012, size=n // 60 + 1), 60)[:n]
    log_returns = regime + rng.normal(0.0, 0.018, size=n)
    close = start_price * np.exp(np.cumsum(log_returns))
    gap = rng.normal(0.0, 0.004, size=n)
    open_ = np.concatenate([[start_price], close[:-1]]) * np.exp(gap)
    spread_up = np.abs(rng.normal(0.0, 0.008, size=n))
    spread_down = np.abs(rng.normal(0.0, 0.008, size=n))
    open_, close = np.round(open_, 4), np.round(close, 4)
    high = np.round(np.maximum(open_, close) * (1 + spread_up), 4)
    low = np.round(np.minimum(open_, close) * (1 - spread_down), 4)
    high, low = np.maximum(high, np.maximum(open_, close)), np.minimum(low, np.minimum(open_, close))
    volume = np.round(rng.lognormal(mean=15.0, sigma=0.4, size=n))
    time = days.astype("datetime64[ns]").astype(np.int64)
    return Bars(symbol, time, open_, high, low, close, volume)


def ensure_sample_data(store: BarStore) -> list[str]:
    """Write the sample symbols that are not stored yet (never overwrite imported data)."""
    written = []
    for symbol, start_price in SAMPLE_SYMBOLS.items():
        if not store.exists(symbol):
            store.write(sample_bars(symbol, start_price), replace=True, synthetic=True, source=SAMPLE_SOURCE)
            written.append(symbol)
    return written
