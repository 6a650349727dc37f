"""Momentum kinds over the close: RSI, MACD, ROC, MOM, as O(1) steps.

Each step does TA-Lib's floating-point operations in TA-Lib's order (Wilder's RSI, MACD's fast
EMA seeded at the slow one's start, ROC/MOM against the close ``period`` bars ago). The
exceptions, by design:

* RSI stays NaN after a NaN input where TA-Lib reports 0.0 ("maximally oversold") forever.
* RSI agrees to ~1e-15 relative, not bit for bit (the installed build's Wilder step rounds
  differently somewhere; TA-Lib's published C order is kept).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from utils.engine.indicators.kinds.step_parts import (TALIB_EPSILON, declare, ema_feed, ema_put, ema_slots,
                                                      fixed_state, period_param, period_state, ring_count_load,
                                                      ring_count_store)
from utils.engine.indicators.step_core import IndicatorKind, Param, ring_index


# ------------------------------------------------------------------ RSI
@njit(error_model="numpy", cache=True, inline="always")
def _rsi_value(average_gain, average_loss):
    total = average_gain + average_loss
    if math.isnan(total):
        # TA-Lib emits 0.0 here (its zero test is false for NaN); we keep the NaN so a gap in the
        # input never reads as "maximally oversold".
        return np.nan
    if -TALIB_EPSILON < total < TALIB_EPSILON:
        return 0.0
    return 100.0 * (average_gain / total)


@njit(error_model="numpy", cache=True, inline="always")
def rsi_load(state, params):
    return int(state[0]), state[1], state[2], state[3]


@njit(error_model="numpy", cache=True, inline="always")
def rsi_store(state, params, scalars):
    count, previous, gain, loss = scalars
    state[0] = count
    state[1] = previous
    state[2] = gain
    state[3] = loss


@njit(error_model="numpy", cache=True, inline="always")
def rsi_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """Wilder RSI, TA-Lib seeding: simple averages of the first ``period`` changes, then smoothing.
    Scalars = (bars seen, previous close, average gain, average loss)."""
    period = int(params[0])
    count, previous, gain, loss = scalars
    change = close - previous
    out[0] = np.nan
    if count == 0:
        return count + 1, close, gain, loss
    if count <= period:
        if change < 0:
            loss -= change
        else:
            gain += change
        if count == period:
            gain /= period
            loss /= period
            out[0] = _rsi_value(gain, loss)
    else:
        loss *= period - 1
        gain *= period - 1
        if change < 0:
            loss -= change
        else:
            gain += change
        loss /= period
        gain /= period
        out[0] = _rsi_value(gain, loss)
    return count + 1, close, gain, loss

# ------------------------------------------------------------------ MACD
@njit(error_model="numpy", cache=True, inline="always")
def macd_load(state, params):
    """Bars seen, then the slow, fast and signal EMAs at state[1:4], [4:7], [7:10]."""
    return int(state[0]), ema_slots(state, 1), ema_slots(state, 4), ema_slots(state, 7)


@njit(error_model="numpy", cache=True, inline="always")
def macd_store(state, params, scalars):
    count, slow_ema, fast_ema, signal_ema = scalars
    state[0] = count
    ema_put(state, 1, slow_ema)
    ema_put(state, 4, fast_ema)
    ema_put(state, 7, signal_ema)


@njit(error_model="numpy", cache=True, inline="always")
def macd_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib MACD. The fast EMA starts at the slow EMA's first row, seeded with the SMA of the
    ``fast`` closes ending there; the signal EMA is seeded on the first ``signal`` MACD values."""
    fast = int(params[0])
    slow = int(params[1])
    signal = int(params[2])
    count, slow_ema, fast_ema, signal_ema = scalars
    out[0] = np.nan
    out[1] = np.nan
    out[2] = np.nan
    slow_ema, slow_value = ema_feed(slow_ema, slow, close)
    if count >= slow - fast:
        fast_ema, fast_value = ema_feed(fast_ema, fast, close)
        if count >= slow - 1:
            line = fast_value - slow_value
            signal_ema, signal_value = ema_feed(signal_ema, signal, line)
            if count >= slow - 1 + signal - 1:
                out[0] = line
                out[1] = signal_value
                out[2] = line - signal_value
    return count + 1, slow_ema, fast_ema, signal_ema


def _macd_check(params: tuple) -> str | None:
    fast, slow, _ = params
    return None if fast < slow else f"fast ({fast}) must be smaller than slow ({slow})"


# ------------------------------------------------------------------ ROC, MOM
@njit(error_model="numpy", cache=True, inline="always")
def lag_push(head, state, ring, period, x):
    """Store ``x`` in the ring of the last ``period`` values at state[ring:ring+period] and return
    (next head, the value it replaces: the input ``period`` bars ago, 0.0 while the ring fills)."""
    older = state[ring_index(ring + head)]
    state[ring_index(ring + head)] = x
    head += 1
    return (head if head < period else 0), older


@njit(error_model="numpy", cache=True, inline="always")
def roc_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib ROC: ((close / close[-period]) - 1) * 100, and 0.0 where close[-period] is 0."""
    period = int(params[0])
    count, head = scalars
    head, older = lag_push(head, state, 2, period, close)
    if count < period:
        out[0] = np.nan
    elif older != 0.0:
        out[0] = ((close / older) - 1.0) * 100.0
    else:
        out[0] = 0.0
    return count + 1, head


@njit(error_model="numpy", cache=True, inline="always")
def mom_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib MOM: close - close[-period]."""
    period = int(params[0])
    count, head = scalars
    head, older = lag_push(head, state, 2, period, close)
    out[0] = close - older if count >= period else np.nan
    return count + 1, head

MOMENTUM_KINDS: list[IndicatorKind] = [
    declare("rsi", "Wilder relative strength index, 0..100 (TA-Lib RSI)", period_param(14),
            (rsi_step, rsi_load, rsi_store), fixed_state(4), lambda p: p[0], "period"),
    declare("macd", "MACD line, signal line and histogram (TA-Lib MACD)",
            (Param("fast", 12), Param("slow", 26), Param("signal", 9)), (macd_step, macd_load, macd_store),
            fixed_state(10), lambda p: p[1] - 1 + p[2] - 1, "slow - 1 + signal - 1",
            outputs=("macd", "macd_signal", "macd_hist"), check=_macd_check),
    declare("roc", "rate of change in percent, ((close / close[-period]) - 1) * 100 (TA-Lib ROC)",
            period_param(10), (roc_step, ring_count_load, ring_count_store), period_state(2), lambda p: p[0],
            "period"),
    declare("mom", "momentum, close - close[-period] (TA-Lib MOM)", period_param(10),
            (mom_step, ring_count_load, ring_count_store), period_state(2), lambda p: p[0], "period"),
]
