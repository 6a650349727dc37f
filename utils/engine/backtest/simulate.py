"""Long/flat portfolio simulation of target positions, one numba loop per symbol sleeve.

Portfolio rule (first version): the initial capital is split equally across the symbols into
independent sleeves; each sleeve is either flat (all cash) or all-in long its one symbol. A sleeve
never borrows from another, so the portfolio equity is the sum of the sleeve equities.

Fill conventions:
  * ``next_open`` (backtesting.py): a target seen at bar t's close trades at bar t+1's open, whole
    shares only: size = floor(cash / (open * (1 + commission_rate))).
  * ``close`` (vectorbt ``from_signals``): trades at bar t's close, fractional size =
    cash / (close * (1 + commission_rate)).
Commission = commission_rate x traded value, charged on entry and on exit, taken from cash.
Targets are re-read every bar, so an order that cannot fill (NaN or non-positive price, or cash
for less than one share) is retried while the target holds. Bars before ``start_index`` are
warm-up only: no decision is taken on them and they are not in the returned curves. Trade
indices are rows of the input arrays. A position still held after the last bar is reported as a
trade with ``is_open=True``, marked at the last close with no exit commission.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import njit

from utils.engine.indicators.layout import as_panel

FILLS = ("next_open", "close")
_TRADE_COLUMNS = 7  # entry_index, exit_index, entry_price, exit_price, size, entry_fee, exit_fee


@dataclass(frozen=True)
class Trade:
    symbol_index: int
    entry_index: int
    exit_index: int          # the last bar for an open trade
    entry_price: float
    exit_price: float        # the last close for an open trade
    size: float
    pnl: float               # net of entry and exit commission
    return_pct: float        # fraction: pnl / (entry value + entry commission)
    commission: float
    is_open: bool = False


@dataclass(frozen=True)
class BacktestOutput:
    equity: np.ndarray          # (bars from start_index,) portfolio value at each close
    positions: np.ndarray       # (bars, symbols) shares held at each close
    sleeve_equity: np.ndarray   # (bars, symbols) value of each symbol's sleeve
    trades: list[Trade]
    exposure: float             # fraction of reported bars with at least one position
    start_index: int


@njit(cache=True)
def _record_trade(trades, row, entry_index, exit_index, entry_price, exit_price, size, entry_fee,
                  exit_fee):
    trades[row, 0] = entry_index
    trades[row, 1] = exit_index
    trades[row, 2] = entry_price
    trades[row, 3] = exit_price
    trades[row, 4] = size
    trades[row, 5] = entry_fee
    trades[row, 6] = exit_fee


@njit(cache=True)
def _simulate_sleeve(open_, close, target, capital, commission_rate, fill_at_close, start):
    n_bars = close.shape[0]
    equity = np.empty(n_bars - start)
    shares_held = np.zeros(n_bars - start)
    trades = np.empty((n_bars - start + 1, _TRADE_COLUMNS))
    n_trades = 0
    cash = capital
    shares = 0.0
    entry_index = -1
    entry_price = 0.0
    entry_fee = 0.0
    mark = np.nan
    for bar in range(start, n_bars):
        decision_bar = bar if fill_at_close else bar - 1
        price = close[bar] if fill_at_close else open_[bar]
        if decision_bar >= start and np.isfinite(price) and price > 0:
            wants_long = target[decision_bar] > 0  # NaN target -> flat
            if wants_long and shares == 0.0:
                size = cash / (price * (1.0 + commission_rate))
                if not fill_at_close:
                    size = np.floor(size)
                if size > 0:
                    fee = size * price * commission_rate
                    cash -= size * price + fee
                    shares = size
                    entry_index = bar
                    entry_price = price
                    entry_fee = fee
            elif not wants_long and shares > 0.0:
                fee = shares * price * commission_rate
                cash += shares * price - fee
                _record_trade(trades, n_trades, entry_index, bar, entry_price, price, shares, entry_fee, fee)
                n_trades += 1
                shares = 0.0
        if np.isfinite(close[bar]):
            mark = close[bar]
        equity[bar - start] = cash + shares * mark if shares > 0.0 else cash
        shares_held[bar - start] = shares
    has_open = shares > 0.0
    if has_open:
        _record_trade(trades, n_trades, entry_index, n_bars - 1, entry_price, mark, shares,
                      entry_fee, 0.0)
        n_trades += 1
    return equity, shares_held, trades[:n_trades], has_open


def _host_panel(values: np.ndarray) -> np.ndarray:
    panel, _ = as_panel(np, values)
    return np.ascontiguousarray(panel)


def _to_trades(symbol_index: int, rows: np.ndarray, has_open: bool) -> list[Trade]:
    trades = []
    for row_number, row in enumerate(rows):
        entry_index, exit_index, entry_price, exit_price, size, entry_fee, exit_fee = row
        pnl = (exit_price - entry_price) * size - entry_fee - exit_fee
        cost = entry_price * size + entry_fee
        trades.append(Trade(symbol_index=symbol_index, entry_index=int(entry_index),
                            exit_index=int(exit_index), entry_price=float(entry_price),
                            exit_price=float(exit_price), size=float(size), pnl=float(pnl),
                            return_pct=float(pnl / cost) if cost > 0 else 0.0,
                            commission=float(entry_fee + exit_fee),
                            is_open=has_open and row_number == len(rows) - 1))
    return trades


def simulate_portfolio(open_: np.ndarray, close: np.ndarray, target_position: np.ndarray,
                       initial_capital: float, commission_rate: float, fill: str = "next_open",
                       start_index: int = 0,
                       progress: Callable[[float], None] | None = None) -> BacktestOutput:
    """Simulate long/flat sleeves following ``target_position`` (>0 long, else flat).

    ``progress(fraction_done)`` is called at least every ~10 % of symbols; an exception it raises
    (e.g. a cancelled job) propagates and aborts the run.
    """
    open_, close, target_position = (_host_panel(values) for values in (open_, close, target_position))
    if not open_.shape == close.shape == target_position.shape:
        raise ValueError(f"open_, close and target_position shapes differ: "
                         f"{open_.shape}, {close.shape}, {target_position.shape}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if not (np.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be positive, got {initial_capital!r}")
    if not (0 <= commission_rate < 1):
        raise ValueError(f"commission_rate must be in [0, 1), got {commission_rate!r}")
    n_bars, n_symbols = close.shape
    if n_symbols == 0 or not 0 <= start_index < n_bars:
        raise ValueError(f"need at least one symbol and 0 <= start_index < {n_bars}, "
                         f"got {n_symbols} symbols and start_index={start_index}")

    sleeve_capital = float(initial_capital) / n_symbols
    positions = np.zeros((n_bars - start_index, n_symbols))
    sleeve_equity = np.zeros((n_bars - start_index, n_symbols))
    trades: list[Trade] = []
    reported_step = 0
    for symbol in range(n_symbols):
        equity, shares, trade_rows, has_open = _simulate_sleeve(
            open_[:, symbol].copy(), close[:, symbol].copy(), target_position[:, symbol].copy(),
            sleeve_capital, float(commission_rate), fill == "close", int(start_index))
        sleeve_equity[:, symbol] = equity
        positions[:, symbol] = shares
        trades.extend(_to_trades(symbol, trade_rows, has_open))
        step = (symbol + 1) * 10 // n_symbols
        if progress is not None and (step > reported_step or symbol + 1 == n_symbols):
            reported_step = step
            progress((symbol + 1) / n_symbols)

    trades.sort(key=lambda trade: (trade.entry_index, trade.symbol_index))
    return BacktestOutput(equity=sleeve_equity.sum(axis=1), positions=positions,
                          sleeve_equity=sleeve_equity, trades=trades,
                          exposure=float((positions > 0).any(axis=1).mean()),
                          start_index=int(start_index))
