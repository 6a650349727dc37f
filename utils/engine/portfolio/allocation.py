"""Whole-share allocations of a weight vector, as pypfopt ``DiscreteAllocation`` (1.6.0).

Both return (shares per asset in input order, negative for shorts; leftover cash). Long/short
weights are split into a long book worth ``total_value`` (+ the short proceeds when
``reinvest``) and a short book worth ``total_value × short_ratio``, each allocated on its own.
The greedy pass is sequential by nature and keeps pypfopt's exact float operations and order.
"""
from __future__ import annotations

import numpy as np


def _validate(weights, latest_prices, total_value, short_ratio):
    weights = np.asarray(weights, dtype=np.float64).ravel()
    prices = np.asarray(latest_prices, dtype=np.float64).ravel()
    if weights.shape != prices.shape:
        raise ValueError(f"weights ({weights.shape[0]}) and latest_prices ({prices.shape[0]}) differ in length")
    if np.isnan(weights).any():
        raise ValueError("weights should have no NaNs")
    if np.isnan(prices).any() or np.any(prices <= 0):
        raise ValueError("latest_prices must be positive with no NaNs")
    if total_value <= 0:
        raise ValueError("total_value must be greater than zero")
    if short_ratio is not None and short_ratio < 0:
        raise ValueError("short_ratio must be non-negative")
    if short_ratio is None:
        short_ratio = sum(-float(w) for w in weights if w < 0)
    return weights, prices, short_ratio


def _split_books(weights: np.ndarray, order: np.ndarray):
    """(long assets, their normalised weights, short assets, normalised |weights|) in ``order``."""
    longs = [i for i in order if weights[i] >= 0]
    shorts = [i for i in order if weights[i] < 0]
    long_total = sum(float(weights[i]) for i in longs)
    short_total = sum(-float(weights[i]) for i in shorts)
    return (np.array(longs, dtype=np.int64), np.array([weights[i] / long_total for i in longs]),
            np.array(shorts, dtype=np.int64), np.array([-weights[i] / short_total for i in shorts]))


def _greedy_long_only(weights: np.ndarray, prices: np.ndarray, total_value: float):
    order = np.argsort(-weights, kind="stable")       # pypfopt: list.sort(reverse=True), stable
    ideal = weights[order]
    buy_prices = prices[order]
    available = total_value
    shares = []
    for weight, price in zip(ideal, buy_prices):
        n_shares = int(weight * total_value / price)
        available -= n_shares * price
        shares.append(n_shares)
    while available > 0:
        current = buy_prices * np.array(shares)
        current /= current.sum()
        deficit = ideal - current
        index = np.argmax(deficit)
        price = buy_prices[index]
        counter = 0
        while price > available:
            deficit[index] = 0                        # this asset can no longer be bought
            index = np.argmax(deficit)
            if deficit[index] < 0 or counter == 10:
                break
            price = buy_prices[index]
            counter += 1
        if deficit[index] <= 0 or counter == 10:
            break
        shares[index] += 1
        available -= price
    allocation = np.zeros(weights.shape[0], dtype=np.int64)
    allocation[order] = shares
    return allocation, available


def _lp_long_only(weights: np.ndarray, prices: np.ndarray, total_value: float):
    import cvxpy as cp  # the MILP goes through cvxpy + HiGHS, exactly as pypfopt poses it

    n_assets = prices.shape[0]
    shares = cp.Variable(n_assets, integer=True)
    leftover = total_value - prices.T @ shares
    error = weights * total_value - cp.multiply(shares, prices)
    bound = cp.Variable(n_assets)
    problem = cp.Problem(cp.Minimize(cp.sum(bound) + leftover),
                         [error <= bound, error >= -bound, shares >= 0, leftover >= 0])
    problem.solve(solver="HIGHS")
    if problem.status not in {"optimal", "optimal_inaccurate"}:
        raise RuntimeError(f"lp_allocation: the MILP ended with status {problem.status!r}; try greedy_allocation")
    return np.rint(shares.value).astype(np.int64), float(leftover.value)


def _allocate(allocate_book, weights, latest_prices, total_value, short_ratio, reinvest, sort_first):
    weights, prices, short_ratio = _validate(weights, latest_prices, total_value, short_ratio)
    if not np.any(weights < 0):
        return allocate_book(weights, prices, total_value)
    order = np.argsort(-weights, kind="stable") if sort_first else np.arange(weights.shape[0])
    longs, long_weights, shorts, short_weights = _split_books(weights, order)
    short_value = total_value * short_ratio
    long_value = total_value + short_value if reinvest else total_value
    if short_value <= 0:
        raise ValueError("short_ratio is 0: the short book has no value to allocate")
    long_shares, long_left = allocate_book(long_weights, prices[longs], long_value)
    short_shares, short_left = allocate_book(short_weights, prices[shorts], short_value)
    shares = np.zeros(weights.shape[0], dtype=np.int64)
    shares[longs] = long_shares
    shares[shorts] = -short_shares
    return shares, long_left + short_left


def greedy_allocation(weights, latest_prices, total_value: float = 10000, short_ratio: float | None = None,
                      reinvest: bool = False) -> tuple[np.ndarray, float]:
    """``DiscreteAllocation(...).greedy_portfolio(reinvest)``: round down, then buy one share at a
    time of the asset furthest below its weight."""
    return _allocate(_greedy_long_only, weights, latest_prices, total_value, short_ratio, reinvest, True)


def lp_allocation(weights, latest_prices, total_value: float = 10000, short_ratio: float | None = None,
                  reinvest: bool = False) -> tuple[np.ndarray, float]:
    """``DiscreteAllocation(...).lp_portfolio(reinvest)``: min Σ|w·V − x·p| + leftover over integer x."""
    return _allocate(_lp_long_only, weights, latest_prices, total_value, short_ratio, reinvest, False)
