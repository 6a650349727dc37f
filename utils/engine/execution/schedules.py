"""Child-order schedules (TWAP, VWAP, POV), lot rounding, and the holdings path of a schedule.

Every function takes positive share quantities and returns float64 arrays; validation of user
input happens in ``plan.plan_execution`` and the messages there name the argument.

Lot rounding (``round_to_lots``): the cumulative executed quantity after slice j is rounded DOWN
to whole lots (``floor(cumulative / lot)``, with a 1e-9-lot tolerance against representation
error), so each slice is a whole number of lots, the executed path never runs ahead of the target
path, and it lags it by less than one lot; the last slice takes what is left (the < 1 lot lag plus
any odd lot of the parent quantity). Equivalently: each slice is rounded down after carrying the
previous slices' remainders forward. The last slice is built as X - (sum of the others) so that
the sequential sum of the slices equals X exactly.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

LOT_TOLERANCE = 1e-9  # in lots: 2.9999999999 lots of target path count as 3


def twap_quantities(quantity: float, slices: int) -> np.ndarray:
    """Equal slices X / N."""
    return np.full(slices, quantity / slices)


def vwap_quantities(quantity: float, volume_profile: np.ndarray) -> np.ndarray:
    """Slices proportional to the (positive-sum, non-negative) volume profile."""
    return quantity * (volume_profile / volume_profile.sum())


def pov_quantities(quantity: float, participation: float, expected_volumes: np.ndarray) -> np.ndarray:
    """participation x expected volume per slice until X is done; the last slice takes the rest.

    The caller has checked that participation x sum(expected_volumes) >= X, so the last slice
    never exceeds its own participation allowance by more than rounding.
    """
    allowance = participation * expected_volumes
    cumulative = np.minimum(np.cumsum(allowance), quantity)
    quantities = np.diff(cumulative, prepend=0.0)
    quantities[-1] = quantity - cumulative[-2] if quantities.size > 1 else quantity
    return quantities


@njit(cache=True)
def _sum_of_first(quantities, count):
    total = 0.0
    for j in range(count):
        total += quantities[j]
    return total


@njit(cache=True)
def close_last_slice(quantities, quantity):
    """Set the last slice to X - (sequential sum of the others), nudged by ulps until the
    sequential sum of all slices is exactly X. When the others already exceed X by rounding, the
    last slice is 0 and the largest other slice gives up the ulps instead (no slice goes below 0)."""
    last_index = quantities.shape[0] - 1
    others = _sum_of_first(quantities, last_index)
    if others > quantity:
        largest = 0
        for j in range(last_index):
            if quantities[j] > quantities[largest]:
                largest = j
        while others > quantity:
            quantities[largest] = np.nextafter(quantities[largest], -np.inf)
            others = _sum_of_first(quantities, last_index)
    last = quantity - others
    while others + last < quantity:
        last = np.nextafter(last, np.inf)
    while others + last > quantity and last > 0.0:
        last = np.nextafter(last, -np.inf)
    quantities[last_index] = last


@njit(cache=True)
def round_to_lots(quantities, quantity, lot_size):
    """Whole-lot slices following the cumulative path of ``quantities`` (see the module doc)."""
    slices = quantities.shape[0]
    rounded = np.empty(slices)
    target = 0.0
    previous_lots = 0.0
    for j in range(slices - 1):
        target += quantities[j]
        lots = math.floor(target / lot_size + LOT_TOLERANCE)
        if lots * lot_size > quantity:
            lots = math.floor(quantity / lot_size)
        if lots < previous_lots:
            lots = previous_lots
        rounded[j] = (lots - previous_lots) * lot_size
        previous_lots = lots
    rounded[slices - 1] = 0.0
    close_last_slice(rounded, quantity)
    return rounded


@njit(cache=True)
def holdings_path(quantity, quantities, tau):
    """Holdings x_j = X - (n_1 + ... + n_j) (N+1,), times j * tau (N+1,), sum n_j^2, sum_{j>=1} x_j^2."""
    slices = quantities.shape[0]
    holdings = np.empty(slices + 1)
    times = np.empty(slices + 1)
    holdings[0] = quantity
    times[0] = 0.0
    executed = 0.0
    sum_trades_squared = 0.0
    sum_holdings_squared = 0.0
    for j in range(1, slices + 1):
        trade = quantities[j - 1]
        executed += trade
        holdings[j] = quantity - executed
        times[j] = j * tau
        sum_trades_squared += trade * trade
        sum_holdings_squared += holdings[j] * holdings[j]
    return holdings, times, sum_trades_squared, sum_holdings_squared


@njit(cache=True)
def finish_schedule(quantities, quantity, lot_size, tau):
    """Round to lots (lot_size > 0) or close the last slice in place, then ``holdings_path``:
    (slices, holdings, times, sum n^2, sum x^2) in one compiled call."""
    if lot_size > 0.0:
        quantities = round_to_lots(quantities, quantity, lot_size)
    else:
        close_last_slice(quantities, quantity)
    holdings, times, sum_trades_squared, sum_holdings_squared = holdings_path(quantity, quantities, tau)
    return quantities, holdings, times, sum_trades_squared, sum_holdings_squared
