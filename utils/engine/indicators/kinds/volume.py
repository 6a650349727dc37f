"""Volume kinds: OBV, MFI, VWAP, as O(1) steps.

* OBV and MFI mirror TA-Lib 0.8's C code in its order (bit for bit on ordinary data). MFI: money
  flow classified with the scaled dead-zone, empty-window detection by counting flow-less bars,
  the numerator clamped into [0, total].
* VWAP has no TA-Lib reference: session VWAP is sum(tp*v)/sum(v) since the last ``new_session``
  bar; ``window > 0`` gives a rolling VWAP over the last ``window`` bars (sessions ignored) kept
  with compensated running sums. NaN while the volume sum is 0.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from utils.engine.indicators.kinds.step_parts import declare, fixed_state, is_zero_scaled, period_param
from utils.engine.indicators.step_core import IndicatorKind, Param


# ------------------------------------------------------------------ OBV
# state: started flag, previous close, OBV
@njit(error_model="numpy", cache=True, inline="always")
def obv_load(state, params):
    return state[0] != 0.0, state[1], state[2]


@njit(error_model="numpy", cache=True, inline="always")
def obv_store(state, params, scalars):
    started, prev, obv = scalars
    state[0] = 1.0 if started else 0.0
    state[1] = prev
    state[2] = obv


@njit(error_model="numpy", cache=True, inline="always")
def obv_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib OBV: starts at the first bar's volume; +volume on an up close, -volume on down."""
    started, prev, obv = scalars
    if not started:
        started = True
        prev = close
        obv = volume
    if close > prev:
        obv += volume
    elif close < prev:
        obv -= volume
    out[0] = obv
    return started, close, obv


# ------------------------------------------------------------------ MFI
# state: count (saturating at period+1), previous typical price, +sum, -sum, ring slot,
#        flow-less run, ring of positive flows, ring of negative flows
def mfi_state_size(params: tuple) -> int:
    return 6 + 2 * int(params[0])


@njit(error_model="numpy", cache=True, inline="always")
def mfi_load(state, params):
    return int(state[0]), state[1], state[2], state[3], int(state[4]), int(state[5])


@njit(error_model="numpy", cache=True, inline="always")
def mfi_store(state, params, scalars):
    count, prev, pos_sum, neg_sum, slot, null_run = scalars
    state[0] = count
    state[1] = prev
    state[2] = pos_sum
    state[3] = neg_sum
    state[4] = slot
    state[5] = null_run


