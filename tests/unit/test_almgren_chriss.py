"""Almgren-Chriss (2000), discrete model: closed forms vs summation, limits, optimality, the
paper's Section 3 example."""
import math

import numpy as np
import pytest

from utils.engine.execution import almgren_chriss as ac
from utils.engine.execution import plan_execution

# the paper's Section 3 example: X = 1e6 shares at S0 = 50, sigma = 0.95 $/share/day^(1/2)
# (30 % annual), no drift, T = 5 days in N = 5 slices, epsilon = 1/16, eta = 2.5e-6,
# gamma = 2.5e-7, lambda = 1e-6
PAPER = dict(quantity=1e6, slices=5, horizon=5.0, sigma=0.95, eta=2.5e-6, gamma=2.5e-7,
             epsilon=0.0625, risk_aversion=1e-6)


def _ac_plan(quantity, slices, horizon, **parameters):
    return plan_execution("almgren_chriss", "sell", quantity, slices, horizon, **parameters)


def _summed_utility(holdings, tau, sigma, eta_tilde, gamma, epsilon, risk_aversion):
    trades = -np.diff(holdings)
    quantity = holdings[0]
    expected = (0.5 * gamma * quantity ** 2 + epsilon * quantity
                + eta_tilde / tau * np.sum(trades ** 2))
    return expected + risk_aversion * sigma ** 2 * tau * np.sum(holdings[1:] ** 2)


def _random_parameters(rng):
    slices = int(rng.integers(1, 60))
    horizon = float(rng.uniform(0.5, 10.0))
    tau = horizon / slices
    gamma = float(rng.uniform(0.0, 1e-6))
    eta = 0.5 * gamma * tau + float(rng.uniform(1e-7, 1e-5))
    kappa_horizon = float(rng.uniform(0.05, 6.0))  # spans near-TWAP to strongly front-loaded
    sigma = float(rng.uniform(0.1, 2.0))
    # lambda that gives roughly that kappa T (the continuous kappa~ is close to kappa)
    risk_aversion = (kappa_horizon / horizon) ** 2 * (eta - 0.5 * gamma * tau) / sigma ** 2
    return dict(quantity=float(rng.uniform(1e3, 1e7)), slices=slices, horizon=horizon,
                sigma=sigma, eta=eta, gamma=gamma, epsilon=float(rng.uniform(0.0, 0.1)),
                risk_aversion=risk_aversion)


def test_closed_forms_equal_summation_over_the_schedule():
    rng = np.random.default_rng(2000)
    for _ in range(300):
        p = _random_parameters(rng)
        plan = _ac_plan(**p)
        tau = p["horizon"] / p["slices"]
        eta_tilde = p["eta"] - 0.5 * p["gamma"] * tau
        trades = -np.diff(plan.holdings)
        summed_e = (0.5 * p["gamma"] * p["quantity"] ** 2 + p["epsilon"] * p["quantity"]
                    + eta_tilde / tau * math.fsum(trades ** 2))
        summed_v = p["sigma"] ** 2 * tau * math.fsum(plan.holdings[1:] ** 2)
        closed_e = ac.expected_cost_closed_form(p["quantity"], p["horizon"], p["slices"], plan.kappa,
                                                eta_tilde, p["gamma"], p["epsilon"])
        closed_v = ac.variance_closed_form(p["quantity"], p["horizon"], p["slices"], plan.kappa,
                                           p["sigma"])
        assert plan.expected_cost == pytest.approx(summed_e, rel=1e-12)
        assert closed_e == pytest.approx(summed_e, rel=1e-12)
        if p["slices"] == 1:
            assert plan.cost_variance == 0.0 and abs(closed_v) <= 1e-12 * summed_e
        else:
            assert plan.cost_variance == pytest.approx(summed_v, rel=1e-12)
            assert closed_v == pytest.approx(summed_v, rel=1e-12)
        assert plan.utility == pytest.approx(summed_e + p["risk_aversion"] * summed_v, rel=1e-12)


def test_holdings_are_the_sinh_profile_and_trades_their_differences():
    rng = np.random.default_rng(7)
    for _ in range(50):
        p = _random_parameters(rng)
        plan = _ac_plan(**p)
        times = np.arange(p["slices"] + 1) * p["horizon"] / p["slices"]
        expected = p["quantity"] * np.sinh(plan.kappa * (p["horizon"] - times)) / np.sinh(
            plan.kappa * p["horizon"])
        np.testing.assert_allclose(plan.holdings, expected, rtol=1e-12, atol=1e-12 * p["quantity"])
        np.testing.assert_allclose(plan.quantities, plan.holdings[:-1] - plan.holdings[1:],
                                   rtol=0.0, atol=1e-12 * p["quantity"])
        assert sum(plan.quantities) == p["quantity"]
        np.testing.assert_allclose(plan.times, times, rtol=1e-15)
        assert plan.holdings[0] == p["quantity"] and plan.holdings[-1] == 0.0


def test_schedule_is_a_stationary_point_of_the_discrete_utility():
    """The discrete kappa (cosh equation) - not the continuous kappa~ - zeroes the gradient of
    E + lambda V over the interior holdings x_1..x_{N-1}."""
    p = PAPER
    plan = _ac_plan(**p)
    tau = p["horizon"] / p["slices"]
    eta_tilde = p["eta"] - 0.5 * p["gamma"] * tau
    args = (tau, p["sigma"], eta_tilde, p["gamma"], p["epsilon"], p["risk_aversion"])
    # analytic gradient of the summed utility wrt x_j, j = 1..N-1
    x = plan.holdings
    gradient = (2 * eta_tilde / tau * (2 * x[1:-1] - x[:-2] - x[2:])
                + 2 * p["risk_aversion"] * p["sigma"] ** 2 * tau * x[1:-1])
    scale = 2 * eta_tilde / tau * p["quantity"]
    assert np.max(np.abs(gradient)) < 1e-12 * scale
    base = _summed_utility(x, *args)
    rng = np.random.default_rng(1)
    for _ in range(20):
        bumped = x.copy()
        bumped[1:-1] += rng.normal(0.0, 1e3, x.size - 2)
        assert _summed_utility(bumped, *args) > base


def test_paper_example_kappa_and_costs():
    """Reproduces the Section 3 example's numbers from the model itself. The paper's printed
    values could not be found in the reference corpus, so this checks internal consistency: tau = 1
    day, eta~ = 2.375e-6, kappa~^2 = lambda sigma^2 / eta~ = 0.38 /day^2 (kappa~ = 0.6164), the
    discrete kappa tau = arccosh(1 + kappa~^2 tau^2 / 2) = 0.6071 (below the continuous value, as
    it must be), the holdings, and E and V equal to the paper's closed forms."""
    plan = _ac_plan(**PAPER)
    eta_tilde = 2.5e-6 - 0.5 * 2.5e-7
    assert eta_tilde == pytest.approx(2.375e-6, rel=1e-15)
    kappa_tilde_squared = 1e-6 * 0.95 ** 2 / eta_tilde
    assert kappa_tilde_squared == pytest.approx(0.38, rel=1e-12)
    assert plan.kappa == pytest.approx(math.acosh(1 + kappa_tilde_squared / 2), rel=1e-12)
    assert plan.kappa == pytest.approx(0.607076163, rel=1e-9)
    assert plan.kappa < math.sqrt(kappa_tilde_squared)
    assert 2 * (math.cosh(plan.kappa) - 1) == pytest.approx(kappa_tilde_squared, rel=1e-12)
    np.testing.assert_allclose(
        plan.holdings, [1e6, 541955.5544, 289854.2194, 147897.4878, 62141.8016, 0.0], rtol=1e-9, atol=1e-9)
    assert plan.expected_cost == pytest.approx(
        ac.expected_cost_closed_form(1e6, 5.0, 5, plan.kappa, eta_tilde, 2.5e-7, 0.0625), rel=1e-12)
    assert plan.cost_variance == pytest.approx(ac.variance_closed_form(1e6, 5.0, 5, plan.kappa, 0.95),
                                               rel=1e-12)
    assert plan.expected_cost == pytest.approx(911226.986, rel=1e-9)   # $0.91M
    assert plan.cost_variance == pytest.approx(3.64128572e11, rel=1e-8)  # sd $0.60M
    # the half-life 1 / kappa of the trade is about 1.6 days
    assert 1 / plan.kappa == pytest.approx(1.647, abs=1e-3)


