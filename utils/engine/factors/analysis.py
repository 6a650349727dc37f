"""``analyze_factor``: alphalens' whole evaluation of one factor on (T, N) panels, one call.

The same numbers as alphalens-reloaded's ``get_clean_factor_and_forward_returns`` followed by its
information, returns and turnover tear sheets (``tests/parity/test_factor_alphalens.py`` holds us
to them), computed with array kernels instead of per-date pandas groupbys. Rows are consecutive
trading dates (lags and forward returns count rows), columns are symbols.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .cleaning import FactorLoss, check_loss, finish_loss, forward_return_mask
from .forward_returns import forward_returns, zscore_outliers
from .information import InformationTable, icir, information_table
from .panel import series_mean_std
from .per_date import per_date_group_statistics, per_date_statistics
from .quantiles import bin_spec, quantize
from .returns import (cumulative_returns, factor_alpha_beta, factor_weights,
                      mean_return_by_quantile, top_minus_bottom)
from .turnover import quantile_turnover, rank_autocorrelation


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


@dataclass(frozen=True)
class PeriodStats(InformationTable):
    """Everything alphalens reports for one forward-return period (returns are per period): its
    information table and the rest."""

    period: int
    pearson_ic_mean: float
    pearson_icir: float
    ann_alpha: float
    beta: float
    factor_return_mean: float
    mean_return_by_quantile: np.ndarray  # (Q,), index q - 1; NaN for a quantile never filled
    std_error_by_quantile: np.ndarray  # (Q,)
    top_minus_bottom: float
    mean_turnover_by_quantile: np.ndarray  # (Q,)
    rank_autocorrelation: float
    ic: np.ndarray  # (T,) Spearman IC per date, NaN where a date has none
    pearson_ic: np.ndarray  # (T,)
    factor_returns: np.ndarray  # (T,) factor-weighted portfolio return per date
    cumulative_returns: np.ndarray  # (T,) alphalens ``factor_cumulative_returns`` (growth of 1)
    quantile_returns: np.ndarray  # (Q, T) mean return of each quantile per date (alphalens' mean_quant_ret_bydate)


@dataclass(frozen=True)
class GroupPeriodStats(InformationTable):
    """What alphalens reports for one group and period with ``by_group``: the information table of
    ``factor_information_coefficient(..., by_group=True)``'s IC series of the group (its
    ``ic_mean`` is ``mean_information_coefficient(..., by_group=True)``) and
    ``mean_return_by_quantile(..., by_group=True, demeaned=long_short, group_adjust=...)``."""

    period: int
    mean_return_by_quantile: np.ndarray  # (Q,), index q - 1; NaN for a quantile the group never had
    std_error_by_quantile: np.ndarray  # (Q,)
    ic: np.ndarray  # (T,) Spearman IC of the group per date, NaN where it has none


@dataclass(frozen=True)
class GroupStats:
    """One group's statistics (``by_group``), a group with at least one clean factor value."""

    group: int  # the group's code (``groups``)
    periods: tuple[GroupPeriodStats, ...]

    def period(self, period: int) -> GroupPeriodStats:
        return next(stats for stats in self.periods if stats.period == period)


@dataclass(frozen=True)
class FactorAnalysis:
    periods: tuple[PeriodStats, ...]
    loss: FactorLoss
    quantile_labels: np.ndarray  # (T, N) 1..n_quantiles, 0 for a dropped or missing cell
    n_quantiles: int
    group_stats: tuple[GroupStats, ...] = ()  # by_group only: one per group, by code

    def group(self, code: int) -> GroupStats:
        return next(stats for stats in self.group_stats if stats.group == code)

    @property
    def loss_fraction(self) -> float:
        return self.loss.fraction

    def period(self, period: int) -> PeriodStats:
        return next(stats for stats in self.periods if stats.period == period)


def _check_inputs(prices, factor, periods, groups, needs_groups):
    prices = np.asarray(prices, dtype=np.float64)
    factor = np.asarray(factor, dtype=np.float64)
    if prices.ndim != 2 or prices.shape != factor.shape:
        raise ValueError(f"prices and factor must be (T, N) panels of one shape, got "
                         f"{prices.shape} and {factor.shape}")
    periods = tuple(sorted({int(period) for period in periods}))
    if not periods or periods[0] < 1:
        raise ValueError(f"periods must be positive row counts, got {periods}")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (factor.shape[1],) or groups.dtype.kind not in "iu" or groups.min() < 0:
            raise ValueError("groups must hold one non-negative integer code per symbol (column)")
        groups = groups.astype(np.int64)
    elif needs_groups:
        raise ValueError("group_adjust and by_group need groups")
    return prices, factor, periods, groups


