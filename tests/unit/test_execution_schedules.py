"""TWAP / VWAP / POV schedules, lot rounding, input validation and the algorithm registry."""
import inspect
import math

import numpy as np
import pytest

from utils.engine.execution import ALGORITHMS, plan_execution
from utils.engine.execution.plan import PlanInputs

COSTS = dict(sigma=0.02, eta=1e-3, gamma=1e-6, epsilon=0.01)
# the smallest valid keyword arguments per algorithm-specific input
REQUIRED_EXAMPLES = {
    "sigma": 0.02, "eta": 1e-3, "volume_profile": [1.0, 2.0, 3.0, 4.0],
    "participation": 0.5, "expected_volumes": [1e4, 1e4, 1e4, 1e4],
}


def _summed_costs(plan, horizon, sigma, eta, gamma, epsilon):
    tau = horizon / plan.quantities.size
    quantity = plan.holdings[0]
    expected = (0.5 * gamma * quantity ** 2 + epsilon * quantity
                + (eta - 0.5 * gamma * tau) / tau * math.fsum(plan.quantities ** 2))
    return expected, sigma ** 2 * tau * math.fsum(plan.holdings[1:] ** 2)


def test_twap_is_equal_slices_summing_to_the_quantity():
    plan = plan_execution("twap", "buy", 1e5, 390, 390.0)
    np.testing.assert_array_equal(plan.quantities[:-1], np.full(389, 1e5 / 390))
    assert sum(plan.quantities) == 1e5 and plan.holdings[-1] == 0.0
    # without Almgren-Chriss parameters the costs are 0 (not computed); kappa is 0 off AC
    assert (plan.expected_cost, plan.cost_variance, plan.utility, plan.kappa) == (0.0, 0.0, 0.0, 0.0)


def test_vwap_follows_the_profile():
    profile = np.array([3.0, 1.0, 1.0, 2.0, 3.0])
    plan = plan_execution("vwap", "sell", 1000.0, 5, 1.0, volume_profile=profile)
    np.testing.assert_allclose(plan.quantities, 1000.0 * profile / profile.sum(), rtol=1e-15)
    assert sum(plan.quantities) == 1000.0


def test_pov_takes_its_share_of_volume_and_the_last_slice_the_rest():
    volumes = np.array([1000.0, 2000.0, 500.0, 4000.0])
    plan = plan_execution("pov", "buy", 600.0, 4, 4.0, participation=0.2, expected_volumes=volumes)
    np.testing.assert_allclose(plan.quantities, [200.0, 400.0, 0.0, 0.0])
    plan = plan_execution("pov", "buy", 1000.0, 4, 4.0, participation=0.2, expected_volumes=volumes)
    np.testing.assert_allclose(plan.quantities, [200.0, 400.0, 100.0, 300.0])
    assert sum(plan.quantities) == 1000.0


def test_pov_shortfall_is_named():
    with pytest.raises(ValueError, match=r"expected_volumes too small.*= 1500 shares < quantity 2000; "
                                         r"500 shares would be left"):
        plan_execution("pov", "buy", 2000.0, 4, 4.0, participation=0.2,
                       expected_volumes=[1000.0, 2000.0, 500.0, 4000.0])


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_lot_rounding_gives_whole_lots_and_the_exact_quantity(algorithm):
    rng = np.random.default_rng(11)
    for _ in range(100):
        slices = int(rng.integers(1, 80))
        lot = float(rng.choice([1.0, 10.0, 100.0, 0.01, 0.001, 7.5]))
        quantity = float(np.round(rng.uniform(1.0, 1e5), int(rng.integers(0, 4))))
        extra = dict(COSTS, risk_aversion=float(rng.uniform(0.0, 1e-4)),
                     volume_profile=rng.uniform(0.0, 1.0, slices) + 1e-3, participation=1.0,
                     expected_volumes=np.full(slices, 2 * quantity / slices))
        plan = plan_execution(algorithm, "sell", quantity, slices, float(slices), lot, **extra)
        assert sum(plan.quantities) == quantity  # sequential sum, exact
        lots = plan.quantities[:-1] / lot
        np.testing.assert_allclose(lots, np.round(lots), atol=1e-6)
        assert (plan.quantities >= 0.0).all()
        np.testing.assert_array_equal(plan.holdings, quantity - np.concatenate(
            [[0.0], np.cumsum(plan.quantities)]))
        unrounded = plan_execution(algorithm, "sell", quantity, slices, float(slices), **extra)
        executed = np.cumsum(plan.quantities)[:-1]
        target = np.cumsum(unrounded.quantities)[:-1]
        assert (executed <= target + 1e-9 * lot + 1e-9 * quantity).all()  # never ahead
        assert (target - executed < lot * (1 + 1e-6)).all()                # less than one lot behind
        expected, variance = _summed_costs(plan, float(slices), **COSTS)
        assert plan.expected_cost == pytest.approx(expected, rel=1e-12)
        assert plan.cost_variance == pytest.approx(variance, rel=1e-12)