@njit(error_model="numpy", cache=True, inline="always")
def mfi_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib MFI: 100 * positive flow / total flow over the last ``period`` price moves."""
    period = int(params[0])
    count, prev, pos_sum, neg_sum, slot, null_run = scalars
    typical = (high + low + close) / 3.0
    if count == 0:
        out[0] = np.nan
        return 1, typical, pos_sum, neg_sum, slot, null_run
    ring_pos = 6
    ring_neg = 6 + period
    if count > period:  # the window is full: drop the oldest flow first
        pos_sum -= state[ring_pos + slot]
        neg_sum -= state[ring_neg + slot]
    move = typical - prev
    scale = abs(typical) + abs(prev)
    flow = typical * volume
    money_flow = 0.0 if is_zero_scaled(move, scale) else flow
    pos_flow = 0.0 if move < 0.0 else money_flow
    neg_flow = money_flow if move < 0.0 else 0.0
    state[ring_pos + slot] = pos_flow
    state[ring_neg + slot] = neg_flow
    pos_sum += pos_flow
    neg_sum += neg_flow
    null_run = null_run + 1 if money_flow == 0.0 else 0
    if null_run >= period:
        null_run = period
        pos_sum = 0.0
        neg_sum = 0.0
    slot = 0 if slot + 1 == period else slot + 1
    if count < period:
        out[0] = np.nan
        return count + 1, typical, pos_sum, neg_sum, slot, null_run
    total = pos_sum + neg_sum
    if pos_sum < 0.0:
        pos_clamped = 0.0
    elif pos_sum > total:
        pos_clamped = total
    else:
        pos_clamped = pos_sum
    if total <= 0.0:
        out[0] = 0.0
    else:
        out[0] = 100.0 * (pos_clamped / total)
    return period + 1, typical, pos_sum, neg_sum, slot, null_run


# ------------------------------------------------------------------ VWAP
# window == 0 (session): state = sum(tp*v), sum(v)
# window  > 0 (rolling): count, ring slot, non-zero volumes in the window, sum(tp*v) and its
#   compensation, sum(v) and its compensation, ring of tp*v, ring of v
def vwap_state_size(params: tuple) -> int:
    window = int(params[0])
    return 2 if window == 0 else 7 + 2 * window


@njit(error_model="numpy", cache=True, inline="always")
def vwap_load(state, params):
    """(count, ring slot, non-zero volumes, sum(tp*v), its compensation, sum(v), its
    compensation); a session VWAP keeps only the two sums (the rest stay 0)."""
    if int(params[0]) == 0:
        return 0, 0, 0, state[0], 0.0, state[1], 0.0
    return int(state[0]), int(state[1]), int(state[2]), state[3], state[4], state[5], state[6]


@njit(error_model="numpy", cache=True, inline="always")
def vwap_store(state, params, scalars):
    count, slot, nonzero, pv_sum, pv_comp, v_sum, v_comp = scalars
    if int(params[0]) == 0:
        state[0] = pv_sum
        state[1] = v_sum
        return
    state[0] = count
    state[1] = slot
    state[2] = nonzero
    state[3] = pv_sum
    state[4] = pv_comp
    state[5] = v_sum
    state[6] = v_comp


@njit(error_model="numpy", cache=True, inline="always")
def _neumaier_add(total, compensation, x):
    """(total + x, compensation) with the Neumaier compensation of the rounding added."""
    t = total + x
    if abs(total) >= abs(x):
        compensation += (total - t) + x
    else:
        compensation += (x - t) + total
    return t, compensation


@njit(error_model="numpy", cache=True, inline="always")
def vwap_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """VWAP of the typical price (h+l+c)/3: per session, or rolling over ``window`` bars."""
    window = int(params[0])
    count, slot, nonzero, pv_sum, pv_comp, v_sum, v_comp = scalars
    pv = (high + low + close) / 3.0 * volume
    if window == 0:
        if new_session:
            pv_sum = 0.0
            v_sum = 0.0
        pv_sum += pv
        v_sum += volume
        out[0] = pv_sum / v_sum if v_sum != 0.0 else np.nan
        return count, slot, nonzero, pv_sum, pv_comp, v_sum, v_comp
    ring_pv = 7
    ring_v = 7 + window
    if count >= window:  # drop the bar leaving the window
        old_v = state[ring_v + slot]
        pv_sum, pv_comp = _neumaier_add(pv_sum, pv_comp, -state[ring_pv + slot])
        v_sum, v_comp = _neumaier_add(v_sum, v_comp, -old_v)
        if old_v != 0.0:
            nonzero -= 1
    else:
        count += 1
    state[ring_pv + slot] = pv
    state[ring_v + slot] = volume
    pv_sum, pv_comp = _neumaier_add(pv_sum, pv_comp, pv)
    v_sum, v_comp = _neumaier_add(v_sum, v_comp, volume)
    if volume != 0.0:
        nonzero += 1
    slot = 0 if slot + 1 == window else slot + 1
    total_v = v_sum + v_comp
    if count < window:  # ``count`` counts this bar already
        out[0] = np.nan
    elif nonzero == 0 or total_v == 0.0:
        out[0] = np.nan
    else:
        out[0] = (pv_sum + pv_comp) / total_v
    return count, slot, nonzero, pv_sum, pv_comp, v_sum, v_comp


VOLUME_KINDS: list[IndicatorKind] = [
    declare("obv", "On-Balance Volume, TA-Lib OBV", (), (obv_step, obv_load, obv_store), fixed_state(3),
            lambda p: 0, "0", inputs=("close", "volume")),
    declare("mfi", "Money Flow Index, TA-Lib MFI", period_param(14, low=2), (mfi_step, mfi_load, mfi_store),
            mfi_state_size, lambda p: int(p[0]), "period", inputs=("high", "low", "close", "volume")),
    declare("vwap", "VWAP of the typical price: per session (window 0) or rolling over window bars",
            (Param("window", 0, low=0),), (vwap_step, vwap_load, vwap_store), vwap_state_size,
            lambda p: max(int(p[0]) - 1, 0), "0 (session, window 0); window - 1 (rolling)",
            inputs=("high", "low", "close", "volume")),
]
