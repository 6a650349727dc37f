"""Factor-weighted and quantile returns as alphalens ``performance``: ``factor_weights`` (the
portfolio's per-date return, ``factor_returns``, is summed in ``per_date``), ``factor_alpha_beta`` (OLS of factor returns on the universe's mean return,
alpha annualised over 252 / period), ``mean_return_by_quantile`` (per date, then over dates) and
``compute_mean_returns_spread`` (top minus bottom, halved to 100 % gross as alphalens-reloaded
0.5 does). Every return is the period's return, not a per-day rate.
"""
from __future__ import annotations

import warnings

import numpy as np
from numba import njit, prange

from .panel import segment_mean_per_cell, segment_sums, series_mean_std


def _normalise(weights: np.ndarray, valid: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Divide by the segment's gross (sum of |w|); a segment with zero gross gets zero weights."""
    gross, _, codes = segment_sums(np.abs(weights), valid, groups)
    gross_per_cell = gross[:, codes]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gross_per_cell == 0, weights * 0.0, weights / gross_per_cell)


def _segment_median(values: np.ndarray, valid: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """The median of each cell's date (or date-and-group) over valid cells, per cell."""
    masked = np.where(valid, values, np.nan)
    codes = np.zeros(values.shape[1], np.int64) if groups is None else groups
    medians = np.empty(values.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty date: NaN, never used
        for group in np.unique(codes):
            members = codes == group
            medians[:, members] = np.nanmedian(masked[:, members], axis=1)[:, None]
    return medians


@njit(parallel=True, cache=True)
def _date_weights(factor, valid, demeaned):
    """``factor_weights`` without groups or equal weighting, one pass per date: (factor - the
    date's mean when demeaned) / the date's gross, 0 off the valid cells."""
    n_rows, n_cols = factor.shape
    weights = np.zeros((n_rows, n_cols))
    for t in prange(n_rows):
        total = 0.0
        count = 0
        for j in range(n_cols):
            if valid[t, j]:
                total += factor[t, j]
                count += 1
        if count == 0:
            continue
        mean = total / count if demeaned else 0.0
        gross = 0.0
        for j in range(n_cols):
            if valid[t, j]:
                weights[t, j] = factor[t, j] - mean
                gross += abs(weights[t, j])
        for j in range(n_cols):
            if valid[t, j]:
                weights[t, j] = weights[t, j] * 0.0 if gross == 0 else weights[t, j] / gross
    return weights


def factor_weights(factor: np.ndarray, valid: np.ndarray, demeaned: bool = True,
                   group_adjust: bool = False, equal_weight: bool = False,
                   groups: np.ndarray | None = None) -> np.ndarray:
    """(T, N) weights with gross 1 per date (0 off the clean cells), as ``factor_weights``."""
    segments = groups if group_adjust else None
    if segments is None and not equal_weight:
        return _date_weights(np.ascontiguousarray(factor, dtype=np.float64), np.ascontiguousarray(valid), demeaned)
    values = np.where(valid, factor, 0.0)
    if equal_weight:
        if demeaned:
            values = values - _segment_median(factor, valid, segments)
        negative = valid & (values < 0)
        positive = valid & (values > 0)
        weights = np.where(negative, -1.0, np.where(positive, 1.0, values))
        if demeaned:
            _, n_negative, codes = segment_sums(weights, negative, segments)
            _, n_positive, _ = segment_sums(weights, positive, segments)
            weights = np.where(negative, weights / np.maximum(n_negative[:, codes], 1), weights)
            weights = np.where(positive, weights / np.maximum(n_positive[:, codes], 1), weights)
    elif demeaned:
        weights = values - segment_mean_per_cell(factor, valid, segments)
    else:
        weights = values
    weights = np.where(valid, weights, 0.0)
    weights = _normalise(weights, valid, segments)
    if group_adjust:
        weights = _normalise(weights, valid, None)
    return np.where(valid, weights, 0.0)


def factor_alpha_beta(portfolio: np.ndarray, universe: np.ndarray, period: int) -> tuple[float, float]:
    """(annualised alpha, beta) of OLS ``portfolio ~ 1 + universe`` over dates where both exist."""
    both = ~np.isnan(portfolio) & ~np.isnan(universe)
    x, y = universe[both], portfolio[both]
    if x.size < 2:
        return float("nan"), float("nan")
    dx = x - x.mean()
    variance = (dx * dx).sum()
    if variance == 0:
        return float("nan"), float("nan")
    beta = (dx * (y - y.mean())).sum() / variance
    alpha = y.mean() - beta * x.mean()
    return float((1 + alpha) ** (252 / period) - 1), float(beta)


def cumulative_returns(portfolio: np.ndarray) -> np.ndarray:
    """Compounded growth of 1 (empyrical ``cum_returns(starting_value=1)``: a NaN return is 0)."""
    return np.cumprod(1.0 + np.nan_to_num(portfolio, nan=0.0))


def mean_return_by_quantile(by_date: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean over dates, standard error = std (ddof 1) / sqrt(dates)) per quantile."""
    means = np.full(by_date.shape[0], np.nan)
    errors = np.full(by_date.shape[0], np.nan)
    for index, series in enumerate(by_date):
        mean, std, count = series_mean_std(series)
        means[index] = mean
        errors[index] = std / np.sqrt(count) if count > 1 else np.nan
    return means, errors


def top_minus_bottom(by_date: np.ndarray, top: int, bottom: int) -> float:
    """Mean over dates of (top quantile - bottom quantile) / 2 (labels are 1-based)."""
    spread = (by_date[top - 1] - by_date[bottom - 1]) / 2.0
    mean, _, _ = series_mean_std(spread)
    return mean
