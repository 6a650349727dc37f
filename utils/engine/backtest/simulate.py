"""Portfolio simulation of target directions: one sleeve per symbol, run by the sleeve kernel.

Portfolio rule: the initial capital is split equally across the symbols into independent sleeves
(shared-cash portfolios with periodic rebalancing live in ``rebalance.py``). Each sleeve is flat,
long or (``allow_short``) short its one symbol, following ``simulate_sleeve``'s rules (targets,
fills, costs, sizing and stops: see ``sleeve_kernel.py``); the portfolio equity is the sum of the
sleeves. ``sleeves_output`` is the one reduction from sleeves to a portfolio, for the single run
here and the sweep's parallel batch alike.

Bars before ``start_index`` are warm-up only: no decision is taken on them and they are not in the
returned curves. A position still held after the last bar is reported as an open trade, marked at
the last close with no exit commission.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from utils.engine.backtest.sleeve_kernel import (C_BORROW, C_FIXED_CASH, C_MIN, C_RATE, C_SLIPPAGE, C_SPREAD,
                                                 C_STOP_LOSS, C_TAKE_PROFIT, C_TRAILING, COST_FIELDS, EXIT_REASONS,
                                                 OPEN_REASON, T_BORROW, T_ENTRY, T_ENTRY_FEE, T_ENTRY_PRICE, T_EXIT,
                                                 T_EXIT_FEE, T_EXIT_PRICE, T_PNL, T_REASON, T_SIZE, T_SYMBOL,
                                                 TRADE_COLUMNS, simulate_sleeve)
from utils.engine.indicators.layout import as_panel
from utils.engine.metrics import performance_metrics

FILLS = ("next_open", "close")
FULL_EQUITY = 1.0 - 2.0 ** -52  # backtesting.py's size for "all of the equity"


@dataclass(frozen=True)
class SimulationConfig:
    """How orders fill and what they cost; every fraction is a plain fraction (0.001 = 0.1 %)."""

    fill: str = "next_open"
    allow_short: bool = False
    commission_rate: float = 0.0
    commission_min: float = 0.0
    slippage: float = 0.0
    spread: float = 0.0
    borrow_rate: float = 0.0          # annual, charged per bar as borrow_rate / periods_per_year
    stop_loss: float = 0.0
    take_profit: float = 0.0
    trailing_stop: float = 0.0
    fixed_cash: float = 0.0           # > 0: each entry buys this much cash worth (capped by equity)
    periods_per_year: int = 252

    def __post_init__(self):
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        for name in ("commission_rate", "slippage", "spread"):
            value = getattr(self, name)
            if not (0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        for name in ("commission_min", "borrow_rate", "stop_loss", "take_profit", "trailing_stop",
                     "fixed_cash"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("stop_loss", "trailing_stop"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name} must be below 1 (a fraction of the entry price)")

    def cost_vector(self) -> np.ndarray:
        costs = np.zeros(COST_FIELDS)
        costs[C_RATE] = self.commission_rate
        costs[C_MIN] = self.commission_min
        costs[C_SLIPPAGE] = self.slippage
        costs[C_SPREAD] = self.spread
        costs[C_BORROW] = self.borrow_rate / self.periods_per_year
        costs[C_STOP_LOSS] = self.stop_loss
        costs[C_TAKE_PROFIT] = self.take_profit
        costs[C_TRAILING] = self.trailing_stop
        costs[C_FIXED_CASH] = self.fixed_cash
        return costs


@dataclass(frozen=True)
class Trade:
    symbol_index: int
    entry_index: int
    exit_index: int          # the last bar for an open trade
    entry_price: float
    exit_price: float        # the last close for an open trade
    size: float              # shares, > 0 long, < 0 short
    pnl: float               # net of commissions and borrow cost
    return_pct: float        # fraction: pnl / (entry value + entry commission)
    commission: float
    is_open: bool = False
    exit_reason: str = "signal"
    borrow_cost: float = 0.0

    @property
    def direction(self) -> str:
        return "long" if self.size > 0 else "short"


@dataclass(frozen=True)
class BacktestOutput:
    equity: np.ndarray          # (bars from start_index,) portfolio value at each close
    positions: np.ndarray       # (bars, symbols) shares held at each close (signed)
    sleeve_equity: np.ndarray   # (bars, symbols) value of each symbol's sleeve
    trade_table: np.ndarray     # (n, TRADE_COLUMNS) rows (T_* columns), sorted by entry then symbol
    exposure: float             # fraction of reported bars with at least one position
    turnover: float             # traded value / average equity, per year
    start_index: int
    device: str = "cpu"         # where the sleeves were simulated: "cpu" or the GPU backend's label

    @cached_property
    def trades(self) -> list[Trade]:
        """The trade table as objects, built on first use (metrics need only ``closed_pnl``)."""
        return trades_from_table(self.trade_table)

    @property
    def closed_pnl(self) -> np.ndarray:
        """P&L of the trades closed within the run (open ones excluded), in table order."""
        return self.trade_table[self.trade_table[:, T_REASON] != OPEN_REASON, T_PNL]

    def metrics(self, periods_per_year: int, initial_capital: float) -> dict[str, float]:
        """``performance_metrics`` of this run, plus its turnover."""
        metrics = performance_metrics(self.equity, self.closed_pnl, periods_per_year, self.exposure,
                                      initial_capital)
        metrics["turnover"] = self.turnover
        return metrics


def _host_panel(values: np.ndarray) -> np.ndarray:
    panel, _ = as_panel(np, values)
    return np.ascontiguousarray(panel, dtype=np.float64)


def trade_pnl(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pnl, return_pct, commission)`` of trade rows, vectorised."""
    size = table[:, T_SIZE]
    commission = table[:, T_ENTRY_FEE] + table[:, T_EXIT_FEE]
    pnl = table[:, T_PNL]
    cost = table[:, T_ENTRY_PRICE] * np.abs(size) + table[:, T_ENTRY_FEE]
    with np.errstate(divide="ignore", invalid="ignore"):
        return_pct = np.where(cost > 0, pnl / cost, 0.0)
    return pnl, return_pct, commission


