"""Everything alphalens computes per date for one forward-return period, in one pass per date.

For each date, over its clean cells: the Spearman IC (Pearson of average ranks; returns demeaned
by group first with ``group_adjust``), the Pearson IC (Qlib), the factor-weighted portfolio's
return (``factor_returns``), the universe's mean return (the regressor of ``factor_alpha_beta``)
and each quantile's mean return (demeaned by date when long-short, by date-and-group with
``group_adjust``: ``mean_return_by_quantile``). One parallel loop over dates touches each row
once instead of a dozen (T, N) temporaries. With ``by_group``, ``per_date_group_statistics`` does
the same per (date, group) segment: the IC and quantile means alphalens reports per group.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .ranks import rank_row, valid_columns


@njit(cache=True, inline="always")
def pearson_row(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation as ``np.corrcoef``; NaN below two values or for a constant side."""
    count = x.size
    if count < 2:
        return np.nan
    mean_x = x.sum() / count
    mean_y = y.sum() / count
    sxy = sxx = syy = 0.0
    for k in range(count):
        dx, dy = x[k] - mean_x, y[k] - mean_y
        sxy += dx * dy
        sxx += dx * dx
        syy += dy * dy
    if sxx == 0 or syy == 0:
        return np.nan
    return min(1.0, max(-1.0, sxy / np.sqrt(sxx) / np.sqrt(syy)))


