"""``optimize(problem, objective, …)``: validate, check feasibility, dispatch to the declared objective."""
from __future__ import annotations

from .feasibility import check_linear_feasibility
from .objectives import OBJECTIVES
from .problem import OptimizationResult, PortfolioProblem


def optimize(problem: PortfolioProblem, objective: str, *, target_volatility: float | None = None,
             target_return: float | None = None, risk_aversion: float = 1.0,
             alpha: float = 0.95) -> OptimizationResult:
    """Weights for ``objective`` (a key of ``OBJECTIVES``); infeasible constraints raise
    ``InfeasibleProblem`` naming the constraint, bad arguments ``ValueError``."""
    entry = OBJECTIVES.get(objective)
    if entry is None:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(sorted(OBJECTIVES))}")
    if not isinstance(problem, PortfolioProblem):
        raise TypeError(f"problem must be a PortfolioProblem, got {type(problem).__name__}")
    arguments = dict(target_volatility=target_volatility, target_return=target_return,
                     risk_aversion=risk_aversion, alpha=alpha)
    missing = [name for name in entry.requires if arguments[name] is None]
    if missing:
        raise ValueError(f"objective {objective!r} needs {', '.join(missing)}")
    check_linear_feasibility(problem)
    return entry.solve(problem, **arguments)
