"""Many parent orders x many algorithms through the simulator, in parallel (numba prange).

Inputs are flat so that a device kernel can take the same buffers: the M orders' bar windows are
concatenated into ``prices``/``volumes``/``sigmas`` (total bars,), order m owning bars
``bar_offsets[m]:bar_offsets[m + 1]``; ``schedules`` is (A, total bars), one row per algorithm,
laid out like the bars. Each (algorithm, order) pair runs ``simulator.simulate_window`` - the same
compiled function ``simulate_order`` runs - so every order's result equals ``simulate_order``'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .simulator import ImpactModel, check_bars, simulate_window


@dataclass(frozen=True)
class BatchResult:
    filled: np.ndarray           # (A, total bars) shares filled per bar
    fill_prices: np.ndarray      # (A, total bars) average fill price per bar
    unfilled: np.ndarray         # (A, M) shares left after each order's last bar
    permanent_shift: np.ndarray  # (A, M) permanent displacement after each order's last bar


@njit(cache=True, inline="always")
def task_window(task, orders, bar_offsets):
    """The (algorithm, order, first bar, end bar) of flat task number ``task`` (algorithm-major)."""
    algorithm = task // orders
    order = task % orders
    return algorithm, order, bar_offsets[order], bar_offsets[order + 1]


@njit(cache=True, parallel=True)
def _simulate_all(sides, quantities, bar_offsets, schedules, prices, volumes, sigmas, parameters,
                  filled, fill_prices, unfilled, permanent_shift):
    orders = quantities.shape[0]
    for task in prange(schedules.shape[0] * orders):
        algorithm, order, start, stop = task_window(task, orders, bar_offsets)
        left, shift = simulate_window(sides[order], quantities[order],
                                      schedules[algorithm, start:stop], prices[start:stop],
                                      volumes[start:stop], sigmas[start:stop], parameters,
                                      filled[algorithm, start:stop],
                                      fill_prices[algorithm, start:stop])
        unfilled[algorithm, order] = left
        permanent_shift[algorithm, order] = shift


def check_offsets(bar_offsets: np.ndarray, orders: int, total_bars: int) -> None:
    """Raise ValueError unless the offsets split ``total_bars`` into ``orders`` windows."""
    if bar_offsets.shape != (orders + 1,):
        raise ValueError(f"bar_offsets must have M + 1 = {orders + 1} entries, got {bar_offsets.shape}")
    if orders and (bar_offsets[0] != 0 or bar_offsets[-1] != total_bars
                   or (np.diff(bar_offsets) < 0).any()):
        raise ValueError(f"bar_offsets must rise from 0 to the number of bars ({total_bars})")


def simulate_orders(sides, quantities, bar_offsets, schedules, prices, volumes, sigmas,
                    model: ImpactModel) -> BatchResult:
    """Simulate every (algorithm, order) pair; ``schedules`` is (A, total bars) or (total bars,)."""
    sides = np.ascontiguousarray(sides, dtype=np.float64)
    quantities = np.ascontiguousarray(quantities, dtype=np.float64)
    bar_offsets = np.ascontiguousarray(bar_offsets, dtype=np.int64)
    prices, volumes, sigmas = (np.ascontiguousarray(values, dtype=np.float64)
                               for values in (prices, volumes, sigmas))
    schedules = np.atleast_2d(np.ascontiguousarray(schedules, dtype=np.float64))
    check_bars(prices, volumes, sigmas)
    orders = quantities.shape[0]
    check_offsets(bar_offsets, orders, prices.shape[0])
    if sides.shape != (orders,) or not np.isin(sides, (1.0, -1.0)).all():
        raise ValueError("sides must hold one +1 (buy) or -1 (sell) per order")
    if not (np.isfinite(quantities).all() and (quantities > 0.0).all()):
        raise ValueError("quantities must be finite and > 0")
    if schedules.ndim != 2 or schedules.shape[1] != prices.shape[0]:
        raise ValueError(f"schedules must be (algorithms, {prices.shape[0]}), got {schedules.shape}")
    if not (np.isfinite(schedules).all() and (schedules >= 0.0).all()):
        raise ValueError("schedules must be finite and >= 0")
    algorithms = schedules.shape[0]
    filled = np.empty_like(schedules)
    fill_prices = np.empty_like(schedules)
    unfilled = np.empty((algorithms, orders))
    permanent_shift = np.empty((algorithms, orders))
    _simulate_all(sides, quantities, bar_offsets, schedules, prices, volumes, sigmas,
                  model.parameters(), filled, fill_prices, unfilled, permanent_shift)
    return BatchResult(filled, fill_prices, unfilled, permanent_shift)
