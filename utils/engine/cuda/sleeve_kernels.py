"""The sleeve simulation on a CUDA device: one thread per symbol, the CPU kernel's own rules.

``simulate_sleeve`` (``utils/engine/backtest/sleeve_kernel.py``) and the small rule functions it
calls (``stop_exit``, ``entry_size``, ``close_position``, ``commission``, ...) are compiled a
second time, from the same Python source, as CUDA device functions (``target.device_function``);
the kernel here only picks its symbol and hands the device function that symbol's column views.
Both fills, costs, stops and sizing are therefore the CPU's code, not a port of it.

Layout (all float64 device arrays, inputs uploaded once):
  * prices, targets and entry fractions are the (bars, symbols) panels as they are on the host:
    thread ``s`` reads column ``s``, so a warp's reads at one bar are adjacent (coalesced);
  * ``equity`` and ``shares`` are (reported bars, symbols), written in place, column per thread;
  * trade rows go to the symbol's own region ``trades[:, s]`` of (2 * reported + 2, symbols, 11):
    the CPU's bound, so a sleeve never writes past its region (the CPU's overflow behaviour); row
    ``r`` of every symbol is contiguous, so only the first ``max(n_trades)`` rows come back.

``simulate_portfolio_on_device`` returns the very ``BacktestOutput`` of ``simulate_portfolio``:
the per-symbol results come back once and go through the same host reduction
(``sleeves_output``), laid out as the CPU path lays them out so NumPy sums in the same order.
"""
from __future__ import annotations

import functools
import types as pytypes
from typing import Any, Callable

import numpy as np

from utils.engine.backtest.simulate import BacktestOutput, SimulationConfig, entry_fractions, sleeves_output
from utils.engine.backtest.sleeve_kernel import TRADE_COLUMNS, simulate_sleeve
from utils.engine.cuda import target


# Names the kernel sources below read as globals, bound when a kernel is compiled (``_bound``):
# numba.cuda is imported lazily, and the simulator swaps its per-thread ``cuda`` in through the
# kernel function's globals.
cuda: Any = None
simulate: Any = None

PANEL = "float64[:, ::1]"
SLEEVE_PANEL_SIGNATURE = (f"void({PANEL}, {PANEL}, {PANEL}, {PANEL}, {PANEL}, {PANEL}, float64, float64[::1], "
                          f"boolean, boolean, int64, {PANEL}, {PANEL}, float64[:, :, ::1], int64[::1], float64[::1])")


def _bound(function: Callable, **names: Any) -> Callable:
    """A copy of kernel source ``function`` whose globals ``names`` are the given objects."""
    copy = pytypes.FunctionType(function.__code__, {**function.__globals__, **names}, function.__name__,
                                function.__defaults__, function.__closure__)
    copy.__qualname__ = function.__qualname__
    return copy


def sleeve_panel(open_, high, low, close, target_, fraction, capital, costs, fill_at_close, allow_short, start,
                 equity, shares, trades, n_trades, traded):
    """Kernel source: thread ``s`` runs ``simulate_sleeve`` on symbol ``s``'s columns."""
    symbol = cuda.grid(1)
    if symbol < close.shape[1]:
        count, _, value = simulate(open_[:, symbol], high[:, symbol], low[:, symbol], close[:, symbol],
                                   target_[:, symbol], fraction[:, symbol], capital, costs, fill_at_close,
                                   allow_short, start, equity[:, symbol], shares[:, symbol], trades[:, symbol],
                                   symbol)
        n_trades[symbol] = count
        traded[symbol] = value


def sleeve_panel_source() -> Callable:
    """``sleeve_panel`` bound to numba.cuda and ``simulate_sleeve``'s device function."""
    return _bound(sleeve_panel, cuda=target.cuda_module(), simulate=target.device_function(simulate_sleeve))


@functools.lru_cache(maxsize=None)
def sleeve_panel_kernel() -> Any:
    """``sleeve_panel`` compiled on first use (no FMA contraction: ``target.compile_kernel``)."""
    return target.compile_kernel(sleeve_panel_source(), SLEEVE_PANEL_SIGNATURE)


def simulate_portfolio_on_device(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                                 target_position: np.ndarray, initial_capital: float, config: SimulationConfig,
                                 start_index: int, size_fraction: np.ndarray | None = None,
                                 device_id: int = 0) -> BacktestOutput:
    """``simulate_portfolio`` (same arguments, host (bars, symbols) panels) with the sleeves run on
    CUDA device ``device_id``; bit-identical results."""
    panels = [np.ascontiguousarray(values, dtype=np.float64) for values in (open_, high, low, close,
                                                                           target_position)]
    if len({panel.shape for panel in panels}) != 1 or panels[0].ndim != 2:
        raise ValueError(f"open, high, low, close and target panels must share one (bars, symbols) shape, got "
                         f"{[panel.shape for panel in panels]}")
    if not (np.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be positive, got {initial_capital!r}")
    bars, symbols = panels[0].shape
    if symbols == 0 or not 0 <= start_index < bars:
        raise ValueError(f"need at least one symbol and 0 <= start_index < {bars}, "
                         f"got {symbols} symbols and start_index={start_index}")
    fractions = np.ascontiguousarray(entry_fractions(size_fraction, (bars, symbols), config.fill))
    with target.on_device(device_id):
        sleeve_equity, positions, tables, traded = _run_sleeves(panels + [fractions], initial_capital / symbols,
                                                                config, start_index)
    return sleeves_output(sleeve_equity, positions, tables, traded, config.periods_per_year, int(start_index))


def _run_sleeves(inputs: list[np.ndarray], sleeve_capital: float, config: SimulationConfig,
                 start_index: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[float]]:
    """Upload, launch, read back: (sleeve equity, positions) (symbols, bars) C-ordered, the trade
    rows of each symbol that traded, and each sleeve's traded value."""
    bars, symbols = inputs[0].shape
    reported = bars - start_index
    inputs = [target.to_device(panel) for panel in inputs]
    costs = target.to_device(config.cost_vector())
    equity = target.device_empty((reported, symbols))
    shares = target.device_empty((reported, symbols))
    trades = target.device_empty((reported * 2 + 2, symbols, TRADE_COLUMNS))
    n_trades = target.device_empty(symbols, dtype=np.int64)
    traded = target.device_empty(symbols)
    blocks, threads = target.launch_config(symbols)
    sleeve_panel_kernel()[blocks, threads](*inputs, float(sleeve_capital), costs, config.fill == "close",
                                           config.allow_short, int(start_index), equity, shares, trades, n_trades,
                                           traded)
    counts = target.to_host(n_trades)
    top = int(counts.max())
    rows = target.to_host(trades[:top]) if top else None
    tables = [rows[:count, symbol].copy() for symbol, count in enumerate(counts.tolist()) if count]
    # (symbols, bars) C-ordered like the CPU path's buffers: NumPy then sums the sleeves in the same order
    sleeve_equity = np.ascontiguousarray(target.to_host(equity).T)
    positions = np.ascontiguousarray(target.to_host(shares).T)
    return sleeve_equity, positions, tables, target.to_host(traded).tolist()
