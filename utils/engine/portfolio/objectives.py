"""The declared optimisation objectives: one entry each; ``optimize`` and the service derive from it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .cvar import min_cvar
from .mean_variance import (
    efficient_return,
    efficient_risk,
    max_quadratic_utility,
    max_sharpe,
    min_volatility,
)
from .problem import OptimizationResult
from .risk_parity import risk_parity


@dataclass(frozen=True)
class Objective:
    name: str
    solve: Callable[..., OptimizationResult]
    description: str
    requires: tuple[str, ...] = ()  # optimize() keyword arguments the objective cannot do without


OBJECTIVES: dict[str, Objective] = {entry.name: entry for entry in (
    Objective("min_volatility", min_volatility, "minimum variance wᵀΣw (+ γ‖w‖²)"),
    Objective("max_sharpe", max_sharpe, "tangency portfolio via y = k·w (pypfopt's transformation)"),
    Objective("efficient_risk", efficient_risk, "maximum return with volatility ≤ target_volatility",
              ("target_volatility",)),
    Objective("efficient_return", efficient_return, "minimum variance with return ≥ target_return",
              ("target_return",)),
    Objective("max_quadratic_utility", max_quadratic_utility, "maximum μᵀw − ½·risk_aversion·wᵀΣw"),
    Objective("risk_parity", risk_parity, "long-only equal risk contribution"),
    Objective("min_cvar", min_cvar, "minimum CVaR at confidence alpha on historical returns"),
)}
