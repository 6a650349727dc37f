"""Symbol shards of large backtests and sweeps: split, run as child jobs, reduce in the parent.

A sleeve strategy's portfolio is N independent sleeves of ``capital / N`` each (``simulate_sleeves``
never lets one symbol's cash touch another's), so a job over many symbols splits exactly into
symbol chunks of ``SHARD_SYMBOLS``: each chunk is a ``backtest_shard`` child job on the same Redis
Streams queue (any worker on any machine takes it) that simulates its sleeves with the same sleeve
capital and returns, per parameter combination, the sum of its sleeves' equity curves, its closed
trades' P&L, the bars where any of its sleeves held a position and its traded value (a sweep's
shard runs the sweep's batched kernel). The parent adds each shard's result to running totals in
shard order as it arrives (holding one shard's result at a time), then computes the metrics and
the ranking from the totals, as the unsharded job does from the whole panel (sums in another
order: equal to ~1e-15). Shards whose calendars differ (symbols with other bar times) cannot be
summed bar by bar: the parent then runs the job unsharded itself.

The fan-out itself (child ids, enqueue, waiting, progress, cancel, per-shard retry) is
``utils/tasks/fanout.py``'s, shared with the feature and factor shards.

Deadlock: children have their own task type and so their own per-worker slots; a parent waiting
in a ``backtest`` slot never holds a slot a child needs, so even when every backtest slot of
every worker holds a parent, the children run. The parent polls its children (bounded by
``SHARD_WAIT_SECONDS``), reports their mean progress (never backwards), cancels them when it is
cancelled (not when it lost its lease or its worker shuts down: its next attempt reuses them),
and fails only when a child failed after its own attempts (a child's retries re-run that shard,
never the whole job). Child ids derive from the parent's id,
so a retried parent finds the shards it already enqueued (enqueue is idempotent per id).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from utils.data.store import SymbolNotFound
from utils.engine.backtest.config import StrategySpec, target_positions, validate_strategy_config
from utils.engine.backtest.runner import NoDataInRange, _per_symbol_summary, align_bars, trade_records
from utils.engine.backtest.sweep import SleeveBatch
from utils.engine.backtest.sweep_batch import sweep_reductions
from utils.engine.metrics import performance_metrics
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks import fanout
from utils.tasks.fanout import fan_out
from utils.tasks.bar_cache import StoredBarsCache

SHARD_TYPE = "backtest_shard"


def split_symbols(symbols: list[str], size: int) -> list[list[str]]:
    return [symbols[first:first + size] for first in range(0, len(symbols), size)]


def child_job_id(parent_id: str, round_name: str, index: int) -> str:
    return fanout.child_job_id("bs", parent_id, round_name, index)


def shard_spec(payload: dict[str, Any]) -> tuple[StrategySpec, list[StrategySpec]]:
    """The shard's spec and the combinations it simulates (the grid's, or the one parameter set)."""
    try:
        spec = validate_strategy_config(payload["strategy_config"])
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    chosen = payload.get("params")
    if chosen is not None:  # the sweep's best parameter set: its full backtest
        spec = replace(spec, params=tuple({**spec.param_values, **chosen}.items()), param_grid=(), walk_forward=None)
    return spec, spec.combinations() if spec.param_grid else [spec]


def release_freed_memory() -> None:
    """Give back to the OS what the allocators keep after buffers are freed: Arrow's memory pool
    (the Parquet reads' columns) and glibc's heap (malloc_trim: a symbol's columns are smaller
    than glibc's mmap threshold, so their freed pages otherwise stay in the process)."""
    pyarrow = sys.modules.get("pyarrow")  # loaded only by the Parquet store
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on another C library."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def make_shard_handler(resources: Any):
    stored_bars = StoredBarsCache(resources.bar_store, resources.settings.backtest_bar_cache_mb * 2**20)

    def handle(context: JobContext) -> dict[str, Any]:
        payload = context.payload
        spec, combinations = shard_spec(payload)
        symbols = payload["symbols"]
        try:
            stored = stored_bars.read_many(symbols, payload["end_ns"])
            columns = {s: stored[s].columns() for s in symbols}
            del stored  # the columns alone hold the read bars now (unless the bar cache keeps them)
            # consumed: each field leaves the read columns as it enters its panel, so the shard's
            # peak holds about one copy of its bars, not two
            aligned = align_bars(spec, columns, payload["start_ns"], payload["end_ns"], consume=True,
                                 released=release_freed_memory)
        except (SymbolNotFound, NoDataInRange) as exc:
            raise PermanentJobError(str(exc)) from None
        # drop the rest of the read bars (and the memory Arrow's pool keeps after a Parquet read)
        # before the kernels run (bench scale: -230 MiB on a 50 x 94,500-bar shard)
        del columns
        release_freed_memory()
        start = aligned.start_index
        capital = payload["sleeve_capital"] * len(symbols)
        times = aligned.calendar[start:].tolist()
        if spec.param_grid:  # the sweep's batched kernel, keeping the bars each combination held
            reductions = sweep_reductions(spec, combinations, aligned.panels, start, capital,
                                          payload["commission_rate"], context.progress, held_bars=True,
                                          consume_panels=True)  # the kernel's copies replace the panels
            return {"times": times, "rows": [
                {"equity": equity.tolist(), "closed_pnl": closed.tolist(), "exposed": held.astype(int).tolist(),
                 "traded": traded} for equity, closed, held, traded in reductions]}
        # the first targets before the batch: with one combination (the best set's full backtest)
        # the batch then takes the panels over (one copy of the prices during the simulation, not two)
        target = target_positions(np, combinations[0], aligned.panels, start)
        batch = SleeveBatch(spec, aligned.panels, start, consume=len(combinations) == 1)
        rows = []
        for index, combination in enumerate(combinations):
            if index:
                target = target_positions(np, combination, aligned.panels, start)
            output = batch.run(combination, target, capital, payload["commission_rate"])
            row = {"equity": output.equity.tolist(), "closed_pnl": output.closed_pnl.tolist(),
                   "exposed": (output.positions != 0).any(axis=1).astype(int).tolist(),
                   "traded": sum(batch.traded.tolist(), 0.0)}
            # a full backtest: its trades and per-symbol rows too
            row["trades"] = [list(trade) for trade in trade_records(output.trade_table, symbols, aligned.calendar)]
            row["symbol_metrics"] = _per_symbol_summary(symbols, output, payload["sleeve_capital"], False)
            rows.append(row)
            context.progress((index + 1) / len(combinations))
        return {"times": times, "rows": rows}
    return handle


class ShardTotals:
    """Running totals over shards, added in shard order (so the sums are the same on every run) and
    each shard's result dropped once added: the parent holds one shard's result at a time."""

    def __init__(self) -> None:
        self.times: list[int] | None = None
        self.same_calendar = True  # False: a shard's bars are on other times (the job runs unsharded)
        self.rows: list[list[Any]] = []  # per combination: [equity, held mask, closed P&L parts, traded]
        self.trades: list[tuple[Any, ...]] = []
        self.symbol_metrics: dict[str, Any] = {}
        # one object per distinct text (symbols, bar times, directions, exit reasons): a sharded
        # backtest's parent holds every trade of every shard (868k on bench scale's universe), and
        # JSON decoding makes a new string per occurrence
        self._texts: dict[str, str] = {}

    def _compact(self, trade: list[Any]) -> tuple[Any, ...]:
        texts = self._texts
        return tuple(texts.setdefault(value, value) if isinstance(value, str) else value for value in trade)

    def add(self, result: dict[str, Any]) -> None:
        if self.times is None:
            self.times = result["times"]
            bars = len(self.times)
            self.rows = [[np.zeros(bars), np.zeros(bars, dtype=bool), [], 0.0] for _ in result["rows"]]
        elif result["times"] != self.times:
            self.same_calendar = False
        if not self.same_calendar:
            return
        for total, row in zip(self.rows, result["rows"]):
            total[0] += np.asarray(row["equity"], dtype=np.float64)
            total[1] |= np.asarray(row["exposed"], dtype=bool)
            total[2].append(np.asarray(row["closed_pnl"], dtype=np.float64))
            total[3] += row["traded"]
            self.trades.extend(self._compact(trade) for trade in row.get("trades", ()))
            self.symbol_metrics.update(row.get("symbol_metrics", {}))

    def combination(self, index: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Combination ``index`` over all shards: (equity, closed P&L, exposure, traded value)."""
        equity, held, closed, traded = self.rows[index]
        return equity, np.concatenate(closed) if closed else np.empty(0), float(held.mean()), traded


def run_shards(queue: Any, context: JobContext, round_name: str, payloads: list[dict[str, Any]],
               progress: Callable[[float], None], wait_seconds: float) -> ShardTotals:
    """Enqueue one child per payload, wait for all, add their results up in shard order
    (``utils.tasks.fanout.fan_out``)."""
    ids = [child_job_id(context.job_id, round_name, index) for index in range(len(payloads))]
    totals = ShardTotals()
    fan_out(queue, context, SHARD_TYPE, ids, payloads, lambda index, result: totals.add(result), progress,
            wait_seconds)
    return totals


def combined_metrics(equity: np.ndarray, closed: np.ndarray, exposure: float, traded: float,
                     periods_per_year: int, capital: float) -> dict[str, float]:
    """``BacktestOutput.metrics`` of the summed sleeves."""
    metrics = performance_metrics(equity, closed, periods_per_year, exposure, capital)
    mean_equity = float(np.mean(equity))
    reported = equity.shape[0]
    metrics["turnover"] = float(traded / mean_equity * periods_per_year / reported if mean_equity > 0 else 0.0)
    return metrics
