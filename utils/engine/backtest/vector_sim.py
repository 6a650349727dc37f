"""Many sleeves at once, written against the array module: the GPU path of sweeps.

``simulate_columns`` runs the ``simulate_sleeve`` rules (see ``simulate.py``; same fills, costs,
stops, stop block and sizing) for many independent columns at once, e.g. every (combination,
symbol) pair of a parameter sweep. Time is a Python loop; at each bar every column advances
together through vectorised ``xp`` operations (``xp.where`` on per-column state vectors), so the
same code runs on CuPy (GPU) and NumPy (CPU, for tests). Each floating-point operation is the one
the numba kernel does, in the same order, so on NumPy the results are bit-equal to
``simulate_sleeve`` (floor division is spelled out as CPython's/numba's divmod algorithm so that
it does not depend on the array library's ``floor_divide``).

Inputs are ``(time, *column_shape)`` arrays whose column shapes broadcast together: a sweep
passes the bars as ``(time, symbols)`` and the targets as ``(time, combinations, symbols)``, so the
bars are not repeated per combination. Targets may be any real dtype (only the sign is read; NaN
is flat), so a sweep ships them as ``int8`` signs, an eighth of float64's memory.

Outputs (``xp`` arrays): per column the closed-trade statistics that the metrics need (count,
winners, gross profit/loss, accumulated in trade order), traded value, bars held, whether a trade
is still open; the per-column equity curve (``keep_columns``); and with ``groups=k`` (columns
laid out as consecutive runs of ``k``, i.e. ``(combinations, symbols)``), the per-group portfolio
equity (sum of the group's sleeves at each close) and the bars on which any sleeve of the group
held a position, without keeping per-column curves. ``curve_metrics`` turns group curves and
those statistics into ``performance_metrics`` dictionaries for many curves at once.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from utils.engine.backtest.simulate import (C_BORROW, C_FIXED_CASH, C_MIN, C_RATE, C_SLIPPAGE, C_SPREAD,
                                            C_STOP_LOSS, C_TAKE_PROFIT, C_TRAILING)
from utils.engine.metrics import PROFIT_FACTOR_CAP, _finite

STAT_FIELDS = ("num_trades", "wins", "gross_profit", "gross_loss", "traded", "exposure_bars", "has_open")


def _floordiv(xp: Any, a: Any, b: Any) -> Any:
    """``a // b`` for floats as CPython and numba compute it (divmod via fmod), then floored to
    an integral float; ``int()`` of it is the same number."""
    mod = xp.fmod(a, b)
    div = (a - mod) / b
    div = xp.where((mod != 0) & ((b < 0) != (mod < 0)), div - 1.0, div)
    floor = xp.floor(div)
    return xp.where(div - floor > 0.5, floor + 1.0, floor)


def _commission(xp: Any, value: Any, rate: float, minimum: float) -> Any:
    fee = value * rate
    return xp.where(fee < minimum, minimum, fee)


def simulate_columns(xp: Any, open_: Any, high: Any, low: Any, close: Any, target: Any, size_fraction: Any,
                     capital_per_column: Any, costs: Any, fill_at_close: bool, allow_short: bool, start: int,
                     groups: int | None = None, keep_columns: bool = True,
                     progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Simulate every column's sleeve from row ``start``; see the module docstring.

    ``costs`` is ``SimulationConfig.cost_vector()`` (shared by all columns); ``capital_per_column``
    a scalar or an array of the column shape. Returns a dict of ``xp`` arrays: ``equity``
    ``(bars - start, *column_shape)`` when ``keep_columns``; ``group_equity``
    ``(bars - start, groups_count)`` and ``group_exposure_bars`` when ``groups``; and per column
    (column shape) ``num_trades``/``wins`` (closed trades; int64), ``gross_profit``,
    ``gross_loss`` (positive), ``traded`` (value of all fills), ``exposure_bars`` (bars closed
    with a position; int64), ``has_open`` (bool), ``shares`` (held after the last bar).
    ``progress(fraction_of_bars_done)`` is called about every 2 % of the bars (an exception it
    raises aborts the run).
    """
    with np.errstate(all="ignore"):  # masked-off columns compute with NaN/zero freely
        return _simulate(xp, open_, high, low, close, target, size_fraction, capital_per_column, costs,
                         fill_at_close, allow_short, start, groups, keep_columns, progress)


