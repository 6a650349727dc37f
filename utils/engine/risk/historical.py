"""Historical path measures of the portfolio return series: horizon returns, worst windows, max drawdown."""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

WORST_WINDOW_COUNT = 5


@dataclass(frozen=True)
class WorstWindow:
    """One historical horizon window: rows ``start``..``end`` (inclusive) of the asset returns and the
    portfolio's compounded return over it (negative for a loss)."""

    start: int
    end: int
    window_return: float


def horizon_returns(portfolio_returns: Any, horizon_days: int, xp: ModuleType) -> Any:
    """The overlapping ``horizon_days``-day compounded returns prod(1 + r) - 1, one per start day
    (T - h + 1 of them); for h = 1 the daily returns themselves (no round trip through 1 + r)."""
    if horizon_days == 1:
        return portfolio_returns
    windows = portfolio_returns.shape[0] - horizon_days + 1
    growth = xp.ones(windows, dtype=xp.float64)
    for offset in range(horizon_days):
        growth *= 1.0 + portfolio_returns[offset:offset + windows]
    return growth - 1.0


def worst_windows(window_returns: np.ndarray, horizon_days: int,
                  count: int = WORST_WINDOW_COUNT) -> tuple[WorstWindow, ...]:
    """The ``count`` worst windows that do not overlap: the worst one, then the worst that overlaps none
    already chosen, and so on (overlapping shifts of one crash would otherwise fill the list); ties go
    to the earlier window. Takes host (NumPy) window returns: the greedy pass is sequential."""
    chosen: list[WorstWindow] = []
    taken = np.zeros(window_returns.shape[0] + horizon_days, dtype=bool)  # days inside chosen windows
    for start in np.argsort(window_returns, kind="stable"):
        start = int(start)
        if taken[start:start + horizon_days].any():
            continue
        taken[start:start + horizon_days] = True
        chosen.append(WorstWindow(start, start + horizon_days - 1, float(window_returns[start])))
        if len(chosen) == count:
            break
    return tuple(chosen)


def max_drawdown(portfolio_returns: np.ndarray) -> float:
    """Largest fall of the compounded equity prod(1 + r) from its running peak, a positive fraction.
    The starting equity 1 counts as a peak, so a loss on the first day is a drawdown (Riskfolio-Lib's
    ``MDD_Rel``; vectorbt's ``max_drawdown`` of the returns with a leading 0). Host (NumPy) input: a
    running maximum has no CuPy ufunc, and T values are cheap to move."""
    equity = np.cumprod(np.concatenate([[1.0], 1.0 + portfolio_returns]))
    peak = np.maximum.accumulate(equity)  # >= 1 > 0: no division by zero
    return float(np.max(1.0 - equity / peak))
