"""Parity of ``utils.engine.portfolio`` with PyPortfolioOpt 1.6.0 (and scikit-learn's LedoitWolf).

Data: seeded random-walk closes, 20 assets × 750 days, 3 late listings and NaN gaps, so the
pairwise-complete NaN handling of pandas is exercised everywhere.
Tolerances: estimators 1e-10 relative; weights 1e-5 absolute and performance 1e-6 relative for
the optimisers; HRP 1e-12; allocations share for share.
Solver: pypfopt runs cvxpy with solver="CLARABEL" and our ``SOLVER_SETTINGS`` (tol_gap_abs,
tol_gap_rel, tol_feas 1e-10, tol_ktratio 1e-8, faer LDLᵀ), so both sides solve to the same
accuracy; ours calls Clarabel directly with those settings (quadratic programs without iterative
refinement, ``QP_SETTINGS``, which moves weights by ~1e-8).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.references import require_reference

pypfopt = require_reference("pypfopt")
sklearn_covariance = require_reference("sklearn.covariance")

import cvxpy as cp
import pandas as pd
from pypfopt import (
    DiscreteAllocation,
    EfficientCVaR,
    EfficientFrontier,
    HRPOpt,
    expected_returns,
    objective_functions,
    risk_models,
)
from pypfopt.base_optimizer import portfolio_performance as reference_performance

from utils.engine import portfolio as engine
from utils.engine.portfolio.conic import SOLVER_SETTINGS

N_ASSETS, N_DATES = 20, 750
WEIGHT_TOL, PERFORMANCE_RTOL, ESTIMATOR_RTOL, HRP_TOL = 1e-5, 1e-6, 1e-10, 1e-12


def random_walk_prices(n_assets: int = N_ASSETS, n_dates: int = N_DATES, seed: int = 7,
                       with_gaps: bool = True) -> np.ndarray:
    """One-factor random-walk closes; assets 3, 11, 17 list late, three assets have NaN gaps."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(0.0004, 0.0003, n_assets)
    volatility = rng.uniform(0.01, 0.03, n_assets)
    market = rng.normal(0.0, 0.01, n_dates)
    log_returns = (drift + market[:, None] * rng.uniform(0.5, 1.5, n_assets)
                   + rng.normal(0.0, 1.0, (n_dates, n_assets)) * volatility)
    closes = 100.0 * np.exp(np.cumsum(log_returns, axis=0))
    if not with_gaps:
        return closes
    for k, asset in enumerate((3, 11, 17)):
        closes[: 60 + 90 * k, asset] = np.nan
    for asset, start, length in ((5, 200, 3), (8, 400, 1), (14, 600, 5)):
        closes[start:start + length, asset] = np.nan
    return closes


PRICES = random_walk_prices()
FRAME = pd.DataFrame(PRICES)
MU = engine.mean_historical(PRICES)
COV = engine.sample_cov(PRICES)
RETURNS = engine.returns_from_prices(PRICES)
SECTOR_OF = np.arange(N_ASSETS) % 4


def assert_close(actual, reference, rtol=ESTIMATOR_RTOL, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(reference, dtype=np.float64), rtol=rtol, atol=atol)


@pytest.fixture(autouse=True)
def quiet_reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # pypfopt warns about NaN returns and amended matrices
        yield


# ---------------------------------------------------------------- returns and estimators

def test_returns_from_prices_keeps_pandas_nan_layout():
    reference = expected_returns.returns_from_prices(FRAME).to_numpy()
    np.testing.assert_array_equal(np.isnan(RETURNS), np.isnan(reference))
    assert_close(RETURNS[~np.isnan(RETURNS)], reference[~np.isnan(reference)])
    assert_close(engine.returns_from_prices(PRICES, log_returns=True)[~np.isnan(RETURNS)],
                 expected_returns.returns_from_prices(FRAME, log_returns=True).to_numpy()[~np.isnan(reference)])


