"""Clarabel called directly: min ½xᵀPx + qᵀx s.t. equalities, inequalities, second-order and
exponential cones. Direct calls skip cvxpy's canonicalisation, which is most of pypfopt's time."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import clarabel
import numpy as np
import scipy.sparse as sp

# Tight enough that weights agree with pypfopt (cvxpy + Clarabel) to 1e-5 and better; faer's
# supernodal LDLᵀ factors the dense Σ block about twice as fast as the default QDLDL.
SOLVER_SETTINGS = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, tol_ktratio=1e-8,
                       max_iter=200, direct_solve_method="faer")
# Quadratic programs (linear constraints only) skip iterative refinement: it costs ~25 % of a
# 500-asset solve and moves weights by ~1e-8. Cone programs need it (without it Clarabel stalls
# at these tolerances), and a QP that ends without a verdict is retried with it.
QP_SETTINGS = dict(SOLVER_SETTINGS, iterative_refinement_enable=False)
SOLVER_NAME = "clarabel"

_STATUS_NAMES = {
    "Solved": "optimal", "AlmostSolved": "optimal_inaccurate",
    "PrimalInfeasible": "infeasible", "AlmostPrimalInfeasible": "infeasible_inaccurate",
    "DualInfeasible": "unbounded", "AlmostDualInfeasible": "unbounded_inaccurate",
}


@dataclass
class ConicProgram:
    """Constraint blocks in Clarabel's form A x + s = b, s in the cone of each block."""

    n_variables: int
    quadratic_upper: sp.spmatrix | None = None
    linear: np.ndarray | None = None
    zero: list[tuple[sp.spmatrix, np.ndarray]] = field(default_factory=list)
    nonnegative: list[tuple[sp.spmatrix, np.ndarray]] = field(default_factory=list)
    second_order: list[tuple[sp.spmatrix, np.ndarray]] = field(default_factory=list)
    exponential: list[tuple[sp.spmatrix, np.ndarray]] = field(default_factory=list)


@dataclass(frozen=True)
class ConicSolution:
    x: np.ndarray
    status: str
    objective: float
    iterations: int
    seconds: float

    @property
    def solved(self) -> bool:
        return self.status in ("optimal", "optimal_inaccurate")

    @property
    def infeasible(self) -> bool:
        return self.status.startswith("infeasible")

    @property
    def conclusive(self) -> bool:
        return self.solved or self.infeasible or self.status.startswith("unbounded")


def upper_triangle(matrix, n_variables: int) -> sp.csc_matrix:
    """The upper triangle of a dense or sparse block placed at the top-left of an n × n matrix."""
    block = sp.csc_matrix(np.triu(matrix)) if isinstance(matrix, np.ndarray) else sp.triu(matrix, format="csc")
    extra = n_variables - block.shape[0]
    return block if extra == 0 else sp.block_diag((block, sp.csc_matrix((extra, extra))), format="csc")


def _stack(blocks, n_variables: int):
    if not blocks:
        return None
    return (sp.vstack([sp.csr_matrix(matrix) for matrix, _ in blocks], format="csc"),
            np.concatenate([np.asarray(rhs, dtype=np.float64) for _, rhs in blocks]))


def solve(program: ConicProgram) -> ConicSolution:
    """Solve with Clarabel; the status is cvxpy's vocabulary ("optimal", "infeasible", …)."""
    if program.second_order or program.exponential:
        return _solve_once(program, SOLVER_SETTINGS)
    solution = _solve_once(program, QP_SETTINGS)
    return solution if solution.conclusive else _solve_once(program, SOLVER_SETTINGS)


def _solve_once(program: ConicProgram, chosen_settings: dict) -> ConicSolution:
    n = program.n_variables
    quadratic = program.quadratic_upper if program.quadratic_upper is not None else sp.csc_matrix((n, n))
    linear = program.linear if program.linear is not None else np.zeros(n)
    matrices, rhs, cones = [], [], []
    for blocks, cone in ((program.zero, clarabel.ZeroConeT), (program.nonnegative, clarabel.NonnegativeConeT)):
        stacked = _stack(blocks, n)
        if stacked is not None and stacked[0].shape[0]:
            matrices.append(stacked[0]), rhs.append(stacked[1]), cones.append(cone(stacked[0].shape[0]))
    for matrix, vector in program.second_order:
        matrices.append(sp.csc_matrix(matrix)), rhs.append(np.asarray(vector, dtype=np.float64))
        cones.append(clarabel.SecondOrderConeT(matrix.shape[0]))
    for matrix, vector in program.exponential:
        matrices.append(sp.csc_matrix(matrix)), rhs.append(np.asarray(vector, dtype=np.float64))
        cones.extend(clarabel.ExponentialConeT() for _ in range(matrix.shape[0] // 3))
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    for name, value in chosen_settings.items():
        setattr(settings, name, value)
    started = time.perf_counter()
    solver = clarabel.DefaultSolver(sp.csc_matrix(quadratic), np.asarray(linear, dtype=np.float64),
                                    sp.vstack(matrices, format="csc"), np.concatenate(rhs), cones, settings)
    solution = solver.solve()
    status_name = str(solution.status).split(".")[-1]
    return ConicSolution(np.asarray(solution.x), _STATUS_NAMES.get(status_name, status_name.lower()),
                         float(solution.obj_val), int(solution.iterations), time.perf_counter() - started)
