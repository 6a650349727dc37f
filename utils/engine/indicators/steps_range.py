"""Range and volume indicators (ATR, NATR, STOCH, WILLR, CCI, ADX/DI, OBV, MFI, VWAP) as O(1) steps.

Each kind follows the ``step_core`` convention: ``state_size(params)``, ``init(state, params)``
and ``step(state, params, open_, high, low, close, volume, new_session, out)`` over a float64
state. The arithmetic mirrors the C code of the TA-Lib build the parity tests run against
(TA-Lib 0.8.x: the same seeding, the same lookback, the same floating-point operations in the
same order), so the batch run of a step equals ``talib.<FUNC>`` bit for bit on ordinary data.
Notes on what that C code does (and so what these steps do):

* ATR/NATR: the true range starts from high-low and is replaced by |prevclose-high| and then
  |prevclose-low| when larger; the seed is the plain sum of the first ``period`` ranges divided
  by ``period``; later bars use the two-coefficient Wilder step ``fma(b, atr, a*tr)`` (one
  rounding for ``b*atr + a*tr``, as TA-Lib 0.8 compiles it) with ``b = (period-1)/period`` and
  ``a = 1-b``. NATR divides by the bar's own close (0.0 when the
  close is exactly 0) and, at period 1, is the raw true range (TA-Lib does not normalise it).
* STOCH/WILLR: the highest high / lowest low of the window are cached with their bar index and
  rescanned when they leave the window (TA-Lib's streaming form; identical extremes to its
  batch block scan). A window is "flat" when |hh-ll| <= 1e-14*(|hh|+|ll|) and then reads 0.
* CCI: the mean and mean deviation are summed over the circular buffer in slot order (not
  chronological order), as TA-Lib does; that costs O(period) per bar, which is inherent to
  the mean deviation.
* ADX/+DI/-DI: raw DM/TR sums over the first ``period-1`` moves, then Wilder smoothing
  ``x - x/period + dm``; +DI and -DI are defined from bar ``period`` on, ADX from ``2*period-1``.
* MFI: money flow classified with the scaled dead-zone, empty-window detection by counting
  flow-less bars, the numerator clamped into [0, total].
* VWAP has no TA-Lib reference: session VWAP is sum(tp*v)/sum(v) since the last
  ``new_session`` bar; ``window > 0`` gives a rolling VWAP over the last ``window`` bars
  (sessions ignored) kept with compensated running sums. NaN while the volume sum is 0.

A NaN input propagates the way it does in TA-Lib (for instance a NaN true range poisons the
Wilder recursion), which ``run_panel`` avoids for leading NaNs by starting each column at its
first row where every input of the kind is valid. One known difference: with NaNs *inside* the
series, STOCH and WILLR follow TA-Lib's per-bar form (the one its own streaming API runs), while
talib.STOCH/WILLR run a batch block scan whose NaN handling depends on block alignment; on
NaN-free data both find the same extremes and the outputs are identical.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from utils.engine.indicators.step_core import (INPUT_NAMES, IndicatorKind, Param, fma, pick, ring_index, run_panel,
                                               sma_push,
                                               sma_put, sma_slots)

_EPSILON = 1e-14  # TA_EPSILON of TA-Lib 0.8 (ta_utility.h)
_NAN = np.nan


# ----------------------------------------------------------------------------- shared pieces
@njit(error_model="numpy", cache=True, inline="always")
def _is_zero(v):
    """TA_IS_ZERO: inside the fixed band (-TA_EPSILON, TA_EPSILON)."""
    return (-_EPSILON < v) and (v < _EPSILON)


@njit(error_model="numpy", cache=True, inline="always")
def _is_zero_scaled(v, scale):
    """TA_IS_ZERO_SCALED: |v| <= TA_EPSILON * scale (a ~90-ulp relative dead-zone)."""
    return abs(v) <= _EPSILON * scale


@njit(error_model="numpy", cache=True, inline="always")
def _true_range(high, low, prev_close):
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
def _extremes_slots(state, at):
    """Window-extremes scalars at state[at:at+5]: lowest index, lowest, highest index, highest,
    ring slot of the next bar (the rings of highs and lows follow them)."""
    return int(state[at]), state[at + 1], int(state[at + 2]), state[at + 3], int(state[at + 4])


@njit(error_model="numpy", cache=True, inline="always")
def _extremes_put(state, at, extremes):
    lowest_idx, lowest, highest_idx, highest, slot = extremes
    state[at] = lowest_idx
    state[at + 1] = lowest
    state[at + 2] = highest_idx
    state[at + 3] = highest
    state[at + 4] = slot


@njit(error_model="numpy", cache=True, inline="always")
def _ring_lowest(state, ring, period, oldest):
    """Window position (0 = oldest) and value of the lowest value of the window at
    state[ring:ring+period] whose oldest value is in slot ``oldest``, as a forward scan from the
    oldest value with strict ``<`` finds it (the earliest of equal lows wins; a NaN oldest value
    stays). Run as two independent chains of conditional moves (no data-dependent branch to
    mispredict, half the latency): the older half starts from the oldest value, the newer half
    from +inf, and the newer half's lowest replaces the older half's only when strictly lower,
    which is exactly what continuing the forward scan over the newer half gives."""
    half = period >> 1
    a_pos = 0
    a = state[ring_index(ring + oldest)]
    b_pos = 0
    b = np.inf
    ja = oldest
    jb = oldest + half
    jb = pick(jb >= period, jb - period, jb)
    for k in range(period - 1 - half):  # older half: positions 1..half, newer: half+1..period-1
        ja += 1
        ja = pick(ja == period, 0, ja)
        jb += 1
        jb = pick(jb == period, 0, jb)
        ta = state[ring_index(ring + ja)]
        tb = state[ring_index(ring + jb)]
        take_a = ta < a
        a_pos = pick(take_a, k + 1, a_pos)
        a = pick(take_a, ta, a)
        take_b = tb < b
        b_pos = pick(take_b, k + half + 1, b_pos)
        b = pick(take_b, tb, b)
    if (period & 1) == 0 and half > 0:  # even period: the older half has one more value
        ja += 1
        ja = pick(ja == period, 0, ja)
        ta = state[ring_index(ring + ja)]
        take_a = ta < a
        a_pos = pick(take_a, half, a_pos)
        a = pick(take_a, ta, a)
    take_b = b < a
    return pick(take_b, b_pos, a_pos), pick(take_b, b, a)


@njit(error_model="numpy", cache=True, inline="always")
def _ring_highest(state, ring, period, oldest):
    """As ``_ring_lowest`` for the highest value (strict ``>``, the earliest wins; the newer half
    starts from -inf)."""
    half = period >> 1
    a_pos = 0
    a = state[ring_index(ring + oldest)]
    b_pos = 0
    b = -np.inf
    ja = oldest
    jb = oldest + half
    jb = pick(jb >= period, jb - period, jb)
    for k in range(period - 1 - half):
        ja += 1
        ja = pick(ja == period, 0, ja)
        jb += 1
        jb = pick(jb == period, 0, jb)
        ta = state[ring_index(ring + ja)]
        tb = state[ring_index(ring + jb)]
        take_a = ta > a
        a_pos = pick(take_a, k + 1, a_pos)
        a = pick(take_a, ta, a)
        take_b = tb > b
        b_pos = pick(take_b, k + half + 1, b_pos)
        b = pick(take_b, tb, b)
    if (period & 1) == 0 and half > 0:
        ja += 1
        ja = pick(ja == period, 0, ja)
        ta = state[ring_index(ring + ja)]
        take_a = ta > a
        a_pos = pick(take_a, half, a_pos)
        a = pick(take_a, ta, a)
    take_b = b > a
    return pick(take_b, b_pos, a_pos), pick(take_b, b, a)


@njit(error_model="numpy", cache=True, inline="always")
def _window_extremes(extremes, state, ring_high, period, today, high, low):
    """Highest high and lowest low of the last ``period`` bars, the TA-Lib way.

    ``extremes`` = (lowest index, lowest, highest index, highest, ring slot of this bar); the
    rings of the last ``period`` highs and lows are at state[ring_high:] and
    state[ring_high + period:]. Returns (extremes, ready), not ready while fewer than ``period``
    bars were seen. Ties move the cached index to the newest bar; an expired extreme triggers a
    forward rescan of the window where the earliest extreme wins (TA-Lib's per-bar form; its
    batch block scan finds the same extremes on NaN-free data). The rescan walks the ring's two
    contiguous runs (oldest slot to the end, then the start) and turns the winning slot back
    into a bar index."""
    lowest_idx, lowest, highest_idx, highest, slot = extremes
    ring_low = ring_high + period
    state[ring_index(ring_high + slot)] = high
    state[ring_index(ring_low + slot)] = low
    next_slot = slot + 1
    if next_slot == period:
        next_slot = 0
    if today < period - 1:
        return (lowest_idx, lowest, highest_idx, highest, next_slot), False
    trailing = today - period + 1  # its ring slot is next_slot: the oldest in the window
    if lowest_idx < trailing:
        position, lowest = _ring_lowest(state, ring_low, period, next_slot)
        lowest_idx = trailing + position
    else:  # a select, not a branch: whether a bar makes a new low is unpredictable
        take = low <= lowest
        lowest_idx = pick(take, today, lowest_idx)
        lowest = pick(take, low, lowest)
    if highest_idx < trailing:
        position, highest = _ring_highest(state, ring_high, period, next_slot)
        highest_idx = trailing + position
    else:
        take = high >= highest
        highest_idx = pick(take, today, highest_idx)
        highest = pick(take, high, highest)
    return (lowest_idx, lowest, highest_idx, highest, next_slot), True


@njit(error_model="numpy", cache=True, inline="always")
def _window_extremes_init(state, base):
    state[base] = -1.0
    state[base + 1] = 0.0
    state[base + 2] = -1.0
    state[base + 3] = 0.0
    state[base + 4] = 0.0


# ----------------------------------------------------------------------------- ATR / NATR
# state: count (saturating at period+1), previous close, running TR sum then the ATR
def atr_state_size(params: tuple) -> int:
    return 3


@njit(error_model="numpy", cache=True, inline="always")
def atr_init(state, params):
    state[:] = 0.0


@njit(error_model="numpy", cache=True, inline="always")
def atr_load(state, params):
    return int(state[0]), state[1], state[2]


@njit(error_model="numpy", cache=True, inline="always")
def atr_store(state, params, scalars):
    count, prev_close, atr = scalars
    state[0] = count
    state[1] = prev_close
    state[2] = atr


@njit(error_model="numpy", cache=True, inline="always")
def _atr_update(scalars, period, high, low, close):
    """Advance the ATR scalars by one bar; returns (scalars, ready, atr)."""
    count, prev_close, total = scalars
    if count > period:  # the Wilder step (checked first: the seed's division stays off its path)
        tr = _true_range(high, low, prev_close)
        w_beta = (period - 1) / period
        w_alpha = 1.0 - w_beta
        atr = fma(w_beta, total, w_alpha * tr)  # TA-Lib 0.8 fuses this step
        return (count, close, atr), True, atr
    if count == 0:
        return (1, close, total), False, _NAN
    tr = _true_range(high, low, prev_close)
    if count < period:  # seed: accumulate from 0.0 in input order
        return (count + 1, close, total + tr), False, _NAN
    atr = (total + tr) / period
    return (period + 1, close, atr), True, atr


@njit(error_model="numpy", cache=True, inline="always")
def atr_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib ATR: SMA-seeded Wilder average of the true range; lookback = period."""
    scalars, ready, atr = _atr_update(scalars, int(params[0]), high, low, close)
    out[0] = atr if ready else _NAN
    return scalars


