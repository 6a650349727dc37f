"""Walk-forward factor combination with no look-ahead: a composite of K factors on (T, N) panels.

Every factor is z-scored across symbols per date first (``cs_zscore``, ddof 1). The forward return
of date s over ``period`` rows, ``P[s + period] / P[s] - 1`` (alphalens' forward-filled prices), is
known on date s + period. The composite on date t uses weights estimated only from the dates s with
s + period <= t, the last ``window`` of them (s in t - period - window + 1 .. t - period): nothing
after t's own prices enters it. Until the first full window the composite is NaN.

- ``ic_weighted``: the weight of a factor is the mean of its per-date Spearman IC over the window,
  the weights scaled to sum(|w|) = 1.
- ``regression``: per date, the cross-sectional OLS of the forward returns on the K z-scores (with
  an intercept, over the symbols where all are known, at least K + 2 of them); the weights are the
  coefficients averaged over the window (the intercept is dropped).

The composite of a cell is sum_k w_k z_k, NaN where a factor with a non-zero weight is NaN; a factor
with no estimate in the window (all its ICs or coefficients NaN) gets weight 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .correlation import spearman_rows
from .expression_ops import cs_zscore
from .forward_returns import forward_returns

METHODS = ("ic_weighted", "regression")


@dataclass(frozen=True)
class Combination:
    composite: np.ndarray  # (T, N)
    weights: np.ndarray  # (T, K): the weights used on each date (NaN before the first window)
    per_date: np.ndarray  # (T, K): each date's IC or OLS coefficients (the estimates averaged)


def zscores(factors: np.ndarray) -> np.ndarray:
    """(K, T, N) cross-sectional z-scores of each factor."""
    return np.stack([cs_zscore(np.asarray(factor, dtype=np.float64)) for factor in factors])


def ols_coefficients(z: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """(T, K) per-date OLS slopes of ``returns`` on the K z-scores, with an intercept, over the
    symbols where all are known; NaN where fewer than K + 2 symbols are."""
    n_factors, n_dates, _ = z.shape
    out = np.full((n_dates, n_factors), np.nan)
    for t in range(n_dates):
        x = z[:, t, :].T  # (N, K)
        y = returns[t]
        rows = ~np.isnan(y) & ~np.isnan(x).any(axis=1)
        if rows.sum() < n_factors + 2:
            continue
        design = np.column_stack([np.ones(int(rows.sum())), x[rows]])
        coefficients, *_ = np.linalg.lstsq(design, y[rows], rcond=None)
        out[t] = coefficients[1:]
    return out


def trailing_mean(per_date: np.ndarray, period: int, window: int) -> np.ndarray:
    """(T, K): on row t, the NaN-skipping mean of per_date rows t - period - window + 1 ..
    t - period (NaN before the first full window or when all of them are NaN)."""
    n_dates, n_factors = per_date.shape
    out = np.full((n_dates, n_factors), np.nan)
    valid = ~np.isnan(per_date)
    sums = np.vstack([np.zeros(n_factors), np.cumsum(np.where(valid, per_date, 0.0), axis=0)])
    counts = np.vstack([np.zeros(n_factors), np.cumsum(valid, axis=0)])
    for t in range(period + window - 1, n_dates):
        last = t - period + 1  # exclusive end: rows up to t - period
        count = counts[last] - counts[last - window]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[t] = np.where(count > 0, (sums[last] - sums[last - window]) / count, np.nan)
    return out


def combine_factors(factors: np.ndarray, prices: np.ndarray, period: int, window: int,
                    method: str = "ic_weighted") -> Combination:
    """The walk-forward composite of ``factors`` (K, T, N) against ``prices`` (T, N); see the
    module docstring."""
    factors = np.asarray(factors, dtype=np.float64)
    prices = np.asarray(prices, dtype=np.float64)
    if factors.ndim != 3 or factors.shape[1:] != prices.shape:
        raise ValueError(f"factors must be (K, T, N) and prices (T, N), got {factors.shape} and {prices.shape}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if period < 1 or window < 1:
        raise ValueError("period and window must be >= 1")
    z = zscores(factors)
    returns = forward_returns(prices, (period,))[0]
    if method == "ic_weighted":
        per_date = np.stack([spearman_rows(np.ascontiguousarray(z[k]), returns) for k in range(len(z))], axis=1)
    else:
        per_date = ols_coefficients(z, returns)
    weights = trailing_mean(per_date, period, window)
    defined = ~np.isnan(weights).all(axis=1)  # dates with an estimate of at least one weight
    weights = np.where(defined[:, None], np.nan_to_num(weights, nan=0.0), np.nan)  # no estimate: weight 0
    if method == "ic_weighted":
        scale = np.abs(weights).sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = np.where(scale > 0, weights / scale, np.nan)
    w = np.nan_to_num(weights, nan=0.0)[:, :, None]
    with np.errstate(invalid="ignore"):
        terms = np.where(w == 0, 0.0, w * z.transpose(1, 0, 2))  # (T, K, N); a weight-0 factor is not needed
    composite = terms.sum(axis=1)
    composite[np.isnan(weights).all(axis=1)] = np.nan
    return Combination(composite, weights, per_date)