def test_lot_rounding_example():
    plan = plan_execution("twap", "buy", 1050.0, 4, 1.0, 100.0)
    np.testing.assert_array_equal(plan.quantities, [200.0, 300.0, 200.0, 350.0])
    np.testing.assert_array_equal(plan.holdings, [1050.0, 850.0, 550.0, 350.0, 0.0])


def test_costs_of_any_schedule_use_the_summation_formulas():
    plan = plan_execution("vwap", "sell", 5e4, 8, 2.0, volume_profile=np.arange(1.0, 9.0),
                          risk_aversion=1e-3, **COSTS)
    expected, variance = _summed_costs(plan, 2.0, **COSTS)
    assert plan.expected_cost == pytest.approx(expected, rel=1e-13)
    assert plan.cost_variance == pytest.approx(variance, rel=1e-13)
    assert plan.utility == pytest.approx(expected + 1e-3 * variance, rel=1e-13)
    only_eta = plan_execution("twap", "sell", 5e4, 8, 2.0, eta=1e-3)
    assert only_eta.expected_cost > 0.0 and only_eta.cost_variance == 0.0
    assert only_eta.utility == only_eta.expected_cost


@pytest.mark.parametrize("arguments, keywords, message", [
    (("twap", "buy", 0.0, 5, 1.0), {}, "quantity"),
    (("twap", "buy", -1.0, 5, 1.0), {}, "quantity"),
    (("twap", "buy", 100.0, 0, 1.0), {}, "slices"),
    (("twap", "buy", 100.0, 2.5, 1.0), {}, "slices"),
    (("twap", "buy", 100.0, 5, 0.0), {}, "horizon"),
    (("twap", "buy", 100.0, 5, 1.0, -1.0), {}, "lot_size"),
    (("twap", "hold", 100.0, 5, 1.0), {}, "side"),
    (("iceberg", "buy", 100.0, 5, 1.0), {}, "algorithm"),
    (("almgren_chriss", "buy", 100.0, 5, 1.0), {"eta": 1e-3}, "requires sigma"),
    (("twap", "buy", 100.0, 5, 1.0), {"eta": 1e-3, "gamma": 1.0}, "non-convex"),
    (("twap", "buy", 100.0, 5, 1.0), {"sigma": -1.0}, "sigma"),
    (("vwap", "buy", 100.0, 5, 1.0), {}, "requires volume_profile"),
    (("vwap", "buy", 100.0, 5, 1.0), {"volume_profile": [1.0, 2.0]}, "volume_profile must have one"),
    (("vwap", "buy", 100.0, 2, 1.0), {"volume_profile": [0.0, 0.0]}, "positive sum"),
    (("vwap", "buy", 100.0, 2, 1.0), {"volume_profile": [1.0, -1.0]}, "volume_profile must be finite"),
    (("pov", "buy", 100.0, 2, 1.0), {"participation": 0.1}, "requires expected_volumes"),
    (("pov", "buy", 100.0, 2, 1.0), {"participation": 1.5, "expected_volumes": [1e3, 1e3]},
     "participation must be in"),
    (("pov", "buy", 100.0, 2, 1.0), {"participation": 0.0, "expected_volumes": [1e3, 1e3]},
     "participation must be in"),
])
def test_bad_input_raises_naming_the_argument(arguments, keywords, message):
    with pytest.raises(ValueError, match=message):
        plan_execution(*arguments, **keywords)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_is_fully_declared(name):
    """A half-declared entry (no builder, no summary, an unknown or unused requirement) fails."""
    spec = ALGORITHMS[name]
    assert callable(spec.build) and list(inspect.signature(spec.build).parameters) == ["inputs"]
    assert spec.summary and spec.summary.strip() == spec.summary
    keyword_only = {parameter.name for parameter in inspect.signature(plan_execution).parameters.values()
                    if parameter.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(spec.requires) <= keyword_only
    example = {requirement: REQUIRED_EXAMPLES[requirement] for requirement in spec.requires}
    plan = plan_execution(name, "buy", 100.0, 4, 1.0, **example)
    assert plan.quantities.shape == (4,) and plan.holdings.shape == (5,) and plan.times.shape == (5,)
    for requirement in spec.requires:
        with pytest.raises(ValueError, match=f"requires {requirement}"):
            plan_execution(name, "buy", 100.0, 4, 1.0,
                           **{key: value for key, value in example.items() if key != requirement})
    assert set(PlanInputs._fields) >= {"quantity", "slices", "tau"}
