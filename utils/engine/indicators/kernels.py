"""Indicator kernels with TA-Lib's exact definitions, seeding and lookbacks.

Every kernel takes the array module ``xp`` (numpy or cupy) and a 1-D series or 2-D panel
(time x symbols), computes along axis 0 in float64 and returns an ``xp`` array of the same shape.
Like TA-Lib's Python wrapper, each column starts at its first non-NaN value and the next
``lookback`` values are NaN; an interior NaN propagates to every later value, as TA-Lib's running
sums and recurrences carry it forward (one documented difference: see ``sequential._rsi_value``).

Lookbacks (bars of NaN after the first valid input):
    sma/ema/bollinger: period - 1      rsi: period      macd: slow - 1 + signal - 1
"""
from __future__ import annotations

from typing import Any

import numpy as np

from utils.engine.indicators.layout import (as_panel, first_valid_rows, mask_before,
                                            restore_shape, to_host)
from utils.engine.indicators.sequential import (ema_columns, rsi_columns, sma_columns,
                                                std_columns)


def _check_period(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _host_panel(xp: Any, close: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(contiguous host panel, first valid row per column, was_series)`` for the numba loops."""
    panel, was_series = as_panel(xp, close)
    host = np.ascontiguousarray(to_host(xp, panel))
    begin = first_valid_rows(np, host).astype(np.int64)
    return host, begin, was_series


def _to_caller(xp: Any, result: np.ndarray, was_series: bool) -> Any:
    return restore_shape(xp.asarray(result), was_series)


def sma(xp: Any, close: Any, period: int) -> Any:
    """Simple moving average (TA-Lib SMA)."""
    period = _check_period("period", period)
    host, begin, was_series = _host_panel(xp, close)
    return _to_caller(xp, sma_columns(host, period, begin), was_series)


def ema(xp: Any, close: Any, period: int) -> Any:
    """Exponential moving average, k = 2/(period+1), seeded with the SMA of the first ``period``."""
    period = _check_period("period", period)
    host, begin, was_series = _host_panel(xp, close)
    return _to_caller(xp, ema_columns(host, period, begin + period - 1), was_series)


def rsi(xp: Any, close: Any, period: int = 14) -> Any:
    """Relative strength index with Wilder smoothing and TA-Lib's seeding (lookback = period)."""
    period = _check_period("period", period)
    host, begin, was_series = _host_panel(xp, close)
    return _to_caller(xp, rsi_columns(host, period, begin), was_series)


def macd(xp: Any, close: Any, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[Any, Any, Any]:
    """TA-Lib MACD: returns ``(macd, signal, hist)``.

    Both EMAs start at the slow EMA's first row, the fast one seeded with the SMA of the ``fast``
    values ending there (not at its own first possible row); the signal EMA is seeded on the first
    ``signal`` MACD values. All three outputs are NaN for ``slow - 1 + signal - 1`` rows.
    """
    fast = _check_period("fast", fast)
    slow = _check_period("slow", slow)
    signal = _check_period("signal", signal)
    if fast >= slow:
        raise ValueError(f"fast must be smaller than slow, got fast={fast}, slow={slow}")
    host, begin, was_series = _host_panel(xp, close)
    slow_start = begin + slow - 1
    macd_line = ema_columns(host, fast, slow_start) - ema_columns(host, slow, slow_start)
    signal_start = slow_start + signal - 1
    signal_line = ema_columns(macd_line, signal, signal_start)
    macd_line = mask_before(np, macd_line, signal_start)
    return tuple(_to_caller(xp, output, was_series)
                 for output in (macd_line, signal_line, macd_line - signal_line))


def bollinger(xp: Any, close: Any, period: int = 20, nbdev_up: float = 2.0,
              nbdev_dn: float = 2.0) -> tuple[Any, Any, Any]:
    """TA-Lib BBANDS (SMA middle band, population std): returns ``(upper, middle, lower)``."""
    period = _check_period("period", period)
    host, begin, was_series = _host_panel(xp, close)
    middle = sma_columns(host, period, begin)
    deviation = std_columns(host, period, begin)
    upper = middle + deviation * nbdev_up
    lower = middle - deviation * nbdev_dn
    return tuple(_to_caller(xp, band, was_series) for band in (upper, middle, lower))