MARKET = random_walk_prices(1, seed=3, with_gaps=False)[:, 0]
EXPECTED_RETURN_CASES = {
    "mean_geometric": (lambda: engine.mean_historical(PRICES),
                       lambda: expected_returns.mean_historical_return(FRAME)),
    "mean_arithmetic": (lambda: engine.mean_historical(PRICES, compounding=False, frequency=52),
                        lambda: expected_returns.mean_historical_return(FRAME, compounding=False, frequency=52)),
    "mean_log": (lambda: engine.mean_historical(PRICES, log_returns=True),
                 lambda: expected_returns.mean_historical_return(FRAME, log_returns=True)),
    "ema_geometric": (lambda: engine.ema_historical(PRICES, span=120),
                      lambda: expected_returns.ema_historical_return(FRAME, span=120)),
    "ema_arithmetic": (lambda: engine.ema_historical(PRICES, compounding=False),
                       lambda: expected_returns.ema_historical_return(FRAME, compounding=False)),
    "capm_equal_weight_market": (lambda: engine.capm(PRICES, risk_free_rate=0.02),
                                 lambda: expected_returns.capm_return(FRAME, risk_free_rate=0.02)),
    "capm_given_market": (lambda: engine.capm(PRICES, MARKET, compounding=False),
                          lambda: expected_returns.capm_return(FRAME, pd.DataFrame(MARKET), compounding=False)),
}


@pytest.mark.parametrize("case", sorted(EXPECTED_RETURN_CASES))
def test_expected_returns_match_pypfopt(case):
    ours, reference = EXPECTED_RETURN_CASES[case]
    assert_close(ours(), reference())


RISK_MODEL_CASES = {
    "sample_cov": (lambda: engine.sample_cov(PRICES), lambda: risk_models.sample_cov(FRAME)),
    "semicovariance": (lambda: engine.semicovariance(PRICES), lambda: risk_models.semicovariance(FRAME)),
    "exp_cov": (lambda: engine.exp_cov(PRICES), lambda: risk_models.exp_cov(FRAME)),
    "exp_cov_short_span": (lambda: engine.exp_cov(PRICES, span=60, frequency=12),
                           lambda: risk_models.exp_cov(FRAME, span=60, frequency=12)),
    "ledoit_wolf": (lambda: engine.ledoit_wolf(PRICES),
                    lambda: risk_models.CovarianceShrinkage(FRAME).ledoit_wolf()),
}


@pytest.mark.parametrize("case", sorted(RISK_MODEL_CASES))
def test_risk_models_match_pypfopt(case):
    ours, reference = RISK_MODEL_CASES[case]
    assert_close(ours(), reference())


def test_ledoit_wolf_matches_scikit_learn():
    reference = sklearn_covariance.LedoitWolf().fit(np.nan_to_num(RETURNS)).covariance_ * 252
    assert_close(engine.ledoit_wolf(PRICES), reference)


def test_spectral_fix_matches_pypfopt_and_reports_it():
    broken = COV.copy()
    broken[0, 1] = broken[1, 0] = 3.0 * np.sqrt(COV[0, 0] * COV[1, 1])
    fixed, was_fixed = engine.fix_nonpositive_semidefinite(broken)
    assert was_fixed
    assert_close(fixed, risk_models.fix_nonpositive_semidefinite(broken), rtol=1e-9, atol=1e-15)
    unchanged, was_fixed = engine.fix_nonpositive_semidefinite(COV)
    assert not was_fixed and unchanged is not None and np.array_equal(unchanged, COV)


# ---------------------------------------------------------------- mean-variance objectives

CONSTRAINT_CASES = {
    "long_only": {},
    "shorting": dict(weight_lower=-0.5, weight_upper=1.0),
    "sectors": dict(sector_of=SECTOR_OF, sector_lower={0: 0.15}, sector_upper={1: 0.2, 2: 0.3}),
    "l2_gamma": dict(l2_gamma=0.1),
}
OBJECTIVE_CASES = {
    "min_volatility": ({}, lambda frontier: frontier.min_volatility()),
    "max_sharpe": ({}, lambda frontier: frontier.max_sharpe(risk_free_rate=0.02)),
    "max_quadratic_utility": (dict(risk_aversion=3.0), lambda frontier: frontier.max_quadratic_utility(3.0)),
    "efficient_risk": (dict(target_volatility=0.24), lambda frontier: frontier.efficient_risk(0.24)),
    "efficient_return": (dict(target_return=0.14), lambda frontier: frontier.efficient_return(0.14)),
}


