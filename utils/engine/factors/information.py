"""Information coefficients per date and alphalens' information table.

Spearman IC (alphalens ``factor_information_coefficient``): Pearson correlation of average ranks
of the factor and of each period's forward returns over the date's clean cells (returns demeaned
by date-and-group first with ``group_adjust``). Pearson IC and ICIR as Qlib's ``calc_ic``: the
plain correlation per date, ICIR = mean / std (ddof 1). The table's t-stat, p-value, skew and
excess kurtosis come from scipy on the dates that have an IC, as alphalens-reloaded does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .panel import row_pearson, series_mean_std
from .ranks import average_ranks


def spearman_ic(factor_ranks: np.ndarray, returns: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T,) Spearman IC of one period; NaN on a date with fewer than two cells or a constant side."""
    return row_pearson(factor_ranks, average_ranks(returns, valid), valid)


def pearson_ic(factor: np.ndarray, returns: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T,) Pearson IC of one period (Qlib ``calc_ic``'s ``ic``)."""
    return row_pearson(factor, returns, valid)


@dataclass(frozen=True)
class InformationTable:
    """alphalens ``plot_information_table(..., return_df=True)`` for one period."""

    ic_mean: float
    ic_std: float
    risk_adjusted_ic: float
    t_stat: float
    p_value: float
    ic_skew: float
    ic_kurtosis: float


def information_table(ic: np.ndarray) -> InformationTable:
    mean, std, count = series_mean_std(ic)
    clean = ic[~np.isnan(ic)]
    t_stat = p_value = skew = kurtosis = float("nan")
    if count >= 2:
        test = stats.ttest_1samp(clean, 0)
        t_stat, p_value = float(test.statistic), float(test.pvalue)
    if count >= 1:
        skew, kurtosis = float(stats.skew(clean)), float(stats.kurtosis(clean))
    with np.errstate(invalid="ignore", divide="ignore"):
        risk_adjusted = float(np.float64(mean) / np.float64(std))
    return InformationTable(mean, std, risk_adjusted, t_stat, p_value, skew, kurtosis)


def icir(ic: np.ndarray) -> tuple[float, float]:
    """(mean IC, ICIR = mean / std with ddof 1) over the dates that have an IC."""
    mean, std, _ = series_mean_std(ic)
    with np.errstate(invalid="ignore", divide="ignore"):
        return mean, float(np.float64(mean) / np.float64(std))
