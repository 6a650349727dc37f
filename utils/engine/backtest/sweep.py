"""Parameter sweeps and walk-forward analysis over one set of aligned bars.

A sweep runs every combination of ``spec.param_grid`` over all symbols as one job and ranks the
combinations by ``spec.rank_by`` (``max_drawdown`` ascending, every other metric descending).
Each combination is the same simulation as a single backtest (``simulate_sleeve``; identical
numbers), run for all symbol sleeves at once in a parallel numba loop that keeps only what the
metrics need (portfolio equity, closed-trade P&L), so memory is bounded by one combination's
buffers (about ``symbols x bars x 100`` bytes) however large the grid. Indicator panels are
computed once per distinct parameter value and shared across combinations (``indicator_memo``).

Walk-forward: the evaluated period is cut into ``splits`` consecutive windows; in each, the first
``train_fraction`` of bars is the in-sample part where the grid is swept and the best combination
chosen, and that combination is then evaluated on the rest (out-of-sample), starting flat.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
from numba import njit, prange

from utils.engine.backtest.config import StrategySpec, size_fractions, target_positions
from utils.engine.backtest.rebalance import simulate_rebalancing
from utils.engine.backtest.simulate import FULL_EQUITY, OPEN_REASON, T_PNL, T_REASON, TRADE_COLUMNS, simulate_sleeve
from utils.engine.backtest.strategies import indicator_memo
from utils.engine.backtest.vector_sim import curve_metrics, simulate_columns
from utils.engine.backend import Backend
from utils.engine.metrics import performance_metrics

ASCENDING_METRICS = ("max_drawdown",)
TABLE_LIMIT = 1000  # rows of the ranked table kept in a result
GPU_MEMORY_BUDGET = 2 * 1024**3  # bytes a vectorised chunk may hold on the device
MAX_CHUNK_COLUMNS = 1 << 20      # (combination, symbol) columns per chunk on a GPU
CPU_CHUNK_COLUMNS = 1 << 13      # ... with NumPy (per-bar vectors that stay in cache)
COLUMN_STATE_BYTES = 8 * 64      # per-column state vectors and per-bar temporaries, generously


@dataclass(frozen=True)
class SweepResult:
    rank_by: str
    table: list[dict[str, Any]]       # ranked rows: {"rank", "params": {...}, "metrics": {...}}
    combinations: int
    cells: int                        # combinations x symbols x bars
    seconds: float

    @property
    def best(self) -> dict[str, Any]:
        return self.table[0]


@njit(parallel=True, cache=True)
def _simulate_sleeves(open_t, high_t, low_t, close_t, target_t, fraction_t, capital, costs, fill_at_close,
                      allow_short, start, equity, shares, trades, n_trades, traded):
    for column in prange(close_t.shape[0]):
        count, _, value = simulate_sleeve(open_t[column], high_t[column], low_t[column], close_t[column],
                                          target_t[column], fraction_t[column], capital, costs, fill_at_close,
                                          allow_short, start, equity[column], shares[column], trades[column],
                                          column)
        n_trades[column] = count
        traded[column] = value


class SleeveBatch:
    """Reusable buffers and transposed inputs for running many parameter sets over one panel."""

    def __init__(self, panels: dict[str, np.ndarray], start: int):
        self.start = start
        self.columns = {field: np.ascontiguousarray(panels[field].T) for field in ("open", "high", "low", "close")}
        symbols, bars = self.columns["close"].shape
        reported = bars - start
        self.equity = np.empty((symbols, reported))
        self.shares = np.empty((symbols, reported))
        self.trades = np.empty((symbols, reported * 2 + 2, TRADE_COLUMNS))
        self.n_trades = np.empty(symbols, dtype=np.int64)
        self.traded = np.empty(symbols)

    def run(self, spec: StrategySpec, target: np.ndarray, fractions: np.ndarray | None, capital: float,
            commission_rate: float) -> dict[str, float]:
        """Metrics of the equal-sleeve portfolio for one parameter set."""
        config = spec.simulation_config(commission_rate)
        symbols = self.equity.shape[0]
        if fractions is None:
            fractions = np.full(target.shape, FULL_EQUITY if config.fill == "next_open" else 1.0)
        c = self.columns
        _simulate_sleeves(c["open"], c["high"], c["low"], c["close"], np.ascontiguousarray(target.T),
                          np.ascontiguousarray(fractions.T), capital / symbols, config.cost_vector(),
                          config.fill == "close", config.allow_short, self.start, self.equity, self.shares,
                          self.trades, self.n_trades, self.traded)
        rows = np.arange(self.trades.shape[1])
        recorded = rows[None, :] < self.n_trades[:, None]
        closed = recorded & (self.trades[:, :, T_REASON] != OPEN_REASON)
        equity = self.equity.sum(axis=0)
        exposure = float((self.shares != 0).any(axis=0).mean())
        metrics = performance_metrics(equity, self.trades[:, :, T_PNL][closed], spec.periods_per_year,
                                      exposure, capital)
        mean_equity = float(equity.mean())
        metrics["turnover"] = (float(self.traded.sum()) / mean_equity * spec.periods_per_year / len(equity)
                               if mean_equity > 0 else 0.0)
        return metrics


def _rank(rows: list[dict[str, Any]], rank_by: str) -> list[dict[str, Any]]:
    sign = 1.0 if rank_by in ASCENDING_METRICS else -1.0
    rows.sort(key=lambda row: sign * row["metrics"][rank_by])
    for index, row in enumerate(rows, 1):
        row["rank"] = index
    return rows


def sweep_panels(spec: StrategySpec, panels: dict[str, np.ndarray], start: int, capital: float,
                 commission_rate: float, progress: Callable[[float], None] | None = None,
                 limit: int = TABLE_LIMIT, backend: Backend | None = None, vectorised: bool = False,
                 memory_budget: int = GPU_MEMORY_BUDGET) -> SweepResult:
    """Every combination of ``spec.param_grid`` over (time x symbols) ``panels``, evaluated from
    row ``start``; the ranked table keeps the best ``limit`` rows.

    With a GPU ``backend`` (or ``vectorised=True``, which runs the same route on the backend's
    array module, NumPy by default) sleeve strategies are evaluated by ``vector_sim`` many
    combinations at a time (``_sweep_columns``); the table has the same format and numbers."""
    started = time.perf_counter()
    combinations = spec.combinations()
    grid_names = [name for name, _ in spec.param_grid]
    if not spec.is_portfolio and (vectorised or (backend is not None and backend.is_gpu)):
        rows = _sweep_columns(spec, combinations, grid_names, panels, start, capital, commission_rate, progress,
                              backend.xp if backend is not None else np, memory_budget)
        return _result(spec, rows, limit, len(combinations), panels, start, started)
    rows = []
    with indicator_memo():
        if spec.is_portfolio:
            batch = None
        else:
            batch = SleeveBatch(panels, start)
            fractions = size_fractions(spec, panels["close"])
        for index, combination in enumerate(combinations):
            target = target_positions(np, combination, panels)
            if batch is None:
                metrics = _portfolio_metrics(combination, panels, start, capital, commission_rate, target)
            else:
                metrics = batch.run(combination, target, fractions, capital, commission_rate)
            params = combination.param_values
            rows.append({"params": {name: params[name] for name in grid_names}, "metrics": metrics})
            if progress is not None and (index % 16 == 15 or index + 1 == len(combinations)):
                progress((index + 1) / len(combinations))
    return _result(spec, rows, limit, len(combinations), panels, start, started)


def _result(spec, rows, limit, combinations, panels, start, started) -> SweepResult:
    rows = _rank(rows, spec.rank_by)[:limit]
    cells = combinations * panels["close"].shape[1] * (panels["close"].shape[0] - start)
    return SweepResult(spec.rank_by, rows, combinations, cells, time.perf_counter() - started)


def chunk_combinations(bars: int, symbols: int, memory_budget: int = GPU_MEMORY_BUDGET,
                       max_columns: int = MAX_CHUNK_COLUMNS) -> int:
    """Combinations per ``simulate_columns`` call: the chunk's int8 targets (bars x columns) plus
    the per-column state and per-bar temporaries (``COLUMN_STATE_BYTES`` each) stay within
    ``memory_budget`` bytes, and a chunk has at most ``max_columns`` columns; at least one."""
    per_combination = symbols * (bars + COLUMN_STATE_BYTES)
    return max(1, min(memory_budget // per_combination, max_columns // max(symbols, 1)))


def _sweep_columns(spec, combinations, grid_names, panels, start, capital, commission_rate, progress, xp,
                   memory_budget) -> list[dict[str, Any]]:
    """The vectorised route: targets per combination on the host (shared indicator memo, as the
    numba route), stacked as int8 signs ``(bars, combinations, symbols)``, and simulated a chunk
    of combinations at a time with ``simulate_columns`` on ``xp``; metrics from the per-combination
    portfolio curves (``curve_metrics``), with the numba route's definitions."""
    config = spec.simulation_config(commission_rate)
    close = panels["close"]
    bars, symbols = close.shape
    fractions = size_fractions(spec, close)
    if fractions is None:
        fractions = np.full(close.shape, FULL_EQUITY if config.fill == "next_open" else 1.0)
    device = {field: xp.asarray(np.ascontiguousarray(panels[field], dtype=np.float64))
              for field in ("open", "high", "low", "close")}
    device_fractions = xp.asarray(np.ascontiguousarray(fractions, dtype=np.float64))
    costs = config.cost_vector()
    per_chunk = chunk_combinations(bars, symbols, memory_budget,
                                   MAX_CHUNK_COLUMNS if xp is not np else CPU_CHUNK_COLUMNS)
    total = len(combinations)
    rows = []
    with indicator_memo():
        for first in range(0, total, per_chunk):
            chunk = combinations[first:first + per_chunk]
            signs = np.empty((bars, len(chunk), symbols), dtype=np.int8)
            for index, combination in enumerate(chunk):
                target = np.asarray(target_positions(np, combination, panels), dtype=np.float64)
                signs[:, index, :] = np.sign(np.nan_to_num(target, nan=0.0, posinf=1.0, neginf=-1.0))
                if progress is not None and index % 16 == 15:
                    progress((first + 0.5 * (index + 1)) / total)  # targets: the first half of a chunk
            simulated = (None if progress is None else
                         lambda done, first=first, size=len(chunk): progress((first + size * (0.5 + 0.5 * done))
                                                                            / total))
            out = simulate_columns(xp, device["open"], device["high"], device["low"], device["close"],
                                   xp.asarray(signs), device_fractions, capital / symbols, costs,
                                   config.fill == "close", config.allow_short, start, groups=symbols,
                                   keep_columns=False, progress=simulated)
            del signs
            host = {key: _host(xp, out[key]) for key in ("group_equity", "group_exposure_bars", "num_trades",
                                                          "wins", "gross_profit", "gross_loss", "traded")}
            reported = host["group_equity"].shape[0]
            per_symbol = {key: host[key].reshape(len(chunk), symbols)
                          for key in ("num_trades", "wins", "gross_profit", "gross_loss", "traded")}
            metrics = curve_metrics(host["group_equity"], per_symbol["num_trades"].sum(axis=1),
                                    per_symbol["wins"].sum(axis=1), per_symbol["gross_profit"].sum(axis=1),
                                    per_symbol["gross_loss"].sum(axis=1), host["group_exposure_bars"] / reported,
                                    spec.periods_per_year, capital, per_symbol["traded"].sum(axis=1))
            for combination, row in zip(chunk, metrics):
                params = combination.param_values
                rows.append({"params": {name: params[name] for name in grid_names}, "metrics": row})
    return rows


