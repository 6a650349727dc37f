"""Validation, errors and invariants of ``utils.engine.portfolio`` (no reference library needed)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from utils.engine import portfolio as engine
from utils.engine.portfolio.objectives import OBJECTIVES
from utils.engine.portfolio.pairwise import pairwise_cov_and_corr

N_ASSETS = 6


def small_problem_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0005, 0.01, (300, N_ASSETS)) + rng.normal(0, 0.01, (300, 1))
    prices = 100 * np.cumprod(1 + returns, axis=0)
    return engine.mean_historical(prices), engine.sample_cov(prices), engine.returns_from_prices(prices)


MU, COV, RETURNS = small_problem_inputs()
REQUIRED_ARGUMENTS = {"target_volatility": 0.5, "target_return": 0.0}


def test_every_declared_objective_is_complete_and_solves():
    for name, entry in OBJECTIVES.items():
        assert entry.name == name and entry.description and callable(entry.solve)
        accepted = inspect.signature(engine.optimize).parameters
        assert all(argument in accepted for argument in entry.requires), name
        arguments = {argument: REQUIRED_ARGUMENTS[argument] for argument in entry.requires}
        result = engine.optimize(engine.PortfolioProblem(MU, COV, returns=RETURNS), name, **arguments)
        assert result.objective_name == name and result.solver == "clarabel"
        assert result.weights.shape == (N_ASSETS,) and abs(result.weights.sum() - 1) < 1e-8


def test_unknown_objective_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown objective 'max_return'.*min_volatility"):
        engine.optimize(engine.PortfolioProblem(MU, COV), "max_return")


@pytest.mark.parametrize("objective, missing", [("efficient_risk", "target_volatility"),
                                                ("efficient_return", "target_return")])
def test_missing_target_is_a_value_error(objective, missing):
    with pytest.raises(ValueError, match=missing):
        engine.optimize(engine.PortfolioProblem(MU, COV), objective)


@pytest.mark.parametrize("mu, cov, message", [
    (MU, COV[:, :-1], "square"),
    (MU[:-1], COV, "match mu"),
    (np.r_[MU[:-1], np.nan], COV, "non-finite"),
    (MU, np.where(np.eye(N_ASSETS) == 1, np.nan, COV), "NaN"),
])
def test_bad_inputs_are_value_errors(mu, cov, message):
    with pytest.raises(ValueError, match=message):
        engine.PortfolioProblem(mu, cov)


def test_constraint_arguments_are_validated():
    with pytest.raises(ValueError, match="max_turnover needs previous_weights"):
        engine.PortfolioProblem(MU, COV, max_turnover=0.1)
    with pytest.raises(ValueError, match="sector_of"):
        engine.PortfolioProblem(MU, COV, sector_upper={0: 0.5})
    with pytest.raises(ValueError, match="integer sector"):
        engine.PortfolioProblem(MU, COV, sector_of=np.zeros(N_ASSETS - 1, dtype=int))
    with pytest.raises(ValueError, match="risk_aversion"):
        engine.optimize(engine.PortfolioProblem(MU, COV), "max_quadratic_utility", risk_aversion=0.0)
    with pytest.raises(ValueError, match="scenario returns"):
        engine.optimize(engine.PortfolioProblem(MU, COV), "min_cvar")


def test_infeasible_problem_is_a_value_error_naming_the_constraint():
    assert issubclass(engine.InfeasibleProblem, ValueError)
    with pytest.raises(engine.InfeasibleProblem, match=r"weight_lower too large.*sum to 1\.8 > 1"):
        engine.optimize(engine.PortfolioProblem(MU, COV, weight_lower=0.3), "min_volatility")
    with pytest.raises(engine.InfeasibleProblem, match=r"weight_lower > weight_upper for assets \[2\]"):
        engine.optimize(engine.PortfolioProblem(MU, COV, weight_lower=np.r_[0, 0, 0.5, 0, 0, 0],
                                                weight_upper=np.r_[1, 1, 0.4, 1, 1, 1]), "min_volatility")
    with pytest.raises(engine.InfeasibleProblem, match=r"max_turnover 0\.01 is below the least turnover"):
        engine.optimize(engine.PortfolioProblem(MU, COV, weight_upper=0.3, previous_weights=np.eye(N_ASSETS)[0],
                                                max_turnover=0.01), "min_volatility")
    with pytest.raises(engine.InfeasibleProblem, match="risk_free_rate 10"):
        engine.optimize(engine.PortfolioProblem(MU, COV, risk_free_rate=10.0), "max_sharpe")


def test_target_volatility_between_global_and_constrained_minimum_is_named():
    problem = engine.PortfolioProblem(MU, COV, sector_of=np.arange(N_ASSETS) % 2, sector_lower={0: 0.95})
    lowest = engine.portfolio_performance(engine.optimize(problem, "min_volatility").weights, MU, COV)[1]
    unconstrained = engine.optimize(engine.PortfolioProblem(MU, COV, weight_lower=-1.0), "min_volatility")
    target = (lowest + engine.portfolio_performance(unconstrained.weights, MU, COV)[1]) / 2
    with pytest.raises(engine.InfeasibleProblem, match="minimum volatility .* attainable under"):
        engine.optimize(problem, "efficient_risk", target_volatility=target)


def test_turnover_cap_is_respected_and_binds():
    previous = np.full(N_ASSETS, 1.0 / N_ASSETS)
    free = engine.optimize(engine.PortfolioProblem(MU, COV), "max_sharpe").weights
    assert np.abs(free - previous).sum() > 0.2
    for objective in ("max_sharpe", "min_volatility", "max_quadratic_utility"):
        capped = engine.optimize(engine.PortfolioProblem(MU, COV, previous_weights=previous, max_turnover=0.2),
                                 objective).weights
        assert np.abs(capped - previous).sum() <= 0.2 + 1e-8


def test_risk_contributions_sum_to_one_and_risk_parity_refuses_constraints():
    weights = np.linspace(1, 2, N_ASSETS) / np.linspace(1, 2, N_ASSETS).sum()
    assert engine.risk_contributions(weights, COV).sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="sector bounds"):
        engine.optimize(engine.PortfolioProblem(MU, COV, sector_of=np.zeros(N_ASSETS, dtype=int),
                                                sector_upper={0: 1.0}), "risk_parity")
    with pytest.raises(engine.InfeasibleProblem, match="above weight_upper"):
        engine.optimize(engine.PortfolioProblem(MU, COV, weight_upper=np.r_[0.01, [1.0] * (N_ASSETS - 1)]),
                        "risk_parity")


def test_pairwise_cov_matches_a_per_pair_loop():
    returns = RETURNS.copy()
    returns[:40, 1] = np.nan
    returns[100:103, 4] = np.nan
    cov, corr = pairwise_cov_and_corr(returns)
    for i in range(N_ASSETS):
        for j in range(N_ASSETS):
            both = ~np.isnan(returns[:, i]) & ~np.isnan(returns[:, j])
            expected = np.cov(returns[both, i], returns[both, j])
            assert cov[i, j] == pytest.approx(expected[0, 1], rel=1e-12)
            assert corr[i, j] == pytest.approx(expected[0, 1] / np.sqrt(expected[0, 0] * expected[1, 1]), rel=1e-12)


def test_hrp_and_allocation_validate_arguments():
    with pytest.raises(ValueError, match="either returns or cov"):
        engine.hrp_weights()
    with pytest.raises(ValueError, match="linkage"):
        engine.hrp_weights(RETURNS, linkage="nearest")
    weights = engine.hrp_weights(RETURNS)
    assert weights.sum() == pytest.approx(1.0) and np.all(weights > 0)
    with pytest.raises(ValueError, match="NaNs"):
        engine.greedy_allocation(np.r_[np.nan, 1.0], [10.0, 10.0], 1000)
    with pytest.raises(ValueError, match="total_value"):
        engine.lp_allocation([0.5, 0.5], [10.0, 10.0], 0)
    shares, leftover = engine.greedy_allocation([0.5, 0.5], [10.0, 20.0], 1000)
    assert shares.tolist() == [50, 25] and leftover == 0


def test_clean_weights_cuts_and_rounds():
    cleaned = engine.clean_weights(np.array([0.123456789, 5e-5, -0.2]), cutoff=1e-4, rounding=3)
    assert cleaned.tolist() == [0.123, 0.0, -0.2]
    with pytest.raises(ValueError, match="rounding"):
        engine.clean_weights(np.ones(2), rounding=0)
