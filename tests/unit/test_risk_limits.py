"""utils.engine.risk.limits: drifted weights, VaR of those weights, drawdown and sector sums against
hand computations; a limit left unset never breaches."""
from __future__ import annotations

import numpy as np
import pytest

from utils.engine.factors.forward_returns import forward_fill
from utils.engine.risk.limits import evaluate_limits
from utils.engine.risk.tails import var_cvar

SYMBOLS = ["A", "B", "C"]


def test_weights_drift_with_prices_and_limits_compare_to_them():
    history = np.array([[10.0, 20.0, 5.0], [11.0, 19.0, 5.0], [12.0, 18.0, 5.5]])
    set_prices = history[-1]
    weights = np.array([0.5, 0.3, 0.2])
    current = np.array([24.0, 18.0, 5.5])  # A doubles
    state = evaluate_limits(history, current, set_prices, weights, SYMBOLS, ["x", "x", "y"],
                            {"var_95": None, "max_drawdown": None, "max_weight": 0.6, "max_sector": 0.8})
    drifted = np.array([1.0, 0.3, 0.2]) / 1.5
    np.testing.assert_allclose(state.weights, drifted, rtol=0, atol=1e-15)
    assert state.max_weight == pytest.approx(drifted[0]) and state.max_sector == pytest.approx(drifted[0] + drifted[1])
    assert [b.limit for b in state.breaches] == ["max_weight", "max_sector"]
    assert "the weight of A" in state.breaches[0].message and "sector x" in state.breaches[1].message
    path = np.vstack([history, current])
    returns = path[1:] / path[:-1] - 1
    assert state.var_95 == var_cvar(returns @ drifted, 0.95, np)[0]
    assert state.drawdown == 0.0  # the value is at its peak


def test_drawdown_from_the_lookback_peak_and_gaps_carried():
    closes = np.array([[10.0, np.nan], [12.0, 8.0], [np.nan, 9.0], [9.0, 9.0]])
    filled = forward_fill(closes)
    np.testing.assert_array_equal(filled, [[10.0, np.nan], [12.0, 8.0], [12.0, 9.0], [9.0, 9.0]])
    set_prices = np.array([9.0, 9.0])
    state = evaluate_limits(filled, np.array([9.0, 9.0]), set_prices, np.array([0.5, 0.5]), ["A", "B"],
                            [None, None], {"max_drawdown": 0.1})
    values = 0.5 * np.vstack([np.where(np.isnan(filled), set_prices, filled), [9.0, 9.0]]) / set_prices
    totals = values.sum(axis=1)
    assert state.drawdown == pytest.approx(1 - totals[-1] / totals.max(), abs=1e-15)
    assert [b.limit for b in state.breaches] == ["max_drawdown"] and state.max_sector == 0.0
