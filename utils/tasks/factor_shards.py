"""A large factor analysis as date shards: each shard computes the per-date cross-sections of its
dates, the parent concatenates them in date order and computes the summary statistics.

Everything ``analyze_factor`` computes per date (forward returns, the cleaning mask, quantile
labels and ranks, weights, the Spearman/Pearson IC, factor and universe returns, each quantile's
mean return) needs all symbols of that date but no other date, except two lagged series (quantile
turnover and rank autocorrelation compare a date with the one ``period`` rows earlier). So the
calendar (the union of the symbols' stored dates in [start, end], plus max(periods) later dates for
forward returns) is split into ranges of ``FACTOR_SHARD_DAYS`` dates, each a ``panel_shard`` child
job (``utils/tasks/panel_shards.py``) that reads from the store only

    [its first date - max(periods) - the expression's lookback rows, its last date + max(periods)]

(``window_bars``: the warm-up rows the expression's operators need before the earliest date it
labels, the dates its lagged series look back to, and the dates its forward returns reach), and
returns its dates' per-date series (a few numbers per date, never a (dates x symbols) panel) and
its loss counts. The parent sums the counts (the ``max_loss`` check is over the whole job), takes
the union of the quantiles present, and computes the IC tables, alpha/beta, mean returns by
quantile, turnover and cumulative returns from the concatenated series with the engine's own
functions: the unsharded job's numbers. Per-date values are bit-identical when the expression's
values are, and so is everything computed from them: with window operators (ts_mean, ts_std,
cs_rank... as in tests/integration/test_sharded_panels.py) all ~18,700 numbers of the result equal
the unsharded ones exactly. An operator whose value depends on every earlier row (an EMA's seed)
restarted at a shard's warm-up start differs by what its lookback leaves of that dependence, so the
stated tolerance is 1e-9 relative (what the tests require), exact in practice for window operators.

Sharded only when the job is large (more factor dates than ``FACTOR_SHARD_DAYS``; 0 = never) and
its steps are per date: an expression factor (not explicit values), no ``filter_zscore`` (it
standardises each symbol over every date), no ``by_group`` and no ``sentiment`` input; other jobs
run unsharded as before. The parent reads only the symbols' bar times (the calendar).
"""
from __future__ import annotations

import base64
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from utils.data.sentiment import COLUMN as SENTIMENT
from utils.data.store import BarStore, SymbolNotFound
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks import panel_shards
from utils.tasks.factor_panels import window_bars

SERIES = ("ic", "pearson_ic", "factor_returns", "universe_returns", "rank_autocorrelation")
MATRICES = ("quantile_returns", "turnover")  # (Q, dates) per period
LOSS_COUNTS = ("factor_values", "missing_factor", "non_finite_factor", "missing_forward_returns",
               "zscore_outliers", "binning", "failed_segments", "kept")


def _pack(values: np.ndarray) -> str:
    """float64 values as base64 (exact, NaN included; job results are strict JSON)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode()


def _unpack(text: str, shape: tuple[int, ...] = (-1,)) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").reshape(shape)


def shardable(payload: dict[str, Any], shard_days: int) -> bool:
    """Whether the job's steps are all per date (see the module docstring)."""
    from utils.tasks.factor import bar_columns
    return (shard_days > 0 and bool(payload.get("expression")) and not payload.get("filter_zscore")
            and not payload.get("by_group") and SENTIMENT not in bar_columns(payload["expression"]))


def _bin_spec(payload: dict[str, Any]):
    from utils.engine.factors.quantiles import bin_spec
    bins = payload.get("bins") or None
    return bin_spec(None if bins else payload.get("quantiles", 5), bins, bool(payload.get("zero_aware")),
                    payload.get("rank_ties") or "average")


def _groups(payload: dict[str, Any]) -> np.ndarray | None:
    from utils.tasks.factor import group_codes
    return group_codes(payload["groups"], payload["symbols"]) if payload.get("group_adjust") else None


