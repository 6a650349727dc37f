"""Moving averages: SMA, EMA, WMA, DEMA, TEMA (close only), as O(1) steps.

Each step does TA-Lib's floating-point operations in TA-Lib's order (EMA ``((x - prev) * k) +
prev`` with ``k = 2 / (period + 1)``, seeds summed from 0.0 in input order, WMA's running sums),
so the outputs agree with TA-Lib bit for bit. WMA: the installed TA-Lib (0.8) recomputes its
running sums from the window every ``8 * period`` outputs (so they cannot drift, and a NaN leaves
the output once a re-sync window is clean); the step does the same, bit for bit, at O(period)
once per ``8 * period`` bars. The SMA step is ``step_core``'s worked example.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from utils.engine.indicators.kinds.step_parts import (declare, ema_feed, ema_put, ema_slots, fixed_state,
                                                      period_param, period_state)
from utils.engine.indicators.step_core import (IndicatorKind, ring_index, sma_init, sma_load, sma_state_size,
                                               sma_step, sma_store)


# ------------------------------------------------------------------ EMA, DEMA, TEMA
@njit(error_model="numpy", cache=True, inline="always")
def ema_load(state, params):
    return ema_slots(state, 0)


@njit(error_model="numpy", cache=True, inline="always")
def ema_store(state, params, ema):
    ema_put(state, 0, ema)


@njit(error_model="numpy", cache=True, inline="always")
def ema_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    scalars, value = ema_feed(scalars, int(params[0]), close)
    out[0] = value
    return scalars


@njit(error_model="numpy", cache=True, inline="always")
def dema_load(state, params):
    """DEMA's two EMAs, at state[0:3] and [3:6]."""
    return ema_slots(state, 0), ema_slots(state, 3)


@njit(error_model="numpy", cache=True, inline="always")
def dema_store(state, params, emas):
    ema_put(state, 0, emas[0])
    ema_put(state, 3, emas[1])


@njit(error_model="numpy", cache=True, inline="always")
def tema_load(state, params):
    """TEMA's three EMAs, at state[0:3], [3:6] and [6:9]."""
    return ema_slots(state, 0), ema_slots(state, 3), ema_slots(state, 6)


@njit(error_model="numpy", cache=True, inline="always")
def tema_store(state, params, emas):
    ema_put(state, 0, emas[0])
    ema_put(state, 3, emas[1])
    ema_put(state, 6, emas[2])


@njit(error_model="numpy", cache=True, inline="always")
def dema_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib DEMA: 2*EMA1 - EMA2, EMA2 being the EMA of EMA1 (seeded on its first ``period``)."""
    period = int(params[0])
    if period == 1:  # TA-Lib copies the input rather than leave k=1 rounding residue
        out[0] = close
        return scalars
    ema1, ema2 = scalars
    ema1, first = ema_feed(ema1, period, close)
    out[0] = np.nan
    if ema1[0] >= period:
        ema2, second = ema_feed(ema2, period, first)
        if ema2[0] >= period:
            out[0] = 2.0 * first - second
    return ema1, ema2


@njit(error_model="numpy", cache=True, inline="always")
def tema_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib TEMA: EMA3 + (3*EMA1 - 3*EMA2), each EMA fed by the one before it."""
    period = int(params[0])
    if period == 1:
        out[0] = close
        return scalars
    ema1, ema2, ema3 = scalars
    out[0] = np.nan
    ema1, first = ema_feed(ema1, period, close)
    if ema1[0] >= period:
        ema2, second = ema_feed(ema2, period, first)
        if ema2[0] >= period:
            ema3, third = ema_feed(ema3, period, second)
            if ema3[0] >= period:
                out[0] = third + (3.0 * first - 3.0 * second)
    return ema1, ema2, ema3

# ------------------------------------------------------------------ WMA
@njit(error_model="numpy", cache=True, inline="always")
def wma_load(state, params):
    """(count, period sub-sum, weighted sum, trailing value, ring head, re-sync phase); the phase,
    ``(count - period + 2) mod 8 * period``, is derived from the count (not stored): 0 on the
    bars that re-sync, so the step needs no integer division."""
    count = int(state[0])
    cycle = 8 * int(params[0])
    phase = (count - int(params[0]) + 2) % cycle
    if phase < 0:
        phase += cycle
    return count, state[1], state[2], state[3], int(state[4]), phase


@njit(error_model="numpy", cache=True, inline="always")
def wma_store(state, params, scalars):
    count, period_sub, period_sum, trailing, head, _ = scalars
    state[0] = count
    state[1] = period_sub
    state[2] = period_sum
    state[3] = trailing
    state[4] = head


@njit(error_model="numpy", cache=True, inline="always")
def wma_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib WMA's running sums, recomputed from the window every ``8 * period`` outputs.

    Scalars = (count, period sub-sum, weighted sum, trailing value, ring head, re-sync phase); the
    ring of the last ``period`` closes is at state[5:]. Between re-syncs: the sub-sum gains the close and
    loses the trailing value, the weighted sum gains close * period, the output is weighted sum /
    divider, then the weighted sum loses the sub-sum (TA-Lib's order).
    """
    period = int(params[0])
    if period == 1:  # TA-Lib copies the input
        out[0] = close
        return scalars
    count, period_sub, period_sum, trailing, head, phase = scalars
    state[ring_index(5 + head)] = close
    head += 1
    if head == period:
        head = 0
    next_phase = phase + 1
    if next_phase == 8 * period:
        next_phase = 0
    if count < period - 1:
        out[0] = np.nan
        return count + 1, period_sub + close, period_sum + close * (count + 1.0), trailing, head, next_phase
    divider = (period * (period + 1)) >> 1
    if phase == 0:  # (count - (period - 1) + 1) % (8 * period) == 0: the installed TA-Lib's re-sync points
        period_sub = 0.0
        period_sum = 0.0
        slot = head  # oldest close of the window
        for weight in range(1, period + 1):
            value = state[ring_index(5 + slot)]
            period_sub += value
            period_sum += value * weight
            slot = slot + 1 if slot + 1 < period else 0
    else:
        period_sub = period_sub + close
        period_sub -= trailing
        period_sum = period_sum + close * period
    trailing = state[ring_index(5 + head)]  # oldest close of this window: leaves period_sub on the next bar
    out[0] = period_sum / divider
    return count + 1, period_sub, period_sum - period_sub, trailing, head, next_phase

MOVING_AVERAGE_KINDS: list[IndicatorKind] = [
    declare("sma", "simple moving average (TA-Lib SMA)", period_param(20), (sma_step, sma_load, sma_store),
            sma_state_size, lambda p: p[0] - 1, "period - 1", init=sma_init),
    declare("ema", "exponential moving average seeded with an SMA (TA-Lib EMA)", period_param(12),
            (ema_step, ema_load, ema_store), fixed_state(3), lambda p: p[0] - 1, "period - 1"),
    declare("wma", "linearly weighted moving average (TA-Lib WMA)", period_param(20), (wma_step, wma_load, wma_store),
            period_state(5), lambda p: p[0] - 1, "period - 1"),
    declare("dema", "double exponential moving average (TA-Lib DEMA)", period_param(20),
            (dema_step, dema_load, dema_store), fixed_state(6), lambda p: 2 * (p[0] - 1), "2 * (period - 1)"),
    declare("tema", "triple exponential moving average (TA-Lib TEMA)", period_param(20),
            (tema_step, tema_load, tema_store), fixed_state(9), lambda p: 3 * (p[0] - 1), "3 * (period - 1)"),
]