@njit(error_model="numpy", cache=True, inline="always")
def natr_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib NATR: ATR / close * 100 (0 on a zero close; raw true range at period 1)."""
    period = int(params[0])
    scalars, ready, atr = _atr_update(scalars, period, high, low, close)
    if not ready:
        out[0] = _NAN
    elif period <= 1:
        out[0] = atr
    elif close != 0.0:
        out[0] = (atr / close) * 100.0
    else:
        out[0] = 0.0
    return scalars


# ----------------------------------------------------------------------------- STOCH
# params: fastk_period, slowk_period, slowd_period (SMA smoothing, TA-Lib matype 0)
# state: bar count | window extremes (5 + 2*fastk) | slow-K SMA (3 + slowk) | slow-D SMA
def stoch_state_size(params: tuple) -> int:
    fastk, slowk, slowd = (int(p) for p in params)
    return 1 + (5 + 2 * fastk) + (3 + slowk) + (3 + slowd)


@njit(error_model="numpy", cache=True, inline="always")
def stoch_init(state, params):
    state[:] = 0.0
    _window_extremes_init(state, 1)


@njit(error_model="numpy", cache=True, inline="always")
def stoch_load(state, params):
    base_k = 1 + 5 + 2 * int(params[0])
    return (int(state[0]), _extremes_slots(state, 1), sma_slots(state, base_k),
            sma_slots(state, base_k + 3 + int(params[1])))


@njit(error_model="numpy", cache=True, inline="always")
def stoch_store(state, params, scalars):
    today, extremes, sma_k, sma_d = scalars
    base_k = 1 + 5 + 2 * int(params[0])
    state[0] = today
    _extremes_put(state, 1, extremes)
    sma_put(state, base_k, sma_k)
    sma_put(state, base_k + 3 + int(params[1]), sma_d)


@njit(error_model="numpy", cache=True, inline="always")
def stoch_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib STOCH with SMA slow-K / slow-D: fast K = (c-ll)/(hh-ll)*100 over fastk bars."""
    fastk = int(params[0])
    slowk = int(params[1])
    slowd = int(params[2])
    today, extremes, sma_k, sma_d = scalars
    out[0] = _NAN
    out[1] = _NAN
    extremes, ready = _window_extremes(extremes, state, 1 + 5, fastk, today, high, low)
    if ready:
        lowest = extremes[1]
        highest = extremes[3]
        if not _is_zero_scaled(highest - lowest, abs(highest) + abs(lowest)):
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


