"""Turnover as alphalens ``quantile_turnover`` and ``factor_rank_autocorrelation``, with the lag
counted in rows of the panel (alphalens shifts on its inferred trading calendar: the same rows)."""
from __future__ import annotations

import numpy as np

from .panel import row_mean


def _counts_per_date(labels: np.ndarray, n_labels: int, where: np.ndarray) -> np.ndarray:
    """(n_labels + 1, T) number of cells with each label per date, among cells ``where``."""
    n_dates = labels.shape[0]
    ids = (np.arange(n_dates)[:, None] * (n_labels + 1) + labels)[where]
    counts = np.bincount(ids, minlength=n_dates * (n_labels + 1))
    return counts.reshape(n_dates, n_labels + 1).T


def quantile_turnover(labels: np.ndarray, n_labels: int, period: int) -> np.ndarray:
    """(n_labels, T): share of a quantile's names on a date that were not in it ``period`` rows
    earlier; NaN unless the quantile has names on both dates."""
    n_dates = labels.shape[0]
    turnover = np.full((n_labels, n_dates), np.nan)
    if period >= n_dates:
        return turnover
    sizes = _counts_per_date(labels, n_labels, np.ones(labels.shape, dtype=bool))[1:]
    now, before = labels[period:], labels[:-period]
    new_names = _counts_per_date(now, n_labels, now != before)
    both = (sizes[:, period:] > 0) & (sizes[:, :-period] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        turnover[:, period:] = np.where(both, new_names[1:] / sizes[:, period:], np.nan)
    return turnover


def rank_autocorrelation(factor_ranks: np.ndarray, period: int) -> np.ndarray:
    """(T,) correlation of each date's factor ranks with those ``period`` rows earlier over the
    names ranked on both dates (``DataFrame.corrwith(axis=1)`` on the rank table)."""
    n_dates = factor_ranks.shape[0]
    result = np.full(n_dates, np.nan)
    if period >= n_dates:
        return result
    now, before = factor_ranks[period:], factor_ranks[:-period]
    pair = ~np.isnan(now) & ~np.isnan(before)
    counts = pair.sum(axis=1)
    dnow = np.where(pair, now - row_mean(now, pair)[:, None], 0.0)
    dbefore = np.where(pair, before - row_mean(before, pair)[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        std_now = np.sqrt((dnow * dnow).sum(axis=1) / (counts - 1))
        std_before = np.sqrt((dbefore * dbefore).sum(axis=1) / (counts - 1))
        result[period:] = np.where(counts >= 2, (dnow * dbefore).sum(axis=1)
                                   / ((counts - 1) * std_now * std_before), np.nan)
    return result
