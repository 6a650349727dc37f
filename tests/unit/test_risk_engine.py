"""``risk_report`` input validation, missing-data rule and Monte-Carlo properties (reproducibility,
chunking, seeds, memory-bounded chunks, the explicit ``xp`` switch)."""
from __future__ import annotations

import numpy as np
import pytest

from utils.engine.risk import risk_report
from utils.engine.risk.monte_carlo import bootstrap_scenarios, normal_scenarios, portfolio_loading
from utils.engine.risk.tails import tail_alpha, tail_count

ASSETS = 3
WEIGHTS = np.array([0.5, 0.3, 0.2])


def daily_returns(length: int = 300, seed: int = 0) -> np.ndarray:
    return 0.0002 + 0.01 * np.random.default_rng(seed).standard_t(5, size=(length, ASSETS))


def report(returns=None, weights=WEIGHTS, **options):
    options.setdefault("mc_scenarios", 2_000)
    options.setdefault("seed", 1)
    return risk_report(daily_returns() if returns is None else returns, weights, **options)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("change, message", [
    (dict(weights=np.ones(2)), "one value per asset"),
    (dict(weights=np.array([0.5, np.nan, 0.5])), "finite"),
    (dict(weights=np.array([0.5, np.inf, 0.5])), "finite"),
    (dict(confidences=(0.95, 1.0)), "strictly between 0 and 1"),
    (dict(confidences=(0.0,)), "strictly between 0 and 1"),
    (dict(confidences=(95,)), "strictly between 0 and 1"),
    (dict(confidences=()), "at least one level"),
    (dict(horizon_days=0), "horizon_days"),
    (dict(horizon_days=300), "horizon_days"),
    (dict(horizon_days=2.5), "whole number"),
    (dict(mc_scenarios=99), "mc_scenarios"),
    (dict(mc_scenarios=10_000_001), "mc_scenarios"),
    (dict(mc_method="student_t"), "mc_method"),
    (dict(chunk_scenarios=0), "chunk_scenarios"),
    (dict(frequency=0), "frequency"),
    (dict(benchmark_returns=np.zeros(10)), "one return per day"),
    (dict(shocks=np.zeros(4)), "one value per asset"),
    (dict(returns=daily_returns()[:1]), "at least 2"),
    (dict(returns=daily_returns()[:, 0]), "2-D"),
    (dict(returns=np.where(np.eye(300, ASSETS) > 0, np.inf, daily_returns())), "infinite"),
    (dict(returns=np.full((10, ASSETS), -1.5)), "below -1"),
])
def test_invalid_input_names_the_argument_and_the_fix(change, message):
    with pytest.raises(ValueError, match=message):
        report(**change)


def test_the_scenario_bounds_are_inclusive():
    assert report(mc_scenarios=100).levels[0].mc_var > 0
    assert report(horizon_days=299).levels[0].historical_var is not None


# ----------------------------------------------------------------------------- conventions
def test_a_missing_asset_return_counts_as_zero():
    returns = daily_returns()
    gappy = returns.copy()
    gappy[[3, 50, 51], 1] = np.nan
    filled = returns.copy()
    filled[[3, 50, 51], 1] = 0.0
    assert report(gappy) == report(filled)


def test_tail_alpha_is_the_decimal_complement():
    assert tail_alpha(0.95) == 0.05 and tail_alpha(0.99) == 0.01 and tail_alpha(0.975) == 0.025
    assert [tail_count(0.95, n) for n in (20, 100, 101, 251, 1000)] == [1, 5, 6, 13, 50]
    assert tail_count(0.99, 20) == 1  # never an empty tail


def test_losses_are_positive_and_ordered():
    for level in report(mc_scenarios=50_000).levels:
        assert 0 < level.historical_var <= level.historical_cvar
        assert 0 < level.parametric_var < level.parametric_es
        assert 0 < level.mc_var <= level.mc_es
    low, high = report().levels
    assert high.parametric_var > low.parametric_var and high.historical_var >= low.historical_var