# ----------------------------------------------------------------------------- WILLR
# state: bar count | window extremes (5 + 2*period)
def willr_state_size(params: tuple) -> int:
    return 1 + 5 + 2 * int(params[0])


@njit(error_model="numpy", cache=True, inline="always")
def willr_init(state, params):
    state[:] = 0.0
    _window_extremes_init(state, 1)


@njit(error_model="numpy", cache=True, inline="always")
def willr_load(state, params):
    return int(state[0]), _extremes_slots(state, 1)


@njit(error_model="numpy", cache=True, inline="always")
def willr_store(state, params, scalars):
    state[0] = scalars[0]
    _extremes_put(state, 1, scalars[1])


@njit(error_model="numpy", cache=True, inline="always")
def willr_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib WILLR: (hh-c)/(hh-ll) * -100, clamped into [-100, 0]; 0 on a flat window."""
    period = int(params[0])
    today, extremes = scalars
    extremes, ready = _window_extremes(extremes, state, 1 + 5, period, today, high, low)
    if not ready:
        out[0] = _NAN
        return today + 1, extremes
    lowest = extremes[1]
    highest = extremes[3]
    if not _is_zero_scaled(highest - lowest, abs(highest) + abs(lowest)):
        value = ((highest - close) / (highest - lowest)) * (-100.0)
        if value > 0.0:
            value = 0.0
        elif value < -100.0:
            value = -100.0
        out[0] = value
    else:
        out[0] = 0.0
    return today + 1, extremes


# ----------------------------------------------------------------------------- CCI
# state: bar count (saturating), ring slot, ring of the last `period` typical prices
def cci_state_size(params: tuple) -> int:
    return 2 + int(params[0])


@njit(error_model="numpy", cache=True, inline="always")
def cci_init(state, params):
    state[:] = 0.0


@njit(error_model="numpy", cache=True, inline="always")
def cci_load(state, params):
    return int(state[0]), int(state[1])


@njit(error_model="numpy", cache=True, inline="always")
def cci_store(state, params, scalars):
    state[0] = scalars[0]
    state[1] = scalars[1]


@njit(error_model="numpy", cache=True, inline="always")
def cci_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib CCI: (tp - mean) / (0.015 * mean deviation), sums in circular-buffer slot order."""
    period = int(params[0])
    count, slot = scalars
    last = (high + low + close) / 3
    state[2 + slot] = last
    slot = 0 if slot + 1 == period else slot + 1
    if count + 1 < period:
        out[0] = _NAN
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
    if not _is_zero_scaled(deviation, scale) and not _is_zero_scaled(mean_dev, scale):
        out[0] = deviation / (0.015 * mean_dev)
    else:
        out[0] = 0.0
    return period, slot