def trades_from_table(table: np.ndarray) -> list[Trade]:
    pnl, return_pct, commission = trade_pnl(table)
    rows = table.tolist()
    return [Trade(symbol_index=int(row[T_SYMBOL]), entry_index=int(row[T_ENTRY]),
                  exit_index=int(row[T_EXIT]), entry_price=row[T_ENTRY_PRICE],
                  exit_price=row[T_EXIT_PRICE], size=row[T_SIZE], pnl=p, return_pct=r,
                  commission=c, is_open=int(row[T_REASON]) == OPEN_REASON,
                  exit_reason=EXIT_REASONS[int(row[T_REASON])], borrow_cost=row[T_BORROW])
            for row, p, r, c in zip(rows, pnl.tolist(), return_pct.tolist(), commission.tolist())]


def simulate_portfolio(open_: np.ndarray, close: np.ndarray, target_position: np.ndarray,
                       initial_capital: float, commission_rate: float = 0.0, fill: str = "next_open",
                       start_index: int = 0,
                       progress: Callable[[float], None] | None = None,
                       high: np.ndarray | None = None, low: np.ndarray | None = None,
                       config: SimulationConfig | None = None,
                       size_fraction: np.ndarray | None = None) -> BacktestOutput:
    """Simulate equal-capital sleeves following ``target_position`` (> 0 long, < 0 short, else flat).

    ``config`` carries fill, direction, costs and stops (``fill``/``commission_rate`` are the
    shorthand when it is not given). ``size_fraction`` (same shape, default 1) is the fraction of
    the sleeve's equity an entry at that bar deploys. ``progress(fraction_done)`` is called at
    least every ~10 % of symbols; an exception it raises (e.g. a cancelled job) aborts the run.
    """
    if config is None:
        config = SimulationConfig(fill=fill, commission_rate=commission_rate)
    open_, close, target_position = (_host_panel(values) for values in (open_, close, target_position))
    high = close if high is None else _host_panel(high)
    low = close if low is None else _host_panel(low)
    if not open_.shape == close.shape == target_position.shape == high.shape == low.shape:
        raise ValueError(f"open_, high, low, close and target_position shapes differ: "
                         f"{open_.shape}, {high.shape}, {low.shape}, {close.shape}, {target_position.shape}")
    if not (np.isfinite(initial_capital) and initial_capital > 0):
        raise ValueError(f"initial_capital must be positive, got {initial_capital!r}")
    n_bars, n_symbols = close.shape
    if n_symbols == 0 or not 0 <= start_index < n_bars:
        raise ValueError(f"need at least one symbol and 0 <= start_index < {n_bars}, "
                         f"got {n_symbols} symbols and start_index={start_index}")
    fractions = entry_fractions(size_fraction, close.shape, config.fill)

    costs = config.cost_vector()
    sleeve_capital = float(initial_capital) / n_symbols
    reported = n_bars - start_index
    positions = np.zeros((n_symbols, reported))
    sleeve_equity = np.zeros((n_symbols, reported))
    trade_buffer = np.empty((reported * 2 + 2, TRADE_COLUMNS))
    tables = []
    traded = []
    reported_step = 0
    columns = (open_.T.copy(), high.T.copy(), low.T.copy(), close.T.copy(), target_position.T.copy(),
               fractions.T.copy())
    for symbol in range(n_symbols):
        n_trades, _, value = simulate_sleeve(
            columns[0][symbol], columns[1][symbol], columns[2][symbol], columns[3][symbol],
            columns[4][symbol], columns[5][symbol], sleeve_capital, costs, config.fill == "close",
            config.allow_short, int(start_index), sleeve_equity[symbol], positions[symbol], trade_buffer,
            symbol)
        traded.append(value)
        if n_trades:
            tables.append(trade_buffer[:n_trades].copy())
        step = (symbol + 1) * 10 // n_symbols
        if progress is not None and (step > reported_step or symbol + 1 == n_symbols):
            reported_step = step
            progress((symbol + 1) / n_symbols)
    return sleeves_output(sleeve_equity, positions, tables, traded, config.periods_per_year, int(start_index))