# ------------------------------------------------------------------ the shard (child job)
def date_shard(store: BarStore, payload: dict[str, Any], progress=lambda fraction: None) -> dict[str, Any]:
    """One date range's per-date series and loss counts (``panel_shard`` of kind ``factor``)."""
    from utils.engine.factors.cleaning import finish_loss, forward_return_mask
    from utils.engine.factors.forward_returns import forward_returns
    from utils.engine.factors.per_date import per_date_statistics
    from utils.engine.factors.quantiles import quantize
    from utils.engine.factors.returns import factor_weights
    from utils.engine.factors.turnover import quantile_turnover, rank_autocorrelation
    from utils.tasks.factor import bar_columns, expression_factor
    symbols, periods = payload["symbols"], tuple(sorted({int(p) for p in payload["periods"]}))
    try:
        window = window_bars(store, symbols, payload["from_ns"], payload["to_ns"],
                             min(payload["own_to_ns"], payload["end_ns"]), bar_columns(payload["expression"]))
    except SymbolNotFound as exc:
        raise PermanentJobError(str(exc)) from None
    own = slice(int(np.searchsorted(window.times, payload["own_from_ns"], side="left")),
                int(np.searchsorted(window.times, payload["own_to_ns"], side="right")))
    if own.stop - own.start != payload["rows"]:
        raise PermanentJobError(f"the stored bars changed while the job ran: shard dates "
                                f"{own.stop - own.start}, expected {payload['rows']}; submit it again")
    progress(0.3)
    factor = expression_factor(payload["expression"], window)
    progress(0.6)
    spec = _bin_spec(payload)
    groups = _groups(payload)
    returns = forward_returns(window.close, periods)
    outliers = np.zeros(returns.shape, dtype=bool)  # filter_zscore is off for sharded jobs
    before_binning, _ = forward_return_mask(factor, returns, outliers)
    labels, ranks, failed = quantize(factor, before_binning, spec, None)
    weights = factor_weights(factor, labels > 0, bool(payload.get("long_short", True)),
                             bool(payload.get("group_adjust")), bool(payload.get("equal_weight")), groups)
    _, counts = forward_return_mask(factor[own], returns[:, own], outliers[:, own])
    loss = finish_loss(counts, before_binning[own], labels[own], failed[own])
    result: dict[str, Any] = {
        "rows": own.stop - own.start, "loss": {name: getattr(loss, name) for name in LOSS_COUNTS},
        "present": np.unique(labels[own][labels[own] > 0]).astype(int).tolist(),
        "kept_dates": _pack((labels[own] > 0).any(axis=1)), "periods": []}
    for index, period in enumerate(periods):
        daily = per_date_statistics(factor, ranks, returns[index], labels, weights, spec.n_labels, groups,
                                    bool(payload.get("group_adjust")), bool(payload.get("long_short", True)))
        result["periods"].append({
            "ic": _pack(daily.spearman_ic[own]), "pearson_ic": _pack(daily.pearson_ic[own]),
            "factor_returns": _pack(daily.factor_returns[own]),
            "universe_returns": _pack(daily.universe_returns[own]),
            "rank_autocorrelation": _pack(rank_autocorrelation(ranks, period)[own]),
            "quantile_returns": _pack(daily.quantile_means[:, own]),
            "turnover": _pack(quantile_turnover(labels, spec.n_labels, period)[:, own])})
    progress(1.0)
    return result


# ------------------------------------------------------------------ the parent
def calendar(store: BarStore, symbols: list[str], start_ns: int) -> np.ndarray | None:
    """The union of the symbols' stored bar times from ``start_ns`` (times only); None when a
    symbol has no bars (the unsharded job then says which)."""
    stored = store.stored_times(symbols)
    if any(times.size == 0 for times in stored.values()):
        return None
    union = np.unique(np.concatenate(list(stored.values())))
    return union[np.searchsorted(union, start_ns, side="left"):]


def shard_payloads(payload: dict[str, Any], times: np.ndarray, factor_rows: int, shard_days: int,
                   lookback: int) -> list[dict[str, Any]]:
    """One payload per range of ``shard_days`` factor dates (the last one also holds the dates
    after ``end`` that only carry forward returns)."""
    lag = max(int(p) for p in payload["periods"])
    starts = list(range(0, factor_rows, shard_days))
    payloads = []
    for index, first in enumerate(starts):
        stop = starts[index + 1] if index + 1 < len(starts) else times.size
        window_first = max(0, first - lag - lookback)
        window_stop = min(times.size, stop + lag)
        payloads.append({**payload, "kind": "factor", "rows": stop - first,
                         "from_ns": int(times[window_first]), "to_ns": int(times[window_stop - 1]),
                         "own_from_ns": int(times[first]), "own_to_ns": int(times[stop - 1])})
    return payloads


class ShardSeries:
    """The shards' per-date series concatenated in date order, and their summed loss counts."""

    def __init__(self, periods: int) -> None:
        self.loss = dict.fromkeys(LOSS_COUNTS, 0)
        self.present: set[int] = set()
        self.kept: list[np.ndarray] = []
        self.parts: list[dict[str, list[np.ndarray]]] = [{name: [] for name in SERIES + MATRICES}
                                                         for _ in range(periods)]

    def add(self, result: dict[str, Any], n_labels: int) -> None:
        rows = result["rows"]
        for name in LOSS_COUNTS:
            self.loss[name] += result["loss"][name]
        self.present.update(result["present"])
        self.kept.append(_unpack(result["kept_dates"]) > 0)
        for parts, shard in zip(self.parts, result["periods"]):
            for name in SERIES:
                parts[name].append(_unpack(shard[name]))
            for name in MATRICES:
                parts[name].append(_unpack(shard[name], (n_labels, rows)))

    def series(self, index: int, name: str) -> np.ndarray:
        parts = self.parts[index][name]
        return np.concatenate(parts, axis=1 if name in MATRICES else 0)


