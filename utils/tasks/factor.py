"""Factor analysis job (FactorService.AnalyzeFactor): alphalens' evaluation of one factor on a
universe of stored symbols, by ``utils.engine.factors.analysis.analyze_factor``.

The panels (``utils/tasks/factor_panels.py``): the stored closes of the request's symbols (and
the bar fields an expression reads) aligned on the union of their bar dates, NaN where a symbol
has no bar; the prices go on for up to max(periods) more stored dates, so the last factor dates
have forward returns. Those extra rows carry a NaN factor, which is not a factor value
(``utils/engine/factors/cleaning.py``) and so is neither analysed nor counted as lost. A worker
reuses aligned panels across jobs on the same symbols and dates while their data versions hold.

The factor is either an expression, evaluated on the stored bars inside [start, end] only (its
warm-up rows are NaN), or explicit values stored by the servicer under ``keys.factor_values`` (raw
float64, kept out of the job payload) with their times and symbols in the payload.

A job with more factor dates than ``FACTOR_SHARD_DAYS`` whose steps are all per date runs as date
shards (``utils/tasks/factor_shards.py``): child jobs compute the per-date cross-sections of their
dates, this job concatenates them and computes the summary statistics.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from utils.data.sentiment import COLUMN as SENTIMENT
from utils.data.store import COLUMNS, BarStore, SymbolNotFound
from utils.data.timeutil import format_time
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks.factor_panels import AlignedBars, AlignedBarsCache, aligned_bars
from utils.tasks.resources import WorkerResources


def expression_factors(expressions: dict[str, str], aligned: AlignedBars) -> dict[str, np.ndarray]:
    """Each expression evaluated on the bars inside [start, end] only (shared sub-expressions
    computed once); (T, N) panels with NaN rows after end."""
    from utils.engine.backtest.rule_syntax import RuleError
    from utils.engine.factors.expressions import evaluate_factors
    window: dict[str, np.ndarray] = {name: np.ascontiguousarray(panel[:aligned.factor_rows])
                                     for name, panel in aligned.panels.items()}
    window["time"] = aligned.times[:aligned.factor_rows]  # vwap sessions
    try:
        evaluated = evaluate_factors(expressions, window)
    except RuleError as exc:  # the servicer parsed it; a server of another release may not have
        raise PermanentJobError(str(exc)) from None
    except ValueError as exc:
        raise PermanentJobError(f"expression: {exc}") from None
    factors = {}
    for name, values in evaluated.items():
        factor = factors[name] = np.full(aligned.close.shape, np.nan)
        factor[:aligned.factor_rows] = np.asarray(values, dtype=np.float64).reshape(aligned.factor_rows, -1)
    return factors


def expression_factor(expression: str, aligned: AlignedBars) -> np.ndarray:
    """The expression evaluated on the bars inside [start, end] only; NaN rows after end."""
    return expression_factors({"expression": expression}, aligned)["expression"]


def values_factor(store: BarStore, spec: dict[str, Any], symbols: list[str], aligned: AlignedBars) -> np.ndarray:
    """A FactorPanel's values placed on the calendar: its times on their rows, its symbols on
    their columns; every other cell NaN."""
    raw = store.redis.get(spec["key"])
    times = np.asarray(spec["times_ns"], dtype=np.int64)
    panel_symbols = spec["symbols"]
    if raw is None:
        raise PermanentJobError("the stored factor set has expired or was removed; compute it again"
                                if spec.get("subset") else
                                "the factor values of this job have expired or were removed; submit it again")
    values = np.frombuffer(raw, dtype="<f8")
    if values.size != times.size * len(panel_symbols):
        raise PermanentJobError(f"stored factor values hold {values.size} numbers, expected "
                                f"{times.size} times x {len(panel_symbols)} symbols")
    factor_times = aligned.times[:aligned.factor_rows]
    values = values.reshape(times.size, len(panel_symbols))
    if spec.get("subset"):  # a stored factor set's factor: only its cells inside the request
        inside = (times >= factor_times[0]) & (times <= factor_times[-1]) if factor_times.size else times < 0
        columns = [index for index, symbol in enumerate(panel_symbols) if symbol in symbols]
        times, values = times[inside], values[np.ix_(inside, columns)]
        panel_symbols = [panel_symbols[index] for index in columns]
    rows = np.searchsorted(factor_times, times)
    matched = (rows < factor_times.size) & (factor_times[np.minimum(rows, factor_times.size - 1)] == times) \
        if factor_times.size else np.zeros(times.size, dtype=bool)
    if not matched.all():
        missing = format_time(int(times[int(np.argmin(matched))]))
        raise PermanentJobError(f"values.times: {missing} is not a stored bar date of the symbols between "
                                f"start_time and end_time (the stored bars changed since submission?)")
    position = {symbol: index for index, symbol in enumerate(symbols)}
    columns = np.array([position[symbol] for symbol in panel_symbols], dtype=np.int64)
    factor = np.full(aligned.close.shape, np.nan)
    if np.array_equal(rows, np.arange(rows.size)) and np.array_equal(columns, np.arange(len(symbols))):
        factor[:rows.size] = values  # the whole calendar and every symbol in order: one copy
    else:
        factor[np.ix_(rows, columns)] = values
    return factor


def group_names(groups: dict[str, str], symbols: list[str]) -> list[str]:
    """The groups' names by code (sorted): ``group_codes``' code k is name k."""
    return sorted(set(groups[symbol] for symbol in symbols))


def group_codes(groups: dict[str, str], symbols: list[str]) -> np.ndarray:
    """Group names -> integer codes per symbol (column), by sorted name."""
    names = group_names(groups, symbols)
    return np.array([names.index(groups[symbol]) for symbol in symbols], dtype=np.int64)


def _number(value: Any) -> float | None:
    """A float for strict JSON: None (null) for NaN or infinity."""
    value = float(value)
    return value if math.isfinite(value) else None


def _numbers(values: np.ndarray) -> list[float | None]:
    return [_number(value) for value in np.asarray(values, dtype=np.float64).tolist()]


PERIOD_SCALARS = ("ic_mean", "ic_std", "risk_adjusted_ic", "t_stat", "p_value", "ic_skew", "ic_kurtosis",
                  "pearson_ic_mean", "pearson_icir", "ann_alpha", "beta", "factor_return_mean", "top_minus_bottom",
                  "rank_autocorrelation")
PERIOD_VECTORS = ("mean_return_by_quantile", "std_error_by_quantile", "mean_turnover_by_quantile")
GROUP_SCALARS = ("ic_mean", "ic_std", "risk_adjusted_ic", "t_stat", "p_value", "ic_skew", "ic_kurtosis")
GROUP_VECTORS = ("mean_return_by_quantile", "std_error_by_quantile")


def group_documents(analysis: Any, periods: list[int], names: list[str] | None) -> list[dict[str, Any]]:
    """``by_group``'s statistics per group (named by code), periods in the requested order."""
    return [{"name": names[stats.group] if names else str(stats.group), "periods": [
        {"period": int(period), **{name: _number(getattr(s, name)) for name in GROUP_SCALARS},
         **{name: _numbers(getattr(s, name)) for name in GROUP_VECTORS}}
        for period in periods for s in [stats.period(period)]]} for stats in analysis.group_stats]


def result_document(analysis: Any, periods: list[int], times: np.ndarray, factor_rows: int,
                    group_names: list[str] | None = None) -> dict[str, Any]:
    """The stored result (strict JSON): periods in the requested order, the IC series and the first
    period's cumulative returns (overall and by quantile) on the factor dates that kept at least one value;
    with by_group the statistics per group, named by ``group_names`` (index = group code)."""
    from utils.engine.factors.returns import cumulative_returns
    stats = [analysis.period(period) for period in periods]
    kept_dates = np.flatnonzero((analysis.quantile_labels[:factor_rows] > 0).any(axis=1))
    dates = [format_time(int(t)) for t in times[kept_dates]]
    return {
        "loss_fraction": _number(analysis.loss_fraction),
        "loss_breakdown": analysis.loss.summary(),
        "dropped_dates": int(analysis.loss.failed_segments),
        "n_quantiles": int(analysis.n_quantiles),
        "periods": [{"period": int(s.period), **{name: _number(getattr(s, name)) for name in PERIOD_SCALARS},
                     **{name: _numbers(getattr(s, name)) for name in PERIOD_VECTORS}} for s in stats],
        "ic_series": {"time": dates, "ic": [_numbers([s.ic[row] for s in stats]) for row in kept_dates]},
        "cumulative_returns": {"time": dates, "value": _numbers(stats[0].cumulative_returns[kept_dates])},
        # the first period's mean return of each quantile compounded (alphalens'
        # plot_cumulative_returns_by_quantile), one list per quantile, for the tearsheet
        "quantile_cumulative_returns": {"time": dates, "value": [
            _numbers(cumulative_returns(row)[kept_dates]) for row in stats[0].quantile_returns]},
        "group_stats": group_documents(analysis, periods, group_names),
    }