# ----------------------------------------------------------------------------- ADX / +DI / -DI
# state: count (saturating at 2*period), prev high, prev low, prev close, +DM, -DM, TR,
#        sum of the first DX values, ADX
def adx_state_size(params: tuple) -> int:
    return 9


@njit(error_model="numpy", cache=True, inline="always")
def adx_init(state, params):
    state[:] = 0.0


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
    out[0] = _NAN
    out[1] = _NAN
    out[2] = _NAN
    if count == 0:
        return 1, high, low, close, plus_dm, minus_dm, tr_sum, dx_sum, adx
    diff_p = high - prev_high
    diff_m = prev_low - low
    tr = _true_range(high, low, prev_close)
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
        if not _is_zero(di_sum):
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


# ----------------------------------------------------------------------------- OBV
# state: started flag, previous close, OBV
def obv_state_size(params: tuple) -> int:
    return 3


@njit(error_model="numpy", cache=True, inline="always")
def obv_init(state, params):
    state[:] = 0.0


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


# ----------------------------------------------------------------------------- MFI
# state: count (saturating at period+1), previous typical price, +sum, -sum, ring slot,
#        flow-less run, ring of positive flows, ring of negative flows
def mfi_state_size(params: tuple) -> int:
    return 6 + 2 * int(params[0])


