"""Correlation of many factors: the mean over dates of their per-date cross-sectional Spearman
correlation, as Qlib/alphalens users compute it (``panel.groupby("datetime").corr("spearman")``
averaged over dates, pandas' pairwise-complete convention: each pair is ranked on the symbols where
both have a value; a date with fewer than two such symbols, or a constant side, has no correlation
and is skipped by the mean).

Per date, factors with the same valid symbols form a group; each pair of groups is ranked once on
its common symbols and correlated by one matrix product of standardized ranks (``date_correlation``)."""
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


def _group_block(block: np.ndarray, members: np.ndarray, common: np.ndarray) -> np.ndarray:
    """Spearman correlations of the ``members`` rows of ``block`` ranked on the ``common`` cells."""
    ranks = _standardized_ranks(np.ascontiguousarray(block[np.ix_(members, common)]))
    flat = np.isnan(ranks[:, 0]) if ranks.shape[1] else np.ones(members.size, dtype=bool)
    filled = np.nan_to_num(ranks, nan=0.0)
    corr = np.clip(filled @ filled.T, -1.0, 1.0)
    corr[flat, :] = np.nan
    corr[:, flat] = np.nan
    return corr


def date_correlation(block: np.ndarray) -> np.ndarray:
    """(K, K) Spearman correlations of one date's (K, N) values, pairwise complete (NaN where a
    pair has fewer than two common values or a constant side). Factors with the same valid symbols
    form a group; each pair of groups is ranked once on its common symbols and its correlations
    come from one matrix product, so only as many re-rankings as groups, not pairs, are needed."""
    n_factors = block.shape[0]
    valid = ~np.isnan(block)
    seen: dict[bytes, int] = {}
    inverse = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in np.packbits(valid, axis=1)])
    groups = valid[[list(inverse).index(g) for g in range(len(seen))]]
    corr = np.full((n_factors, n_factors), np.nan)
    for a in range(groups.shape[0]):
        for b in range(a, groups.shape[0]):
            common = np.flatnonzero(groups[a] & groups[b])
            if common.size < 2:
                continue
            in_a, in_b = inverse == a, inverse == b
            members = np.flatnonzero(in_a | in_b)
            pair = _group_block(block, members, common)
            of_a, of_b = in_a[members], in_b[members]
            corr[np.ix_(members[of_a], members[of_b])] = pair[np.ix_(of_a, of_b)]
            corr[np.ix_(members[of_b], members[of_a])] = pair[np.ix_(of_b, of_a)]
    return corr


def mean_spearman_correlation(factors: np.ndarray) -> np.ndarray:
    """(K, K) mean per-date Spearman correlation of K factors given as a (K, T, N) array."""
    factors = np.asarray(factors, dtype=np.float64)
    n_factors, n_dates, _ = factors.shape
    sums = np.zeros((n_factors, n_factors))
    counts = np.zeros((n_factors, n_factors))
    for t in range(n_dates):
        corr = date_correlation(factors[:, t, :])
        defined = ~np.isnan(corr)
        sums += np.where(defined, corr, 0.0)
        counts += defined
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts
