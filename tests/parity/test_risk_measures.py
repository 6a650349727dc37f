"""The risk measures of ``risk_report`` against Riskfolio-Lib, vectorbt and closed forms written here.

Fixtures: seeded fat-tailed daily returns (a common Student-t factor plus Student-t noise, df 3-4) for
a few portfolios (equal, concentrated, long-short) and T in {20, 100, 251, 1000}.

Contract checked:
  * historical VaR/CVaR equal Riskfolio's VaR_Hist / CVaR_Hist with alpha the decimal complement of
    the confidence (0.95 -> 0.05) exactly, bit for bit, on the same portfolio returns;
  * parametric VaR/ES and Cornish-Fisher VaR equal closed forms from numpy/scipy within 1e-12;
  * Monte-Carlo VaR (normal model) lies within 4 of its standard errors of the normal closed form;
  * Euler component VaR sums to the parametric VaR within 1e-12;
  * max drawdown equals Riskfolio's MDD_Rel and vectorbt's (start-inclusive) max drawdown within 1e-12.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.references import require_reference
from utils.engine.risk import risk_report
from utils.engine.risk.tails import var_cvar

riskfolio = require_reference("riskfolio")
vbt = require_reference("vectorbt")

LENGTHS = (20, 100, 251, 1000)
ASSETS = 4
PORTFOLIOS = {
    "equal": np.full(ASSETS, 1.0 / ASSETS),
    "concentrated": np.array([0.7, 0.2, 0.1, 0.0]),
    "long_short": np.array([1.3, -0.5, 0.4, -0.2]),
}
CONFIDENCES = (0.95, 0.99, 0.975, 0.9)
CLOSED_FORM_TOL = 1e-12
MC_STANDARD_ERRORS = 4.0
MC_SCENARIOS = 200_000  # ~0.1 s each; enough for standard errors of a few basis points


def fat_tailed_returns(length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    market = 0.008 * rng.standard_t(3, size=(length, 1))
    noise = 0.01 * rng.standard_t(4, size=(length, ASSETS))
    return 0.0003 + market * np.array([1.0, 0.8, 1.2, 0.5]) + noise


def decimal_alpha(confidence: float) -> float:
    return round(1.0 - confidence, 12)  # 0.95 -> 0.05, the decimal the user meant


def report(returns, weights, **options):
    return risk_report(returns, weights, mc_scenarios=options.pop("mc_scenarios", 1_000),
                       seed=options.pop("seed", 7), confidences=options.pop("confidences", CONFIDENCES),
                       **options)


# ----------------------------------------------------------------------------- historical
@pytest.mark.parametrize("portfolio", sorted(PORTFOLIOS))
@pytest.mark.parametrize("length", LENGTHS)
def test_historical_var_cvar_equal_riskfolio(length, portfolio):
    returns, weights = fat_tailed_returns(length, seed=length), PORTFOLIOS[portfolio]
    portfolio_returns = returns @ weights
    for level in report(returns, weights).levels:
        alpha = decimal_alpha(level.confidence)
        assert level.historical_var == riskfolio.RiskFunctions.VaR_Hist(portfolio_returns, alpha)
        assert level.historical_cvar == riskfolio.RiskFunctions.CVaR_Hist(portfolio_returns, alpha)


@pytest.mark.parametrize("length, worst_rank", [(20, 1), (100, 5)])
def test_95_percent_var_is_the_intended_order_statistic(length, worst_rank):
    """1 - 0.95 = 0.050000000000000044: fed that alpha, Riskfolio (and numpy's inverted_cdf quantile)
    take the next order statistic at T=20 and T=100; ours is the 1st / 5th worst, as meant."""
    portfolio_returns = fat_tailed_returns(length, seed=3) @ PORTFOLIOS["equal"]
    ordered = np.sort(portfolio_returns)
    value_at_risk, conditional = var_cvar(portfolio_returns, 0.95, np)
    assert value_at_risk == -ordered[worst_rank - 1]
    assert conditional == pytest.approx(-ordered[:worst_rank].mean(), rel=1e-14)
    naive = riskfolio.RiskFunctions.VaR_Hist(portfolio_returns, 1 - 0.95)
    assert naive == -ordered[worst_rank]  # the trap this convention avoids
    assert value_at_risk == riskfolio.RiskFunctions.VaR_Hist(portfolio_returns, 0.05)
    assert value_at_risk == -np.quantile(portfolio_returns, 0.05, method="inverted_cdf")


@pytest.mark.parametrize("horizon", [2, 5, 10])
def test_horizon_historical_measures_on_compounded_windows(horizon):
    returns, weights = fat_tailed_returns(251, seed=11), PORTFOLIOS["concentrated"]
    portfolio_returns = returns @ weights
    windows = np.lib.stride_tricks.sliding_window_view(portfolio_returns, horizon)
    compounded = np.prod(1.0 + windows, axis=1) - 1.0
    result = report(returns, weights, horizon_days=horizon)
    for level in result.levels:
        alpha = decimal_alpha(level.confidence)
        assert level.historical_var == pytest.approx(riskfolio.RiskFunctions.VaR_Hist(compounded, alpha),
                                                     abs=1e-15)
        assert level.historical_cvar == pytest.approx(riskfolio.RiskFunctions.CVaR_Hist(compounded, alpha),
                                                      abs=1e-15)
    worst = result.worst_windows
    assert len(worst) == 5 and worst[0].window_return == pytest.approx(compounded.min(), abs=1e-15)
    assert [window.window_return for window in worst] == sorted(window.window_return for window in worst)
    spans = sorted((window.start, window.end) for window in worst)
    assert all(end - start == horizon - 1 for start, end in spans)
    assert all(previous[1] < following[0] for previous, following in zip(spans, spans[1:]))  # no overlap
    for window in worst:
        assert window.window_return == pytest.approx(compounded[window.start], abs=1e-15)


def test_daily_worst_windows_are_the_five_lowest_days():
    returns, weights = fat_tailed_returns(100, seed=5), PORTFOLIOS["equal"]
    portfolio_returns = returns @ weights
    worst = report(returns, weights).worst_windows
    assert [window.start for window in worst] == list(np.argsort(portfolio_returns)[:5])
    assert all(window.start == window.end for window in worst)


# ----------------------------------------------------------------------------- closed forms
def closed_forms(portfolio_returns: np.ndarray, confidence: float, horizon: int) -> dict[str, float]:
    alpha = 1.0 - confidence
    mean, std = np.mean(portfolio_returns) * horizon, np.std(portfolio_returns, ddof=1) * math.sqrt(horizon)
    z = stats.norm.ppf(alpha)
    skew = stats.skew(portfolio_returns) / math.sqrt(horizon)
    kurt = stats.kurtosis(portfolio_returns) / horizon
    z_cf = z + (z ** 2 - 1) * skew / 6 + (z ** 3 - 3 * z) * kurt / 24 - (2 * z ** 3 - 5 * z) * skew ** 2 / 36
    return {"parametric_var": -(mean + z * std), "parametric_es": -mean + std * stats.norm.pdf(z) / alpha,
            "cornish_fisher_var": -(mean + z_cf * std)}


@pytest.mark.parametrize("horizon", [1, 5])
@pytest.mark.parametrize("portfolio", sorted(PORTFOLIOS))
@pytest.mark.parametrize("length", LENGTHS)
def test_parametric_measures_equal_closed_forms(length, portfolio, horizon):
    returns, weights = fat_tailed_returns(length, seed=length + 1), PORTFOLIOS[portfolio]
    for level in report(returns, weights, horizon_days=horizon).levels:
        expected = closed_forms(returns @ weights, level.confidence, horizon)
        for name, value in expected.items():
            assert getattr(level, name) == pytest.approx(value, abs=CLOSED_FORM_TOL), name


@pytest.mark.parametrize("horizon", [1, 5])
@pytest.mark.parametrize("portfolio", sorted(PORTFOLIOS))
def test_component_var_sums_to_parametric_var(portfolio, horizon):
    returns, weights = fat_tailed_returns(251, seed=2), PORTFOLIOS[portfolio]
    result = report(returns, weights, horizon_days=horizon)
    for level in result.levels:
        assert len(level.component_var) == ASSETS
        assert math.fsum(level.component_var) == pytest.approx(level.parametric_var, abs=CLOSED_FORM_TOL)
    assert result.component_var == result.levels[0].component_var
    if portfolio == "concentrated":
        assert result.levels[0].component_var[3] == 0.0  # a zero weight contributes nothing


def test_component_var_equals_the_euler_formula():
    returns, weights = fat_tailed_returns(1000, seed=9), PORTFOLIOS["long_short"]
    horizon, level = 3, report(returns, weights, horizon_days=3).levels[0]
    covariance = np.cov(returns, rowvar=False, ddof=1)
    z = stats.norm.ppf(1 - level.confidence)
    sigma = math.sqrt(weights @ covariance @ weights)
    marginal = covariance @ weights
    expected = -(weights * returns.mean(axis=0) * horizon + z * math.sqrt(horizon) * weights * marginal / sigma)
    np.testing.assert_allclose(level.component_var, expected, rtol=0, atol=CLOSED_FORM_TOL)


# ----------------------------------------------------------------------------- Monte-Carlo
@pytest.mark.parametrize("horizon", [1, 10])
@pytest.mark.parametrize("portfolio", sorted(PORTFOLIOS))
def test_normal_monte_carlo_var_within_standard_errors_of_closed_form(portfolio, horizon):
    returns, weights = fat_tailed_returns(1000, seed=21), PORTFOLIOS[portfolio]
    result = report(returns, weights, horizon_days=horizon, mc_scenarios=MC_SCENARIOS, seed=2024)
    for level in result.levels:
        assert 0.0 < level.mc_standard_error < 0.02 * level.parametric_var
        assert abs(level.mc_var - level.parametric_var) <= MC_STANDARD_ERRORS * level.mc_standard_error
        # ES averages the tail: its error is of the same order as the quantile's
        assert abs(level.mc_es - level.parametric_es) <= 2 * MC_STANDARD_ERRORS * level.mc_standard_error


def test_monte_carlo_standard_error_is_the_quantile_formula():
    returns, weights = fat_tailed_returns(1000, seed=21), PORTFOLIOS["equal"]
    level = report(returns, weights, mc_scenarios=MC_SCENARIOS, seed=1).levels[0]
    alpha = 0.05
    sigma = np.std(returns @ weights, ddof=1)
    expected = math.sqrt(alpha * (1 - alpha) / MC_SCENARIOS) / (stats.norm.pdf(stats.norm.ppf(alpha)) / sigma)
    assert level.mc_standard_error == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("horizon", [1, 5])
def test_bootstrap_agrees_with_history(horizon):
    """h = 1: the bootstrap resamples the very days, so its VaR nears the historical one; h > 1: the
    sum of h days nears the compounded windows' VaR (fat tails: a looser, relative check)."""
    returns, weights = fat_tailed_returns(1000, seed=4), PORTFOLIOS["equal"]
    result = report(returns, weights, horizon_days=horizon, mc_scenarios=MC_SCENARIOS, mc_method="bootstrap")
    days = returns @ weights
    for level in result.levels:
        if horizon == 1:
            assert np.any(days == -level.mc_var)  # a resampled day
            assert level.mc_var == pytest.approx(level.historical_var, rel=0.1)
            assert level.mc_es == pytest.approx(level.historical_cvar, rel=0.1)
        else:
            assert level.mc_var == pytest.approx(level.parametric_var, rel=0.25)
        assert level.mc_es >= level.mc_var > 0


# ----------------------------------------------------------------------------- path measures
@pytest.mark.parametrize("portfolio", sorted(PORTFOLIOS))
@pytest.mark.parametrize("length", LENGTHS)
def test_max_drawdown_equals_riskfolio_and_vectorbt(length, portfolio):
    returns, weights = fat_tailed_returns(length, seed=length + 2), PORTFOLIOS[portfolio]
    portfolio_returns = returns @ weights
    ours = report(returns, weights).max_drawdown
    assert ours == pytest.approx(riskfolio.RiskFunctions.MDD_Rel(portfolio_returns), abs=1e-12)
    with_start = pd.Series(np.concatenate([[0.0], portfolio_returns]))
    vectorbt = -float(with_start.vbt.returns(freq="D", year_freq="252 days").max_drawdown())
    assert ours == pytest.approx(vectorbt, abs=1e-12)


def test_drawdown_from_the_first_day_counts():
    returns = np.array([[-0.1], [0.05], [0.02]])
    assert report(returns, np.array([1.0])).max_drawdown == pytest.approx(0.1, abs=1e-15)


def test_volatility_beta_and_shock_equal_numpy():
    returns, weights = fat_tailed_returns(251, seed=8), PORTFOLIOS["long_short"]
    benchmark = returns[:, 0] * 0.5 + 0.001 * np.random.default_rng(1).standard_normal(251)
    shocks = np.array([-0.2, -0.1, 0.05, 0.3])
    result = report(returns, weights, benchmark_returns=benchmark, shocks=shocks, frequency=52)
    portfolio_returns = returns @ weights
    assert result.annual_volatility == pytest.approx(np.std(portfolio_returns, ddof=1) * math.sqrt(52), abs=1e-14)
    expected_beta = np.cov(portfolio_returns, benchmark, ddof=1)[0, 1] / np.var(benchmark, ddof=1)
    assert result.beta == pytest.approx(expected_beta, abs=1e-12)
    assert result.shock_return == pytest.approx(float(np.dot(weights, shocks)), abs=1e-15)
    assert result.observations == 251
    no_benchmark = report(returns, weights)
    assert no_benchmark.beta is None and no_benchmark.shock_return is None