def bar_columns(expression: str | None) -> tuple[str, ...]:
    """The stored columns a job reads: the closes, and the bar fields its expression names."""
    if not expression:
        return ("close",)
    from utils.engine.factors.expressions import parse_factor
    from utils.engine.backtest.rule_syntax import RuleError
    try:
        inputs = parse_factor(expression).inputs()
    except RuleError as exc:  # the servicer parsed it; a server of another release may not have
        raise PermanentJobError(str(exc)) from None
    return tuple(name for name in COLUMNS + (SENTIMENT,) if name in inputs or name == "close")


def run_analysis(store: BarStore, payload: dict[str, Any], progress=lambda fraction: None,
                 panels: AlignedBarsCache | None = None) -> dict[str, Any]:
    """Load, build the factor, analyse: the job's result without timing (also used by tests).
    ``panels``: the worker's cache of aligned bars (None: read them every time)."""
    from utils.engine.factors.analysis import analyze_factor
    symbols, periods = payload["symbols"], [int(p) for p in payload["periods"]]
    columns = bar_columns(payload.get("expression"))
    load = panels.load if panels is not None else aligned_bars
    try:
        aligned = load(store, symbols, payload["start_ns"], payload["end_ns"], max(periods), columns)
    except SymbolNotFound as exc:
        raise PermanentJobError(str(exc)) from None
    if aligned.factor_rows == 0:
        raise PermanentJobError("no stored bars of the symbols between start_time and end_time")
    progress(0.2)
    if payload.get("expression"):
        factor = expression_factor(payload["expression"], aligned)
    else:
        factor = values_factor(store, payload["values"], symbols, aligned)
    progress(0.4)
    needs_groups = payload.get("group_adjust") or payload.get("by_group")
    groups = group_codes(payload["groups"], symbols) if needs_groups else None
    bins = payload.get("bins") or None
    try:
        analysis = analyze_factor(
            aligned.close, factor, periods=periods, quantiles=None if bins else payload.get("quantiles", 5),
            bins=bins, max_loss=payload["max_loss"], filter_zscore=payload.get("filter_zscore") or None,
            zero_aware=bool(payload.get("zero_aware")), groups=groups,
            group_adjust=bool(payload.get("group_adjust")), by_group=bool(payload.get("by_group")),
            long_short=bool(payload.get("long_short", True)), equal_weight=bool(payload.get("equal_weight")),
            rank_ties=payload.get("rank_ties") or "average")
    except ValueError as exc:  # MaxLossExceeded, BinningFailed, inputs the engine refuses
        raise PermanentJobError(str(exc)) from None
    progress(0.9)
    names = group_names(payload["groups"], symbols) if needs_groups else None
    return result_document(analysis, periods, aligned.times, aligned.factor_rows, names)


def make_factor_handler(resources: WorkerResources):
    def handle(context: JobContext) -> dict[str, Any]:
        from utils.tasks import factor_shards
        if factor_shards.shardable(context.payload, resources.settings.factor_shard_days):
            sharded = factor_shards.sharded_analysis(resources, context)
            if sharded is not None:
                context.progress(1.0)
                return sharded
        started = time.perf_counter()
        result = run_analysis(resources.bar_store, context.payload, lambda fraction: context.progress(fraction),
                              resources.aligned_bars_cache)
        result.update(device="cpu", compute_seconds=time.perf_counter() - started)
        context.progress(1.0)
        return result
    return handle

