"""Directional movement: ADX with +DI and -DI from one shared state, as an O(1) step.

Raw DM/TR sums over the first ``period-1`` moves, then Wilder smoothing ``x - x/period + dm``;
+DI and -DI are defined from bar ``period`` on, ADX from ``2*period-1`` (TA-Lib 0.8's C code, in
its order, so the outputs equal talib.ADX, PLUS_DI and MINUS_DI bit for bit on ordinary data).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from utils.engine.indicators.kinds.step_parts import declare, fixed_state, is_zero, period_param, true_range
from utils.engine.indicators.step_core import IndicatorKind


# ------------------------------------------------------------------ ADX / +DI / -DI
# state: count (saturating at 2*period), prev high, prev low, prev close, +DM, -DM, TR,
#        sum of the first DX values, ADX
@njit(error_model="numpy", cache=True, inline="always")
def adx_load(state, params):
    return (int(state[0]), state[1], state[2], state[3], state[4], state[5], state[6], state[7],
            state[8])


@njit(error_model="numpy", cache=True, inline="always")
def adx_store(state, params, scalars):
    count, prev_high, prev_low, prev_close, plus_dm, minus_dm, tr_sum, dx_sum, adx = scalars
    state[0] = count
    state[1] = prev_high
    state[2] = prev_low
    state[3] = prev_close
    state[4] = plus_dm
    state[5] = minus_dm
    state[6] = tr_sum
    state[7] = dx_sum
    state[8] = adx


@njit(error_model="numpy", cache=True, inline="always")
def adx_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib ADX, PLUS_DI and MINUS_DI over one shared DM/TR state.

    outputs: adx (from bar 2*period-1), plus_di and minus_di (from bar period)."""
    period = int(params[0])
    count, prev_high, prev_low, prev_close, plus_dm, minus_dm, tr_sum, dx_sum, adx = scalars
    out[0] = np.nan
    out[1] = np.nan
    out[2] = np.nan
    if count == 0:
        return 1, high, low, close, plus_dm, minus_dm, tr_sum, dx_sum, adx
    diff_p = high - prev_high
    diff_m = prev_low - low
    tr = true_range(high, low, prev_close)
    if count < period:  # raw sums of the first period-1 one-bar moves
        if diff_m > 0 and diff_p < diff_m:
            minus_dm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            plus_dm += diff_p
        tr_sum += tr
        return count + 1, high, low, close, plus_dm, minus_dm, tr_sum, dx_sum, adx
    minus_dm -= minus_dm / period
    plus_dm -= plus_dm / period
    if diff_m > 0 and diff_p < diff_m:
        minus_dm += diff_m
    elif diff_p > 0 and diff_p > diff_m:
        plus_dm += diff_p
    tr_sum = tr_sum - tr_sum / period + tr
    has_dx = False
    dx = 0.0
    if tr_sum > 0.0:
        minus_di = 100.0 * (minus_dm / tr_sum)
        plus_di = 100.0 * (plus_dm / tr_sum)
        out[1] = plus_di
        out[2] = minus_di
        di_sum = minus_di + plus_di
        if not is_zero(di_sum):
            has_dx = True
            dx = 100.0 * (abs(minus_di - plus_di) / di_sum)
    else:
        out[1] = 0.0
        out[2] = 0.0
    last_seed = 2 * period - 1
    if count < last_seed:  # DX values summed for the first ADX
        if has_dx:
            dx_sum += dx
        return count + 1, high, low, close, plus_dm, minus_dm, tr_sum, dx_sum, adx
    if count == last_seed:
        if has_dx:
            dx_sum += dx
        adx = dx_sum / period
        count = last_seed + 1
    elif has_dx:
        adx = (adx * (period - 1) + dx) / period
    out[0] = adx
    return count, high, low, close, plus_dm, minus_dm, tr_sum, dx_sum, adx


TREND_KINDS: list[IndicatorKind] = [
    declare("adx", "Average Directional Index with +DI/-DI, TA-Lib ADX, PLUS_DI, MINUS_DI", period_param(14, low=2),
            (adx_step, adx_load, adx_store), fixed_state(9), lambda p: 2 * int(p[0]) - 1,
            "2 * period - 1 (adx); period (plus_di, minus_di)", outputs=("adx", "plus_di", "minus_di"),
            inputs=("high", "low", "close")),
]
