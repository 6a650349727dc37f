"""Backtest job: load bars from the store, run the engine, shape the JSON result."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from typing import Any, Callable, Iterator

import numpy as np

from utils.data import factor_sets
from utils.data import sentiment as stored_sentiment
from utils.data.store import SymbolNotFound
from utils.data.timeutil import format_times
from utils.engine.backend import Backend
from utils.engine.backtest.config import StrategySpec, validate_strategy_config
from utils.engine.backtest.position_sizing import POLICY_POSITIONS
from utils.engine.backtest.runner import (AlignedBars, NoDataInRange, TradeRecord, align_bars, iso_time,
                                          report_of, simulate_spec)
from utils.engine.backtest.strategies import STORED_FACTOR
from utils.engine.backtest.sweep import TABLE_LIMIT, SweepResult, best_spec, sweep_panels, walk_forward
from utils.engine.backtest.sweep import _rank as rank_rows
from utils.engine.metrics import drawdown_curve
from utils.queue.result_parts import Rows
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks.bar_cache import StoredBarsCache
from utils.tasks import shards
from utils.tasks.resources import WorkerResources
from utils.tasks.shard_sizing import shard_size_for

LOAD_SHARE = 0.2  # progress fraction attributed to loading bars
SMALL_JOB_CELLS = 2_000_000  # combinations x symbols x bars below which kernels run on one thread


def trade_rows(trades: list[Any]) -> Rows:
    """Trade records as the result's ``trades`` (an open trade has no exit time)."""
    exit_time = TradeRecord._fields.index("exit_time")
    is_open = TradeRecord._fields.index("is_open")
    rows = [trade if not trade[is_open] else (*trade[:exit_time], "", *trade[exit_time + 1:]) for trade in trades]
    return Rows(TradeRecord._fields, rows)


def backtest_result(report: Any, spec: Any, backend: Backend, seconds: float) -> dict[str, Any]:
    trades = trade_rows(report.trades)
    return {
        "metrics": report.metrics,
        "equity_curve": {"time": format_times(report.equity_times), "equity": report.equity.tolist(),
                         "drawdown": report.drawdown.tolist()},
        "trades": trades,
        "symbol_metrics": report.per_symbol,
        "strategy_config": spec.normalised(),
        "device": backend.label,
        "compute_seconds": seconds,
    }


def make_backtest_handler(resources: WorkerResources):
    store = resources.bar_store
    stored_bars = StoredBarsCache(store, resources.settings.backtest_bar_cache_mb * 2**20)

    def handle(context: JobContext) -> dict[str, Any]:
        payload = context.payload
        started = time.perf_counter()
        backend = resources.backend_for(payload.get("device", "auto"))
        try:
            spec = validate_strategy_config(payload["strategy_config"])
        except ValueError as exc:
            raise PermanentJobError(str(exc)) from None
        policy = None
        if spec.position_model:  # loaded once per job; its features need their own warm-up bars
            policy = position_policy(resources.model_store, spec.position_model)
            spec = replace(spec, position_lookback=policy.lookback)
        symbols = payload["symbols"]
        # symbols per shard: SHARD_SYMBOLS, fewer when their bars (history up to end_ns, as read
        # below) would exceed SHARD_MEMORY_MB; 0 = never shard
        size = shard_size_for(store, symbols, None, payload["end_ns"], resources.settings) if len(symbols) > 1 else 0
        if shardable(spec, symbols, size):
            sharded = _sharded(context, spec, backend, started, size)
            if sharded is not None:
                return sharded
        try:
            stored = stored_bars.read_many(symbols, payload["end_ns"])
        except SymbolNotFound as exc:
            raise PermanentJobError(str(exc)) from None
        bars = {symbol: stored[symbol].columns() for symbol in symbols}
        small = job_cells(spec, bars) < SMALL_JOB_CELLS
        # a small job only checks for cancellation: its start and end are all a watcher can follow
        progress = (lambda fraction: context.check_cancelled()) if small else context.progress
        progress(LOAD_SHARE)
        with kernel_threads(1 if small else None):
            return _compute(context.payload, progress, spec, policy, bars, backend, started, context.shard_scale)

    def _compute(payload: dict[str, Any], progress: Callable[[float], None], spec: StrategySpec, policy: Any,
                 bars: dict[str, dict[str, np.ndarray]], backend: Backend, started: float,
                 chunk_scale: float = 1.0) -> dict[str, Any]:
        try:
            aligned = align_bars(spec, bars, payload["start_ns"], payload["end_ns"])
        except NoDataInRange as exc:
            raise PermanentJobError(str(exc)) from None
        if spec.param_values.get("factor_set_id"):
            aligned.panels[STORED_FACTOR] = stored_factor_panel(store.redis, spec, aligned)
        if policy is not None:  # each bar's output from bars up to it, before the simulation
            aligned.panels[POLICY_POSITIONS] = policy.rolled_positions({**aligned.panels, "time": aligned.calendar},
                                                                       aligned.start_index)
        if stored_sentiment.COLUMN in text_inputs(spec):
            aligned.panels[stored_sentiment.COLUMN] = stored_sentiment.sentiment_panel(
                store.redis, aligned.symbols, aligned.calendar)
        capital, commission = payload["initial_capital"], payload["commission_rate"]
        search: dict[str, Any] = {}
        if spec.param_grid:
            search, spec = _search(spec, aligned, capital, commission, progress, backend, chunk_scale)
        output = simulate_spec(spec, aligned, capital, commission, progress=lambda f: progress(0.9 + 0.09 * f),
                               backend=backend)
        report = report_of(spec, aligned, output, capital)
        return {**backtest_result(report, spec, backend, time.perf_counter() - started), "device": output.device,
                **search}
    def _sharded(context: JobContext, spec: StrategySpec, backend: Backend, started: float,
                 size: int) -> dict[str, Any] | None:
        """The job as symbol shards run by child jobs (see utils/tasks/shards.py); None when the
        shards' calendars differ (symbols with different bar times: the job runs unsharded)."""
        payload, settings = context.payload, resources.settings
        symbols = payload["symbols"]
        base = {name: payload[name] for name in ("strategy_config", "start_ns", "end_ns", "commission_rate")}
        base["sleeve_capital"] = payload["initial_capital"] / len(symbols)
        groups = shards.split_symbols(symbols, size)
        search: dict[str, Any] = {}
        final, params, share = spec, None, 0.0
        if spec.param_grid:
            share = 0.8
            totals = shards.run_shards(resources.queue, context, "sweep", [{**base, "symbols": g} for g in groups],
                                       lambda f: context.progress(share * f), settings.shard_wait_seconds)
            if not totals.same_calendar:
                return None
            result = _sharded_sweep(spec, totals, len(symbols), payload["initial_capital"], started)
            search = {"sweep": {**_sweep_summary(result), "device": backend.label},
                      "best_params": result.best["params"]}
            final, params = best_spec(spec, result), result.best["params"]
        totals = shards.run_shards(resources.queue, context, "backtest",
                                   [{**base, "symbols": g, "params": params} for g in groups],
                                   lambda f: context.progress(share + (0.99 - share) * f),
                                   settings.shard_wait_seconds)
        if not totals.same_calendar:
            return None
        return {**_sharded_backtest(final, totals, symbols, payload["initial_capital"], backend, started), **search}
    return handle