def test_a_constant_portfolio_has_no_spread():
    level = report(returns=np.full((50, ASSETS), 0.001)).levels[0]
    for value in (level.historical_var, level.parametric_var, level.cornish_fisher_var, level.mc_var):
        assert value == pytest.approx(-0.001, abs=1e-15)
    assert level.mc_standard_error == pytest.approx(0.0, abs=1e-15)


# ----------------------------------------------------------------------------- Monte-Carlo
@pytest.mark.parametrize("method", ["normal", "bootstrap"])
def test_same_seed_same_bits_other_seed_other_numbers(method):
    first = report(mc_method=method, seed=42, horizon_days=3)
    assert report(mc_method=method, seed=42, horizon_days=3) == first  # every field, bit for bit
    other = report(mc_method=method, seed=43, horizon_days=3)
    assert other.levels[0].mc_var != first.levels[0].mc_var
    assert other.levels[0].historical_var == first.levels[0].historical_var


def test_normal_scenarios_depend_on_the_chunk_size_only_through_rounding():
    """The chunks draw one normal stream, so the scenarios are the same draws whatever the chunk size;
    only BLAS's blocking of Z @ (A'w) may change the last bits. A given chunk size is bit-identical."""
    returns = daily_returns()
    loading = portfolio_loading(np.cov(returns, rowvar=False), WEIGHTS, np)
    runs = [normal_scenarios(0.001, loading, 5, 10_007, 9, chunk, np) for chunk in (1, 333, 4_096, 20_000)]
    for scenarios in runs[1:]:
        np.testing.assert_allclose(scenarios, runs[0], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(normal_scenarios(0.001, loading, 5, 10_007, 9, 333, np), runs[1])


def test_bootstrap_scenarios_do_not_depend_on_the_chunk_size():
    days = daily_returns() @ WEIGHTS
    runs = [bootstrap_scenarios(days, 4, 5_003, 9, chunk, np) for chunk in (4, 1_000, 50_000)]
    for scenarios in runs[1:]:
        np.testing.assert_array_equal(scenarios, runs[0])


def test_bootstrap_scenarios_are_sums_of_historical_days():
    days = daily_returns() @ WEIGHTS
    rng = np.random.default_rng(3)
    drawn = rng.integers(0, days.shape[0], size=(500, 2))
    np.testing.assert_array_equal(bootstrap_scenarios(days, 2, 500, 3, 64, np), days[drawn].sum(axis=1))


def test_the_portfolio_loading_reproduces_the_portfolio_variance():
    """(A'w)'z with A A' = Sigma is the exact portfolio part of a N(0, Sigma) draw, also for a singular
    Sigma (more assets than days)."""
    returns = np.random.default_rng(5).standard_normal((6, 10)) * 0.01  # 10 assets, 6 days: rank 5
    weights = np.linspace(0.05, 0.15, 10)
    covariance = np.cov(returns, rowvar=False)
    loading = portfolio_loading(covariance, weights, np)
    assert loading @ loading == pytest.approx(weights @ covariance @ weights, rel=1e-12)
    level = report(returns=returns, weights=weights, mc_scenarios=20_000).levels[0]
    assert abs(level.mc_var - level.parametric_var) <= 4 * level.mc_standard_error


def test_the_draws_come_from_generator_pcg64_with_the_seed():
    returns = daily_returns()
    loading = portfolio_loading(np.cov(returns, rowvar=False), WEIGHTS, np)
    expected = np.random.Generator(np.random.PCG64(17)).standard_normal((1_000, ASSETS)) @ loading + 0.0
    np.testing.assert_array_equal(normal_scenarios(0.0, loading, 1, 1_000, 17, 1_000, np), expected)


def test_xp_numpy_passed_explicitly_is_the_default_path():
    assert report(xp=np, mc_scenarios=5_000) == report(mc_scenarios=5_000)
