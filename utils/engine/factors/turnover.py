"""Turnover as alphalens ``quantile_turnover`` and ``factor_rank_autocorrelation``, with the lag
counted in rows of the panel (alphalens shifts on its inferred trading calendar: the same rows)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _quantile_turnover(labels, n_labels, period):
    n_dates, n_symbols = labels.shape
    turnover = np.full((n_labels, n_dates), np.nan)
    for t in prange(period, n_dates):
        sizes = np.zeros(n_labels + 1)
        sizes_before = np.zeros(n_labels + 1)
        entered = np.zeros(n_labels + 1)
        for j in range(n_symbols):
            now, before = labels[t, j], labels[t - period, j]
            sizes[now] += 1
            sizes_before[before] += 1
            if now != before:
                entered[now] += 1
        for q in range(1, n_labels + 1):
            if sizes[q] > 0 and sizes_before[q] > 0:
                turnover[q - 1, t] = entered[q] / sizes[q]
    return turnover


def quantile_turnover(labels: np.ndarray, n_labels: int, period: int) -> np.ndarray:
    """(n_labels, T): share of a quantile's names on a date that were not in it ``period`` rows
    earlier; NaN unless the quantile has names on both dates."""
    return _quantile_turnover(labels, n_labels, period)


@njit(parallel=True, cache=True)
def _rank_autocorrelation(factor_ranks, period):
    n_dates, n_symbols = factor_ranks.shape
    result = np.full(n_dates, np.nan)
    for t in prange(period, n_dates):
        now, before = factor_ranks[t], factor_ranks[t - period]
        count = 0
        sum_now = sum_before = 0.0
        for j in range(n_symbols):
            if not np.isnan(now[j]) and not np.isnan(before[j]):
                count += 1
                sum_now += now[j]
                sum_before += before[j]
        if count < 2:
            continue
        mean_now, mean_before = sum_now / count, sum_before / count
        cross = squares_now = squares_before = 0.0
        for j in range(n_symbols):
            if not np.isnan(now[j]) and not np.isnan(before[j]):
                d_now, d_before = now[j] - mean_now, before[j] - mean_before
                cross += d_now * d_before
                squares_now += d_now * d_now
                squares_before += d_before * d_before
        std_now = np.sqrt(squares_now / (count - 1))
        std_before = np.sqrt(squares_before / (count - 1))
        result[t] = cross / ((count - 1) * std_now * std_before)  # 0 / 0 = NaN for constant ranks
    return result


def rank_autocorrelation(factor_ranks: np.ndarray, period: int) -> np.ndarray:
    """(T,) correlation of each date's factor ranks with those ``period`` rows earlier over the
    names ranked on both dates (``DataFrame.corrwith(axis=1)`` on the rank table)."""
    return _rank_autocorrelation(factor_ranks, period)
