"""Many factors evaluated at once: each one's alphalens statistics per period (``analyze_factor``),
a factor that cleaning rejects (MaxLossExceeded, BinningFailed) kept as a row with its error, the
rows ranked by a statistic of the first period, and the factors' mean per-date Spearman
correlation (``correlation.mean_spearman_correlation``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .analysis import analyze_factor

SCORE_FIELDS = ("ic_mean", "ic_std", "icir", "pearson_ic_mean", "pearson_icir", "t_stat", "top_minus_bottom")
RANK_BY = ("ic_mean", "icir", "pearson_ic_mean", "pearson_icir", "t_stat", "top_minus_bottom")


@dataclass(frozen=True)
class FactorScore:
    name: str
    error: str = ""  # why cleaning rejected it ("" = evaluated)
    loss_fraction: float = math.nan
    periods: dict[int, dict[str, float]] = field(default_factory=dict)  # period -> SCORE_FIELDS


def score_factor(name: str, prices: np.ndarray, factor: np.ndarray, periods, **options: Any) -> FactorScore:
    try:
        analysis = analyze_factor(prices, factor, periods=periods, **options)
    except ValueError as exc:  # MaxLossExceeded, BinningFailed
        return FactorScore(name, error=str(exc))
    rows = {}
    for period in periods:
        stats = analysis.period(period)
        rows[int(period)] = {"ic_mean": stats.ic_mean, "ic_std": stats.ic_std, "icir": stats.risk_adjusted_ic,
                             "pearson_ic_mean": stats.pearson_ic_mean, "pearson_icir": stats.pearson_icir,
                             "t_stat": stats.t_stat, "top_minus_bottom": stats.top_minus_bottom}
    return FactorScore(name, loss_fraction=analysis.loss_fraction, periods=rows)


def score_factors(prices: np.ndarray, factors: Mapping[str, np.ndarray], periods,
                  progress: Callable[[int, str], None] = lambda done, name: None, **options: Any
                  ) -> list[FactorScore]:
    """One ``FactorScore`` per factor, in the given order; ``progress(done, name)`` after each."""
    scores = []
    for done, (name, factor) in enumerate(factors.items(), start=1):
        scores.append(score_factor(name, prices, factor, periods, **options))
        progress(done, name)
    return scores


def ranked(scores: list[FactorScore], period: int, by: str = "ic_mean") -> list[FactorScore]:
    """By |statistic| of ``period``, largest first; factors with an error or a NaN last (stable)."""
    def key(score: FactorScore) -> float:
        value = score.periods.get(period, {}).get(by, math.nan)
        return -abs(value) if not math.isnan(value) else math.inf
    return sorted(scores, key=key)
