"""Long-only equal risk contribution: min ½yᵀΣy − (1/N) Σ log yᵢ over y > 0, then w = y / Σy.

At the optimum yᵢ(Σy)ᵢ = 1/N for every asset, so each risk contribution is 1/N. The logs are
exponential cones (tᵢ, 1, yᵢ): e^tᵢ ≤ yᵢ, and the objective becomes ½yᵀΣy − (1/N) Σ tᵢ.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .conic import ConicProgram, solve, upper_triangle
from .errors import InfeasibleProblem
from .mean_variance import finish
from .problem import OptimizationResult, PortfolioProblem


def _reject_unsupported(problem: PortfolioProblem) -> None:
    unsupported = [name for name, present in (
        ("sector bounds", bool(problem.sector_lower or problem.sector_upper)),
        ("max_turnover", problem.max_turnover is not None),
        ("l2_gamma", problem.l2_gamma > 0)) if present]
    if unsupported:
        raise ValueError(f"risk_parity is the unconstrained long-only ERC portfolio; it does not take "
                         f"{', '.join(unsupported)}")


def _check_bounds(problem: PortfolioProblem, weights: np.ndarray) -> None:
    above = weights > problem.weight_upper + 1e-9
    below = weights < problem.weight_lower - 1e-9
    for mask, side, bound in ((above, "above weight_upper", problem.weight_upper),
                              (below, "below weight_lower", problem.weight_lower)):
        if mask.any():
            asset = int(np.flatnonzero(mask)[0])
            raise InfeasibleProblem(f"risk_parity: the equal-risk-contribution portfolio puts "
                                    f"{weights[asset]:.6g} on asset {asset}, {side} {bound[asset]:g} "
                                    f"({int(mask.sum())} assets out of bounds)")


def _newton_polish(cov: np.ndarray, scaled: np.ndarray, steps: int = 4) -> np.ndarray:
    """A few damped Newton steps on the smooth objective: Clarabel's 1e-10 gap leaves the
    contributions equal to ~1e-7; Newton takes them to rounding error."""
    n_assets = scaled.shape[0]
    for _ in range(steps):
        gradient = cov @ scaled - 1.0 / (n_assets * scaled)
        hessian = cov + np.diag(1.0 / (n_assets * scaled ** 2))
        step = np.linalg.solve(hessian, gradient)
        shrink = 1.0
        while np.any(scaled - shrink * step <= 0):   # stay inside y > 0
            shrink *= 0.5
        scaled = scaled - shrink * step
    return scaled


def risk_parity(problem: PortfolioProblem, **_) -> OptimizationResult:
    _reject_unsupported(problem)
    n_assets = problem.n_assets
    if np.any(np.diag(problem.cov) <= 0):
        raise ValueError("risk_parity needs a positive variance for every asset")
    n_variables = 2 * n_assets                      # [y, t]
    program = ConicProgram(n_variables)
    program.quadratic_upper = upper_triangle(problem.cov, n_variables)
    program.linear = np.r_[np.zeros(n_assets), -np.ones(n_assets) / n_assets]
    # cone i holds (tᵢ, 1, yᵢ): rows -tᵢ, 0, -yᵢ with right-hand side (0, 1, 0)
    rows = np.arange(3 * n_assets).reshape(n_assets, 3)
    cone_matrix = sp.csr_matrix((-np.ones(2 * n_assets),
                                 (np.r_[rows[:, 0], rows[:, 2]], np.r_[n_assets + np.arange(n_assets), np.arange(n_assets)])),
                                shape=(3 * n_assets, n_variables))
    cone_rhs = np.zeros(3 * n_assets)
    cone_rhs[rows[:, 1]] = 1.0
    program.exponential.append((cone_matrix, cone_rhs))
    solution = solve(program)
    scaled = _newton_polish(problem.cov, solution.x[:n_assets]) if solution.solved else solution.x[:n_assets]
    weights = scaled / scaled.sum()
    result = finish(problem, solution, "risk_parity", weights)
    _check_bounds(problem, result.weights)
    return result