def reference_frontier(constraints: dict) -> EfficientFrontier:
    bounds = (constraints.get("weight_lower", 0.0), constraints.get("weight_upper", 1.0))
    frontier = EfficientFrontier(pd.Series(MU), pd.DataFrame(COV), weight_bounds=bounds, solver="CLARABEL",
                                 solver_options=dict(SOLVER_SETTINGS))
    if constraints.get("l2_gamma"):
        frontier.add_objective(objective_functions.L2_reg, gamma=constraints["l2_gamma"])
    if "sector_of" in constraints:
        mapper = {asset: int(sector) for asset, sector in enumerate(constraints["sector_of"])}
        frontier.add_sector_constraints(mapper, constraints["sector_lower"], constraints["sector_upper"])
    return frontier


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_CASES))
@pytest.mark.parametrize("constraints", sorted(CONSTRAINT_CASES))
def test_objective_matches_pypfopt(objective, constraints):
    arguments, solve_reference = OBJECTIVE_CASES[objective]
    frontier = reference_frontier(CONSTRAINT_CASES[constraints])
    solve_reference(frontier)
    risk_free_rate = 0.02 if objective == "max_sharpe" else 0.0
    problem = engine.PortfolioProblem(MU, COV, risk_free_rate=risk_free_rate, **CONSTRAINT_CASES[constraints])
    result = engine.optimize(problem, objective, **arguments)
    assert result.solver == "clarabel" and result.status == "optimal"
    np.testing.assert_allclose(result.weights, frontier.weights, atol=WEIGHT_TOL, rtol=0)
    np.testing.assert_allclose(engine.portfolio_performance(result.weights, MU, COV, risk_free_rate),
                               frontier.portfolio_performance(risk_free_rate=risk_free_rate),
                               rtol=PERFORMANCE_RTOL)


PREVIOUS = np.full(N_ASSETS, 1.0 / N_ASSETS)


TURNOVER_CASES = {  # the min-volatility portfolio is 1.09 away from PREVIOUS: the cap binds
    "min_volatility": ({}, lambda frontier: frontier.min_volatility()),
    "efficient_return": (dict(target_return=-0.05), lambda frontier: frontier.efficient_return(-0.05)),
}


@pytest.mark.parametrize("objective", sorted(TURNOVER_CASES))
def test_turnover_matches_pypfopt_l1_constraint(objective):
    arguments, solve_reference = TURNOVER_CASES[objective]
    frontier = reference_frontier({})
    frontier.add_constraint(lambda weights: cp.norm(weights - PREVIOUS, 1) <= 0.5)
    solve_reference(frontier)
    problem = engine.PortfolioProblem(MU, COV, previous_weights=PREVIOUS, max_turnover=0.5)
    result = engine.optimize(problem, objective, **arguments)
    np.testing.assert_allclose(result.weights, frontier.weights, atol=WEIGHT_TOL, rtol=0)
    assert np.abs(result.weights - PREVIOUS).sum() <= 0.5 + 1e-8


def test_portfolio_performance_and_clean_weights_match_pypfopt():
    weights = np.linspace(1.0, 2.0, N_ASSETS) / np.linspace(1.0, 2.0, N_ASSETS).sum()
    weights[3] = 5e-5
    np.testing.assert_allclose(engine.portfolio_performance(weights, MU, COV, 0.01),
                               reference_performance(weights, MU, COV, risk_free_rate=0.01), rtol=1e-12)
    frontier = reference_frontier({})
    frontier.weights = weights
    reference = np.array(list(frontier.clean_weights(cutoff=1e-4, rounding=4).values()))
    np.testing.assert_array_equal(engine.clean_weights(weights, cutoff=1e-4, rounding=4), reference)


def test_min_cvar_matches_efficient_cvar():
    reference = EfficientCVaR(pd.Series(MU), pd.DataFrame(RETURNS), beta=0.9, solver="CLARABEL",
                              solver_options=dict(SOLVER_SETTINGS))
    reference.min_cvar()
    result = engine.optimize(engine.PortfolioProblem(MU, COV, returns=RETURNS), "min_cvar", alpha=0.9)
    np.testing.assert_allclose(result.weights, reference.weights, atol=WEIGHT_TOL, rtol=0)


def test_risk_parity_has_equal_risk_contributions():
    result = engine.optimize(engine.PortfolioProblem(MU, COV), "risk_parity")
    contributions = engine.risk_contributions(result.weights, COV)
    np.testing.assert_allclose(contributions, 1.0 / N_ASSETS, atol=1e-6, rtol=0)
    assert np.all(result.weights > 0) and abs(result.weights.sum() - 1.0) < 1e-12


# ---------------------------------------------------------------- infeasible problems

def test_weight_upper_too_small_is_named_like_pypfopt_fails():
    frontier = reference_frontier(dict(weight_upper=0.04))
    with pytest.raises(pypfopt.exceptions.OptimizationError):
        frontier.min_volatility()
    with pytest.raises(engine.InfeasibleProblem, match=r"weight_upper.*sum to 0\.8 < 1"):
        engine.optimize(engine.PortfolioProblem(MU, COV, weight_upper=0.04), "min_volatility")


