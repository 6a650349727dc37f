"""Mean-variance objectives as pypfopt's ``EfficientFrontier`` formulates them, solved by Clarabel.

Objectives are the same functions pypfopt minimises (so the weights agree): min_volatility
wᵀΣw, efficient_return wᵀΣw with μᵀw ≥ target, efficient_risk −μᵀw with wᵀΣw ≤ σ² (a
second-order cone on a factor of Σ), max_quadratic_utility −μᵀw + ½δ wᵀΣw, and max_sharpe via
pypfopt's change of variables y = k·w (min yᵀΣy s.t. (μ − rf)ᵀy = 1, constraints scaled by k).
L2 regularisation adds γ‖w‖² (for max_sharpe γ‖y‖², as pypfopt does). Under max_sharpe every
linear row a·w ≤ b becomes a·y ≤ b·k, the turnover rows included (|y − k·w_prev| summed ≤ k·cap);
pypfopt's own transformation would leave w_prev unscaled, which is not the same constraint.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .conic import SOLVER_NAME, ConicProgram, ConicSolution, solve, upper_triangle
from .constraints import LinearConstraints, linear_constraints
from .errors import InfeasibleProblem, OptimizationFailed
from .feasibility import (
    check_sharpe_attainable,
    check_target_return,
    check_target_volatility,
)
from .problem import OptimizationResult, PortfolioProblem


def widen(matrix, n_variables: int) -> sp.csr_matrix:
    """Pad a constraint block with zero columns for variables appended after it."""
    matrix = sp.csr_matrix(matrix)
    if matrix.shape[1] == n_variables:
        return matrix
    return sp.hstack([matrix, sp.csr_matrix((matrix.shape[0], n_variables - matrix.shape[1]))], format="csr")


def program_with(system: LinearConstraints, n_variables: int | None = None) -> ConicProgram:
    """A conic program holding ``system``'s rows (over its first variables)."""
    n_variables = system.n_variables if n_variables is None else n_variables
    program = ConicProgram(n_variables)
    a_eq, b_eq = system.stacked("eq")
    a_ub, b_ub = system.stacked("ub")
    program.zero.append((widen(a_eq, n_variables), b_eq))
    program.nonnegative.append((widen(a_ub, n_variables), b_ub))
    return program


def risk_matrix(problem: PortfolioProblem, risk_scale: float) -> np.ndarray:
    """Clarabel's P (it minimises ½xᵀPx) for risk_scale·½wᵀΣw + γ‖w‖²."""
    quadratic = risk_scale * problem.cov
    if problem.l2_gamma:
        quadratic = quadratic + 2.0 * problem.l2_gamma * np.eye(problem.n_assets)
    return quadratic


def finish(problem: PortfolioProblem, solution: ConicSolution, name: str, weights=None) -> OptimizationResult:
    if not solution.solved:
        raise OptimizationFailed(f"{name}: Clarabel stopped with status {solution.status!r} "
                                 f"after {solution.iterations} iterations")
    weights = solution.x[: problem.n_assets] if weights is None else weights
    return OptimizationResult(weights.round(16) + 0.0, solution.status, SOLVER_NAME, solution.objective,
                              name, solution.iterations, solution.seconds)


def _solve_quadratic(problem: PortfolioProblem, name: str, risk_scale: float, linear_on_weights=None,
                     extra_rows=()) -> ConicSolution:
    system = linear_constraints(problem)
    program = program_with(system)
    program.quadratic_upper = upper_triangle(risk_matrix(problem, risk_scale), system.n_variables)
    if linear_on_weights is not None:
        program.linear = np.zeros(system.n_variables)
        program.linear[: problem.n_assets] = linear_on_weights
    for matrix, rhs in extra_rows:
        program.nonnegative.append((widen(matrix, system.n_variables), rhs))
    return solve(program)


def min_volatility(problem: PortfolioProblem, **_) -> OptimizationResult:
    solution = _solve_quadratic(problem, "min_volatility", 2.0)
    return finish(problem, solution, "min_volatility")


