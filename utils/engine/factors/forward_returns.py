"""Forward returns as alphalens ``compute_forward_returns``: prices forward-filled along time, the
return over ``period`` rows ``P[t + period] / P[t] - 1`` (NaN in the last ``period`` rows and
before a symbol's first price), and the optional z-score filter per symbol (ddof 1) that alphalens
applies over every date (it looks ahead; alphalens says so too)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange


def forward_fill(prices: np.ndarray) -> np.ndarray:
    """Each NaN replaced by the symbol's last earlier price (``DataFrame.ffill``)."""
    rows = np.where(np.isnan(prices), 0, np.arange(prices.shape[0])[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    return prices[rows, np.arange(prices.shape[1])[None, :]]


def forward_returns(prices: np.ndarray, periods: tuple[int, ...]) -> np.ndarray:
    """(len(periods), T, N) simple returns from each date ``period`` rows ahead."""
    filled = forward_fill(np.asarray(prices, dtype=np.float64))
    returns = np.full((len(periods),) + filled.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for index, period in enumerate(periods):
            if period < filled.shape[0]:
                returns[index, :-period] = filled[period:] / filled[:-period] - 1
    return returns


@njit(parallel=True, cache=True)
def _zscore_outliers(returns, filter_zscore):
    n_periods, n_dates, n_symbols = returns.shape
    outliers = np.zeros(returns.shape, np.bool_)
    for cell in prange(n_periods * n_symbols):
        period, symbol = cell // n_symbols, cell % n_symbols
        column = returns[period, :, symbol]
        count, total = 0, 0.0
        for value in column:
            if not np.isnan(value):
                count += 1
                total += value
        if count < 2:
            continue  # std is NaN: nothing compares greater
        mean = total / count
        squares = 0.0
        for value in column:
            if not np.isnan(value):
                squares += (value - mean) ** 2
        bound = filter_zscore * np.sqrt(squares / (count - 1))
        for t in range(n_dates):
            outliers[period, t, symbol] = abs(column[t] - mean) > bound
    return outliers


def zscore_outliers(returns: np.ndarray, filter_zscore: float | None) -> np.ndarray:
    """Cells more than ``filter_zscore`` standard deviations (ddof 1, per symbol over all dates)
    from the symbol's mean forward return; none when the filter is off (None or 0)."""
    if not filter_zscore:
        return np.zeros(returns.shape, dtype=bool)
    return _zscore_outliers(returns, float(filter_zscore))
