"""alphalens' information table and Qlib's ICIR from the per-date IC series (``per_date``
computes the series: Spearman IC as alphalens ``factor_information_coefficient``, Pearson IC as
Qlib's ``calc_ic``). ICIR = mean / std (ddof 1) over dates with an IC. The table's t-stat, p-value, skew and
excess kurtosis come from scipy on the dates that have an IC, as alphalens-reloaded does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .panel import series_mean_std


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
