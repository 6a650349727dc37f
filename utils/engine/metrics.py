"""Performance metrics of an equity curve and its trades; every value a finite float (JSON safe).

All ratios are fractions (0.12 = 12 %). Returns are simple bar-to-bar returns of the equity curve.
Conventions where a ratio is undefined:
  * sharpe/sortino/volatility: 0.0 with fewer than two returns or a zero denominator;
  * calmar: 0.0 without a drawdown;
  * profit_factor: 0.0 with no closed trades or no gross profit; ``PROFIT_FACTOR_CAP`` when
    there are winners but no losers (and any larger value is capped to it);
  * anything else that overflows (e.g. annualising a huge return over a few bars) is clipped to
    +/- ``FINITE_CAP``.
Trades flagged ``is_open`` (still held at the end) are not counted in num_trades, win_rate or
profit_factor: their P&L is already in the equity curve, but the trade has not finished.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

PROFIT_FACTOR_CAP = 1e6
FINITE_CAP = 1e12


def _finite(value: float) -> float:
    if math.isnan(value):
        return 0.0
    return float(min(max(value, -FINITE_CAP), FINITE_CAP))


def _trade_field(trade: Any, name: str, default: Any = None) -> Any:
    if isinstance(trade, dict):
        return trade.get(name, default)
    return getattr(trade, name, default)


def drawdown_curve(equity: np.ndarray) -> np.ndarray:
    """Fraction below the running peak at each bar (0 at a new high, 0.12 = 12 % under)."""
    equity = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.where(peak > 0, 1.0 - equity / peak, 0.0)
    return np.maximum(drawdown, 0.0)


def max_drawdown_duration(equity: np.ndarray) -> int:
    """Longest number of bars from a peak to the bar that regains it (or to the last bar)."""
    equity = np.asarray(equity, dtype=np.float64)
    if len(equity) == 0:
        return 0
    index = np.arange(len(equity))
    is_peak = equity >= np.maximum.accumulate(equity)
    last_peak = np.maximum.accumulate(np.where(is_peak, index, 0))
    gaps = index[1:][is_peak[1:]] - last_peak[:-1][is_peak[1:]]  # a regained peak: bars since the last one
    gaps = gaps[gaps > 1]
    longest = int(gaps.max()) if len(gaps) else 0
    return max(longest, int(len(equity) - 1 - last_peak[-1]))


def _bar_returns(equity: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = equity[1:] / equity[:-1] - 1.0
    return np.where(np.isfinite(returns), returns, 0.0)


def performance_metrics(equity: np.ndarray, trades: Sequence[Any] | np.ndarray, periods_per_year: int = 252,
                        exposure: float | None = None,
                        initial_capital: float | None = None) -> dict[str, float]:
    """Summary statistics of a backtest.

    ``trades`` are trade objects/dicts (open ones skipped) or an array of closed trades' P&L.
    ``exposure`` (fraction of bars in a position) is passed through from the simulator, 0.0 when
    not given. ``total_return`` (and so ``annualized_return``) is measured from
    ``initial_capital`` when given, else from ``equity[0]``: with fills at the close, the first
    bar's value is already net of an entry commission that the return should include.
    """
    equity = np.asarray(equity, dtype=np.float64)
    if equity.ndim != 1 or len(equity) == 0:
        raise ValueError("equity must be a non-empty 1-D array")
    returns = _bar_returns(equity)
    n_returns = len(returns)
    sqrt_year = math.sqrt(periods_per_year)

    initial = equity[0] if initial_capital is None else float(initial_capital)
    total_return = equity[-1] / initial - 1.0 if initial > 0 else 0.0
    if n_returns == 0:
        annualized_return = 0.0
    elif 1.0 + total_return <= 0:
        annualized_return = -1.0
    else:
        exponent = periods_per_year / n_returns
        log_growth = exponent * math.log1p(total_return)
        annualized_return = math.expm1(log_growth) if log_growth < 700 else math.inf

    volatility = float(np.std(returns, ddof=1)) if n_returns >= 2 else 0.0
    mean_return = float(np.mean(returns)) if n_returns else 0.0
    sharpe = mean_return / volatility * sqrt_year if volatility > 0 else 0.0
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2))) if n_returns else 0.0
    sortino = mean_return / downside * sqrt_year if downside > 0 else 0.0

    max_drawdown = float(drawdown_curve(equity).max())
    calmar = annualized_return / max_drawdown if max_drawdown > 0 else 0.0

    if isinstance(trades, np.ndarray):  # already the closed trades' P&L
        closed_pnl = np.asarray(trades, dtype=np.float64)
    else:
        closed_pnl = np.array([float(_trade_field(trade, "pnl", 0.0)) for trade in trades
                               if not _trade_field(trade, "is_open", False)], dtype=np.float64)
    gross_profit = float(closed_pnl[closed_pnl > 0].sum())
    gross_loss = float(-closed_pnl[closed_pnl < 0].sum())
    if gross_profit <= 0:
        profit_factor = 0.0
    elif gross_loss <= 0:
        profit_factor = PROFIT_FACTOR_CAP
    else:
        profit_factor = min(gross_profit / gross_loss, PROFIT_FACTOR_CAP)
    win_rate = float((closed_pnl > 0).mean()) if len(closed_pnl) else 0.0

    metrics = {
        "total_return": total_return,
        "annualized_return": annualized_return,
        "annualized_volatility": volatility * sqrt_year,
        "sharpe_ratio": sharpe,
        "sortino_ratio": sortino,
        "max_drawdown": max_drawdown,
        "max_drawdown_duration": max_drawdown_duration(equity),
        "calmar_ratio": calmar,
        "win_rate": win_rate,
        "profit_factor": profit_factor,
        "num_trades": len(closed_pnl),
        "exposure": 0.0 if exposure is None else exposure,
        "final_equity": equity[-1],
    }
    return {key: _finite(float(value)) for key, value in metrics.items()}
