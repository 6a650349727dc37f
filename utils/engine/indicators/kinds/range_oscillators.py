"""Oscillators over the high-low range: STOCH, WILLR, CCI, as O(1) steps (CCI amortised O(period)).

The arithmetic mirrors the C code of the TA-Lib build the parity tests run against (TA-Lib 0.8.x),
so the batch run of a step equals ``talib.<FUNC>`` bit for bit on ordinary data:

* STOCH/WILLR: the window's extremes come from ``window_extremes``. A window is "flat" when
  |hh-ll| <= 1e-14*(|hh|+|ll|) and then reads 0.
* CCI: the mean and mean deviation are summed over the circular buffer in slot order (not
  chronological order), as TA-Lib does; that costs O(period) per bar, which is inherent to
  the mean deviation.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from utils.engine.indicators.kinds.step_parts import (declare, is_zero_scaled, period_param, ring_count_load,
                                                      ring_count_store)
from utils.engine.indicators.kinds.window_extremes import (extremes_put, extremes_slots, window_extremes,
                                                           window_extremes_init)
from utils.engine.indicators.step_core import IndicatorKind, Param, sma_push, sma_put, sma_slots


# ------------------------------------------------------------------ STOCH
# params: fastk_period, slowk_period, slowd_period (SMA smoothing, TA-Lib matype 0)
# state: bar count | window extremes (5 + 2*fastk) | slow-K SMA (3 + slowk) | slow-D SMA
def stoch_state_size(params: tuple) -> int:
    fastk, slowk, slowd = (int(p) for p in params)
    return 1 + (5 + 2 * fastk) + (3 + slowk) + (3 + slowd)


@njit(error_model="numpy", cache=True, inline="always")
def stoch_init(state, params):
    state[:] = 0.0
    window_extremes_init(state, 1)


@njit(error_model="numpy", cache=True, inline="always")
def stoch_load(state, params):
    base_k = 1 + 5 + 2 * int(params[0])
    return (int(state[0]), extremes_slots(state, 1), sma_slots(state, base_k),
            sma_slots(state, base_k + 3 + int(params[1])))


@njit(error_model="numpy", cache=True, inline="always")
def stoch_store(state, params, scalars):
    today, extremes, sma_k, sma_d = scalars
    base_k = 1 + 5 + 2 * int(params[0])
    state[0] = today
    extremes_put(state, 1, extremes)
    sma_put(state, base_k, sma_k)
    sma_put(state, base_k + 3 + int(params[1]), sma_d)


@njit(error_model="numpy", cache=True, inline="always")
def stoch_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib STOCH with SMA slow-K / slow-D: fast K = (c-ll)/(hh-ll)*100 over fastk bars."""
    fastk = int(params[0])
    slowk = int(params[1])
    slowd = int(params[2])
    today, extremes, sma_k, sma_d = scalars
    out[0] = np.nan
    out[1] = np.nan
    extremes, ready = window_extremes(extremes, state, 1 + 5, fastk, today, high, low)
    if ready:
        lowest = extremes[1]
        highest = extremes[3]
        if not is_zero_scaled(highest - lowest, abs(highest) + abs(lowest)):
            fast_k = (close - lowest) / (highest - lowest) * 100.0
        else:
            fast_k = 0.0
        base_k = 1 + 5 + 2 * fastk
        sma_k, ready_k, slow_k = sma_push(sma_k, state, base_k + 3, slowk, fast_k)
        if ready_k:
            sma_d, ready_d, slow_d = sma_push(sma_d, state, base_k + 3 + slowk + 3, slowd, slow_k)
            if ready_d:
                out[0] = slow_k
                out[1] = slow_d
    return today + 1, extremes, sma_k, sma_d


# ------------------------------------------------------------------ WILLR
# state: bar count | window extremes (5 + 2*period)
def willr_state_size(params: tuple) -> int:
    return 1 + 5 + 2 * int(params[0])


@njit(error_model="numpy", cache=True, inline="always")
def willr_init(state, params):
    state[:] = 0.0
    window_extremes_init(state, 1)


@njit(error_model="numpy", cache=True, inline="always")
def willr_load(state, params):
    return int(state[0]), extremes_slots(state, 1)


@njit(error_model="numpy", cache=True, inline="always")
def willr_store(state, params, scalars):
    state[0] = scalars[0]
    extremes_put(state, 1, scalars[1])


@njit(error_model="numpy", cache=True, inline="always")
def willr_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib WILLR: (hh-c)/(hh-ll) * -100, clamped into [-100, 0]; 0 on a flat window."""
    period = int(params[0])
    today, extremes = scalars
    extremes, ready = window_extremes(extremes, state, 1 + 5, period, today, high, low)
    if not ready:
        out[0] = np.nan
        return today + 1, extremes
    lowest = extremes[1]
    highest = extremes[3]
    if not is_zero_scaled(highest - lowest, abs(highest) + abs(lowest)):
        value = ((highest - close) / (highest - lowest)) * (-100.0)
        if value > 0.0:
            value = 0.0
        elif value < -100.0:
            value = -100.0
        out[0] = value
    else:
        out[0] = 0.0
    return today + 1, extremes


# ------------------------------------------------------------------ CCI
# state: bar count (saturating), ring slot, ring of the last `period` typical prices
def cci_state_size(params: tuple) -> int:
    return 2 + int(params[0])


@njit(error_model="numpy", cache=True, inline="always")
def cci_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib CCI: (tp - mean) / (0.015 * mean deviation), sums in circular-buffer slot order."""
    period = int(params[0])
    count, slot = scalars
    last = (high + low + close) / 3
    state[2 + slot] = last
    slot = 0 if slot + 1 == period else slot + 1
    if count + 1 < period:
        out[0] = np.nan
        return count + 1, slot
    average = 0.0
    for j in range(period):
        average += state[2 + j]
    average /= period
    mean_dev = 0.0
    for j in range(period):
        mean_dev += abs(state[2 + j] - average)
    mean_dev /= period
    deviation = last - average
    scale = abs(average)
    if not is_zero_scaled(deviation, scale) and not is_zero_scaled(mean_dev, scale):
        out[0] = deviation / (0.015 * mean_dev)
    else:
        out[0] = 0.0
    return period, slot


def _stoch_lookback(params: tuple) -> int:
    fastk, slowk, slowd = (int(p) for p in params)
    return (fastk - 1) + (slowk - 1) + (slowd - 1)


RANGE_OSCILLATOR_KINDS: list[IndicatorKind] = [
    declare("stoch", "Slow stochastic %K/%D with SMA smoothing, TA-Lib STOCH",
            (Param("fastk_period", 14), Param("slowk_period", 3), Param("slowd_period", 3)),
            (stoch_step, stoch_load, stoch_store), stoch_state_size, _stoch_lookback,
            "(fastk_period - 1) + (slowk_period - 1) + (slowd_period - 1)",
            outputs=("stoch_k", "stoch_d"), inputs=("high", "low", "close"), init=stoch_init),
    declare("willr", "Williams %R, TA-Lib WILLR", period_param(14, low=2), (willr_step, willr_load, willr_store),
            willr_state_size, lambda p: int(p[0]) - 1, "period - 1", inputs=("high", "low", "close"),
            init=willr_init),
    declare("cci", "Commodity Channel Index of the typical price, TA-Lib CCI", period_param(20, low=2),
            (cci_step, ring_count_load, ring_count_store), cci_state_size, lambda p: int(p[0]) - 1, "period - 1",
            inputs=("high", "low", "close")),
]