def analysis_of(series: ShardSeries, periods: tuple[int, ...], n_labels: int, max_loss: float):
    """``analyze_factor``'s FactorAnalysis from the concatenated per-date series (its summary
    steps, in its order). ``quantile_labels`` is (T, 1): 1 on the dates that kept a value."""
    from utils.engine.factors.analysis import FactorAnalysis, PeriodStats
    from utils.engine.factors.cleaning import FactorLoss, check_loss
    from utils.engine.factors.information import icir, information_table
    from utils.engine.factors.panel import series_mean_std
    from utils.engine.factors.returns import (cumulative_returns, factor_alpha_beta, mean_return_by_quantile,
                                              top_minus_bottom)
    loss = FactorLoss(**series.loss)
    try:
        check_loss(loss, max_loss)
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    present = sorted(series.present)
    top, bottom = (present[-1], present[0]) if present else (1, 1)
    stats = []
    for index, period in enumerate(periods):
        ic, factor_returns = series.series(index, "ic"), series.series(index, "factor_returns")
        quantile_means, turnover = series.series(index, "quantile_returns"), series.series(index, "turnover")
        pearson_mean, pearson_ir = icir(series.series(index, "pearson_ic"))
        ann_alpha, beta = factor_alpha_beta(factor_returns, series.series(index, "universe_returns"), period)
        mean_by_quantile, error_by_quantile = mean_return_by_quantile(quantile_means)
        stats.append(PeriodStats(
            **asdict(information_table(ic)), period=period, pearson_ic_mean=pearson_mean, pearson_icir=pearson_ir,
            ann_alpha=ann_alpha, beta=beta, factor_return_mean=series_mean_std(factor_returns)[0],
            mean_return_by_quantile=mean_by_quantile, std_error_by_quantile=error_by_quantile,
            top_minus_bottom=top_minus_bottom(quantile_means, top, bottom),
            mean_turnover_by_quantile=np.array([series_mean_std(row)[0] for row in turnover]),
            rank_autocorrelation=series_mean_std(series.series(index, "rank_autocorrelation"))[0],
            ic=ic, pearson_ic=series.series(index, "pearson_ic"), factor_returns=factor_returns,
            cumulative_returns=cumulative_returns(factor_returns), quantile_returns=quantile_means))
    kept = np.concatenate(series.kept).astype(np.int16)[:, None]
    return FactorAnalysis(tuple(stats), loss, kept, n_labels, ())


def sharded_analysis(resources: Any, context: JobContext) -> dict[str, Any] | None:
    """The job as date shards (module docstring); None when it has too few dates to shard."""
    from utils.engine.factors.expressions import parse_factor
    from utils.tasks.factor import result_document
    started = time.perf_counter()
    payload, settings = context.payload, resources.settings
    times = calendar(resources.bar_store, payload["symbols"], payload["start_ns"])
    if times is None:
        return None
    factor_rows = int(np.searchsorted(times, payload["end_ns"], side="right"))
    if factor_rows <= settings.factor_shard_days:
        return None
    periods = tuple(sorted({int(p) for p in payload["periods"]}))
    times = times[:min(times.size, factor_rows + periods[-1])]
    try:
        lookback = parse_factor(payload["expression"]).lookback()
        n_labels = _bin_spec(payload).n_labels
    except ValueError as exc:  # RuleError included; the servicer checked both, another release may not have
        raise PermanentJobError(str(exc)) from None
    payloads = shard_payloads(payload, times, factor_rows, settings.factor_shard_days, lookback)
    series = ShardSeries(len(periods))
    ids = [panel_shards.child_id(context.job_id, "factor", index) for index in range(len(payloads))]
    panel_shards.run(resources.queue, context, ids, payloads, lambda index, result: series.add(result, n_labels),
                     lambda fraction: context.progress(0.95 * fraction), settings.shard_wait_seconds)
    analysis = analysis_of(series, periods, n_labels, payload["max_loss"])
    result = result_document(analysis, [int(p) for p in payload["periods"]], times, factor_rows)
    result.update(device="cpu", compute_seconds=time.perf_counter() - started, shards=len(payloads))
    return result
