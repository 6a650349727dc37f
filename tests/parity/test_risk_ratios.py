"""The risk ratios of ``performance_metrics`` against vectorbt's returns accessor.

Our conventions (api_proto/backtest.proto, PerformanceMetrics): simple bar-to-bar returns of the
equity curve, 252 bars a year, risk-free rate 0, volatility with ddof 1, Sortino's downside
deviation sqrt(mean(min(r, 0)^2)) over every return (denominator N), Calmar = annualised return /
max drawdown. vectorbt is configured to match: ``freq='D', year_freq='252 days'`` (ann_factor 252),
its defaults risk_free 0, ddof 1 and required_return 0 (its downside risk is that same N-denominator
root mean square).

Where the conventions genuinely differ, the test maps them, saying why:
  * sign: vectorbt reports max_drawdown as a negative fraction, we as a positive one;
  * the starting value: vectorbt's drawdown starts from the first *return*, so a fall on the very
    first bar is not a drawdown to it; ours (and backtesting.py's, and vectorbt's Portfolio's,
    see test_backtest_parity.py) counts the starting equity as a peak. vectorbt is given the
    returns with a leading zero for the drawdown (the same path, with the start as a point), and
    where that changes its max drawdown the Calmar reference is its annualised return over the
    unchanged returns divided by that start-inclusive drawdown;
  * undefined ratios: vectorbt answers inf/NaN for a zero denominator (flat or never-falling
    curves), we answer 0.0 (metrics.py: every value a finite float, JSON safe).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.references import require_reference
from utils.engine.metrics import performance_metrics

vbt = require_reference("vectorbt")

RTOL = 1e-9  # the same formulas evaluated in a different order: only rounding may differ
ATOL = 1e-12  # for values that are (near) zero, where a relative tolerance means nothing
RATIOS = ("sharpe_ratio", "sortino_ratio", "annualized_volatility", "calmar_ratio", "annualized_return",
          "max_drawdown")


# ----------------------------------------------------------------------------- curves
def random_walk(seed: int, length: int = 1_500, drift: float = 0.0003, vol: float = 0.012) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100_000.0 * np.exp(np.cumsum(np.concatenate([[0.0], rng.normal(drift, vol, length - 1)])))


def long_drawdown(length: int = 1_200) -> np.ndarray:
    """Rises for 150 bars, then slides ~45 % over 700 bars and recovers only part of it."""
    rng = np.random.default_rng(11)
    drift = np.concatenate([np.full(150, 0.002), np.full(700, -0.00085), np.full(length - 851, 0.0006)])
    return 50_000.0 * np.exp(np.cumsum(np.concatenate([[0.0], drift + rng.normal(0.0, 0.004, length - 1)])))


def first_bar_falls(length: int = 400) -> np.ndarray:
    """The deepest fall starts at the very first bar: the starting-value convention matters."""
    rng = np.random.default_rng(5)
    steps = np.concatenate([[-0.03, -0.02, -0.025], rng.normal(0.001, 0.006, length - 4)])
    return 1_000.0 * np.exp(np.cumsum(np.concatenate([[0.0], steps])))


def never_falls(length: int = 500) -> np.ndarray:
    """Monotone rise with uneven steps: no downside, no drawdown."""
    rng = np.random.default_rng(3)
    return 100.0 + np.cumsum(np.concatenate([[0.0], rng.uniform(0.01, 1.0, length - 1)]))


CURVES = {
    "random_walk_up": random_walk(1),
    "random_walk_down": random_walk(2, drift=-0.0006),
    "random_walk_volatile": random_walk(3, drift=0.0, vol=0.035),
    "random_walk_short": random_walk(4, length=30),
    "long_drawdown": long_drawdown(),
    "first_bar_falls": first_bar_falls(),
    "never_falls": never_falls(),
    "flat": np.full(300, 250_000.0),
}


# ----------------------------------------------------------------------------- reference
def returns_accessor(returns: np.ndarray):
    return pd.Series(returns).vbt.returns(freq="D", year_freq="252 days")


def vectorbt_ratios(equity: np.ndarray) -> dict[str, float]:
    returns = equity[1:] / equity[:-1] - 1.0
    accessor = returns_accessor(returns)
    assert accessor.ann_factor == 252
    own_drawdown = float(accessor.max_drawdown())
    # a zero first return puts the starting value on the path (see the module docstring)
    drawdown = float(returns_accessor(np.concatenate([[0.0], returns])).max_drawdown())
    calmar = (float(accessor.calmar_ratio()) if drawdown == own_drawdown
              else float(accessor.annualized()) / abs(drawdown) if drawdown != 0 else math.nan)
    return {
        "sharpe_ratio": float(accessor.sharpe_ratio()),
        "sortino_ratio": float(accessor.sortino_ratio()),
        "annualized_volatility": float(accessor.annualized_volatility()),
        "calmar_ratio": calmar,
        "annualized_return": float(accessor.annualized()),
        "max_drawdown": -drawdown,
    }


# ----------------------------------------------------------------------------- parity
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("curve", sorted(CURVES))
def test_ratio_matches_vectorbt(curve, ratio):
    equity = CURVES[curve]
    ours = performance_metrics(equity, [])[ratio]
    reference = vectorbt_ratios(equity)[ratio]
    if math.isfinite(reference):
        assert ours == pytest.approx(reference, rel=RTOL, abs=ATOL)
    else:  # a zero denominator: vectorbt says inf/NaN, our contract says 0.0
        assert ours == 0.0


def test_the_curves_cover_the_cases_that_differ():
    """Guards the fixture: each convention mapped above is exercised by at least one curve."""
    references = {name: vectorbt_ratios(equity) for name, equity in CURVES.items()}
    assert not math.isfinite(references["flat"]["sharpe_ratio"])
    assert not math.isfinite(references["never_falls"]["sortino_ratio"])
    assert not math.isfinite(references["never_falls"]["calmar_ratio"])
    returns = CURVES["first_bar_falls"][1:] / CURVES["first_bar_falls"][:-1] - 1.0
    assert float(returns_accessor(returns).max_drawdown()) != -references["first_bar_falls"]["max_drawdown"]
    assert references["long_drawdown"]["max_drawdown"] > 0.35