def test_unattainable_sector_bounds_are_named():
    constraints = dict(sector_of=SECTOR_OF, sector_upper={0: 0.1, 1: 0.1, 2: 0.1, 3: 0.1})
    frontier = reference_frontier(dict(constraints, sector_lower={}))
    with pytest.raises(pypfopt.exceptions.OptimizationError):
        frontier.min_volatility()
    with pytest.raises(engine.InfeasibleProblem, match=r"sector_upper.*at most 0\.4 < 1"):
        engine.optimize(engine.PortfolioProblem(MU, COV, **constraints), "max_sharpe")
    with pytest.raises(engine.InfeasibleProblem, match=r"sector_lower\[2\] = 0\.9 is unattainable"):
        engine.optimize(engine.PortfolioProblem(MU, COV, sector_of=SECTOR_OF, sector_lower={2: 0.9},
                                                weight_upper=0.1), "min_volatility")


def test_unattainable_targets_are_named_like_pypfopt():
    with pytest.raises(ValueError, match="maximum possible return"):
        reference_frontier({}).efficient_return(5.0)
    with pytest.raises(engine.InfeasibleProblem, match=r"target_return 5 exceeds the maximum attainable return"):
        engine.optimize(engine.PortfolioProblem(MU, COV), "efficient_return", target_return=5.0)
    with pytest.raises(ValueError, match="minimum volatility"):
        reference_frontier({}).efficient_risk(0.01)
    with pytest.raises(engine.InfeasibleProblem, match=r"target_volatility 0\.01 is below the minimum volatility"):
        engine.optimize(engine.PortfolioProblem(MU, COV), "efficient_risk", target_volatility=0.01)


# ---------------------------------------------------------------- HRP and discrete allocation

@pytest.mark.parametrize("linkage", ["single", "ward", "complete"])
def test_hrp_matches_hrpopt(linkage):
    reference = HRPOpt(pd.DataFrame(RETURNS))
    reference.optimize(linkage_method=linkage)
    weights = engine.hrp_weights(RETURNS, linkage=linkage)
    np.testing.assert_allclose(weights, reference.weights, atol=HRP_TOL, rtol=0)
    np.testing.assert_allclose(engine.hrp_performance(weights, RETURNS), reference.portfolio_performance(),
                               rtol=1e-10)


def test_hrp_from_covariance_matches_hrpopt():
    reference = HRPOpt(cov_matrix=pd.DataFrame(COV))
    reference.optimize()
    np.testing.assert_allclose(engine.hrp_weights(cov=COV), reference.weights, atol=HRP_TOL, rtol=0)


LATEST_PRICES = PRICES[-1]
LONG_WEIGHTS = np.random.default_rng(1).dirichlet(np.ones(N_ASSETS))
LONG_SHORT_WEIGHTS = np.random.default_rng(2).normal(0.05, 0.1, N_ASSETS)
ALLOCATION_CASES = {
    "long_only": (LONG_WEIGHTS, 25_000.0, None, False),
    "long_short": (LONG_SHORT_WEIGHTS, 50_000.0, None, False),
    "long_short_reinvest_ratio": (LONG_SHORT_WEIGHTS, 50_000.0, 0.3, True),
}


@pytest.mark.parametrize("method", ["greedy", "lp"])
@pytest.mark.parametrize("case", sorted(ALLOCATION_CASES))
def test_discrete_allocation_matches_pypfopt(method, case):
    weights, total_value, short_ratio, reinvest = ALLOCATION_CASES[case]
    reference = DiscreteAllocation(dict(enumerate(weights)), pd.Series(LATEST_PRICES),
                                   total_portfolio_value=total_value, short_ratio=short_ratio)
    allocate = reference.greedy_portfolio if method == "greedy" else reference.lp_portfolio
    reference_shares, reference_leftover = allocate(reinvest=reinvest)
    ours = engine.greedy_allocation if method == "greedy" else engine.lp_allocation
    shares, leftover = ours(weights, LATEST_PRICES, total_value, short_ratio=short_ratio, reinvest=reinvest)
    np.testing.assert_array_equal(shares, [reference_shares.get(asset, 0) for asset in range(N_ASSETS)])
    assert leftover == pytest.approx(float(reference_leftover), rel=1e-9, abs=1e-6)