@njit(error_model="numpy", cache=True, inline="always")
def mfi_init(state, params):
    state[:] = 0.0


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
        out[0] = _NAN
        return 1, typical, pos_sum, neg_sum, slot, null_run
    ring_pos = 6
    ring_neg = 6 + period
    if count > period:  # the window is full: drop the oldest flow first
        pos_sum -= state[ring_pos + slot]
        neg_sum -= state[ring_neg + slot]
    move = typical - prev
    scale = abs(typical) + abs(prev)
    flow = typical * volume
    money_flow = 0.0 if _is_zero_scaled(move, scale) else flow
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
        out[0] = _NAN
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


# ----------------------------------------------------------------------------- VWAP
# window == 0 (session): state = sum(tp*v), sum(v)
# window  > 0 (rolling): count, ring slot, non-zero volumes in the window, sum(tp*v) and its
#   compensation, sum(v) and its compensation, ring of tp*v, ring of v
def vwap_state_size(params: tuple) -> int:
    window = int(params[0])
    return 2 if window == 0 else 7 + 2 * window


@njit(error_model="numpy", cache=True, inline="always")
def vwap_init(state, params):
    state[:] = 0.0


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
        out[0] = pv_sum / v_sum if v_sum != 0.0 else _NAN
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
        out[0] = _NAN
    elif nonzero == 0 or total_v == 0.0:
        out[0] = _NAN
    else:
        out[0] = (pv_sum + pv_comp) / total_v
    return count, slot, nonzero, pv_sum, pv_comp, v_sum, v_comp


# ----------------------------------------------------------------------------- registry
def _period(default: int, low: int = 2) -> Param:
    return Param("period", default, True, low, 10_000)


def _stoch_lookback(params: tuple) -> int:
    fastk, slowk, slowd = (int(p) for p in params)
    return (fastk - 1) + (slowk - 1) + (slowd - 1)


RANGE_KINDS: list[IndicatorKind] = [
    IndicatorKind(
        name="atr", description="Average True Range (Wilder), TA-Lib ATR",
        params=(_period(14, low=1),), outputs=(), inputs=("high", "low", "close"),
        state_size=atr_state_size, init=atr_init, load=atr_load, store=atr_store, step=atr_step,
        lookback=lambda p: int(p[0]), lookback_formula="period"),
    IndicatorKind(
        name="natr", description="Normalized ATR (ATR / close * 100), TA-Lib NATR",
        params=(_period(14, low=1),), outputs=(), inputs=("high", "low", "close"),
        state_size=atr_state_size, init=atr_init, load=atr_load, store=atr_store, step=natr_step,
        lookback=lambda p: int(p[0]), lookback_formula="period"),
    IndicatorKind(
        name="stoch", description="Slow stochastic %K/%D with SMA smoothing, TA-Lib STOCH",
        params=(Param("fastk_period", 14, True, 1, 10_000),
                Param("slowk_period", 3, True, 1, 10_000),
                Param("slowd_period", 3, True, 1, 10_000)),
        outputs=("stoch_k", "stoch_d"), inputs=("high", "low", "close"),
        state_size=stoch_state_size, init=stoch_init, load=stoch_load, store=stoch_store, step=stoch_step,
        lookback=_stoch_lookback,
        lookback_formula="(fastk_period - 1) + (slowk_period - 1) + (slowd_period - 1)"),
    IndicatorKind(
        name="willr", description="Williams %R, TA-Lib WILLR",
        params=(_period(14),), outputs=(), inputs=("high", "low", "close"),
        state_size=willr_state_size, init=willr_init, load=willr_load, store=willr_store, step=willr_step,
        lookback=lambda p: int(p[0]) - 1, lookback_formula="period - 1"),
    IndicatorKind(
        name="cci", description="Commodity Channel Index of the typical price, TA-Lib CCI",
        params=(_period(20),), outputs=(), inputs=("high", "low", "close"),
        state_size=cci_state_size, init=cci_init, load=cci_load, store=cci_store, step=cci_step,
        lookback=lambda p: int(p[0]) - 1, lookback_formula="period - 1"),
    IndicatorKind(
        name="adx",
        description="Average Directional Index with +DI/-DI, TA-Lib ADX, PLUS_DI, MINUS_DI",
        params=(_period(14),), outputs=("adx", "plus_di", "minus_di"),
        inputs=("high", "low", "close"),
        state_size=adx_state_size, init=adx_init, load=adx_load, store=adx_store, step=adx_step,
        lookback=lambda p: 2 * int(p[0]) - 1,
        lookback_formula="2 * period - 1 (adx); period (plus_di, minus_di)"),
    IndicatorKind(
        name="obv", description="On-Balance Volume, TA-Lib OBV",
        params=(), outputs=(), inputs=("close", "volume"),
        state_size=obv_state_size, init=obv_init, load=obv_load, store=obv_store, step=obv_step,
        lookback=lambda p: 0, lookback_formula="0"),
    IndicatorKind(
        name="mfi", description="Money Flow Index, TA-Lib MFI",
        params=(_period(14),), outputs=(), inputs=("high", "low", "close", "volume"),
        state_size=mfi_state_size, init=mfi_init, load=mfi_load, store=mfi_store, step=mfi_step,
        lookback=lambda p: int(p[0]), lookback_formula="period"),
    IndicatorKind(
        name="vwap",
        description="VWAP of the typical price: per session (window 0) or rolling over window bars",
        params=(Param("window", 0, True, 0, 10_000),), outputs=(),
        inputs=("high", "low", "close", "volume"),
        state_size=vwap_state_size, init=vwap_init, load=vwap_load, store=vwap_store, step=vwap_step,
        lookback=lambda p: max(int(p[0]) - 1, 0),
        lookback_formula="0 (session, window 0); window - 1 (rolling)"),
]

