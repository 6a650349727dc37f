"""The parameter sweep on a CUDA device: one thread per (combination, symbol), reduced on the device.

Three kernels per chunk of combinations, launched one after the other on one stream:

  1. ``sweep_sleeves``, one thread per (combination ``k``, symbol ``s``) (thread ``k * symbols +
     s``): the combination's target for that symbol, built on the device by ``crossover_target``
     from two shared SMA lines (sma_crossover) or read from uploaded targets (any other sleeve
     strategy), then ``simulate_sleeve``; both are the CPU kernels' own sources compiled as device
     functions (``target.device_function``). Each thread writes its sleeve's equity and shares
     (a column of (reported bars, combinations x symbols)), its trade rows (its region
     ``trades[:, thread]``, the CPU's ``2 * reported + 2`` rows), its trade count and traded value.
  2. ``sweep_curves``, one thread per (bar, combination): the portfolio equity at that bar, the
     sleeves added in symbol order starting from symbol 0's value (what ``sweep_portfolios`` does),
     and whether any sleeve holds a position.
  3. ``sweep_trades``, one thread per combination: the traded value summed symbol after symbol from
     0.0, the closed trades' P&L in the trade table's order by the CPU kernel's stable counting
     sort on the entry bar (symbol-major input, so symbols stay ascending within a bar), and the
     count of exposed bars.

No atomics and no reduction trees: every sum is a single thread's loop in the CPU's order, so the
results are deterministic and bit-identical to ``sweep_portfolios`` (``tests/cudasim``).

Memory: the prices, sizing fractions and SMA lines are uploaded once per sweep (shared by all
combinations, read in place). Per combination a chunk needs about ``symbols x (200 x reported +
8 x bars)`` bytes (the trade regions dominate); ``chunk_size`` takes as many combinations as fit
in half the device's free memory (or the ``chunk`` given). Only the reductions come back: the
portfolio curve, the closed P&L up to the longest list, counts and traded values (and the held-bar
masks when a symbol-sharded sweep asks for them).
"""
from __future__ import annotations

import functools
import types as pytypes
from typing import Any, Callable

import numpy as np

from utils.engine.backtest.sleeve_kernel import OPEN_REASON, T_ENTRY, T_PNL, T_REASON, TRADE_COLUMNS, simulate_sleeve
from utils.engine.backtest.sweep_kernel import TARGETS_GIVEN, crossover_target
from utils.engine.cuda import target

FREE_MEMORY_SHARE = 0.5  # of the device's free memory a chunk of combinations may take

# Names the kernel sources read as globals, bound at compile time (``_bound``; see sleeve_kernels).
cuda: Any = None
simulate: Any = None
crossover: Any = None

PANEL = "float64[:, ::1]"
CUBE = "float64[:, :, ::1]"
SLEEVES_SIGNATURE = (f"void({PANEL}, {PANEL}, {PANEL}, {PANEL}, {PANEL}, {CUBE}, {CUBE}, int64[::1], int64[::1], "
                     f"int64[::1], int64, float64, float64[::1], boolean, boolean, int64, {PANEL}, {PANEL}, {PANEL}, "
                     f"{CUBE}, int64[::1], float64[::1])")
CURVES_SIGNATURE = f"void({PANEL}, {PANEL}, int64, int64, {PANEL}, boolean[:, ::1])"
TRADES_SIGNATURE = (f"void({CUBE}, int64[::1], float64[::1], boolean[:, ::1], int64, int64, int64[:, ::1], {PANEL}, "
                    f"int64[::1], int64[::1], float64[::1])")


def _bound(function: Callable, **names: Any) -> Callable:
    copy = pytypes.FunctionType(function.__code__, {**function.__globals__, **names}, function.__name__,
                                function.__defaults__, function.__closure__)
    copy.__qualname__ = function.__qualname__
    return copy


def sweep_sleeves(open_, high, low, close, fraction, targets, lines, fast_line, slow_line, modes, combinations,
                  capital, costs, fill_at_close, allow_short, start, scratch, equity, shares, trades, n_trades, traded):
    """Kernel source: thread ``k * symbols + s`` runs combination ``k``'s sleeve on symbol ``s``."""
    thread = cuda.grid(1)
    symbols = close.shape[1]
    if thread < combinations * symbols:
        k = thread // symbols
        symbol = thread - k * symbols
        if modes[k] == TARGETS_GIVEN:
            row = targets[k, :, symbol]
        else:
            row = scratch[:, thread]
            crossover(lines[fast_line[k], :, symbol], lines[slow_line[k], :, symbol], modes[k], allow_short, start,
                      row)
        count, _, value = simulate(open_[:, symbol], high[:, symbol], low[:, symbol], close[:, symbol], row,
                                   fraction[:, symbol], capital, costs, fill_at_close, allow_short, start,
                                   equity[:, thread], shares[:, thread], trades[:, thread], symbol)
        n_trades[thread] = count
        traded[thread] = value


