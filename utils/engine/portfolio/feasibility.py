"""Checks made before solving, so that an infeasible problem names the constraint at fault.

Weight and sector bounds are checked in closed form (sectors partition the assets, so the
attainable total weight is the sum of each sector's attainable interval); turnover and return
targets need one small LP each (HiGHS through ``scipy.optimize.linprog``).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from .constraints import linear_constraints
from .errors import InfeasibleProblem
from .problem import PortfolioProblem

_SLACK = 1e-9  # bounds that meet to within rounding are feasible


def _assets(mask: np.ndarray, limit: int = 10) -> str:
    indices = np.flatnonzero(mask).tolist()
    return str(indices[:limit])[:-1] + (", …]" if len(indices) > limit else "]")


def check_weight_bounds(problem: PortfolioProblem) -> None:
    lower, upper, n_assets = problem.weight_lower, problem.weight_upper, problem.n_assets
    crossed = lower > upper
    if crossed.any():
        first = np.flatnonzero(crossed)[0]
        raise InfeasibleProblem(f"weight_lower > weight_upper for assets {_assets(crossed)} "
                                f"(asset {first}: {lower[first]:g} > {upper[first]:g})")
    if upper.sum() < 1 - _SLACK:
        raise InfeasibleProblem(f"weight_upper too small: the {n_assets} upper bounds sum to "
                                f"{upper.sum():.6g} < 1, so the weights cannot sum to 1")
    if lower.sum() > 1 + _SLACK:
        raise InfeasibleProblem(f"weight_lower too large: the {n_assets} lower bounds sum to "
                                f"{lower.sum():.6g} > 1, so the weights cannot sum to 1")


def _sector_interval(problem: PortfolioProblem, sector: int) -> tuple[float, float]:
    members = problem.sector_members(sector)
    low = problem.weight_lower[members].sum()
    high = problem.weight_upper[members].sum()
    bound_low = problem.sector_lower.get(sector, -np.inf)
    bound_high = problem.sector_upper.get(sector, np.inf)
    if bound_low > bound_high + _SLACK:
        raise InfeasibleProblem(f"sector {sector}: sector_lower {bound_low:g} > sector_upper {bound_high:g}")
    if bound_low > high + _SLACK:
        raise InfeasibleProblem(f"sector_lower[{sector}] = {bound_low:g} is unattainable: its "
                                f"{members.sum()} assets' weight_upper sum to {high:.6g}")
    if bound_high < low - _SLACK:
        raise InfeasibleProblem(f"sector_upper[{sector}] = {bound_high:g} is unattainable: its "
                                f"{members.sum()} assets' weight_lower sum to {low:.6g}")
    return max(low, bound_low), min(high, bound_high)


def check_sector_bounds(problem: PortfolioProblem) -> None:
    if problem.sector_of is None:
        return
    sectors = sorted(set(problem.sector_lower) | set(problem.sector_upper))
    intervals = {sector: _sector_interval(problem, sector) for sector in sectors}
    free = ~np.isin(problem.sector_of, sectors)
    total_low = sum(low for low, _ in intervals.values()) + problem.weight_lower[free].sum()
    total_high = sum(high for _, high in intervals.values()) + problem.weight_upper[free].sum()
    described = ", ".join(f"sector {s} in [{low:.6g}, {high:.6g}]" for s, (low, high) in intervals.items())
    if total_high < 1 - _SLACK:
        raise InfeasibleProblem(f"sector_upper bounds too tight: the weights can sum to at most "
                                f"{total_high:.6g} < 1 ({described}; other assets ≤ "
                                f"{problem.weight_upper[free].sum():.6g})")
    if total_low > 1 + _SLACK:
        raise InfeasibleProblem(f"sector_lower bounds too large: the weights sum to at least "
                                f"{total_low:.6g} > 1 ({described}; other assets ≥ "
                                f"{problem.weight_lower[free].sum():.6g})")


def _linear_program(problem: PortfolioProblem, cost: np.ndarray, with_turnover: bool, turnover_cap: bool):
    system = linear_constraints(problem, with_turnover=with_turnover, turnover_cap=turnover_cap)
    a_eq, b_eq = system.stacked("eq")
    a_ub, b_ub = system.stacked("ub")
    full_cost = np.zeros(system.n_variables)
    full_cost[: cost.shape[0]] = cost
    return linprog(full_cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(None, None),
                   method="highs")


def minimum_turnover(problem: PortfolioProblem) -> float:
    """The least Σ|w − w_prev| that meets the bounds, sectors and sum-to-one."""
    n_assets = problem.n_assets
    result = _linear_program(problem, np.r_[np.zeros(n_assets), np.ones(n_assets)], True, False)
    return float(result.fun)


def check_turnover(problem: PortfolioProblem) -> None:
    if problem.max_turnover is None:
        return
    least = minimum_turnover(problem)
    if least > problem.max_turnover + 1e-9:
        raise InfeasibleProblem(f"max_turnover {problem.max_turnover:g} is below the least turnover "
                                f"{least:.6g} that the weight and sector bounds need from previous_weights")


def maximum_return(problem: PortfolioProblem) -> float:
    """The highest attainable μᵀw under every linear constraint (pypfopt's ``_max_return``)."""
    result = _linear_program(problem, -problem.mu, None, True)
    if result.status == 3:
        return np.inf
    return float(-result.fun)


def check_linear_feasibility(problem: PortfolioProblem) -> None:
    """Every objective's constraints: bounds, sectors, turnover, in that order."""
    check_weight_bounds(problem)
    check_sector_bounds(problem)
    check_turnover(problem)


def check_target_return(problem: PortfolioProblem, target_return: float) -> None:
    highest = maximum_return(problem)
    if target_return > highest:
        raise InfeasibleProblem(f"target_return {target_return:g} exceeds the maximum attainable return "
                                f"{highest:.6g} under the weight/sector/turnover constraints")


def unconstrained_minimum_volatility(cov: np.ndarray) -> float:
    """pypfopt's bound for efficient_risk: sqrt(1 / Σ pinv(cov)) (only the budget constraint)."""
    return float(np.sqrt(1.0 / np.sum(np.linalg.pinv(cov))))


def check_target_volatility(problem: PortfolioProblem, target_volatility: float) -> None:
    lowest = unconstrained_minimum_volatility(problem.cov)
    if target_volatility < lowest:
        raise InfeasibleProblem(f"target_volatility {target_volatility:g} is below the minimum "
                                f"volatility {lowest:.6g} of any fully invested portfolio")


def check_sharpe_attainable(problem: PortfolioProblem) -> None:
    best = problem.mu.max()
    if best <= problem.risk_free_rate:
        raise InfeasibleProblem(f"max_sharpe needs an asset whose expected return exceeds risk_free_rate "
                                f"{problem.risk_free_rate:g}; the highest mu is {best:.6g}")
