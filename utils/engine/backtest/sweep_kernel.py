"""The sweep kernel: whole parameter combinations in parallel, each reduced to what its metrics need.

A sweep row needs, per combination, only the portfolio equity curve, the closed trades' P&L in
the trade table's order (entry bar, then symbol), the count of bars with a position and the
traded value. ``sweep_portfolios`` computes exactly those inside numba, one combination per
thread (``prange`` over combinations), with the single run's kernel (``simulate_sleeve``) and
the single run's reduction order, so that ``performance_metrics`` over them gives the very
numbers of the single run:

  * equity: the sleeves added one symbol after the other (what ``sleeve_equity.sum(axis=0)`` does
    over a (symbols, bars) array);
  * closed P&L: a stable counting sort of the symbol-major trade rows by entry bar, which is the
    table's ``lexsort((symbol, entry))`` order, open trades left out;
  * traded value: summed symbol after symbol from 0.0, as ``sum(traded, 0.0)``.

Targets come either as a (combinations, symbols, bars) array (any sleeve strategy, computed by
its signal function), or are built per symbol from two indicator lines (``crossover_target``:
sma_crossover's ``level`` and ``cross`` rules over precomputed SMA lines), which saves the
per-combination NumPy passes that otherwise cost more than the simulation itself.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from utils.engine.backtest.sleeve_kernel import (OPEN_REASON, T_ENTRY, T_PNL, T_REASON, TRADE_COLUMNS,
                                                 simulate_sleeve)

TARGETS_GIVEN, LEVEL, CROSS = 0, 1, 2  # how a combination's targets are had


@njit(cache=True)
def crossover_target(fast, slow, mode, allow_short, start, out):
    """``sma_crossover``'s target over one symbol's two lines into ``out``: ``LEVEL`` long while
    fast > slow (short while below with ``allow_short``); ``CROSS`` switched on crossings from row
    ``start`` (a crossing needs both lines strictly on either side on both bars; NaN is none),
    flat before it. The same values as ``strategies.sma_crossover`` (tested)."""
    bars = fast.shape[0]
    if mode == LEVEL:
        for bar in range(bars):
            value = 0.0
            if fast[bar] > slow[bar]:
                value = 1.0
            elif allow_short and fast[bar] < slow[bar]:
                value = -1.0
            out[bar] = value
        return
    held = 0
    for bar in range(bars):
        if bar < start:
            out[bar] = 0.0
            continue
        up = False
        down = False
        if bar >= 1:
            up = fast[bar - 1] < slow[bar - 1] and fast[bar] > slow[bar]
            down = fast[bar - 1] > slow[bar - 1] and fast[bar] < slow[bar]
        if up:
            held = 1
        elif down:
            if held > 0 or allow_short:
                held = -1 if allow_short else 0
        out[bar] = float(held)


@njit(parallel=True, cache=True)
def sweep_portfolios(open_t, high_t, low_t, close_t, fraction_t, targets, lines, fast_line, slow_line, modes,
                     capital, costs, fill_at_close, allow_short, start, equity, closed_pnl, n_closed, exposed_bars,
                     traded, held_bars):
    """Every combination ``k`` (rows of ``equity``), in parallel: its sleeves over the (symbols,
    bars) price rows, targets from ``targets[k]`` (``modes[k] == TARGETS_GIVEN``) or from
    ``lines[fast_line[k]]`` and ``lines[slow_line[k]]`` ((lines, symbols, bars)). Writes
    ``equity[k]`` (portfolio, bars from ``start``), ``closed_pnl[k, :n_closed[k]]`` (closed trades,
    entry then symbol order), ``exposed_bars[k]`` and ``traded[k]``; and ``held_bars[k]`` (the
    reported bars where any sleeve holds a position) when ``held_bars`` has a row per combination
    (a (0, 0) array otherwise: symbol shards of one sweep need the bars, not just their count)."""
    combinations = equity.shape[0]
    symbols, bars = close_t.shape
    reported = bars - start
    for k in prange(combinations):
        target = np.empty(bars)
        sleeve_equity = np.empty(reported)
        shares = np.empty(reported)
        trades = np.empty((reported * 2 + 2, TRADE_COLUMNS))
        entries = np.empty(symbols * reported, dtype=np.int64)
        pnls = np.empty(symbols * reported)
        held = np.zeros(reported, dtype=np.bool_)
        total = equity[k]
        count = 0
        value_sum = 0.0
        for symbol in range(symbols):
            if modes[k] == TARGETS_GIVEN:
                row = targets[k, symbol]
            else:
                crossover_target(lines[fast_line[k], symbol], lines[slow_line[k], symbol], modes[k], allow_short,
                                 start, target)
                row = target
            n_trades, _, value = simulate_sleeve(open_t[symbol], high_t[symbol], low_t[symbol], close_t[symbol], row,
                                                 fraction_t[symbol], capital, costs, fill_at_close, allow_short,
                                                 start, sleeve_equity, shares, trades, symbol)
            value_sum += value
            if symbol == 0:
                total[:] = sleeve_equity
            else:
                for bar in range(reported):
                    total[bar] += sleeve_equity[bar]
            for bar in range(reported):
                if shares[bar] != 0:
                    held[bar] = True
            for row_index in range(n_trades):
                if trades[row_index, T_REASON] != OPEN_REASON:
                    entries[count] = np.int64(trades[row_index, T_ENTRY])
                    pnls[count] = trades[row_index, T_PNL]
                    count += 1
        # stable counting sort by entry bar: within a bar, symbols stay ascending
        slots = np.zeros(bars + 1, dtype=np.int64)
        for index in range(count):
            slots[entries[index] + 1] += 1
        for bar in range(bars):
            slots[bar + 1] += slots[bar]
        out = closed_pnl[k]
        for index in range(count):
            bar = entries[index]
            out[slots[bar]] = pnls[index]
            slots[bar] += 1
        n_closed[k] = count
        exposed = 0
        for bar in range(reported):
            if held[bar]:
                exposed += 1
        exposed_bars[k] = exposed
        if held_bars.shape[0] == combinations and held_bars.shape[1] == reported:
            held_bars[k, :] = held
        traded[k] = value_sum
