"""Simple and log returns from a (T, N) price panel, as PyPortfolioOpt's ``returns_from_prices``.

pypfopt 1.6.0 takes ``pct_change(fill_method=None)`` (a NaN price makes that day's and the next
day's return NaN; no forward fill) and drops the dates where every asset's return is NaN.
"""
from __future__ import annotations

import numpy as np


def as_price_panel(prices, name: str = "prices") -> np.ndarray:
    """A (T, N) float64 view of ``prices``; a 1-D series becomes one column."""
    panel = np.asarray(prices, dtype=np.float64)
    if panel.ndim == 1:
        panel = panel[:, None]
    if panel.ndim != 2:
        raise ValueError(f"{name} must be a (dates, assets) array, got shape {panel.shape}")
    if panel.shape[0] < 2:
        raise ValueError(f"{name} needs at least two dates to make a return, got {panel.shape[0]}")
    return panel


def price_changes(prices: np.ndarray, log_returns: bool = False) -> np.ndarray:
    """(T, N) period returns with the first date NaN, before any date is dropped."""
    changes = np.full(prices.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        changes[1:] = prices[1:] / prices[:-1] - 1.0
        if log_returns:
            changes[1:] = np.log(1.0 + changes[1:])  # pypfopt: log(1 + pct_change), not log(p1/p0)
    return changes


def dates_with_a_return(changes: np.ndarray) -> np.ndarray:
    """Boolean mask of the dates where at least one asset has a return (``dropna(how="all")``)."""
    return ~np.all(np.isnan(changes), axis=1)


def returns_from_prices(prices, log_returns: bool = False) -> np.ndarray:
    """(T', N) returns: ``pct_change(fill_method=None).dropna(how="all")`` as pypfopt 1.6.0."""
    changes = price_changes(as_price_panel(prices), log_returns)
    return changes[dates_with_a_return(changes)]
