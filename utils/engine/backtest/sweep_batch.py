"""A sleeve strategy's grid in chunks of combinations run by ``sweep_portfolios``, to metrics rows.

The prices, the sizing fractions and the costs are the same for every combination, so they are
laid out once (symbols, bars); only the targets change. For ``sma_crossover`` the SMA of every
distinct window is computed once (the indicator kernel the strategy uses) and the kernel builds
each combination's targets from two of them; any other sleeve strategy's targets come from its
signal function, a chunk at a time. Each row's metrics are ``performance_metrics`` over the
kernel's equity curve and closed P&L, plus turnover, as ``BacktestOutput.metrics`` computes them
for the single run (``tests/unit/test_backtest_sweep.py`` checks equality).

On a GPU backend the same reductions come from the CUDA sweep kernels
(``utils/engine/cuda/sweep_kernels.py``: one thread per (combination, symbol), reduced on the
device in the CPU kernel's order), bit-identical to ``sweep_portfolios`` (``tests/cudasim``).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from utils.engine.backend import Backend
from utils.engine.backtest.config import StrategySpec, size_fractions, target_positions
from utils.engine.backtest.simulate import entry_fractions
from utils.engine.backtest.sweep_kernel import CROSS, LEVEL, TARGETS_GIVEN, sweep_portfolios
from utils.engine.indicators import kernels
from utils.engine.metrics import performance_metrics

CHUNK = 32  # combinations per kernel call: enough for the threads, and a progress step
GIVEN_CHUNK = 8  # targets computed by the signal function are (symbols x bars) each
LINES_BUDGET_BYTES = 2 * 2**30  # above this, sma_crossover's targets come from its signal function


def _transposed(panel: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(panel, dtype=np.float64).T)


def crossover_windows(combinations: list[StrategySpec]) -> list[int]:
    return sorted({combo.param_values[name] for combo in combinations for name in ("fast", "slow")})


def crossover_lines(combinations: list[StrategySpec], close: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray, np.ndarray]:
    """``(lines (windows, symbols, bars), fast line index, slow line index, mode)`` per combination of
    an sma_crossover grid: every distinct window's SMA once."""
    windows = crossover_windows(combinations)
    position = {window: index for index, window in enumerate(windows)}
    host_close = np.ascontiguousarray(close, dtype=np.float64)
    lines = np.empty((len(windows), close.shape[1], close.shape[0]))
    for window, index in position.items():
        lines[index] = kernels.sma(np, host_close, window).T
    fast = np.array([position[combo.param_values["fast"]] for combo in combinations], dtype=np.int64)
    slow = np.array([position[combo.param_values["slow"]] for combo in combinations], dtype=np.int64)
    modes = np.array([CROSS if combo.param_values["entry"] == "cross" else LEVEL for combo in combinations],
                     dtype=np.int64)
    return lines, fast, slow, modes


def sweep_metrics(spec: StrategySpec, combinations: list[StrategySpec], panels: dict[str, np.ndarray], start: int,
                  capital: float, commission_rate: float, progress: Callable[[float], None] | None = None,
                  backend: Backend | None = None, chunk_scale: float = 1.0) -> list[dict[str, float]]:
    """Metrics of every combination (in order) of a sleeve strategy without a position policy."""
    return [_row_metrics(equity, closed, int(held), traded, spec.periods_per_year, capital)
            for equity, closed, held, traded in sweep_reductions(spec, combinations, panels, start, capital,
                                                                 commission_rate, progress, backend=backend,
                                                                 chunk_scale=chunk_scale)]


def uses_crossover_lines(spec: StrategySpec, combinations: list[StrategySpec], close: np.ndarray) -> bool:
    """Whether sma_crossover's targets are built in the kernel from SMA lines (else given)."""
    return spec.strategy_type == "sma_crossover" and \
        len(crossover_windows(combinations)) * close.size * 8 <= LINES_BUDGET_BYTES


