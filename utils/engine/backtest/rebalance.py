"""Shared-cash multi-asset portfolio that rebalances to target weights (``momentum``, ``top_k``).

``weights`` (time x symbols) holds the target fraction of portfolio equity per symbol on
rebalance bars (a row with any finite value; NaN elsewhere, and NaN cells in a rebalance row mean
0). On a rebalance the portfolio is valued at the fill prices, every symbol's target shares are
``weight * equity / price`` (whole shares, rounded toward zero, for ``next_open``; fractional for
``close``), and the differences trade: all sells first, then buys, each buy capped by the cash
left (vectorbt's ``from_orders(size_type="targetpercent", cash_sharing=True, call_seq="auto")``).
Commission and slippage as in ``simulate.py``; a symbol without a price at the fill keeps its
position. Trades are round trips per symbol: one opens when a position leaves zero and closes when
it returns to zero or flips; its size is the largest position held, entry/exit prices the first
and last fill, and its P&L the net cash flow (fees included).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from utils.engine.backtest.simulate import BacktestOutput, SimulationConfig, portfolio_output
from utils.engine.backtest.sleeve_kernel import (C_MIN, C_RATE, C_SLIPPAGE, OPEN_REASON, TRADE_COLUMNS, commission,
                                                 write_trade)


@njit(cache=True)
def _rebalance_kernel(open_, close, weights, capital, costs, fill_at_close, start, equity, positions,
                      trades):
    n_bars, n_symbols = close.shape
    rate, minimum, slippage = costs[C_RATE], costs[C_MIN], costs[C_SLIPPAGE]
    cash = capital
    shares = np.zeros(n_symbols)
    marks = np.full(n_symbols, np.nan)
    flows = np.zeros(n_symbols)         # net cash flow of each open round trip
    fees = np.zeros(n_symbols)
    largest = np.zeros(n_symbols)
    entry_index = np.full(n_symbols, -1)
    entry_price = np.zeros(n_symbols)
    wanted = np.zeros(n_symbols)
    n_trades = 0
    traded = 0.0
    for bar in range(start, n_bars):
        decision = bar if fill_at_close else bar - 1
        if decision >= start:
            row = weights[decision]
            rebalance = False
            for symbol in range(n_symbols):
                if np.isfinite(row[symbol]):
                    rebalance = True
            if rebalance:
                prices = close[bar] if fill_at_close else open_[bar]
                value = cash
                for symbol in range(n_symbols):
                    price = prices[symbol]
                    if shares[symbol] != 0.0:
                        value += shares[symbol] * (price if np.isfinite(price) and price > 0 else marks[symbol])
                for symbol in range(n_symbols):
                    price = prices[symbol]
                    weight = row[symbol] if np.isfinite(row[symbol]) else 0.0
                    if np.isfinite(price) and price > 0:
                        target = weight * value / price
                        if not fill_at_close:
                            target = float(int(target))
                        wanted[symbol] = target
                    else:
                        wanted[symbol] = shares[symbol]
                # vectorbt's call_seq="auto": orders by value, ascending, so sells go first and
                # the largest buy is the one cut short when cash runs out
                order_values = np.empty(n_symbols)
                for symbol in range(n_symbols):
                    price = prices[symbol]
                    order_values[symbol] = ((wanted[symbol] - shares[symbol]) * price
                                            if np.isfinite(price) and price > 0 else 0.0)
                for symbol in np.argsort(order_values, kind="mergesort"):
                    delta = wanted[symbol] - shares[symbol]
                    if delta == 0.0:
                        continue
                    price = prices[symbol]
                    fill = price * (1.0 + slippage) if delta > 0 else price * (1.0 - slippage)
                    if delta > 0:
                        affordable = (cash / (1.0 + rate)) / fill
                        if minimum > 0 and affordable * fill * rate < minimum:
                            affordable = (cash - minimum) / fill
                        if not fill_at_close:
                            affordable = float(int(affordable))
                        if affordable < delta:
                            delta = affordable
                        if delta <= 0:
                            continue
                    trade_value = abs(delta) * fill
                    fee = commission(trade_value, rate, minimum)
                    before = shares[symbol]
                    after = before + delta
                    flips = before != 0.0 and after != 0.0 and (before > 0) != (after > 0)
                    if before != 0.0 and (after == 0.0 or flips):  # the round trip ends here
                        closing = -before * fill  # cash flow of the part that closes it
                        closing_fee = fee if after == 0.0 else fee * abs(before) / abs(delta)
                        n_trades = write_trade(trades, n_trades, symbol, entry_index[symbol], bar,
                                               entry_price[symbol], fill, largest[symbol], fees[symbol],
                                               closing_fee, 0, 0.0,
                                               flows[symbol] - closing - fees[symbol] - closing_fee)
                    if before == 0.0 or flips:  # a round trip starts here
                        opened = after if flips else delta
                        entry_index[symbol] = bar
                        entry_price[symbol] = fill
                        fees[symbol] = fee - (fee * abs(before) / abs(delta) if flips else 0.0)
                        flows[symbol] = -opened * fill
                        largest[symbol] = after
                    elif after != 0.0:
                        flows[symbol] -= delta * fill
                        fees[symbol] += fee
                        if abs(after) > abs(largest[symbol]):
                            largest[symbol] = after
                    cash -= delta * fill + fee
                    traded += trade_value
                    shares[symbol] = after
        total = cash
        for symbol in range(n_symbols):
            if np.isfinite(close[bar, symbol]):
                marks[symbol] = close[bar, symbol]
            if shares[symbol] != 0.0:
                total += shares[symbol] * marks[symbol]
            positions[bar - start, symbol] = shares[symbol]
        equity[bar - start] = total
    for symbol in range(n_symbols):
        if shares[symbol] != 0.0:  # still open: marked at the last close, no exit fee
            n_trades = write_trade(trades, n_trades, symbol, entry_index[symbol], n_bars - 1,
                                   entry_price[symbol], marks[symbol], largest[symbol], fees[symbol], 0.0, OPEN_REASON,
                                   0.0, flows[symbol] + shares[symbol] * marks[symbol] - fees[symbol])
    return n_trades, traded


def simulate_rebalancing(open_: np.ndarray, close: np.ndarray, weights: np.ndarray, initial_capital: float,
                         config: SimulationConfig, start_index: int = 0) -> BacktestOutput:
    """Run the shared-cash portfolio over (time x symbols) panels; see the module docstring."""
    open_, close, weights = (np.ascontiguousarray(values, dtype=np.float64) for values in (open_, close, weights))
    n_bars, n_symbols = close.shape
    reported = n_bars - start_index
    equity = np.zeros(reported)
    positions = np.zeros((reported, n_symbols))
    # a round trip opens only where a decision row (from start_index) targets a non-zero weight,
    # so that count bounds the trade rows (top_k: k per rebalance, not every symbol on every bar)
    trades = np.empty((int(np.count_nonzero(np.nan_to_num(weights[start_index:]))) + 1, TRADE_COLUMNS))
    n_trades, traded = _rebalance_kernel(open_, close, weights, float(initial_capital), config.cost_vector(),
                                         config.fill == "close", int(start_index), equity, positions, trades)
    return portfolio_output(equity, positions, np.zeros_like(positions), trades[:n_trades], traded,
                            config.periods_per_year, int(start_index))
