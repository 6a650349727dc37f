"""Correlation of many factors: the mean over dates of their per-date cross-sectional Spearman
correlation, as Qlib/alphalens users compute it (``panel.groupby("datetime").corr("spearman")``
averaged over dates, pandas' pairwise-complete convention: each pair is ranked on the symbols where
both have a value; a date with fewer than two such symbols, or a constant side, has no correlation
and is skipped by the mean).

Pairs whose valid symbols on a date are the same (the common case) come from one matrix product of
standardized ranks per block of dates; only pairs whose masks differ are re-ranked on their common
cells (``spearman_common``)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .per_date import pearson_row
from .ranks import rank_row, valid_columns


@njit(cache=True)
def spearman_common(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation of two rows over the cells where both are not NaN (NaN below two)."""
    cols = valid_columns(~np.isnan(x) & ~np.isnan(y))
    count = cols.size
    if count < 2:
        return np.nan
    xs, ys = np.empty(count), np.empty(count)
    for k in range(count):
        xs[k], ys[k] = x[cols[k]], y[cols[k]]
    x_ranks, y_ranks = np.empty(count), np.empty(count)
    rank_row(xs, x_ranks)
    rank_row(ys, y_ranks)
    return pearson_row(x_ranks, y_ranks)


@njit(parallel=True, cache=True)
def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(T,) per-date Spearman correlation of two (T, N) panels (the rank IC when y is returns)."""
    out = np.empty(x.shape[0])
    for t in prange(x.shape[0]):
        out[t] = spearman_common(x[t], y[t])
    return out


@njit(parallel=True, cache=True)
def _standardized_ranks(panel: np.ndarray) -> np.ndarray:
    """(T, N): each date's average ranks over its valid cells, centred and scaled to unit norm; 0
    on missing cells; a date with < 2 values or constant ranks is all NaN."""
    n_dates, n_symbols = panel.shape
    out = np.zeros((n_dates, n_symbols))
    for t in prange(n_dates):
        cols = valid_columns(~np.isnan(panel[t]))
        count = cols.size
        if count < 2:
            out[t, :] = np.nan
            continue
        values, ranks = np.empty(count), np.empty(count)
        for k in range(count):
            values[k] = panel[t, cols[k]]
        rank_row(values, ranks)
        ranks -= ranks.mean()
        norm = np.sqrt((ranks * ranks).sum())
        if norm == 0:
            out[t, :] = np.nan
            continue
        for k in range(count):
            out[t, cols[k]] = ranks[k] / norm
    return out


@njit(parallel=True, cache=True)
def _mixed_pairs(factors, dates, lefts, rights):
    out = np.empty(dates.size)
    for k in prange(dates.size):
        out[k] = spearman_common(factors[lefts[k], dates[k]], factors[rights[k], dates[k]])
    return out


def mean_spearman_correlation(factors: np.ndarray, block: int = 64) -> np.ndarray:
    """(K, K) mean per-date Spearman correlation of K factors given as a (K, T, N) array."""
    factors = np.ascontiguousarray(factors, dtype=np.float64)
    n_factors, n_dates, _ = factors.shape
    ranks = np.stack([_standardized_ranks(factors[k]) for k in range(n_factors)], axis=1)  # (T, K, N)
    valid = ~np.isnan(factors).transpose(1, 0, 2)  # (T, K, N)
    sums = np.zeros((n_factors, n_factors))
    counts = np.zeros((n_factors, n_factors))
    for start in range(0, n_dates, block):
        stop = min(n_dates, start + block)
        masks = valid[start:stop].astype(np.float64)
        common = masks @ masks.transpose(0, 2, 1)  # (B, K, K) symbols where both have a value
        own = np.diagonal(common, axis1=1, axis2=2)  # (B, K)
        same = (common == own[:, :, None]) & (common == own[:, None, :])
        block_ranks = np.nan_to_num(ranks[start:stop], nan=0.0)
        corr = np.clip(block_ranks @ block_ranks.transpose(0, 2, 1), -1.0, 1.0)
        flat = np.isnan(ranks[start:stop, :, 0])  # (B, K): < 2 values or constant on that date
        corr[flat[:, :, None] | flat[:, None, :]] = np.nan
        corr[~same] = np.nan
        mixed = np.argwhere(~same & (common >= 2))
        if mixed.size:
            corr[mixed[:, 0], mixed[:, 1], mixed[:, 2]] = _mixed_pairs(
                factors, (mixed[:, 0] + start).astype(np.int64), mixed[:, 1].astype(np.int64),
                mixed[:, 2].astype(np.int64))
        defined = ~np.isnan(corr)
        sums += np.where(defined, corr, 0.0).sum(axis=0)
        counts += defined.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts
