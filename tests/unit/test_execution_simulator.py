"""The bar-level execution simulator, its batch path and the Qlib metrics."""
import math

import numpy as np
import pytest

from utils.engine.execution import (ImpactModel, batch_order_metrics, order_metrics, simulate_order,
                                    simulate_orders, step_fill, typical_prices)

NO_IMPACT = ImpactModel(coefficient=0.0)


def _market(rng, bars):
    prices = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, bars)))
    volumes = rng.uniform(0.0, 5e4, bars)
    sigmas = rng.uniform(5e-4, 3e-3, bars)
    return prices, volumes, sigmas


@pytest.mark.parametrize("model", [ImpactModel(coefficient=0.3),
                                   ImpactModel("linear", eta=1e-4, gamma=1e-5, epsilon=0.01)])
def test_impact_is_against_the_trader(model):
    bought, buy_price, buy_shift = step_fill(1, 500.0, 20.0, 1e4, 0.01, model, 0.0)
    sold, sell_price, sell_shift = step_fill(-1, 500.0, 20.0, 1e4, 0.01, model, 0.0)
    assert bought == sold == 500.0
    assert buy_price > 20.0 > sell_price
    assert buy_price - 20.0 == pytest.approx(20.0 - sell_price, rel=1e-12)
    assert buy_shift >= 0.0 >= sell_shift and buy_shift == -sell_shift


def test_step_fill_formulas():
    filled, price, shift = step_fill(1, 400.0, 20.0, 1e4, 0.01, ImpactModel(coefficient=0.5), 0.0)
    assert (filled, shift) == (400.0, 0.0)
    assert price == pytest.approx(20.0 * (1 + 0.5 * 0.01 * math.sqrt(0.04)), rel=1e-15)
    linear = ImpactModel("linear", eta=1e-4, gamma=2e-5, epsilon=0.01)
    filled, price, shift = step_fill(-1, 400.0, 20.0, 1e4, 0.01, linear, -0.5)
    assert price == pytest.approx(20.0 - 0.5 - (0.01 + 1e-4 * 400.0), rel=1e-15)
    assert shift == pytest.approx(-0.5 - 2e-5 * 400.0, rel=1e-15)
    assert step_fill(1, 400.0, 20.0, 0.0, 0.01, linear, 0.3) == (0.0, 20.3, 0.3)


def test_participation_cap_binds_and_the_rest_rolls_over():
    model = ImpactModel(coefficient=0.0, participation_cap=0.1)
    assert step_fill(1, 500.0, 20.0, 1e3, 0.01, model, 0.0)[0] == 100.0
    result = simulate_order(1, 1000.0, np.array([500.0, 500.0, 0.0, 0.0]), np.full(4, 20.0),
                            np.array([1e3, 2e3, 1e4, 100.0]), np.full(4, 0.01), model)
    np.testing.assert_array_equal(result.filled, [100.0, 200.0, 700.0, 0.0])
    assert result.unfilled == 0.0
    short = simulate_order(-1, 1000.0, np.array([250.0] * 4), np.full(4, 20.0), np.full(4, 1e3),
                           np.full(4, 0.01), model)
    np.testing.assert_array_equal(short.filled, [100.0] * 4)
    assert short.unfilled == 600.0
    assert order_metrics(-1, 1000.0, short, np.full(4, 20.0))["ffr"] == 0.4


@pytest.mark.parametrize("side", [1, -1])
def test_conservation_and_full_fill_with_ample_volume(side):
    rng = np.random.default_rng(3)
    for _ in range(50):
        bars = int(rng.integers(1, 120))
        prices, volumes, sigmas = _market(rng, bars)
        quantity = float(rng.uniform(1e2, 1e6))
        schedule = rng.dirichlet(np.ones(bars)) * quantity * rng.uniform(0.5, 1.5)
        model = ImpactModel(coefficient=0.2, participation_cap=float(rng.uniform(0.05, 1.0)))
        result = simulate_order(side, quantity, schedule, prices, volumes, sigmas, model)
        assert (result.filled >= 0.0).all()
        assert result.filled.sum() <= quantity * (1 + 1e-12)
        assert result.filled.sum() + result.unfilled == pytest.approx(quantity, rel=1e-12)
        ample = simulate_order(side, quantity, np.full(bars, quantity / bars), prices,
                               np.full(bars, 1e9), sigmas, model)
        assert order_metrics(side, quantity, ample, prices)["ffr"] == pytest.approx(1.0, rel=1e-12)


def test_zero_impact_fills_at_the_reference_prices_and_twap_has_no_advantage():
    # dyadic prices and sizes: the TWAP of the fills equals the window's TWAP exactly
    prices = np.array([100.0, 101.5, 99.25, 102.0])
    for side in (1, -1):
        result = simulate_order(side, 400.0, np.full(4, 100.0), prices, np.full(4, 1e6),
                                np.full(4, 0.02), NO_IMPACT)
        np.testing.assert_array_equal(result.fill_prices, prices)
        metrics = order_metrics(side, 400.0, result, prices)
        assert metrics["price_advantage_bps"] == 0.0 and metrics["pos"] == 0.0
        assert metrics["ffr"] == 1.0
    rng = np.random.default_rng(5)
    prices, _, sigmas = _market(rng, 390)
    result = simulate_order(1, 3.9e5, np.full(390, 1e3), prices, np.full(390, 1e9), sigmas,
                            ImpactModel("linear"))
    np.testing.assert_array_equal(result.fill_prices, prices)
    assert order_metrics(1, 3.9e5, result, prices)["price_advantage_bps"] == pytest.approx(0.0, abs=1e-10)


def test_permanent_impact_moves_later_bars_only():
    model = ImpactModel("linear", eta=0.0, gamma=1e-3, epsilon=0.0)
    result = simulate_order(1, 300.0, np.full(3, 100.0), np.full(3, 10.0), np.full(3, 1e4),
                            np.zeros(3), model)
    np.testing.assert_allclose(result.fill_prices, [10.0, 10.1, 10.2], rtol=1e-15)
    assert result.permanent_shift == pytest.approx(0.3, rel=1e-15)


def test_metrics_on_a_hand_computed_example():
    prices = np.array([10.0, 12.0, 11.0])  # arrival 10, TWAP 11
    model = ImpactModel("linear", eta=0.0, gamma=0.0, epsilon=0.5, participation_cap=0.5)
    result = simulate_order(1, 300.0, np.array([100.0, 100.0, 100.0]), prices,
                            np.array([1000.0, 100.0, 1000.0]), np.zeros(3), model)
    np.testing.assert_array_equal(result.filled, [100.0, 50.0, 150.0])
    np.testing.assert_array_equal(result.fill_prices, [10.5, 12.5, 11.5])
    metrics = order_metrics(1, 300.0, result, prices)
    average = (100 * 10.5 + 50 * 12.5 + 150 * 11.5) / 300  # 11.333...
    assert metrics["average_price"] == pytest.approx(average, rel=1e-15)
    assert metrics["arrival_price"] == 10.0 and metrics["twap_price"] == 11.0
    assert metrics["implementation_shortfall_bps"] == pytest.approx((average / 10 - 1) * 1e4, rel=1e-13)
    assert metrics["price_advantage_bps"] == pytest.approx((1 - average / 11) * 1e4, rel=1e-13)
    assert metrics["price_advantage_bps"] < 0.0 and metrics["pos"] == 0.0 and metrics["ffr"] == 1.0
    # the same fills as a sell: PA = (exec / twap - 1) * 1e4 (Qlib), a cost is a negative shortfall
    sell = order_metrics(-1, 300.0, result, prices)
    assert sell["price_advantage_bps"] == pytest.approx((average / 11 - 1) * 1e4, rel=1e-13)
    assert sell["pos"] == 1.0
    assert sell["implementation_shortfall_bps"] == pytest.approx(-(average / 10 - 1) * 1e4, rel=1e-13)
    nothing = simulate_order(1, 300.0, np.full(3, 100.0), prices, np.zeros(3), np.zeros(3), model)
    empty = order_metrics(1, 300.0, nothing, prices)
    assert math.isnan(empty["average_price"]) and empty["price_advantage_bps"] == 0.0
    assert empty["ffr"] == 0.0 and empty["pos"] == 0.0 and nothing.unfilled == 300.0


@pytest.mark.parametrize("model", [ImpactModel(coefficient=0.3, participation_cap=0.2),
                                   ImpactModel("linear", eta=1e-5, gamma=1e-6, epsilon=0.005,
                                               participation_cap=0.5)])
def test_batch_equals_single_orders(model):
    rng = np.random.default_rng(17)
    orders = 60
    lengths = rng.integers(1, 60, orders)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    prices, volumes, sigmas = _market(rng, int(offsets[-1]))
    quantities = rng.uniform(1e2, 1e5, orders)
    sides = rng.choice([1.0, -1.0], orders)
    schedules = np.stack([rng.uniform(0.0, 3e3, offsets[-1]) for _ in range(3)])
    batch = simulate_orders(sides, quantities, offsets, schedules, prices, volumes, sigmas, model)
    metrics = batch_order_metrics(sides, quantities, offsets, batch, prices)
    for algorithm in range(3):
        for order in range(orders):
            window = slice(offsets[order], offsets[order + 1])
            single = simulate_order(int(sides[order]), quantities[order], schedules[algorithm, window],
                                    prices[window], volumes[window], sigmas[window], model)
            np.testing.assert_array_equal(batch.filled[algorithm, window], single.filled)
            np.testing.assert_array_equal(batch.fill_prices[algorithm, window], single.fill_prices)
            assert batch.unfilled[algorithm, order] == single.unfilled
            assert batch.permanent_shift[algorithm, order] == single.permanent_shift
            for name, value in order_metrics(int(sides[order]), quantities[order], single,
                                             prices[window]).items():
                np.testing.assert_array_equal(metrics[name][algorithm, order], value)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        ImpactModel(kind="cubic")
    with pytest.raises(ValueError, match="participation_cap"):
        ImpactModel(participation_cap=0.0)
    with pytest.raises(ValueError, match="side"):
        step_fill(0, 1.0, 1.0, 1.0, 0.0, NO_IMPACT, 0.0)
    with pytest.raises(ValueError, match="schedule"):
        simulate_order(1, 10.0, np.ones(2), np.ones(3), np.ones(3), np.ones(3), NO_IMPACT)
    with pytest.raises(ValueError, match="prices"):
        simulate_order(1, 10.0, np.ones(2), np.array([1.0, -1.0]), np.ones(2), np.ones(2), NO_IMPACT)
    with pytest.raises(ValueError, match="bar_offsets"):
        simulate_orders([1.0], [10.0], [0, 3], np.ones(2), np.ones(2), np.ones(2), np.ones(2), NO_IMPACT)


def test_typical_price():
    np.testing.assert_allclose(typical_prices([12.0], [9.0], [10.5]), [10.5])