def shardable(spec: StrategySpec, symbols: list[str], shard_symbols: int) -> bool:
    """Whether the job splits exactly into independent equal sleeves of symbol shards of
    ``shard_symbols`` (``utils/tasks/shard_sizing.py``) and needs more than one."""
    return (0 < shard_symbols < len(symbols) and not spec.is_portfolio and not spec.position_model
            and not spec.walk_forward and not spec.param_values.get("factor_set_id")
            and stored_sentiment.COLUMN not in text_inputs(spec))


def _sharded_sweep(spec: StrategySpec, totals: shards.ShardTotals, symbol_count: int, capital: float,
                   started: float) -> SweepResult:
    combinations = spec.combinations()
    grid_names = [name for name, _ in spec.param_grid]
    rows = []
    for index, combination in enumerate(combinations):
        metrics = shards.combined_metrics(*totals.combination(index), spec.periods_per_year, capital)
        rows.append({"params": {name: combination.param_values[name] for name in grid_names}, "metrics": metrics})
    rows = rank_rows(rows, spec.rank_by)[:TABLE_LIMIT]
    cells = len(combinations) * symbol_count * len(totals.times)
    return SweepResult(spec.rank_by, rows, len(combinations), cells, time.perf_counter() - started)


def _sharded_backtest(spec: StrategySpec, totals: shards.ShardTotals, symbols: list[str], capital: float,
                      backend: Backend, started: float) -> dict[str, Any]:
    equity, closed, exposure, traded = totals.combination(0)
    position = {symbol: index for index, symbol in enumerate(symbols)}
    entry_time, symbol = TradeRecord._fields.index("entry_time"), TradeRecord._fields.index("symbol")
    totals.trades.sort(key=lambda row: (row[entry_time], position[row[symbol]]))
    trades = trade_rows(totals.trades)
    symbol_metrics = {symbol: totals.symbol_metrics[symbol] for symbol in symbols}
    return {
        "metrics": shards.combined_metrics(equity, closed, exposure, traded, spec.periods_per_year, capital),
        "equity_curve": {"time": format_times(np.array(totals.times, dtype=np.int64)),
                         "equity": equity.tolist(), "drawdown": drawdown_curve(equity).tolist()},
        "trades": trades,
        "symbol_metrics": symbol_metrics,
        "strategy_config": spec.normalised(),
        "device": backend.label,
        "compute_seconds": time.perf_counter() - started,
    }