def sweep_curves(equity, shares, symbols, combinations, total, held):
    """Kernel source: thread ``bar * combinations + k`` sums combination ``k``'s sleeves at ``bar``
    in symbol order and flags whether any of them holds a position."""
    thread = cuda.grid(1)
    reported = equity.shape[0]
    if thread < combinations * reported:
        bar = thread // combinations
        k = thread - bar * combinations
        first = k * symbols
        value = equity[bar, first]
        any_held = shares[bar, first] != 0
        for symbol in range(1, symbols):
            value += equity[bar, first + symbol]
            if shares[bar, first + symbol] != 0:
                any_held = True
        total[bar, k] = value
        held[bar, k] = any_held


def sweep_trades(trades, n_trades, traded, held, symbols, combinations, slots, closed_pnl, n_closed, exposed,
                 traded_sum):
    """Kernel source: thread ``k`` reduces combination ``k``'s trades (traded value, closed P&L in
    entry-then-symbol order, exposed bars), as ``sweep_portfolios`` does."""
    k = cuda.grid(1)
    if k < combinations:
        first = k * symbols
        value_sum = 0.0
        for symbol in range(symbols):
            value_sum += traded[first + symbol]
        bars = slots.shape[0] - 1
        for bar in range(bars + 1):
            slots[bar, k] = 0
        count = 0
        for thread in range(first, first + symbols):
            for row in range(n_trades[thread]):
                if trades[row, thread, T_REASON] != OPEN_REASON:
                    slots[int(trades[row, thread, T_ENTRY]) + 1, k] += 1
                    count += 1
        for bar in range(bars):
            slots[bar + 1, k] += slots[bar, k]
        for thread in range(first, first + symbols):
            for row in range(n_trades[thread]):
                if trades[row, thread, T_REASON] != OPEN_REASON:
                    bar = int(trades[row, thread, T_ENTRY])
                    closed_pnl[slots[bar, k], k] = trades[row, thread, T_PNL]
                    slots[bar, k] += 1
        n_closed[k] = count
        bars_held = 0
        for bar in range(held.shape[0]):
            if held[bar, k]:
                bars_held += 1
        exposed[k] = bars_held
        traded_sum[k] = value_sum


def kernel_sources() -> list[tuple[Callable, str]]:
    """``(source, signature)`` of ``sweep_sleeves``, ``sweep_curves`` and ``sweep_trades``, bound
    to numba.cuda and the device functions of ``simulate_sleeve`` and ``crossover_target``."""
    cuda_module = target.cuda_module()
    sleeves = _bound(sweep_sleeves, cuda=cuda_module, simulate=target.device_function(simulate_sleeve),
                     crossover=target.device_function(crossover_target))
    return [(sleeves, SLEEVES_SIGNATURE), (_bound(sweep_curves, cuda=cuda_module), CURVES_SIGNATURE),
            (_bound(sweep_trades, cuda=cuda_module), TRADES_SIGNATURE)]


@functools.lru_cache(maxsize=None)
def sweep_kernels() -> tuple[Any, Any, Any]:
    """``(sweep_sleeves, sweep_curves, sweep_trades)`` compiled on first use (no FMA contraction)."""
    sleeves, curves, trades = (target.compile_kernel(source, signature) for source, signature in kernel_sources())
    return sleeves, curves, trades


def combination_bytes(symbols: int, bars: int, start: int, targets_given: bool) -> int:
    """Device bytes one combination of a chunk takes (sleeve buffers, scratch and reductions)."""
    reported = bars - start
    per_sleeve = 8 * (bars + 3 * reported + (reported * 2 + 2) * TRADE_COLUMNS + 2)
    if targets_given:
        per_sleeve += 8 * bars
    return symbols * per_sleeve + 9 * reported + 8 * (bars + 1) + 32


def chunk_size(combinations: int, per_combination: int, chunk: int | None = None, device_id: int = 0) -> int:
    """Combinations per kernel launch: ``chunk`` when given, else as many as fit in
    ``FREE_MEMORY_SHARE`` of device ``device_id``'s free memory (at least 1, at most ``combinations``)."""
    if chunk is None:
        with target.on_device(device_id):
            free, _ = target.cuda_module().current_context().get_memory_info()
        fitting = free * FREE_MEMORY_SHARE // per_combination
        chunk = int(min(fitting, combinations)) if np.isfinite(fitting) else combinations
    return max(1, min(int(chunk), combinations))


