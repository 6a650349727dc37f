"""Minimum CVaR on historical scenarios: the Rockafellar–Uryasev LP of pypfopt ``EfficientCVaR.min_cvar``.

min α + 1/(T(1 − β)) Σu  s.t.  u ≥ 0,  R w + α + u ≥ 0, plus the linear constraints (β = alpha,
the confidence level; dates with any NaN return are dropped, as pypfopt does).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .conic import solve, upper_triangle
from .constraints import linear_constraints
from .mean_variance import finish, program_with
from .problem import OptimizationResult, PortfolioProblem


def scenario_returns(problem: PortfolioProblem) -> np.ndarray:
    if problem.returns is None:
        raise ValueError("min_cvar needs scenario returns: set PortfolioProblem.returns (dates × assets)")
    complete = problem.returns[~np.isnan(problem.returns).any(axis=1)]
    if complete.shape[0] == 0:
        raise ValueError("min_cvar: every date of returns has a NaN; no scenario is left")
    return complete


def min_cvar(problem: PortfolioProblem, *, alpha: float = 0.95, **_) -> OptimizationResult:
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha (the CVaR confidence level) must be in [0, 1), got {alpha}")
    scenarios = scenario_returns(problem)
    n_dates = scenarios.shape[0]
    system = linear_constraints(problem)
    base = system.n_variables
    n_variables = base + 1 + n_dates                 # [w, d?, value-at-risk α, shortfalls u]
    program = program_with(system, n_variables)
    program.linear = np.zeros(n_variables)
    program.linear[base] = 1.0
    program.linear[base + 1:] = 1.0 / (n_dates * (1.0 - alpha))
    if problem.l2_gamma:
        program.quadratic_upper = upper_triangle(2.0 * problem.l2_gamma * np.eye(problem.n_assets), n_variables)
    identity = sp.identity(n_dates, format="csr")
    no_weight_columns = sp.csr_matrix((n_dates, base + 1))
    program.nonnegative.append((sp.hstack([no_weight_columns, -identity], format="csr"), np.zeros(n_dates)))
    losses = sp.hstack([sp.csr_matrix(-scenarios), sp.csr_matrix((n_dates, base - problem.n_assets)),
                        sp.csr_matrix(-np.ones((n_dates, 1))), -identity], format="csr")
    program.nonnegative.append((losses, np.zeros(n_dates)))
    return finish(problem, solve(program), "min_cvar")