def entry_fractions(size_fraction: np.ndarray | None, shape: tuple[int, ...], fill: str) -> np.ndarray:
    """Host panel of the equity fraction an entry deploys; all of it (backtesting.py's "all-in" for
    ``next_open``) when ``size_fraction`` is None."""
    if size_fraction is None:
        return np.full(shape, FULL_EQUITY if fill == "next_open" else 1.0)
    return _host_panel(size_fraction)


def sleeves_output(sleeve_equity: np.ndarray, positions: np.ndarray, tables: list[np.ndarray],
                   traded: Sequence[float], periods_per_year: int, start_index: int) -> BacktestOutput:
    """The equal-sleeve portfolio from ``simulate_sleeve``'s per-symbol results: ``sleeve_equity``
    and ``positions`` ``(symbols, bars)``, each sleeve's trade rows and traded value. The single run
    and the sweep both reduce through here, so a sweep row has the single run's very numbers."""
    table = np.concatenate(tables) if tables else np.empty((0, TRADE_COLUMNS))
    total_traded = sum(traded, 0.0)  # one sleeve after the other, never a pairwise sum
    return portfolio_output(sleeve_equity.sum(axis=0), positions.T, sleeve_equity.T, table, total_traded,
                            periods_per_year, start_index)


def portfolio_output(equity: np.ndarray, positions: np.ndarray, sleeve_equity: np.ndarray, table: np.ndarray,
                     traded: float, periods_per_year: int, start_index: int) -> BacktestOutput:
    """A simulated portfolio's ``BacktestOutput`` (``positions`` and ``sleeve_equity`` ``(bars,
    symbols)``): trade rows sorted by entry then symbol, exposure, and turnover from ``traded``,
    the value of all its fills."""
    table = table[np.lexsort((table[:, T_SYMBOL], table[:, T_ENTRY]))]
    reported = equity.shape[0]
    mean_equity = float(np.mean(equity))
    turnover = traded / mean_equity * periods_per_year / reported if mean_equity > 0 else 0.0
    return BacktestOutput(equity=equity, positions=positions, sleeve_equity=sleeve_equity, trade_table=table,
                          exposure=float((positions != 0).any(axis=1).mean()), turnover=float(turnover),
                          start_index=start_index)