def sweep_reductions(spec: StrategySpec, combinations: list[StrategySpec], panels: dict[str, np.ndarray],
                     start: int, capital: float, commission_rate: float,
                     progress: Callable[[float], None] | None = None, held_bars: bool = False,
                     backend: Backend | None = None,
                     chunk: int | None = None,
                     chunk_scale: float = 1.0,
                     consume_panels: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, Any, float]]:
    """Per combination (in order): its equity curve, closed P&L (entry then symbol order), exposed
    bars (their count; with ``held_bars``, the boolean mask of them) and traded value. On a GPU
    ``backend`` the CUDA sweep kernels compute them, ``chunk`` combinations per launch (default:
    what fits in the device's free memory) times ``chunk_scale`` (< 1 on a retry after a GPU
    out-of-memory, ``utils/gpu/oom.py``; the numbers do not depend on the chunk).
    ``consume_panels`` (CPU, sma_crossover's SMA lines): ``panels`` is emptied once the kernel's
    own (symbols, bars) copies are made, so a caller that holds no other reference to them keeps
    one copy of the prices during the run, not two (a symbol shard: -5 panels at its peak)."""
    if backend is not None and backend.is_gpu:
        yield from _device_reductions(spec, combinations, panels, start, capital, commission_rate, progress,
                                      held_bars, chunk, backend.device_id, chunk_scale)
        return
    close = panels["close"]
    bars, symbols = close.shape
    reported = bars - start
    fractions = _transposed(entry_fractions(size_fractions(spec, close), close.shape, spec.fill))
    config = spec.simulation_config(commission_rate)
    costs = config.cost_vector()
    crossover = uses_crossover_lines(spec, combinations, close)
    if crossover:
        lines, fast, slow, modes = crossover_lines(combinations, close)
        chunk = CHUNK
    else:
        lines, fast, slow = np.empty((1, 1, 1)), np.zeros(len(combinations), np.int64), np.zeros(len(combinations),
                                                                                                  np.int64)
        modes = np.full(len(combinations), TARGETS_GIVEN, dtype=np.int64)
        chunk = GIVEN_CHUNK
    del close
    consume = consume_panels and crossover  # given targets read the panels in the loop
    # the kernel's (symbols, bars) copies; consumed, each panel goes as its copy is made
    prices = [_transposed(panels.pop(field) if consume else panels[field]) for field in ("open", "high", "low", "close")]
    if consume:
        panels.clear()
    size = min(chunk, len(combinations))
    equity = np.empty((size, reported))
    closed_pnl = np.empty((size, symbols * reported))  # pages are touched only as far as trades reach
    n_closed = np.empty(size, dtype=np.int64)
    exposed = np.empty(size, dtype=np.int64)
    traded = np.empty(size)
    targets = np.empty((size, symbols, bars)) if modes[0] == TARGETS_GIVEN else np.empty((1, 1, 1))
    held = np.zeros((size, reported), dtype=np.bool_) if held_bars else np.zeros((0, 0), dtype=np.bool_)
    for first in range(0, len(combinations), size):
        part = combinations[first:first + size]
        count = len(part)
        if modes[0] == TARGETS_GIVEN:
            for index, combination in enumerate(part):
                targets[index] = target_positions(np, combination, panels, start).T
        sweep_portfolios(*prices, fractions, targets, lines, fast[first:first + count], slow[first:first + count],
                         modes[first:first + count], capital / symbols, costs, config.fill == "close",
                         config.allow_short, start, equity[:count], closed_pnl, n_closed, exposed, traded,
                         held[:count] if held_bars else held)
        for index in range(count):
            yield (equity[index].copy(), closed_pnl[index, :n_closed[index]].copy(),
                   held[index].copy() if held_bars else int(exposed[index]), float(traded[index]))
        if progress is not None:
            progress((first + count) / len(combinations))


def _device_reductions(spec: StrategySpec, combinations: list[StrategySpec], panels: dict[str, np.ndarray],
                       start: int, capital: float, commission_rate: float,
                       progress: Callable[[float], None] | None, held_bars: bool, chunk: int | None,
                       device_id: int, chunk_scale: float = 1.0) -> Iterator[tuple[np.ndarray, np.ndarray, Any, float]]:
    """``sweep_reductions`` on the current CUDA device: prices, fractions and SMA lines uploaded
    once, the combinations run a chunk at a time, only the reductions read back."""
    from utils.engine.cuda.sweep_kernels import DeviceSweep, chunk_size, combination_bytes

    close = panels["close"]
    bars, symbols = close.shape
    fractions = entry_fractions(size_fractions(spec, close), close.shape, spec.fill)
    config = spec.simulation_config(commission_rate)
    given = not uses_crossover_lines(spec, combinations, close)
    if given:
        lines = None
        fast = slow = np.zeros(len(combinations), np.int64)
        modes = np.full(len(combinations), TARGETS_GIVEN, dtype=np.int64)
    else:
        by_symbol, fast, slow, modes = crossover_lines(combinations, close)
        lines = np.ascontiguousarray(by_symbol.transpose(0, 2, 1))  # (windows, bars, symbols): same values
        del by_symbol
    size = chunk_size(len(combinations), combination_bytes(symbols, bars, start, given), chunk, device_id)
    size = max(1, int(size * chunk_scale))
    device = DeviceSweep(panels["open"], panels["high"], panels["low"], close, fractions, lines, capital / symbols,
                         config.cost_vector(), config.fill == "close", config.allow_short, start, size, device_id)
    for first in range(0, len(combinations), size):
        part = combinations[first:first + size]
        targets = np.stack([target_positions(np, combination, panels, start) for combination in part]) if given \
            else None
        yield from device.run(fast[first:first + len(part)], slow[first:first + len(part)],
                              modes[first:first + len(part)], targets, held_bars)
        if progress is not None:
            progress((first + len(part)) / len(combinations))


def _row_metrics(equity: np.ndarray, closed_pnl: np.ndarray, exposed_bars: int, traded: float,
                 periods_per_year: int, capital: float) -> dict[str, float]:
    """``BacktestOutput.metrics`` from the kernel's reductions (same inputs, same operations)."""
    reported = equity.shape[0]
    metrics = performance_metrics(equity, closed_pnl, periods_per_year, exposed_bars / reported, capital)
    mean_equity = float(np.mean(equity))
    turnover = traded / mean_equity * periods_per_year / reported if mean_equity > 0 else 0.0
    metrics["turnover"] = float(turnover)
    return metrics