RANGE_KINDS_BY_NAME: dict[str, IndicatorKind] = {kind.name: kind for kind in RANGE_KINDS}


def output_lookbacks(kind: IndicatorKind, params: tuple) -> tuple[int, ...]:
    """Leading NaN bars of each output (adx's DI legs start before the ADX itself)."""
    if kind.name == "adx":
        period = int(params[0])
        return (2 * period - 1, period, period)
    return (kind.lookback(params),) * kind.n_outputs


def first_valid_rows(kind: IndicatorKind, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Per column, the first row where every input of ``kind`` is non-NaN (TA-Lib's begIdx);
    ``rows`` for a column that never has one."""
    valid = None
    for name in kind.inputs:
        ok = ~np.isnan(np.asarray(inputs[name], dtype=np.float64))
        valid = ok if valid is None else valid & ok
    assert valid is not None
    if valid.ndim == 1:
        valid = valid[:, None]
    rows = valid.shape[0]
    any_valid = valid.any(axis=0)
    return np.where(any_valid, valid.argmax(axis=0), rows).astype(np.int64)


def compute_panel(kind: IndicatorKind, params: tuple, open_=None, high=None, low=None,
                  close=None, volume=None, new_session=None) -> np.ndarray:
    """Run ``kind`` over (time x symbols) arrays (1-D is one column) with ``run_panel``.

    Returns (time, symbols, n_outputs). Inputs the kind does not read may be left out."""
    given = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    for name in kind.inputs:
        if given[name] is None:
            raise ValueError(f"{kind.name} needs the {name!r} input")
    reference = next(np.asarray(given[name]) for name in kind.inputs)
    shape = reference.shape if reference.ndim == 2 else (reference.shape[0], 1)
    arrays = {}
    for name in INPUT_NAMES:
        value = given[name]
        if value is None:
            arrays[name] = np.zeros(shape)
        else:
            arrays[name] = np.ascontiguousarray(np.asarray(value, dtype=np.float64).reshape(shape))
    if new_session is None:
        sessions = np.zeros(shape[0], dtype=np.bool_)
    else:
        sessions = np.ascontiguousarray(np.asarray(new_session, dtype=np.bool_))
    first_rows = first_valid_rows(kind, {name: arrays[name] for name in kind.inputs})
    param_array = np.asarray(params, dtype=np.float64)
    return run_panel(kind, kind.state_size(tuple(params)), param_array,
                     arrays["open"], arrays["high"], arrays["low"], arrays["close"],
                     arrays["volume"], sessions, first_rows, kind.n_outputs)