class DeviceSweep:
    """One sweep's inputs on the device (uploaded once) and its chunk buffers."""

    def __init__(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                 fractions: np.ndarray, lines: np.ndarray | None, capital: float, costs: np.ndarray,
                 fill_at_close: bool, allow_short: bool, start: int, chunk: int, device_id: int = 0):
        """Panels are host (bars, symbols); ``lines`` (windows, bars, symbols) or None when
        targets are given per chunk; ``capital`` is one sleeve's; ``device_id`` the CUDA device."""
        self.device_id = device_id
        with target.on_device(device_id):
            self._upload(open_, high, low, close, fractions, lines, capital, costs, fill_at_close, allow_short,
                         start, chunk)

    def _upload(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                fractions: np.ndarray, lines: np.ndarray | None, capital: float, costs: np.ndarray,
                fill_at_close: bool, allow_short: bool, start: int, chunk: int) -> None:
        self.bars, self.symbols = close.shape
        self.reported = self.bars - start
        self.start = start
        self.prices = [target.to_device(np.ascontiguousarray(panel, dtype=np.float64))
                       for panel in (open_, high, low, close, fractions)]
        self.lines = target.to_device(np.ascontiguousarray(lines if lines is not None else np.empty((1, 1, 1))))
        self.capital = float(capital)
        self.costs = target.to_device(costs)
        self.fill_at_close = bool(fill_at_close)
        self.allow_short = bool(allow_short)
        self.chunk = chunk
        sleeves = chunk * self.symbols
        reported = self.reported
        self.scratch = target.device_empty((self.bars, sleeves) if lines is not None else (1, 1))
        self.equity = target.device_empty((reported, sleeves))
        self.shares = target.device_empty((reported, sleeves))
        self.trades = target.device_empty((reported * 2 + 2, sleeves, TRADE_COLUMNS))
        self.n_trades = target.device_empty(sleeves, dtype=np.int64)
        self.traded = target.device_empty(sleeves)
        self.total = target.device_empty((reported, chunk))
        self.held = target.device_empty((reported, chunk), dtype=np.bool_)
        self.slots = target.device_empty((self.bars + 1, chunk), dtype=np.int64)
        self.closed_pnl = target.device_empty((self.symbols * reported, chunk))
        self.n_closed = target.device_empty(chunk, dtype=np.int64)
        self.exposed = target.device_empty(chunk, dtype=np.int64)
        self.traded_sum = target.device_empty(chunk)

    def run(self, fast_line: np.ndarray, slow_line: np.ndarray, modes: np.ndarray, targets: np.ndarray | None,
            held_bars: bool) -> list[tuple[np.ndarray, np.ndarray, Any, float]]:
        """One chunk (``len(modes) <= chunk`` combinations; ``targets`` (combinations, bars,
        symbols) when they are given): per combination, ``sweep_portfolios``' reductions."""
        with target.on_device(self.device_id):
            return self._run(fast_line, slow_line, modes, targets, held_bars)

    def _run(self, fast_line: np.ndarray, slow_line: np.ndarray, modes: np.ndarray, targets: np.ndarray | None,
             held_bars: bool) -> list[tuple[np.ndarray, np.ndarray, Any, float]]:
        count = len(modes)
        sleeves_kernel, curves_kernel, trades_kernel = sweep_kernels()
        indices = [target.to_device(np.ascontiguousarray(values, dtype=np.int64))
                   for values in (fast_line, slow_line, modes)]
        given = target.to_device(np.ascontiguousarray(targets, dtype=np.float64)) if targets is not None \
            else target.to_device(np.empty((1, 1, 1)))
        blocks, threads = target.launch_config(count * self.symbols)
        sleeves_kernel[blocks, threads](*self.prices, given, self.lines, *indices, count, self.capital, self.costs,
                                        self.fill_at_close, self.allow_short, self.start, self.scratch, self.equity,
                                        self.shares, self.trades, self.n_trades, self.traded)
        blocks, threads = target.launch_config(count * self.reported)
        curves_kernel[blocks, threads](self.equity, self.shares, self.symbols, count, self.total, self.held)
        blocks, threads = target.launch_config(count)
        trades_kernel[blocks, threads](self.trades, self.n_trades, self.traded, self.held, self.symbols, count,
                                       self.slots, self.closed_pnl, self.n_closed, self.exposed, self.traded_sum)
        n_closed = target.to_host(self.n_closed)[:count]
        longest = int(n_closed.max()) if count else 0
        closed = target.to_host(self.closed_pnl[:longest]) if longest else np.empty((0, self.chunk))
        total = target.to_host(self.total)
        exposed = target.to_host(self.exposed)
        traded = target.to_host(self.traded_sum)
        held = target.to_host(self.held) if held_bars else None
        return [(np.ascontiguousarray(total[:, k]), np.ascontiguousarray(closed[:n_closed[k], k]),
                 np.ascontiguousarray(held[:, k]) if held_bars else int(exposed[k]), float(traded[k]))
                for k in range(count)]