def test_zero_risk_aversion_is_twap_with_its_closed_forms():
    quantity, slices, horizon, sigma, eta, gamma, epsilon = 2e5, 13, 6.5, 0.3, 1e-4, 2e-6, 0.01
    plan = _ac_plan(quantity, slices, horizon, sigma=sigma, eta=eta, gamma=gamma, epsilon=epsilon)
    assert plan.kappa == 0.0
    np.testing.assert_allclose(plan.holdings, quantity * (1 - np.arange(slices + 1) / slices),
                               rtol=0.0, atol=1e-15 * quantity)
    eta_tilde = eta - 0.5 * gamma * horizon / slices
    assert plan.expected_cost == pytest.approx(
        0.5 * gamma * quantity ** 2 + epsilon * quantity + eta_tilde * quantity ** 2 / horizon, rel=1e-13)
    direct_v = sigma ** 2 * (horizon / slices) * math.fsum(
        (quantity * (1 - j / slices)) ** 2 for j in range(1, slices + 1))
    closed_v = sigma ** 2 * quantity ** 2 * horizon * (1 - 1 / slices) * (1 - 1 / (2 * slices)) / 3
    assert closed_v == pytest.approx(direct_v, rel=1e-13)
    assert plan.cost_variance == pytest.approx(direct_v, rel=1e-13)
    twap = plan_execution("twap", "sell", quantity, slices, horizon, sigma=sigma, eta=eta, gamma=gamma,
                          epsilon=epsilon)
    assert twap.expected_cost == pytest.approx(plan.expected_cost, rel=1e-13)
    assert twap.cost_variance == pytest.approx(plan.cost_variance, rel=1e-13)


def test_small_risk_aversion_approaches_twap():
    line = 1e6 * (1 - np.arange(6) / 5)
    gaps = [np.max(np.abs(_ac_plan(**{**PAPER, "risk_aversion": lam}).holdings - line))
            for lam in (1e-6, 1e-8, 1e-10, 1e-12)]
    assert all(later < earlier for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-3 * 1e6 * 1e-3


def test_one_slice_trades_everything_at_once():
    plan = _ac_plan(**{**PAPER, "slices": 1})
    np.testing.assert_array_equal(plan.quantities, [1e6])
    np.testing.assert_array_equal(plan.holdings, [1e6, 0.0])
    assert plan.cost_variance == 0.0
    eta_tilde = 2.5e-6 - 0.5 * 2.5e-7 * 5.0
    assert plan.expected_cost == pytest.approx(0.5 * 2.5e-7 * 1e12 + 0.0625e6 + eta_tilde / 5.0 * 1e12,
                                               rel=1e-14)


def test_large_risk_aversion_front_loads():
    plan = _ac_plan(**{**PAPER, "risk_aversion": 1e-2, "slices": 20})
    assert plan.holdings[1] < 1e-2 * PAPER["quantity"]  # kappa tau = 5.4: x_1 / X = exp(-5.4)
    assert np.all(np.diff(plan.quantities[:-1]) <= 0.0)
    # the last slice, X - (sum of the others), is rounding noise (~1 ulp of X) rather than 1e-37
    assert 0.0 <= plan.quantities[-1] <= 4 * np.spacing(PAPER["quantity"])
    huge = _ac_plan(**{**PAPER, "risk_aversion": 1e6, "slices": 390, "horizon": 390.0})
    # kappa T = 1e4: sinh(kappa T) overflows, the stable form does not
    assert np.all(np.isfinite(huge.holdings)) and 0.0 < huge.holdings[1] < 1e-11 * PAPER["quantity"]


def test_buy_and_sell_costs_are_symmetric():
    sell = _ac_plan(**PAPER)
    buy = plan_execution("almgren_chriss", "buy", **PAPER)
    np.testing.assert_array_equal(buy.quantities, sell.quantities)
    assert (buy.expected_cost, buy.cost_variance, buy.kappa) == (
        sell.expected_cost, sell.cost_variance, sell.kappa)


def test_non_convex_discrete_problem_is_rejected():
    with pytest.raises(ValueError, match="non-convex.*more slices.*smaller gamma"):
        _ac_plan(**{**PAPER, "gamma": 2 * 2.5e-6})  # gamma tau / 2 = eta
    with pytest.raises(ValueError, match="requires sigma"):
        plan_execution("almgren_chriss", "sell", 1e6, 5, 5.0, eta=2.5e-6)
    with pytest.raises(ValueError, match="requires eta"):
        plan_execution("almgren_chriss", "sell", 1e6, 5, 5.0, sigma=0.95)