def _host(xp, values) -> np.ndarray:
    return values.get() if xp is not np and hasattr(values, "get") else np.asarray(values)


def best_spec(spec: StrategySpec, result: SweepResult) -> StrategySpec:
    """``spec`` with the best row's parameters and no grid."""
    return replace(spec, params=tuple({**spec.param_values, **result.best["params"]}.items()), param_grid=(),
                   walk_forward=None)


def walk_forward_windows(first: int, rows: int, splits: int, train_fraction: float) -> list[tuple[int, int, int]]:
    """``(train_start, test_start, test_end)`` row bounds (end exclusive) of each window."""
    bounds = np.linspace(first, rows, splits + 1).astype(int)
    windows = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        test_start = start + int((end - start) * train_fraction)
        if test_start - start >= 2 and end - test_start >= 2:
            windows.append((int(start), int(test_start), int(end)))
    return windows


def walk_forward(spec: StrategySpec, panels: dict[str, np.ndarray], start: int, capital: float,
                 commission_rate: float, progress: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """In-sample sweep then out-of-sample run per window (rows of ``panels``); each window's
    indicators see all bars before it (no look-ahead: bars after the window are cut off)."""
    rows = panels["close"].shape[0]
    windows = walk_forward_windows(start, rows, spec.walk_forward.splits, spec.walk_forward.train_fraction)
    if not windows:
        raise ValueError(f"walk_forward: {rows - start} bars are too few for {spec.walk_forward.splits} splits")
    results = []
    for number, (train_start, test_start, test_end) in enumerate(windows):
        train = {field: panel[:test_start] for field, panel in panels.items()}
        in_sample = sweep_panels(spec, train, train_start, capital, commission_rate, limit=1)
        chosen = best_spec(spec, in_sample)
        test = {field: panel[:test_end] for field, panel in panels.items()}
        if spec.is_portfolio:
            out_of_sample = _portfolio_metrics(chosen, test, test_start, capital, commission_rate)
        else:
            out_of_sample = SleeveBatch(test, test_start).run(
                chosen, target_positions(np, chosen, test), size_fractions(chosen, test["close"]), capital,
                commission_rate)
        results.append({"window": number + 1, "train_rows": (train_start, test_start),
                        "test_rows": (test_start, test_end), "best_params": in_sample.best["params"],
                        "in_sample": in_sample.best["metrics"], "out_of_sample": out_of_sample})
        if progress is not None:
            progress((number + 1) / len(windows))
    return results


def _portfolio_metrics(spec: StrategySpec, panels: dict[str, np.ndarray], start: int, capital: float,
                       commission_rate: float, target: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of one parameter set of a shared-cash (rebalancing) strategy."""
    if target is None:
        target = target_positions(np, spec, panels)
    output = simulate_rebalancing(panels["open"], panels["close"], target, capital,
                                  spec.simulation_config(commission_rate), start)
    return output.metrics(spec.periods_per_year, capital)
