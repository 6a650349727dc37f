"""Portfolio simulation of target directions, one numba loop per symbol sleeve.

Portfolio rule: the initial capital is split equally across the symbols into independent sleeves
(shared-cash portfolios with periodic rebalancing live in ``rebalance.py``). Each sleeve is flat,
long or (``allow_short``) short its one symbol; the portfolio equity is the sum of the sleeves.

The target (per bar, per symbol) is a direction: > 0 long, < 0 short, 0 or NaN flat. The sleeve
trades when the wanted direction differs from the one held; the target is re-read every bar, so an
order that cannot fill (NaN or non-positive price, cash for less than one share) is retried while
the target holds.

Fill conventions (``SimulationConfig.fill``):
  * ``next_open`` (backtesting.py with ``exclusive_orders=True``): a target seen at bar t's close
    trades at bar t+1's open, whole shares only. Size for a fraction f of equity is backtesting.py's
    ``int((equity * f) // (adjusted_price + commission(f) / f))`` with f = 1 - 2**-52 for all-in;
    the entry price is adjusted by ``spread`` (and ``slippage``); commission is charged on the
    entry value and again on the exit value.
  * ``close`` (vectorbt ``Portfolio.from_signals``): trades at bar t's close, fractional size;
    all-in buys ``(cash / (1 + fee)) / adjusted_price`` shares so that cash ends at 0; fees are
    deducted from cash.
A reversal (long -> short) closes the position and opens the other side at the same fill, sized
from the equity after the close.

Costs: commission = max(rate x fill value, commission_min) per fill (``commission_min`` only when
rate > 0 or a minimum is set); ``slippage`` moves every fill price against the trader by that
fraction (vectorbt's ``slippage``); ``spread`` moves only entry prices (backtesting.py's
``spread``: the round trip pays it once); shorts pay ``borrow_rate`` per bar on their market value.

Stops (fractions of the entry price, 0 = off), active from the bar after the entry fill and
checked at the start of a bar, before any order from a signal (backtesting.py's order of
contingent orders): stop-loss and trailing stop (off the highest high / lowest low since entry,
updated at each close) trigger when the bar's low (high for shorts) reaches the level and fill at
the level, or at the open when the bar gaps through it; take-profit triggers on the high (low) and
fills at the level or the better open. Stop-loss wins over take-profit in the same bar. After a
stop, the sleeve stays flat until the target leaves that direction (no immediate re-entry).

Bars before ``start_index`` are warm-up only: no decision is taken on them and they are not in the
returned curves. A position still held after the last bar is reported as an open trade, marked at
the last close with no exit commission.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np
from numba import njit

from utils.engine.indicators.layout import as_panel
from utils.engine.metrics import performance_metrics

FILLS = ("next_open", "close")
FULL_EQUITY = 1.0 - 2.0 ** -52  # backtesting.py's size for "all of the equity"
EXIT_REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "open")
OPEN_REASON = EXIT_REASONS.index("open")  # the row of a position still held after the last bar

# trade record columns
(T_ENTRY, T_EXIT, T_ENTRY_PRICE, T_EXIT_PRICE, T_SIZE, T_ENTRY_FEE, T_EXIT_FEE, T_REASON,
 T_BORROW, T_PNL, T_SYMBOL) = range(11)
TRADE_COLUMNS = 11

# cost/risk parameter vector layout (one float64 array handed to the kernel)
(C_RATE, C_MIN, C_SLIPPAGE, C_SPREAD, C_BORROW, C_STOP_LOSS, C_TAKE_PROFIT, C_TRAILING,
 C_FIXED_CASH) = range(9)
COST_FIELDS = 9


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


@njit(cache=True, inline="always")
def _commission(value, rate, minimum):
    fee = value * rate
    if fee < minimum:
        fee = minimum
    return fee


@njit(cache=True, inline="always")
def write_trade(trades, n_trades, symbol, entry_index, exit_index, entry_price, exit_price, size,
                entry_fee, exit_fee, reason, borrow, pnl):
    """Fill trade row ``n_trades``; returns the new count."""
    row = trades[n_trades]
    row[T_ENTRY] = entry_index
    row[T_EXIT] = exit_index
    row[T_ENTRY_PRICE] = entry_price
    row[T_EXIT_PRICE] = exit_price
    row[T_SIZE] = size
    row[T_ENTRY_FEE] = entry_fee
    row[T_EXIT_FEE] = exit_fee
    row[T_REASON] = reason
    row[T_BORROW] = borrow
    row[T_PNL] = pnl
    row[T_SYMBOL] = symbol
    return n_trades + 1


@njit(cache=True, inline="always")
def round_trip_pnl(entry_price, exit_price, size, entry_fee, exit_fee, borrow):
    return (exit_price - entry_price) * size - entry_fee - exit_fee - borrow


@njit(cache=True, inline="always")
def _close_position(trades, n_trades, symbol, bar, price, reason, shares, direction, entry_index, entry_price,
                    entry_fee, borrow_paid, rate, minimum, slippage):
    """Sell (cover) the whole position at ``price`` moved by slippage and record the round trip.
    Returns (cash change, traded value, trade count)."""
    fill = price * (1.0 - slippage) if direction > 0 else price * (1.0 + slippage)
    value = abs(shares) * fill
    fee = _commission(value, rate, minimum)
    n_trades = write_trade(trades, n_trades, symbol, entry_index, bar, entry_price, fill, shares, entry_fee, fee,
                           reason, borrow_paid, round_trip_pnl(entry_price, fill, shares, entry_fee, fee, borrow_paid))
    return shares * fill - fee, value, n_trades


@njit(cache=True)
def simulate_sleeve(open_, high, low, close, target, size_fraction, capital, costs, fill_at_close,
                    allow_short, start, equity, shares_out, trades, symbol):
    """One symbol's sleeve. Writes ``equity``/``shares_out`` (bars from ``start``) and trade rows;
    returns ``(n_trades, has_open, traded_value)``."""
    rate = costs[C_RATE]
    minimum = costs[C_MIN]
    slippage = costs[C_SLIPPAGE]
    spread = costs[C_SPREAD]
    borrow = costs[C_BORROW]
    stop_loss = costs[C_STOP_LOSS]
    take_profit = costs[C_TAKE_PROFIT]
    trailing = costs[C_TRAILING]
    fixed_cash = costs[C_FIXED_CASH]
    has_stops = stop_loss > 0 or take_profit > 0 or trailing > 0
    n_bars = close.shape[0]
    n_trades = 0
    cash = capital
    shares = 0.0
    direction = 0
    entry_index = -1
    entry_price = 0.0
    entry_fee = 0.0
    borrow_paid = 0.0
    extreme = 0.0       # highest high (long) / lowest low (short) since entry
    blocked = 0         # direction closed by a stop; no re-entry until the target leaves it
    mark = np.nan
    traded = 0.0
    for bar in range(start, n_bars):
        # ---- stops, at the start of the bar, for a position filled on an earlier bar
        if has_stops and direction != 0 and entry_index < bar:
            bar_open = open_[bar]
            exit_price = np.nan
            reason = 0
            if direction > 0:
                level = -np.inf
                if stop_loss > 0:
                    level = entry_price * (1.0 - stop_loss)
                    reason = 1
                if trailing > 0 and extreme * (1.0 - trailing) > level:
                    level = extreme * (1.0 - trailing)
                    reason = 3
                if reason != 0 and low[bar] <= level:
                    exit_price = min(bar_open, level) if np.isfinite(bar_open) else level
                elif take_profit > 0 and high[bar] >= entry_price * (1.0 + take_profit):
                    level = entry_price * (1.0 + take_profit)
                    exit_price = max(bar_open, level) if np.isfinite(bar_open) else level
                    reason = 2
            else:
                level = np.inf
                if stop_loss > 0:
                    level = entry_price * (1.0 + stop_loss)
                    reason = 1
                if trailing > 0 and extreme * (1.0 + trailing) < level:
                    level = extreme * (1.0 + trailing)
                    reason = 3
                if reason != 0 and high[bar] >= level:
                    exit_price = max(bar_open, level) if np.isfinite(bar_open) else level
                elif take_profit > 0 and low[bar] <= entry_price * (1.0 - take_profit):
                    level = entry_price * (1.0 - take_profit)
                    exit_price = min(bar_open, level) if np.isfinite(bar_open) else level
                    reason = 2
            if not np.isnan(exit_price):
                proceeds, value, n_trades = _close_position(
                    trades, n_trades, symbol, bar, exit_price, reason, shares, direction, entry_index, entry_price,
                    entry_fee, borrow_paid, rate, minimum, slippage)
                cash += proceeds
                traded += value
                blocked = direction
                shares = 0.0
                direction = 0

        # ---- orders from the target
        decision = bar if fill_at_close else bar - 1
        price = close[bar] if fill_at_close else open_[bar]
        if decision >= start and np.isfinite(price) and price > 0:
            wanted_value = target[decision]
            wanted = 0
            if wanted_value > 0:
                wanted = 1
            elif wanted_value < 0 and allow_short:
                wanted = -1
            if blocked != 0:
                if wanted == blocked:
                    wanted = 0
                else:
                    blocked = 0
            if wanted != direction:
                if direction != 0:  # close what is held
                    proceeds, value, n_trades = _close_position(
                        trades, n_trades, symbol, bar, price, 0, shares, direction, entry_index, entry_price,
                        entry_fee, borrow_paid, rate, minimum, slippage)
                    cash += proceeds
                    traded += value
                    shares = 0.0
                    direction = 0
                if wanted != 0 and cash > 0:
                    quoted = price * (1.0 + slippage) if wanted > 0 else price * (1.0 - slippage)
                    fill = quoted * (1.0 + spread) if wanted > 0 else quoted * (1.0 - spread)
                    fraction = size_fraction[decision]
                    budget = cash
                    if fixed_cash > 0 and fixed_cash < budget:
                        budget = fixed_cash
                    size = 0.0
                    if fraction > 0 and np.isfinite(fraction):
                        if fill_at_close:
                            size = (budget * fraction / (1.0 + rate)) / fill
                            if minimum > 0 and size * fill * rate < minimum:
                                size = (budget * fraction - minimum) / fill
                        else:
                            # backtesting.py sizes with the commission on the price before spread
                            per_share = fill + (fraction * quoted * rate) / fraction
                            size = float(int((budget * fraction) // per_share))
                            if minimum > 0 and size * fill * rate < minimum:
                                size = float(int((budget * fraction - minimum) // fill))
                    if size > 0:
                        value = size * fill
                        fee = _commission(value, rate, minimum)
                        shares = size * wanted
                        cash -= shares * fill + fee
                        traded += value
                        direction = wanted
                        entry_index = bar
                        entry_price = fill
                        entry_fee = fee
                        borrow_paid = 0.0
                        extreme = high[bar] if wanted > 0 else low[bar]
                        if not np.isfinite(extreme):
                            extreme = price

        # ---- mark at the close
        if np.isfinite(close[bar]):
            mark = close[bar]
        if direction != 0:
            if direction < 0 and borrow > 0:
                cost = -shares * mark * borrow
                cash -= cost
                borrow_paid += cost
            if has_stops and entry_index <= bar:
                if direction > 0 and high[bar] > extreme:
                    extreme = high[bar]
                elif direction < 0 and low[bar] < extreme:
                    extreme = low[bar]
            equity[bar - start] = cash + shares * mark
        else:
            equity[bar - start] = cash
        shares_out[bar - start] = shares
    has_open = direction != 0
    if has_open:
        n_trades = write_trade(trades, n_trades, symbol, entry_index, n_bars - 1, entry_price, mark, shares,
                               entry_fee, 0.0, OPEN_REASON, borrow_paid,
                               round_trip_pnl(entry_price, mark, shares, entry_fee, 0.0, borrow_paid))
    return n_trades, has_open, traded


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
    table = table[np.lexsort((table[:, T_SYMBOL], table[:, T_ENTRY]))]
    equity = sleeve_equity.sum(axis=0)
    reported = equity.shape[0]
    total_traded = sum(traded, 0.0)  # one sleeve after the other, never a pairwise sum
    mean_equity = float(np.mean(equity))
    turnover = total_traded / mean_equity * periods_per_year / reported if mean_equity > 0 else 0.0
    return BacktestOutput(equity=equity, positions=positions.T, sleeve_equity=sleeve_equity.T,
                          trade_table=table, exposure=float((positions != 0).any(axis=0).mean()),
                          turnover=float(turnover), start_index=start_index)