def _simulate(xp, open_, high, low, close, target, size_fraction, capital_per_column, costs, fill_at_close,
              allow_short, start, groups, keep_columns, progress):
    costs = [float(value) for value in np.asarray(costs, dtype=np.float64).tolist()]
    rate, minimum = costs[C_RATE], costs[C_MIN]
    slippage, spread, borrow = costs[C_SLIPPAGE], costs[C_SPREAD], costs[C_BORROW]
    stop_loss, take_profit, trailing = costs[C_STOP_LOSS], costs[C_TAKE_PROFIT], costs[C_TRAILING]
    fixed_cash = costs[C_FIXED_CASH]
    has_stops = stop_loss > 0 or take_profit > 0 or trailing > 0
    fill_at_close, allow_short = bool(fill_at_close), bool(allow_short)

    arrays = [xp.asarray(values) for values in (open_, high, low, close, target, size_fraction)]
    n_bars = arrays[3].shape[0]
    if any(values.shape[0] != n_bars for values in arrays):
        raise ValueError(f"inputs must share their first (time) axis, got {[v.shape for v in arrays]}")
    if not 0 <= start < n_bars:
        raise ValueError(f"need 0 <= start < {n_bars}, got start={start}")
    shape = tuple(np.broadcast_shapes(*(values.shape[1:] for values in arrays),
                                      np.shape(capital_per_column)))
    open_, high, low, close, target, size_fraction = arrays
    n_columns = int(np.prod(shape)) if shape else 1
    if groups is not None and (groups <= 0 or n_columns % groups):
        raise ValueError(f"groups={groups} does not divide the {n_columns} columns")
    reported = n_bars - start
    exact_sums = xp is np  # sequential group sums, as the numba route's numpy sum over symbols

    def zeros(dtype=np.float64):
        return xp.zeros(shape, dtype=dtype)

    cash = xp.broadcast_to(xp.asarray(capital_per_column, dtype=np.float64), shape).copy()
    shares = zeros()
    direction = zeros(np.int8)
    entry_index = xp.full(shape, -1, dtype=np.int64)
    entry_price = zeros()
    entry_fee = zeros()
    borrow_paid = zeros()
    extreme = zeros()
    blocked = zeros(np.int8)
    mark = xp.full(shape, np.nan)
    traded = zeros()
    num_trades = zeros(np.int64)
    wins = zeros(np.int64)
    gross_profit = zeros()
    gross_loss = zeros()
    exposure_bars = zeros(np.int64)
    equity = xp.empty((reported,) + shape) if keep_columns else None
    if groups is not None:
        group_equity = xp.empty((reported, n_columns // groups))
        group_exposure = xp.zeros(n_columns // groups, dtype=np.int64)

    def close_trades(mask, fill):
        """Book the exit of the ``mask`` columns at ``fill``; returns the new (cash, traded) and
        updates the closed-trade statistics (nonlocal)."""
        nonlocal num_trades, wins, gross_profit, gross_loss
        value = xp.abs(shares) * fill
        fee = _commission(xp, value, rate, minimum)
        new_cash = xp.where(mask, cash + (shares * fill - fee), cash)
        new_traded = xp.where(mask, traded + value, traded)
        pnl = (fill - entry_price) * shares - entry_fee - fee - borrow_paid
        won = mask & (pnl > 0)
        lost = mask & (pnl < 0)
        num_trades = num_trades + mask
        wins = wins + won
        gross_profit = xp.where(won, gross_profit + pnl, gross_profit)
        gross_loss = xp.where(lost, gross_loss - pnl, gross_loss)
        return new_cash, new_traded

    long_stop_factor, short_stop_factor = 1.0 - stop_loss, 1.0 + stop_loss
    long_trail_factor, short_trail_factor = 1.0 - trailing, 1.0 + trailing
    long_take_factor, short_take_factor = 1.0 + take_profit, 1.0 - take_profit
    sell_slip, buy_slip = 1.0 - slippage, 1.0 + slippage
    buy_spread, sell_spread = 1.0 + spread, 1.0 - spread
    rate_factor = 1.0 + rate
    report_every = max(1, reported // 50)

    for bar in range(start, n_bars):
        bar_open, bar_high, bar_low, bar_close = open_[bar], high[bar], low[bar], close[bar]

        # ---- stops, at the start of the bar, for a position filled on an earlier bar
        if has_stops:
            is_long = direction > 0
            open_finite = xp.isfinite(bar_open)
            # long side: stop-loss / trailing level on the low, else take-profit on the high
            level = entry_price * long_stop_factor if stop_loss > 0 else xp.full(shape, -np.inf)
            reason = xp.full(shape, 1 if stop_loss > 0 else 0, dtype=np.int8)
            if trailing > 0:
                trail = extreme * long_trail_factor
                use = trail > level
                level = xp.where(use, trail, level)
                reason = xp.where(use, np.int8(3), reason)
            hit = (reason != 0) & (bar_low <= level)
            long_exit = xp.where(hit, xp.where(open_finite, xp.minimum(bar_open, level), level), np.nan)
            if take_profit > 0:
                take = entry_price * long_take_factor
                taken = ~hit & (bar_high >= take)
                long_exit = xp.where(taken, xp.where(open_finite, xp.maximum(bar_open, take), take), long_exit)
            # short side: mirrored
            level = entry_price * short_stop_factor if stop_loss > 0 else xp.full(shape, np.inf)
            reason = xp.full(shape, 1 if stop_loss > 0 else 0, dtype=np.int8)
            if trailing > 0:
                trail = extreme * short_trail_factor
                use = trail < level
                level = xp.where(use, trail, level)
                reason = xp.where(use, np.int8(3), reason)
            hit = (reason != 0) & (bar_high >= level)
            short_exit = xp.where(hit, xp.where(open_finite, xp.maximum(bar_open, level), level), np.nan)
            if take_profit > 0:
                take = entry_price * short_take_factor
                taken = ~hit & (bar_low <= take)
                short_exit = xp.where(taken, xp.where(open_finite, xp.minimum(bar_open, take), take), short_exit)
            exit_price = xp.where(is_long, long_exit, short_exit)
            stopped = (direction != 0) & (entry_index < bar) & ~xp.isnan(exit_price)
            fill = xp.where(is_long, exit_price * sell_slip, exit_price * buy_slip)
            cash, traded = close_trades(stopped, fill)
            blocked = xp.where(stopped, direction, blocked)
            shares = xp.where(stopped, 0.0, shares)
            direction = xp.where(stopped, np.int8(0), direction)

        # ---- orders from the target
        decision = bar if fill_at_close else bar - 1
        if decision >= start:
            price = bar_close if fill_at_close else bar_open
            valid = xp.isfinite(price) & (price > 0)
            wanted_value = target[decision]
            if allow_short:
                wanted = xp.where(wanted_value > 0, np.int8(1), xp.where(wanted_value < 0, np.int8(-1), np.int8(0)))
            else:
                wanted = (wanted_value > 0).astype(np.int8)
            wanted = xp.broadcast_to(wanted, shape)
            is_blocked = valid & (blocked != 0)
            same = wanted == blocked
            wanted = xp.where(is_blocked & same, np.int8(0), wanted)
            blocked = xp.where(is_blocked & ~same, np.int8(0), blocked)
            change = valid & (wanted != direction)

            # close what is held
            closing = change & (direction != 0)
            fill = xp.where(direction > 0, price * sell_slip, price * buy_slip)
            cash, traded = close_trades(closing, fill)
            shares = xp.where(closing, 0.0, shares)
            direction = xp.where(closing, np.int8(0), direction)

            # open the wanted side
            opening = change & (wanted != 0) & (cash > 0)
            buying = wanted > 0
            quoted = xp.where(buying, price * buy_slip, price * sell_slip)
            fill = xp.where(buying, quoted * buy_spread, quoted * sell_spread)
            fraction = size_fraction[decision]
            budget = cash
            if fixed_cash > 0:
                budget = xp.where(fixed_cash < budget, fixed_cash, budget)
            allotted = budget * fraction
            if fill_at_close:
                size = (allotted / rate_factor) / fill
                if minimum > 0:
                    size = xp.where(size * fill * rate < minimum, (allotted - minimum) / fill, size)
            else:
                # backtesting.py sizes with the commission on the price before spread
                per_share = fill + (fraction * quoted * rate) / fraction
                size = _floordiv(xp, allotted, per_share)
                if minimum > 0:
                    size = xp.where(size * fill * rate < minimum, _floordiv(xp, allotted - minimum, fill), size)
            entering = opening & (fraction > 0) & xp.isfinite(fraction) & (size > 0)
            value = size * fill
            fee = _commission(xp, value, rate, minimum)
            new_shares = size * wanted
            cash = xp.where(entering, cash - (new_shares * fill + fee), cash)
            traded = xp.where(entering, traded + value, traded)
            shares = xp.where(entering, new_shares, shares)
            direction = xp.where(entering, wanted, direction)
            entry_index = xp.where(entering, bar, entry_index)
            entry_price = xp.where(entering, fill, entry_price)
            entry_fee = xp.where(entering, fee, entry_fee)
            borrow_paid = xp.where(entering, 0.0, borrow_paid)
            if has_stops:
                first = xp.where(buying, bar_high, bar_low)
                first = xp.where(xp.isfinite(first), first, price)
                extreme = xp.where(entering, first, extreme)

        # ---- mark at the close
        mark = xp.where(xp.isfinite(bar_close), bar_close, mark)
        holding = direction != 0
        if borrow > 0:
            charged = direction < 0
            cost = -shares * mark * borrow
            cash = xp.where(charged, cash - cost, cash)
            borrow_paid = xp.where(charged, borrow_paid + cost, borrow_paid)
        if has_stops:
            extreme = xp.where((direction > 0) & (bar_high > extreme), bar_high,
                               xp.where((direction < 0) & (bar_low < extreme), bar_low, extreme))
        value = xp.where(holding, cash + shares * mark, cash)
        exposure_bars = exposure_bars + holding
        if keep_columns:
            equity[bar - start] = value
        if groups is not None:
            per_group = value.reshape(-1, groups)
            group_equity[bar - start] = (xp.cumsum(per_group, axis=1)[:, -1] if exact_sums
                                         else per_group.sum(axis=1))
            group_exposure += holding.reshape(-1, groups).any(axis=1)
        if progress is not None and ((bar - start + 1) % report_every == 0 or bar + 1 == n_bars):
            progress((bar - start + 1) / reported)

    result = {"num_trades": num_trades, "wins": wins, "gross_profit": gross_profit, "gross_loss": gross_loss,
              "traded": traded, "exposure_bars": exposure_bars, "has_open": direction != 0, "shares": shares}
    if keep_columns:
        result["equity"] = equity
    if groups is not None:
        result["group_equity"] = group_equity
        result["group_exposure_bars"] = group_exposure
    return result


def curve_metrics(equity: np.ndarray, num_trades: np.ndarray, wins: np.ndarray, gross_profit: np.ndarray,
                  gross_loss: np.ndarray, exposure: np.ndarray, periods_per_year: int = 252,
                  initial_capital: float | None = None, traded: np.ndarray | None = None) -> list[dict[str, float]]:
    """``performance_metrics`` of many curves at once: ``equity`` is host ``(bars, curves)``, the
    rest per curve (closed-trade count/winners/gross profit/gross loss, exposure fraction, traded
    value for ``turnover``). Same definitions, keys and order (``turnover`` last when ``traded``
    is given) as ``performance_metrics`` and ``SleeveBatch.run``."""
    curves = np.ascontiguousarray(np.asarray(equity, dtype=np.float64).T)  # rows: reductions as 1-D
    n_curves, n_bars = curves.shape
    if n_bars == 0:
        raise ValueError("equity must have at least one bar")
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = curves[:, 1:] / curves[:, :-1] - 1.0
    returns = np.where(np.isfinite(returns), returns, 0.0)
    n_returns = n_bars - 1
    sqrt_year = math.sqrt(periods_per_year)
    zero = np.zeros(n_curves)
    volatility = np.std(returns, axis=1, ddof=1) if n_returns >= 2 else zero
    mean_return = np.mean(returns, axis=1) if n_returns else zero
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2, axis=1)) if n_returns else zero
    peak = np.maximum.accumulate(curves, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.maximum(np.where(peak > 0, 1.0 - curves / peak, 0.0), 0.0)
    max_drawdown = drawdown.max(axis=1)
    # drawdown duration as metrics.max_drawdown_duration, per row
    index = np.arange(n_bars)
    is_peak = curves >= peak
    last_peak = np.maximum.accumulate(np.where(is_peak, index, 0), axis=1)
    gaps = np.where(is_peak[:, 1:], index[1:] - last_peak[:, :-1], 0)
    longest = gaps.max(axis=1, initial=0)
    longest = np.where(longest > 1, longest, 0)
    duration = np.maximum(longest, n_bars - 1 - last_peak[:, -1])
    mean_equity = curves.mean(axis=1)

    rows = []
    for k in range(n_curves):
        final = float(curves[k, -1])
        initial = float(curves[k, 0]) if initial_capital is None else float(initial_capital)
        total_return = final / initial - 1.0 if initial > 0 else 0.0
        if n_returns == 0:
            annualized_return = 0.0
        elif 1.0 + total_return <= 0:
            annualized_return = -1.0
        else:
            log_growth = periods_per_year / n_returns * math.log1p(total_return)
            annualized_return = math.expm1(log_growth) if log_growth < 700 else math.inf
        vol = float(volatility[k])
        mean = float(mean_return[k])
        down = float(downside[k])
        mdd = float(max_drawdown[k])
        profit, loss = float(gross_profit[k]), float(gross_loss[k])
        trades = int(num_trades[k])
        if profit <= 0:
            profit_factor = 0.0
        elif loss <= 0:
            profit_factor = PROFIT_FACTOR_CAP
        else:
            profit_factor = min(profit / loss, PROFIT_FACTOR_CAP)
        metrics = {
            "total_return": total_return,
            "annualized_return": annualized_return,
            "annualized_volatility": vol * sqrt_year,
            "sharpe_ratio": mean / vol * sqrt_year if vol > 0 else 0.0,
            "sortino_ratio": mean / down * sqrt_year if down > 0 else 0.0,
            "max_drawdown": mdd,
            "max_drawdown_duration": int(duration[k]),
            "calmar_ratio": annualized_return / mdd if mdd > 0 else 0.0,
            "win_rate": int(wins[k]) / trades if trades else 0.0,
            "profit_factor": profit_factor,
            "num_trades": trades,
            "exposure": float(exposure[k]),
            "final_equity": final,
        }
        metrics = {key: _finite(float(value)) for key, value in metrics.items()}
        if traded is not None:
            average = float(mean_equity[k])
            metrics["turnover"] = (float(traded[k]) / average * periods_per_year / n_bars
                                   if average > 0 else 0.0)
        rows.append(metrics)
    return rows
