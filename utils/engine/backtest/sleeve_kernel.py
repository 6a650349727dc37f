"""The sleeve kernel: one symbol's flat, long or short position following a target, bar by bar.

The target (per bar) is a direction: > 0 long, < 0 short (``allow_short``), 0 or NaN flat. The
sleeve trades when the wanted direction differs from the one held; the target is re-read every bar,
so an order that cannot fill (NaN or non-positive price, cash for less than one share) is retried
while the target holds.

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

Bars before ``start`` are warm-up only: no decision is taken on them and they are not in the
written curves. A position still held after the last bar is written as an open trade, marked at
the last close with no exit commission.

Each rule is a small function of plain numbers (``stop_exit``, ``entry_size``, ``close_position``)
called from the per-bar loop of ``simulate_sleeve``, so that a device launcher can compile the
same functions; ``simulate_sleeves`` runs many sleeves in parallel on the host. The CUDA kernels
(``utils/engine/cuda/sleeve_kernels.py``, ``sweep_kernels.py``) compile this very source as device
functions, so it keeps to what both targets compile to the same operations: ``math.isnan`` /
``math.isfinite`` (exact predicates; numba.cuda has no ``np.isnan`` on scalars) and the explicit
``b if b < a else a`` that numba's builtin ``min(a, b)`` is (likewise ``max``), NaN cases included.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

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


@njit(cache=True, inline="always")
def commission(value, rate, minimum):
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
def close_position(trades, n_trades, symbol, bar, price, reason, shares, direction, entry_index, entry_price,
                   entry_fee, borrow_paid, rate, minimum, slippage):
    """Sell (cover) the whole position at ``price`` moved by slippage and record the round trip.
    Returns (cash change, traded value, trade count)."""
    fill = price * (1.0 - slippage) if direction > 0 else price * (1.0 + slippage)
    value = abs(shares) * fill
    fee = commission(value, rate, minimum)
    n_trades = write_trade(trades, n_trades, symbol, entry_index, bar, entry_price, fill, shares, entry_fee, fee,
                           reason, borrow_paid, round_trip_pnl(entry_price, fill, shares, entry_fee, fee, borrow_paid))
    return shares * fill - fee, value, n_trades


@njit(cache=True, inline="always")
def stop_exit(direction, entry_price, extreme, bar_open, bar_high, bar_low, stop_loss, take_profit, trailing):
    """``(exit price, exit reason)`` of the stop a held position hits in this bar; NaN price when
    none does. ``extreme``: the highest high (long) / lowest low (short) since entry."""
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
        if reason != 0 and bar_low <= level:
            exit_price = (level if level < bar_open else bar_open) if math.isfinite(bar_open) else level
        elif take_profit > 0 and bar_high >= entry_price * (1.0 + take_profit):
            level = entry_price * (1.0 + take_profit)
            exit_price = (level if level > bar_open else bar_open) if math.isfinite(bar_open) else level
            reason = 2
    else:
        level = np.inf
        if stop_loss > 0:
            level = entry_price * (1.0 + stop_loss)
            reason = 1
        if trailing > 0 and extreme * (1.0 + trailing) < level:
            level = extreme * (1.0 + trailing)
            reason = 3
        if reason != 0 and bar_high >= level:
            exit_price = (level if level > bar_open else bar_open) if math.isfinite(bar_open) else level
        elif take_profit > 0 and bar_low <= entry_price * (1.0 - take_profit):
            level = entry_price * (1.0 - take_profit)
            exit_price = (level if level < bar_open else bar_open) if math.isfinite(bar_open) else level
            reason = 2
    return exit_price, reason


@njit(cache=True, inline="always")
def entry_size(price, wanted, cash, fraction, rate, minimum, slippage, spread, fixed_cash, fill_at_close):
    """``(shares, fill price)`` of an entry on the ``wanted`` side (> 0 long) deploying ``fraction``
    of ``cash`` (capped by ``fixed_cash`` when set); 0 shares when nothing can be bought."""
    quoted = price * (1.0 + slippage) if wanted > 0 else price * (1.0 - slippage)
    fill = quoted * (1.0 + spread) if wanted > 0 else quoted * (1.0 - spread)
    budget = cash
    if fixed_cash > 0 and fixed_cash < budget:
        budget = fixed_cash
    size = 0.0
    if fraction > 0 and math.isfinite(fraction):
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
    return size, fill


@njit(cache=True)
def simulate_sleeve(open_, high, low, close, target, size_fraction, capital, costs, fill_at_close,
                    allow_short, start, equity, shares_out, trades, symbol):
    """One symbol's sleeve. Writes ``equity``/``shares_out`` (bars from ``start``) and trade rows
    (at most ``2 * (bars - start) + 2``); returns ``(n_trades, has_open, traded_value)``."""
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
            exit_price, reason = stop_exit(direction, entry_price, extreme, open_[bar], high[bar], low[bar],
                                           stop_loss, take_profit, trailing)
            if not math.isnan(exit_price):
                proceeds, value, n_trades = close_position(
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
        if decision >= start and math.isfinite(price) and price > 0:
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
                    proceeds, value, n_trades = close_position(
                        trades, n_trades, symbol, bar, price, 0, shares, direction, entry_index, entry_price,
                        entry_fee, borrow_paid, rate, minimum, slippage)
                    cash += proceeds
                    traded += value
                    shares = 0.0
                    direction = 0
                if wanted != 0 and cash > 0:
                    size, fill = entry_size(price, wanted, cash, size_fraction[decision], rate, minimum, slippage,
                                            spread, fixed_cash, fill_at_close)
                    if size > 0:
                        value = size * fill
                        fee = commission(value, rate, minimum)
                        shares = size * wanted
                        cash -= shares * fill + fee
                        traded += value
                        direction = wanted
                        entry_index = bar
                        entry_price = fill
                        entry_fee = fee
                        borrow_paid = 0.0
                        extreme = high[bar] if wanted > 0 else low[bar]
                        if not math.isfinite(extreme):
                            extreme = price

        # ---- mark at the close
        if math.isfinite(close[bar]):
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


@njit(parallel=True, cache=True)
def simulate_sleeves(open_t, high_t, low_t, close_t, target_t, fraction_t, capital, costs, fill_at_close,
                     allow_short, start, equity, shares, trades, n_trades, traded):
    """``simulate_sleeve`` for every row of the (symbols, bars) inputs at once, symbols in
    parallel; row ``s`` writes ``equity[s]``, ``shares[s]``, ``trades[s]``, ``n_trades[s]`` and
    ``traded[s]``."""
    for column in prange(close_t.shape[0]):
        count, _, value = simulate_sleeve(open_t[column], high_t[column], low_t[column], close_t[column],
                                          target_t[column], fraction_t[column], capital, costs, fill_at_close,
                                          allow_short, start, equity[column], shares[column], trades[column],
                                          column)
        n_trades[column] = count
        traded[column] = value