def job_cells(spec: StrategySpec, bars: dict[str, dict[str, np.ndarray]]) -> int:
    """Combinations x symbols x the longest symbol's bars: the size of the job's simulation."""
    combinations = math.prod(len(values) for _, values in spec.param_grid)
    return combinations * len(bars) * max((len(columns["time"]) for columns in bars.values()), default=0)


@contextlib.contextmanager
def kernel_threads(count: int | None) -> Iterator[None]:
    """numba's thread count for this thread's parallel kernels within the block (None: unchanged).
    A small job runs on one thread: a parallel loop's fork/join costs more than its work there,
    and on a busy machine it waits for whichever of its threads was descheduled."""
    if count is None:
        yield
        return
    import numba
    previous = numba.get_num_threads()
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def text_inputs(spec: StrategySpec) -> frozenset[str]:
    """Bar fields read by the spec's rules and factor expressions (every grid combination)."""
    from utils.engine.backtest.signal_rules import parse_rule
    from utils.engine.backtest.strategies import STRATEGIES
    from utils.engine.factors.expressions import parse_factor
    parsers = {"rule": parse_rule, "factor": parse_factor}
    inputs: set[str] = set()
    for combination in spec.combinations():
        for param in STRATEGIES[spec.strategy_type].params:
            text = combination.param_values.get(param.name)
            if param.kind in parsers and isinstance(text, str) and text:
                inputs |= parsers[param.kind](text, f"strategy_config.{param.name}").inputs()
    return frozenset(inputs)


def position_policy(model_store: Any, model_id: str) -> Any:
    """The ``ppo_position`` policy of ``strategy_config.position_model`` in an onnxruntime CPU session."""
    from utils.engine.models.store import ModelNotFound
    from utils.engine.position.policy import KIND, InvalidPolicyFile, PositionPolicy
    try:
        model_type = model_store.read_metadata(model_id).get("model_type")
    except ModelNotFound:
        raise PermanentJobError(f"strategy_config.position_model: no model {model_id!r} (deleted?)") from None
    if model_type != KIND:
        raise PermanentJobError(f"strategy_config.position_model: {model_id!r} is a {model_type!r} model, not {KIND}")
    try:
        return PositionPolicy(model_store.model_path(model_id))
    except InvalidPolicyFile as exc:
        raise PermanentJobError(f"strategy_config.position_model: {exc}") from None


def stored_factor_panel(redis: Any, spec: StrategySpec, aligned: AlignedBars) -> np.ndarray:
    """``top_k``'s stored factor (``factor_set_id`` + ``factor_name``) on the backtest's calendar and
    symbols: the set's value on its dates, NaN on the backtest's dates the set lacks (not eligible)."""
    set_id, name = spec.param_values["factor_set_id"], spec.param_values["factor_name"]
    try:
        panel = factor_sets.aligned_factor(redis, set_id, name, aligned.symbols, aligned.calendar)
    except KeyError:
        raise PermanentJobError(f"factor set {set_id} has no factor {name!r}") from None
    if panel is None:
        raise PermanentJobError(f"factor set {set_id} has expired or was removed; compute it again")
    return panel


def _sweep_summary(result: SweepResult) -> dict[str, Any]:
    return {"rank_by": result.rank_by, "combinations": result.combinations, "cells": result.cells,
            "seconds": result.seconds, "rows": result.table, "best": result.best}


def _search(spec: StrategySpec, aligned: AlignedBars, capital: float, commission: float,
            progress: Callable[[float], None], backend: Backend,
            chunk_scale: float = 1.0) -> tuple[dict[str, Any], StrategySpec]:
    """Sweep (and walk-forward) a grid; returns the result fields and the best parameter set,
    whose full backtest (equity curve, trades) becomes the job's main result. A GPU backend sweeps
    sleeve strategies with the CUDA sweep kernels (``chunk_scale``: the job's ``shard_scale``, less
    than 1 on a retry after a GPU out-of-memory); ``device`` says where the sweep ran."""
    share = 0.7 if spec.walk_forward else 0.9
    result = sweep_panels(spec, aligned.panels, aligned.start_index, capital, commission,
                          progress=lambda f: progress(LOAD_SHARE + (share - LOAD_SHARE) * f),
                          backend=backend, chunk_scale=chunk_scale)
    fields: dict[str, Any] = {"sweep": {**_sweep_summary(result), "device": result.device},
                              "best_params": result.best["params"]}
    if spec.walk_forward:
        calendar = aligned.calendar
        windows = walk_forward(spec, aligned.panels, aligned.start_index, capital, commission,
                               progress=lambda f: progress(share + (0.9 - share) * f), backend=backend)
        for window in windows:
            (train_start, test_start), (_, test_end) = window.pop("train_rows"), window.pop("test_rows")
            window.update(train_start=iso_time(calendar[train_start]), train_end=iso_time(calendar[test_start - 1]),
                          test_start=iso_time(calendar[test_start]), test_end=iso_time(calendar[test_end - 1]))
        fields["walk_forward"] = windows
    return fields, best_spec(spec, result)
