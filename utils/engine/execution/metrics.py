"""Execution quality of a simulated parent order, with Qlib's order-execution metrics.

For an order of side s (+1 buy, -1 sell) and quantity X over a window of bar reference prices p_b:
  average_price   sum(filled * fill_price) / sum(filled)                        (NaN if nothing filled)
  arrival_price   p_0, the first bar's reference price
  twap_price      mean(p_b) over the whole window (Qlib's TWAP baseline)
  implementation_shortfall_bps  s * (average_price / arrival_price - 1) * 1e4, positive = cost,
                  on the filled shares only (NaN if nothing filled)
  price_advantage_bps (Qlib's PA)  s * (1 - average_price / twap_price) * 1e4, positive = better
                  than TWAP for both sides (qlib.rl.order_execution.utils._price_advantage:
                  buy (1 - exec / twap) * 1e4, sell (exec / twap - 1) * 1e4); 0 when nothing
                  filled, as Qlib's nan_to_num gives
  ffr             sum(filled) / X (fulfil rate)
  pos             1.0 if PA > 0 else 0.0 - the per-order indicator; Qlib's POS (positive rate) is
                  its mean over orders
The batch form computes the same numbers per (algorithm, order) with the same compiled function.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .simulator import OrderResult
from .simulator_batch import task_window

METRIC_NAMES = ("average_price", "arrival_price", "twap_price", "implementation_shortfall_bps",
                "price_advantage_bps", "ffr", "pos")
BPS = 1e4


@njit(cache=True)
def window_metrics(side, quantity, filled, fill_prices, prices, out):
    """Write the METRIC_NAMES values of one order into ``out`` (7,)."""
    executed = 0.0
    value = 0.0
    for bar in range(filled.shape[0]):
        executed += filled[bar]
        value += filled[bar] * fill_prices[bar]
    price_sum = 0.0
    for bar in range(prices.shape[0]):
        price_sum += prices[bar]
    twap = price_sum / prices.shape[0]
    arrival = prices[0]
    if executed > 0.0:
        average = value / executed
        shortfall = side * (average / arrival - 1.0) * BPS
        advantage = side * (1.0 - average / twap) * BPS
    else:
        average = math.nan
        shortfall = math.nan
        advantage = 0.0
    out[0] = average
    out[1] = arrival
    out[2] = twap
    out[3] = shortfall
    out[4] = advantage
    out[5] = executed / quantity
    out[6] = 1.0 if advantage > 0.0 else 0.0


def order_metrics(side: int, quantity: float, result: OrderResult, prices) -> dict[str, float]:
    """The METRIC_NAMES of one simulated order (``prices``: its window's reference prices)."""
    prices = np.ascontiguousarray(prices, dtype=np.float64)
    if prices.shape != result.filled.shape or prices.size == 0:
        raise ValueError(f"prices must be the order's window {result.filled.shape}, got {prices.shape}")
    out = np.empty(len(METRIC_NAMES))
    window_metrics(float(side), float(quantity), result.filled, result.fill_prices, prices, out)
    return dict(zip(METRIC_NAMES, out.tolist()))


@njit(cache=True, parallel=True)
def _all_metrics(sides, quantities, bar_offsets, filled, fill_prices, prices, out):
    orders = quantities.shape[0]
    for task in prange(filled.shape[0] * orders):
        algorithm, order, start, stop = task_window(task, orders, bar_offsets)
        window_metrics(sides[order], quantities[order], filled[algorithm, start:stop],
                       fill_prices[algorithm, start:stop], prices[start:stop],
                       out[algorithm, order])


def batch_order_metrics(sides, quantities, bar_offsets, result, prices) -> dict[str, np.ndarray]:
    """The METRIC_NAMES per (algorithm, order), each (A, M), of a ``simulate_orders`` result."""
    sides = np.ascontiguousarray(sides, dtype=np.float64)
    quantities = np.ascontiguousarray(quantities, dtype=np.float64)
    bar_offsets = np.ascontiguousarray(bar_offsets, dtype=np.int64)
    prices = np.ascontiguousarray(prices, dtype=np.float64)
    if (np.diff(bar_offsets) < 1).any():
        raise ValueError("every order needs at least one bar")
    out = np.empty((result.filled.shape[0], quantities.shape[0], len(METRIC_NAMES)))
    _all_metrics(sides, quantities, bar_offsets, result.filled, result.fill_prices, prices, out)
    return {name: out[:, :, column] for column, name in enumerate(METRIC_NAMES)}
