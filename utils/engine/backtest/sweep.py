"""Parameter sweeps and walk-forward analysis over one set of aligned bars.

A sweep runs every combination of ``spec.param_grid`` over all symbols as one job and ranks the
combinations by ``spec.rank_by`` (``max_drawdown`` ascending, every other metric descending).
Each combination is the single backtest's simulation (``simulate_sleeve``) and the single run's
reduction order, so a table row has the very numbers of the single run of that parameter set.
Sleeve strategies run whole combinations in parallel in one numba kernel (``sweep_batch``:
``sweep_portfolios`` reduces each combination to its equity curve, closed P&L, exposure and traded
value; sma_crossover's targets are built inside it from SMA lines computed once per window), a
chunk of combinations per call. Rebalancing strategies, and sleeves sized by a position policy,
run one combination after the other (``simulate_panels`` / ``SleeveBatch``). Indicator panels are
computed once per distinct parameter value and shared across combinations (``indicator_memo``).

On a GPU backend the sleeve strategies' sweep runs as CUDA kernels compiled from the same
sources (``utils/engine/cuda/sweep_kernels.py``, bit-identical); the panels are read to host
memory once and uploaded once. Rebalancing strategies and policy-sized sleeves run on the host.

Walk-forward: the evaluated period is cut into ``splits`` consecutive windows; in each, the first
``train_fraction`` of bars is the in-sample part where the grid is swept and the best combination
chosen, and that combination is then evaluated on the rest (out-of-sample), starting flat.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from utils.engine.backend import Backend
from utils.engine.backtest.config import StrategySpec, size_fractions, target_positions
from utils.engine.backtest.position_sizing import POLICY_POSITIONS, scaled_size_fractions
from utils.engine.backtest.runner import simulate_panels
from utils.engine.backtest.simulate import BacktestOutput, entry_fractions, sleeves_output
from utils.engine.backtest.sleeve_kernel import TRADE_COLUMNS, simulate_sleeves
from utils.engine.backtest.strategies import indicator_memo
from utils.engine.backtest.sweep_batch import sweep_metrics
from utils.engine.indicators.layout import to_host

ASCENDING_METRICS = ("max_drawdown",)
TABLE_LIMIT = 1000  # rows of the ranked table kept in a result


@dataclass(frozen=True)
class SweepResult:
    rank_by: str
    table: list[dict[str, Any]]       # ranked rows: {"rank", "params": {...}, "metrics": {...}}
    combinations: int
    cells: int                        # combinations x symbols x bars
    seconds: float
    device: str = "cpu"               # where the combinations ran: "cpu" or the GPU backend's label

    @property
    def best(self) -> dict[str, Any]:
        return self.table[0]


class SleeveBatch:
    """Reusable buffers and transposed inputs for running many parameter sets of ``spec`` (its
    sizing, fill and costs; any strategy parameters) over one panel."""

    def __init__(self, spec: StrategySpec, panels: dict[str, np.ndarray], start: int, consume: bool = False):
        """``consume``: ``panels`` is emptied as the batch makes its (symbols, bars) copies (a caller
        whose targets are already computed, holding no other reference, then keeps one copy)."""
        self.start = start
        close = panels["close"]
        self.base_fractions = size_fractions(spec, close)
        self.fractions = np.ascontiguousarray(entry_fractions(self.base_fractions, close.shape, spec.fill).T)
        self.policy_positions = panels.get(POLICY_POSITIONS) if spec.position_model else None
        del close
        self.columns = {field: np.ascontiguousarray((panels.pop(field) if consume else panels[field]).T)
                        for field in ("open", "high", "low", "close")}
        if consume:
            panels.clear()
        symbols, bars = self.columns["close"].shape
        reported = bars - start
        self.equity = np.empty((symbols, reported))
        self.shares = np.empty((symbols, reported))
        self.trades = np.empty((symbols, reported * 2 + 2, TRADE_COLUMNS))
        self.n_trades = np.empty(symbols, dtype=np.int64)
        self.traded = np.empty(symbols)

    def run(self, spec: StrategySpec, target: np.ndarray, capital: float, commission_rate: float) -> BacktestOutput:
        """The equal-sleeve portfolio of one parameter set; its ``positions`` and ``sleeve_equity``
        are views of the batch's buffers, overwritten by the next run."""
        config = spec.simulation_config(commission_rate)
        symbols = self.equity.shape[0]
        c = self.columns
        fractions = self.fractions
        if self.policy_positions is not None:  # the policy's size depends on the combination's directions
            scaled = scaled_size_fractions(spec, self.base_fractions, self.policy_positions, target)
            fractions = np.ascontiguousarray(entry_fractions(scaled, target.shape, spec.fill).T)
        simulate_sleeves(c["open"], c["high"], c["low"], c["close"], np.ascontiguousarray(target.T),
                         fractions, capital / symbols, config.cost_vector(), config.fill == "close",
                         config.allow_short, self.start, self.equity, self.shares, self.trades, self.n_trades,
                         self.traded)
        tables = [self.trades[symbol, :count] for symbol, count in enumerate(self.n_trades.tolist()) if count]
        return sleeves_output(self.equity, self.shares, tables, self.traded.tolist(), config.periods_per_year,
                              self.start)


