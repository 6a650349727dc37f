"""The linear constraints of a ``PortfolioProblem`` as labelled row groups over z = [w, d].

w are the N weights; d (N more, only with ``max_turnover``) bound |w − w_prev| so that the
turnover constraint Σ|w − w_prev| ≤ max_turnover stays linear. Each group keeps a label so an
infeasible problem can name the constraint at fault.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .problem import PortfolioProblem


@dataclass(frozen=True)
class RowGroup:
    """Rows ``matrix @ z (= or ≤) rhs`` with a label naming the constraint."""

    label: str
    matrix: sp.csr_matrix
    rhs: np.ndarray


@dataclass(frozen=True)
class LinearConstraints:
    n_variables: int
    equalities: tuple[RowGroup, ...]
    inequalities: tuple[RowGroup, ...]

    def stacked(self, kind: str) -> tuple[sp.csr_matrix, np.ndarray]:
        groups = self.equalities if kind == "eq" else self.inequalities
        if not groups:
            return sp.csr_matrix((0, self.n_variables)), np.zeros(0)
        return (sp.vstack([g.matrix for g in groups], format="csr"),
                np.concatenate([g.rhs for g in groups]))

    def homogenised(self) -> LinearConstraints:
        """Rows A z ≤ b become A y − b k ≤ 0 over [y, k] (pypfopt's max_sharpe transformation)."""
        def lift(group: RowGroup) -> RowGroup:
            column = sp.csr_matrix(-group.rhs[:, None])
            return RowGroup(group.label, sp.hstack([group.matrix, column], format="csr"),
                            np.zeros_like(group.rhs))
        return LinearConstraints(self.n_variables + 1, tuple(map(lift, self.equalities)),
                                 tuple(map(lift, self.inequalities)))


def _rows(label: str, dense_or_sparse, rhs, n_variables: int) -> RowGroup:
    matrix = sp.csr_matrix(dense_or_sparse)
    if matrix.shape[1] < n_variables:
        matrix = sp.hstack([matrix, sp.csr_matrix((matrix.shape[0], n_variables - matrix.shape[1]))],
                           format="csr")
    return RowGroup(label, matrix, np.asarray(rhs, dtype=np.float64).ravel())


def _bound_rows(problem: PortfolioProblem, n_variables: int) -> list[RowGroup]:
    """Finite bounds that the others and Σw = 1 do not already imply.

    With w ≥ lower and Σw = 1, each wᵢ ≤ 1 − Σ_{j≠i} lowerⱼ, so a long-only upper bound of 1 is
    redundant; leaving such rows out shrinks the KKT system without changing the optimum."""
    groups = []
    identity = sp.identity(problem.n_assets, format="csr")
    lower, upper = problem.weight_lower, problem.weight_upper
    implied_upper = 1.0 - (lower.sum() - lower)        # NaN/−inf when some lower bound is −inf
    implied_lower = 1.0 - (upper.sum() - upper)
    finite_lower = np.isfinite(lower) & ~(lower <= implied_lower)
    finite_upper = np.isfinite(upper) & ~(upper >= implied_upper)
    if finite_lower.any():
        groups.append(_rows("weight_lower", -identity[finite_lower], -problem.weight_lower[finite_lower],
                            n_variables))
    if finite_upper.any():
        groups.append(_rows("weight_upper", identity[finite_upper], problem.weight_upper[finite_upper],
                            n_variables))
    return groups


def _sector_rows(problem: PortfolioProblem, n_variables: int) -> list[RowGroup]:
    groups = []
    for sector, bound in problem.sector_upper.items():
        members = problem.sector_members(sector).astype(np.float64)[None, :]
        groups.append(_rows(f"sector_upper[{sector}]", members, [bound], n_variables))
    for sector, bound in problem.sector_lower.items():
        members = problem.sector_members(sector).astype(np.float64)[None, :]
        groups.append(_rows(f"sector_lower[{sector}]", -members, [-bound], n_variables))
    return groups


def _turnover_rows(problem: PortfolioProblem, include_cap: bool) -> list[RowGroup]:
    n_assets = problem.n_assets
    identity = sp.identity(n_assets, format="csr")
    previous = problem.previous_weights
    groups = [_rows("turnover", sp.hstack([identity, -identity]), previous, 2 * n_assets),
              _rows("turnover", sp.hstack([-identity, -identity]), -previous, 2 * n_assets)]
    if include_cap:
        cap = np.concatenate([np.zeros(n_assets), np.ones(n_assets)])[None, :]
        groups.append(_rows("max_turnover", cap, [problem.max_turnover], 2 * n_assets))
    return groups


def has_turnover(problem: PortfolioProblem) -> bool:
    return problem.max_turnover is not None


def linear_constraints(problem: PortfolioProblem, with_turnover: bool | None = None,
                       turnover_cap: bool = True) -> LinearConstraints:
    """Sum-to-one, weight bounds, sector bounds and (optionally) the turnover rows."""
    with_turnover = has_turnover(problem) if with_turnover is None else with_turnover
    n_variables = problem.n_assets * (2 if with_turnover else 1)
    budget = _rows("weights sum to 1", np.ones((1, problem.n_assets)), [1.0], n_variables)
    inequalities = _bound_rows(problem, n_variables) + _sector_rows(problem, n_variables)
    if with_turnover:
        inequalities += _turnover_rows(problem, turnover_cap)
    return LinearConstraints(n_variables, (budget,), tuple(inequalities))