@njit(cache=True, inline="always")
def demean_by_group(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """``values`` minus the mean of their group (alphalens ``demean_forward_returns``)."""
    sums = np.zeros(n_groups)
    counts = np.zeros(n_groups)
    for k in range(values.size):
        sums[codes[k]] += values[k]
        counts[codes[k]] += 1
    out = np.empty(values.size)
    for k in range(values.size):
        out[k] = values[k] - sums[codes[k]] / counts[codes[k]]
    return out


@njit(parallel=True, cache=True)
def _per_date(factor, factor_ranks, returns, labels, weights, groups, n_groups, n_labels,
              group_adjust, long_short):
    n_dates = factor.shape[0]
    spearman = np.full(n_dates, np.nan)
    pearson = np.full(n_dates, np.nan)
    portfolio = np.full(n_dates, np.nan)
    universe = np.full(n_dates, np.nan)
    quantile_means = np.full((n_labels, n_dates), np.nan)
    for t in prange(n_dates):
        cols = valid_columns(labels[t] > 0)
        count = cols.size
        if count == 0:
            continue
        raw = np.empty(count)
        factor_row = np.empty(count)
        factor_rank_row = np.empty(count)
        codes = np.empty(count, np.int64)
        total = 0.0
        weighted = 0.0
        for k in range(count):
            c = cols[k]
            raw[k] = returns[t, c]
            factor_row[k] = factor[t, c]
            factor_rank_row[k] = factor_ranks[t, c]
            codes[k] = groups[c]
            total += raw[k]
            weighted += weights[t, c] * raw[k]
        universe[t] = total / count
        portfolio[t] = weighted
        adjusted = demean_by_group(raw, codes, n_groups) if group_adjust else raw
        return_ranks = np.empty(count)
        rank_row(adjusted, return_ranks)
        spearman[t] = pearson_row(factor_rank_row, return_ranks)
        pearson[t] = pearson_row(factor_row, adjusted)
        if not group_adjust and long_short:
            adjusted = raw - universe[t]
        sums = np.zeros(n_labels)
        sizes = np.zeros(n_labels)
        for k in range(count):
            label = labels[t, cols[k]] - 1
            sums[label] += adjusted[k]
            sizes[label] += 1
        for q in range(n_labels):
            if sizes[q] > 0:
                quantile_means[q, t] = sums[q] / sizes[q]
    return spearman, pearson, portfolio, universe, quantile_means


@dataclass(frozen=True)
class PerDate:
    """One period's per-date series: (T,) each, and (Q, T) quantile means."""

    spearman_ic: np.ndarray
    pearson_ic: np.ndarray
    factor_returns: np.ndarray
    universe_returns: np.ndarray
    quantile_means: np.ndarray


def per_date_statistics(factor, factor_ranks, returns, labels, weights, n_labels,
                        groups=None, group_adjust=False, long_short=True) -> PerDate:
    codes = np.zeros(factor.shape[1], np.int64) if groups is None else groups
    n_groups = int(codes.max()) + 1 if codes.size else 1
    return PerDate(*_per_date(factor, factor_ranks, returns, labels, weights, codes, n_groups,
                              n_labels, bool(group_adjust), bool(long_short)))


@njit(parallel=True, cache=True)
def _per_date_groups(factor, returns, labels, groups, n_groups, n_labels, group_adjust, long_short):
    """Per (group, date): the Spearman IC on the group's clean cells (alphalens
    ``factor_information_coefficient(by_group=True)``: factor and returns ranked within the group,
    returns demeaned by group first with ``group_adjust``) and each quantile's mean return
    (``mean_return_by_quantile(by_group=True)``: returns demeaned by date-and-group with
    ``group_adjust``, else by date over the whole universe when long-short)."""
    n_dates = factor.shape[0]
    ic = np.full((n_groups, n_dates), np.nan)
    quantile_means = np.full((n_groups, n_labels, n_dates), np.nan)
    for t in prange(n_dates):
        cols = valid_columns(labels[t] > 0)
        count = cols.size
        if count == 0:
            continue
        raw = np.empty(count)
        codes = np.empty(count, np.int64)
        total = 0.0
        for k in range(count):
            raw[k] = returns[t, cols[k]]
            codes[k] = groups[cols[k]]
            total += raw[k]
        ic_returns = demean_by_group(raw, codes, n_groups) if group_adjust else raw
        if group_adjust:
            mean_returns = ic_returns
        elif long_short:
            mean_returns = raw - total / count
        else:
            mean_returns = raw
        starts = np.zeros(n_groups + 1, np.int64)  # counting sort of the date's cells by group
        for k in range(count):
            starts[codes[k] + 1] += 1
        for g in range(n_groups):
            starts[g + 1] += starts[g]
        fill = starts[:-1].copy()
        members = np.empty(count, np.int64)
        for k in range(count):
            members[fill[codes[k]]] = k
            fill[codes[k]] += 1
        for g in range(n_groups):
            size = starts[g + 1] - starts[g]
            if size == 0:
                continue
            factor_part = np.empty(size)
            return_part = np.empty(size)
            sums = np.zeros(n_labels)
            sizes = np.zeros(n_labels)
            for i in range(size):
                k = members[starts[g] + i]
                factor_part[i] = factor[t, cols[k]]
                return_part[i] = ic_returns[k]
                label = labels[t, cols[k]] - 1
                sums[label] += mean_returns[k]
                sizes[label] += 1
            factor_ranks = np.empty(size)
            return_ranks = np.empty(size)
            rank_row(factor_part, factor_ranks)
            rank_row(return_part, return_ranks)
            ic[g, t] = pearson_row(factor_ranks, return_ranks)
            for q in range(n_labels):
                if sizes[q] > 0:
                    quantile_means[g, q, t] = sums[q] / sizes[q]
    return ic, quantile_means


@dataclass(frozen=True)
class PerDateGroups:
    """One period's per-(group, date) series: (G, T) Spearman IC and (G, Q, T) quantile means,
    indexed by group code (NaN where a group has no value on a date)."""

    spearman_ic: np.ndarray
    quantile_means: np.ndarray


def per_date_group_statistics(factor, returns, labels, n_labels, groups, group_adjust=False,
                              long_short=True) -> PerDateGroups:
    n_groups = int(groups.max()) + 1 if groups.size else 1
    return PerDateGroups(*_per_date_groups(factor, returns, labels, np.asarray(groups, np.int64),
                                           n_groups, n_labels, bool(group_adjust), bool(long_short)))