def analyze_factor(prices, factor, periods=(1, 5, 10), quantiles=5, bins=None, max_loss=0.35,
                   filter_zscore=20, zero_aware=False, groups=None, group_adjust=False,
                   by_group=False, long_short=True, equal_weight=False,
                   rank_ties="average") -> FactorAnalysis:
    """Evaluate ``factor`` against ``prices`` as alphalens does; see the module docstring.

    ``filter_zscore`` None or 0 = off; ``by_group`` bins each (date, group) apart (alphalens'
    ``binning_by_group``) and reports per-group statistics (``group_stats``); ``group_adjust`` demeans returns by group for the IC and quantile
    returns and builds group-neutral weights; ``long_short`` demeans quantile returns and weights.
    Raises ``MaxLossExceeded`` (a ValueError) with the breakdown of what was dropped and why.
    """
    prices, factor, periods, groups = _check_inputs(prices, factor, periods, groups,
                                                    group_adjust or by_group)
    spec = bin_spec(quantiles, bins, zero_aware, rank_ties)
    returns = forward_returns(prices, periods)
    outliers = zscore_outliers(returns, filter_zscore)
    before_binning, counts = forward_return_mask(factor, returns, outliers)
    labels, factor_ranks, failed = quantize(factor, before_binning, spec,
                                            groups if by_group else None)
    loss = finish_loss(counts, before_binning, labels, failed)
    check_loss(loss, max_loss)

    valid = labels > 0
    present = np.unique(labels[valid])
    top, bottom = (int(present[-1]), int(present[0])) if present.size else (1, 1)
    weights = factor_weights(factor, valid, long_short, group_adjust, equal_weight, groups)
    stats = []
    group_codes = np.unique(groups[valid.any(axis=0)]) if by_group else np.empty(0, np.int64)
    by_group_periods: list[list[GroupPeriodStats]] = [[] for _ in group_codes]
    for index, period in enumerate(periods):
        daily = per_date_statistics(factor, factor_ranks, returns[index], labels, weights,
                                    spec.n_labels, groups, group_adjust, long_short)
        table = information_table(daily.spearman_ic)
        pearson_mean, pearson_ir = icir(daily.pearson_ic)
        ann_alpha, beta = factor_alpha_beta(daily.factor_returns, daily.universe_returns, period)
        mean_by_quantile, error_by_quantile = mean_return_by_quantile(daily.quantile_means)
        turnover = quantile_turnover(labels, spec.n_labels, period)
        stats.append(PeriodStats(
            **asdict(table), period=period, pearson_ic_mean=pearson_mean,
            pearson_icir=pearson_ir, ann_alpha=ann_alpha, beta=beta,
            factor_return_mean=series_mean_std(daily.factor_returns)[0],
            mean_return_by_quantile=_frozen(mean_by_quantile),
            std_error_by_quantile=_frozen(error_by_quantile),
            top_minus_bottom=top_minus_bottom(daily.quantile_means, top, bottom),
            mean_turnover_by_quantile=_frozen(np.array([series_mean_std(row)[0] for row in turnover])),
            rank_autocorrelation=series_mean_std(rank_autocorrelation(factor_ranks, period))[0],
            ic=_frozen(daily.spearman_ic), pearson_ic=_frozen(daily.pearson_ic),
            factor_returns=_frozen(daily.factor_returns),
            cumulative_returns=_frozen(cumulative_returns(daily.factor_returns)),
            quantile_returns=_frozen(daily.quantile_means)))
        if by_group:
            per_group = per_date_group_statistics(factor, returns[index], labels, spec.n_labels,
                                                  groups, group_adjust, long_short)
            for slot, code in enumerate(group_codes):
                means, errors = mean_return_by_quantile(per_group.quantile_means[code])
                by_group_periods[slot].append(GroupPeriodStats(
                    **asdict(information_table(per_group.spearman_ic[code])), period=period,
                    mean_return_by_quantile=_frozen(means), std_error_by_quantile=_frozen(errors),
                    ic=_frozen(per_group.spearman_ic[code].copy())))
    group_stats = tuple(GroupStats(int(code), tuple(periods_of_group))
                        for code, periods_of_group in zip(group_codes, by_group_periods))
    return FactorAnalysis(tuple(stats), loss, _frozen(labels), spec.n_labels, group_stats)