def _rank(rows: list[dict[str, Any]], rank_by: str) -> list[dict[str, Any]]:
    sign = 1.0 if rank_by in ASCENDING_METRICS else -1.0
    rows.sort(key=lambda row: sign * row["metrics"][rank_by])
    for index, row in enumerate(rows, 1):
        row["rank"] = index
    return rows


def sweep_panels(spec: StrategySpec, panels: dict[str, np.ndarray], start: int, capital: float,
                 commission_rate: float, progress: Callable[[float], None] | None = None,
                 limit: int = TABLE_LIMIT, backend: Backend | None = None, chunk_scale: float = 1.0) -> SweepResult:
    """Every combination of ``spec.param_grid`` over (time x symbols) ``panels`` (arrays of
    ``backend``, host NumPy by default), evaluated from row ``start``; the ranked table keeps the
    best ``limit`` rows. ``chunk_scale``: a share of the GPU's combinations per launch (OOM retries)."""
    started = time.perf_counter()
    if backend is not None:
        panels = {field: to_host(backend.xp, panel) for field, panel in panels.items()}
    combinations = spec.combinations()
    grid_names = [name for name, _ in spec.param_grid]
    device = "cpu"
    with indicator_memo():
        if spec.is_portfolio or spec.position_model:
            metrics = _sequential_metrics(spec, combinations, panels, start, capital, commission_rate, progress)
        else:
            on_gpu = backend is not None and backend.is_gpu
            metrics = sweep_metrics(spec, combinations, panels, start, capital, commission_rate, progress,
                                    backend=backend if on_gpu else None, chunk_scale=chunk_scale)
            device = backend.label if on_gpu else device
    rows = [{"params": {name: combination.param_values[name] for name in grid_names}, "metrics": values}
            for combination, values in zip(combinations, metrics)]
    rows = _rank(rows, spec.rank_by)[:limit]
    cells = len(combinations) * panels["close"].shape[1] * (panels["close"].shape[0] - start)
    return SweepResult(spec.rank_by, rows, len(combinations), cells, time.perf_counter() - started, device)


def _sequential_metrics(spec: StrategySpec, combinations: list[StrategySpec], panels: dict[str, np.ndarray],
                        start: int, capital: float, commission_rate: float,
                        progress: Callable[[float], None] | None) -> list[dict[str, float]]:
    """One combination after the other: rebalancing strategies, and sleeves sized by a position
    policy (its size depends on each combination's directions)."""
    batch = None if spec.is_portfolio else SleeveBatch(spec, panels, start)
    metrics = []
    for index, combination in enumerate(combinations):
        target = target_positions(np, combination, panels, start)
        if batch is None:
            output = simulate_panels(combination, panels, start, capital, commission_rate, targets=target)
        else:
            output = batch.run(combination, target, capital, commission_rate)
        metrics.append(output.metrics(spec.periods_per_year, capital))
        if progress is not None and (index % 16 == 15 or index + 1 == len(combinations)):
            progress((index + 1) / len(combinations))
    return metrics


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
                 commission_rate: float, progress: Callable[[float], None] | None = None,
                 backend: Backend | None = None) -> list[dict[str, Any]]:
    """In-sample sweep then out-of-sample run per window (rows of ``panels``, host arrays); each
    window's indicators see all bars before it (no look-ahead: bars after the window are cut off).
    A GPU ``backend`` runs both on the CUDA kernels (same numbers)."""
    rows = panels["close"].shape[0]
    windows = walk_forward_windows(start, rows, spec.walk_forward.splits, spec.walk_forward.train_fraction)
    if not windows:
        raise ValueError(f"walk_forward: {rows - start} bars are too few for {spec.walk_forward.splits} splits")
    results = []
    for number, (train_start, test_start, test_end) in enumerate(windows):
        train = {field: panel[:test_start] for field, panel in panels.items()}
        in_sample = sweep_panels(spec, train, train_start, capital, commission_rate, limit=1, backend=backend)
        chosen = best_spec(spec, in_sample)
        test = {field: panel[:test_end] for field, panel in panels.items()}
        out_of_sample = simulate_panels(chosen, test, test_start, capital, commission_rate, backend=backend)
        results.append({"window": number + 1, "train_rows": (train_start, test_start),
                        "test_rows": (test_start, test_end), "best_params": in_sample.best["params"],
                        "in_sample": in_sample.best["metrics"],
                        "out_of_sample": out_of_sample.metrics(spec.periods_per_year, capital)})
        if progress is not None:
            progress((number + 1) / len(windows))
    return results