def max_quadratic_utility(problem: PortfolioProblem, *, risk_aversion: float = 1.0, **_) -> OptimizationResult:
    if not (np.isfinite(risk_aversion) and risk_aversion > 0):
        raise ValueError(f"risk_aversion must be greater than zero, got {risk_aversion}")
    solution = _solve_quadratic(problem, "max_quadratic_utility", risk_aversion, -problem.mu)
    return finish(problem, solution, "max_quadratic_utility")


def efficient_return(problem: PortfolioProblem, *, target_return: float | None = None, **_) -> OptimizationResult:
    if target_return is None or not np.isfinite(target_return):
        raise ValueError(f"efficient_return needs a finite target_return, got {target_return}")
    check_target_return(problem, target_return)
    solution = _solve_quadratic(problem, "efficient_return", 2.0,
                                extra_rows=[(-problem.mu[None, :], np.array([-target_return]))])
    if solution.infeasible:
        raise InfeasibleProblem(f"target_return {target_return:g} is unattainable under the constraints")
    return finish(problem, solution, "efficient_return")


def covariance_factor(cov: np.ndarray) -> np.ndarray:
    """Fᵀ with F Fᵀ = Σ (Cholesky, or the eigen factor of a singular PSD Σ), so wᵀΣw = ‖Fᵀw‖²."""
    try:
        return np.linalg.cholesky(cov).T
    except np.linalg.LinAlgError:
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        keep = eigenvalues > eigenvalues.max() * 1e-14
        return np.sqrt(eigenvalues[keep])[:, None] * eigenvectors[:, keep].T


def efficient_risk(problem: PortfolioProblem, *, target_volatility: float | None = None, **_) -> OptimizationResult:
    if target_volatility is None or not np.isfinite(target_volatility) or target_volatility < 0:
        raise ValueError(f"efficient_risk needs a non-negative target_volatility, got {target_volatility}")
    check_target_volatility(problem, target_volatility)
    system = linear_constraints(problem)
    program = program_with(system)
    if problem.l2_gamma:
        program.quadratic_upper = upper_triangle(2.0 * problem.l2_gamma * np.eye(problem.n_assets),
                                                 system.n_variables)
    program.linear = np.zeros(system.n_variables)
    program.linear[: problem.n_assets] = -problem.mu
    factor_t = covariance_factor(problem.cov)
    cone_rows = sp.vstack([sp.csr_matrix((1, problem.n_assets)), sp.csr_matrix(-factor_t)])
    program.second_order.append((widen(cone_rows, system.n_variables),
                                 np.r_[target_volatility, np.zeros(factor_t.shape[0])]))
    solution = solve(program)
    if solution.infeasible:
        lowest = np.sqrt(_lowest_variance(problem))
        raise InfeasibleProblem(f"target_volatility {target_volatility:g} is below the minimum volatility "
                                f"{lowest:.6g} attainable under the weight/sector/turnover constraints")
    return finish(problem, solution, "efficient_risk")


def _lowest_variance(problem: PortfolioProblem) -> float:
    weights = min_volatility(problem).weights
    return float(weights @ problem.cov @ weights)


def max_sharpe(problem: PortfolioProblem, **_) -> OptimizationResult:
    check_sharpe_attainable(problem)
    system = linear_constraints(problem).homogenised()
    n_variables = system.n_variables          # [y, d?, k]: k is the last variable
    program = program_with(system)
    program.quadratic_upper = upper_triangle(risk_matrix(problem, 2.0), n_variables)
    excess = np.zeros((1, n_variables))
    excess[0, : problem.n_assets] = problem.mu - problem.risk_free_rate
    program.zero.append((sp.csr_matrix(excess), np.array([1.0])))
    scale_nonnegative = np.zeros((1, n_variables))
    scale_nonnegative[0, -1] = -1.0
    program.nonnegative.append((sp.csr_matrix(scale_nonnegative), np.array([0.0])))
    solution = solve(program)
    if solution.infeasible:
        raise InfeasibleProblem(f"max_sharpe: no portfolio under the weight/sector/turnover constraints "
                                f"has an expected return above risk_free_rate {problem.risk_free_rate:g}")
    scale = solution.x[-1]
    return finish(problem, solution, "max_sharpe", solution.x[: problem.n_assets] / scale)
