"""The highest high and lowest low of a sliding window, the TA-Lib way (STOCH, WILLR).

The extremes are cached with their bar index and rescanned when they leave the window (TA-Lib's
streaming form; identical extremes to its batch block scan on NaN-free data). With NaNs *inside*
the series, STOCH and WILLR follow this per-bar form (the one TA-Lib's own streaming API runs),
while talib.STOCH/WILLR run a batch block scan whose NaN handling depends on block alignment.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from utils.engine.indicators.step_core import pick, ring_index

@njit(error_model="numpy", cache=True, inline="always")
def extremes_slots(state, at):
    """Window-extremes scalars at state[at:at+5]: lowest index, lowest, highest index, highest,
    ring slot of the next bar (the rings of highs and lows follow them)."""
    return int(state[at]), state[at + 1], int(state[at + 2]), state[at + 3], int(state[at + 4])


@njit(error_model="numpy", cache=True, inline="always")
def extremes_put(state, at, extremes):
    lowest_idx, lowest, highest_idx, highest, slot = extremes
    state[at] = lowest_idx
    state[at + 1] = lowest
    state[at + 2] = highest_idx
    state[at + 3] = highest
    state[at + 4] = slot


@njit(error_model="numpy", cache=True, inline="always")
def ring_extreme(state, ring, period, oldest, sign):
    """Window position (0 = oldest) and value of the lowest (``sign`` -1.0) or highest (``sign``
    1.0) value of the window at state[ring:ring+period] whose oldest value is in slot ``oldest``,
    as a forward scan from the oldest value with a strict comparison finds it (the earliest of
    equal extremes wins; a NaN oldest value stays). Run as two independent chains of conditional
    moves (no data-dependent branch to mispredict, half the latency): the older half starts from
    the oldest value, the newer half from the far infinity, and the newer half's extreme replaces
    the older half's only when strictly beyond it, which is exactly what continuing the forward
    scan over the newer half gives."""
    half = period >> 1
    a_pos = 0
    a = state[ring_index(ring + oldest)]
    b_pos = 0
    b = sign * -np.inf
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
        take_a = sign * ta > sign * a  # negation is exact: -x > -y is x < y, NaN and signed zeros included
        a_pos = pick(take_a, k + 1, a_pos)
        a = pick(take_a, ta, a)
        take_b = sign * tb > sign * b
        b_pos = pick(take_b, k + half + 1, b_pos)
        b = pick(take_b, tb, b)
    if (period & 1) == 0 and half > 0:  # even period: the older half has one more value
        ja += 1
        ja = pick(ja == period, 0, ja)
        ta = state[ring_index(ring + ja)]
        take_a = sign * ta > sign * a
        a_pos = pick(take_a, half, a_pos)
        a = pick(take_a, ta, a)
    take_b = sign * b > sign * a
    return pick(take_b, b_pos, a_pos), pick(take_b, b, a)


@njit(error_model="numpy", cache=True, inline="always")
def window_extremes(extremes, state, ring_high, period, today, high, low):
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
        position, lowest = ring_extreme(state, ring_low, period, next_slot, -1.0)
        lowest_idx = trailing + position
    else:  # a select, not a branch: whether a bar makes a new low is unpredictable
        take = low <= lowest
        lowest_idx = pick(take, today, lowest_idx)
        lowest = pick(take, low, lowest)
    if highest_idx < trailing:
        position, highest = ring_extreme(state, ring_high, period, next_slot, 1.0)
        highest_idx = trailing + position
    else:
        take = high >= highest
        highest_idx = pick(take, today, highest_idx)
        highest = pick(take, high, highest)
    return (lowest_idx, lowest, highest_idx, highest, next_slot), True


@njit(error_model="numpy", cache=True, inline="always")
def window_extremes_init(state, base):
    state[base] = -1.0
    state[base + 1] = 0.0
    state[base + 2] = -1.0
    state[base + 3] = 0.0
    state[base + 4] = 0.0
