"""Pieces several indicator kinds' steps share (see ``step_core`` for the step convention), and
``declare``, the one way a family module declares a kind for the registry.

State slots are float64 (counts included) so a state is one plain array to snapshot; the steps get
their scalars as a tuple (counts as ints) and return it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit

from utils.engine.indicators.step_core import IndicatorKind, Param, fma

# TA_EPSILON of TA-Lib 0.8 (ta_utility.h): RSI with no movement, a deviation or range that is "zero".
TALIB_EPSILON = 1e-14


@njit(error_model="numpy", cache=True, inline="always")
def zero_init(state, params):
    state[:] = 0.0


@njit(error_model="numpy", cache=True, inline="always")
def is_zero(v):
    """TA_IS_ZERO: inside the fixed band (-TA_EPSILON, TA_EPSILON)."""
    return (-TALIB_EPSILON < v) and (v < TALIB_EPSILON)


@njit(error_model="numpy", cache=True, inline="always")
def is_zero_scaled(v, scale):
    """TA_IS_ZERO_SCALED: |v| <= TA_EPSILON * scale (a ~90-ulp relative dead-zone)."""
    return abs(v) <= TALIB_EPSILON * scale


@njit(error_model="numpy", cache=True, inline="always")
def true_range(high, low, prev_close):
    """TA-Lib's true range: high-low, replaced by each previous-close distance when larger."""
    greatest = high - low
    val2 = abs(prev_close - high)
    if val2 > greatest:
        greatest = val2
    val3 = abs(prev_close - low)
    if val3 > greatest:
        greatest = val3
    return greatest


@njit(error_model="numpy", cache=True, inline="always")
def ema_slots(state, at):
    """EMA scalars kept at state[at:at+3]: (count fed, seed sum, value)."""
    return int(state[at]), state[at + 1], state[at + 2]


@njit(error_model="numpy", cache=True, inline="always")
def ema_put(state, at, ema):
    count, total, value = ema
    state[at] = count
    state[at + 1] = total
    state[at + 2] = value


@njit(error_model="numpy", cache=True, inline="always")
def ema_feed(ema, period, x):
    """EMA of the values fed so far; ``ema`` = (count, seed sum, value). Returns (ema, output).

    NaN until ``period`` values have been fed; the seed is their sum from 0.0 in order, divided by
    ``period`` (TA-Lib's default compatibility), then ``((x - prev) * k) + prev`` with the
    multiply-add fused, as the TA-Lib build we test against computes it.
    """
    count, total, value = ema
    if count >= period:
        value = fma(x - value, 2.0 / (period + 1), value)
        return (count, total, value), value
    total = total + x
    count += 1
    if count < period:
        return (count, total, value), np.nan
    value = total / period
    return (count, total, value), value


@njit(error_model="numpy", cache=True, inline="always")
def ring_count_load(state, params):
    """(bars seen, ring head) at state[0:2], for kinds whose only scalars they are (their ring follows)."""
    return int(state[0]), int(state[1])


@njit(error_model="numpy", cache=True, inline="always")
def ring_count_store(state, params, scalars):
    state[0] = scalars[0]
    state[1] = scalars[1]


# ------------------------------------------------------------------ registry declarations
def period_state(extra: int) -> Callable[[tuple], int]:
    """State size ``extra + period`` (a ring of the last ``period`` values after ``extra`` slots)."""
    return lambda params: extra + int(params[0])


def fixed_state(size: int) -> Callable[[tuple], int]:
    return lambda params: size


def period_param(default: int, low: float = 1) -> tuple[Param, ...]:
    return (Param("period", default, low=low),)


def declare(name, description, params, functions, state_size, lookback, formula, outputs=(), inputs=("close",),
            init=zero_init, check=None) -> IndicatorKind:
    """One registry entry; ``functions`` = (step, load, store)."""
    step, load, store = functions
    extra = {"check": check} if check else {}
    return IndicatorKind(name=name, description=description, params=params, outputs=outputs,
                         inputs=inputs, state_size=state_size, init=init, load=load, store=store,
                         step=step, lookback=lookback, lookback_formula=formula, **extra)
