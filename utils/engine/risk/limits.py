"""A live portfolio's state against its limits, re-evaluated on every price update.

The portfolio was set with ``weights`` when its symbols traded at ``set_prices``; its holdings are
then fixed, so each weight drifts with its price: value_i = w_i * p_i / p_set_i and the current
weights are value / sum(value). At each update:

  * ``var_95``: the historical 1-day 95 % VaR (Riskfolio's convention, ``tails.var_cvar``) of the
    current weights applied to the daily returns of the lookback closes;
  * ``drawdown``: 1 - V_now / max(V) of the holdings' value V over the lookback closes and now;
  * ``max_weight``: the largest |current weight|; ``max_sector``: the largest sector's summed weight.

A limit left unset (None) is never breached. Pure NumPy: the service feeds it prices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.engine.risk.tails import var_cvar

LIMITS = ("var_95", "max_drawdown", "max_weight", "max_sector")


@dataclass(frozen=True)
class Breach:
    limit: str
    value: float
    threshold: float
    message: str


@dataclass(frozen=True)
class LimitState:
    var_95: float
    drawdown: float
    max_weight: float
    max_sector: float
    weights: np.ndarray  # (N,) current weights
    breaches: tuple[Breach, ...]


def _holding_values(prices: np.ndarray, weights: np.ndarray, set_prices: np.ndarray) -> np.ndarray:
    return weights * prices / set_prices


def evaluate_limits(history: np.ndarray, current: np.ndarray, set_prices: np.ndarray, weights: np.ndarray,
                    symbols: list[str], sector_of: list[str | None], limits: dict[str, float | None]) -> LimitState:
    """``history`` (T, N) daily closes of the lookback (carried forward; NaN before a first close
    counts as the set price), ``current`` (N,) latest prices."""
    history = np.where(np.isnan(history), set_prices, history)
    path = np.vstack([history, current[None, :]])
    values = _holding_values(path, weights, set_prices)  # (T + 1, N)
    total = values.sum(axis=1)
    now = values[-1]
    current_weights = now / total[-1] if total[-1] != 0 else now * 0.0
    returns = path[1:] / path[:-1] - 1.0
    var_95 = var_cvar(returns @ current_weights, 0.95, np)[0] if returns.shape[0] >= 1 else 0.0
    peak = total.max()
    drawdown = float(1.0 - total[-1] / peak) if peak > 0 else 0.0
    largest = int(np.argmax(np.abs(current_weights)))
    sector_weights: dict[str, float] = {}
    for sector, weight in zip(sector_of, current_weights):
        if sector is not None:
            sector_weights[sector] = sector_weights.get(sector, 0.0) + float(weight)
    top_sector = max(sector_weights, key=sector_weights.get) if sector_weights else None
    measured = {"var_95": (float(var_95), "the 1-day 95 % historical VaR"),
                "max_drawdown": (drawdown, "the drawdown from the lookback's peak"),
                "max_weight": (float(abs(current_weights[largest])), f"the weight of {symbols[largest]}"),
                "max_sector": (sector_weights.get(top_sector, 0.0), f"the weight of sector {top_sector}")}
    breaches = []
    for name in LIMITS:
        threshold = limits.get(name)
        value, what = measured[name]
        if threshold is not None and value > threshold:
            breaches.append(Breach(name, value, threshold, f"{name}: {what} is {value:.4f}, above {threshold:.4f}"))
    return LimitState(float(var_95), drawdown, measured["max_weight"][0], measured["max_sector"][0],
                      current_weights, tuple(breaches))
