"""Forward returns as alphalens ``compute_forward_returns``: prices forward-filled along time, the
return over ``period`` rows ``P[t + period] / P[t] - 1`` (NaN in the last ``period`` rows and
before a symbol's first price), and the optional z-score filter per symbol (ddof 1) that alphalens
applies over every date (it looks ahead; alphalens says so too)."""
from __future__ import annotations

import numpy as np


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


def zscore_outliers(returns: np.ndarray, filter_zscore: float | None) -> np.ndarray:
    """Cells more than ``filter_zscore`` standard deviations (ddof 1, per symbol over all dates)
    from the symbol's mean forward return; none when the filter is off (None or 0)."""
    if not filter_zscore:
        return np.zeros(returns.shape, dtype=bool)
    present = ~np.isnan(returns)
    counts = present.sum(axis=-2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(present, returns, 0.0).sum(axis=-2, keepdims=True) / counts
        squares = np.where(present, (returns - means) ** 2, 0.0).sum(axis=-2, keepdims=True)
        stds = np.where(counts > 1, np.sqrt(squares / (counts - 1)), np.nan)
        return np.abs(returns - means) > filter_zscore * stds
