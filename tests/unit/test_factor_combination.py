"""Engine parts of many-factor research: the mean per-date Spearman correlation (pandas'
pairwise-complete ``corr("spearman")`` per date, averaged), the walk-forward composite (weights
from the trailing window only: perturbing later prices leaves every earlier composite value
unchanged; IC and OLS weights against closed forms), and scoring many factors with a failing one
kept as an error row."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from utils.engine.factors.analysis import analyze_factor
from utils.engine.factors.combine import combine_factors
from utils.engine.factors.correlation import mean_spearman_correlation
from utils.engine.factors.scoring import ranked, score_factors


def panels(seed=0, factors=3, dates=90, symbols=14):
    rng = np.random.default_rng(seed)
    prices = np.cumprod(1 + rng.normal(0, 0.02, (dates, symbols)), axis=0)
    prices[:7, 3] = np.nan  # a late listing
    prices[40, 5] = np.nan  # a gap
    values = rng.normal(size=(factors, dates, symbols))
    values[0, :, 2] = np.nan  # a factor without one symbol
    values[1, 10:20, :4] = np.nan
    values[2] = np.round(values[2], 1)  # ties
    return prices, values


def test_correlation_is_the_mean_of_pandas_per_date_spearman():
    _, values = panels()
    values[1] = values[0] + 0.3 * values[1]
    values[2, 30] = 1.0  # a constant date: no correlation that day
    values[2, 31, :12] = np.nan  # one value left: none either
    got = mean_spearman_correlation(values)
    frame = pd.DataFrame(values.transpose(1, 2, 0).reshape(-1, 3),
                         index=pd.MultiIndex.from_product([range(values.shape[1]), range(values.shape[2])]))
    expected = frame.groupby(level=0).corr(method="spearman").groupby(level=1).mean().to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert got[0, 1] > 0.8 and np.allclose(np.diag(got), 1.0)


@pytest.mark.parametrize("method", ["ic_weighted", "regression"])
def test_no_look_ahead_perturbing_later_prices_leaves_earlier_composites(method):
    prices, values = panels()
    base = combine_factors(values, prices, period=3, window=15, method=method)
    rng = np.random.default_rng(7)
    for cut in (20, 45, 70):
        perturbed = prices.copy()
        perturbed[cut + 1:] *= rng.uniform(0.5, 1.5, perturbed[cut + 1:].shape)  # the future, after date cut
        other = combine_factors(values, perturbed, period=3, window=15, method=method)
        np.testing.assert_array_equal(other.composite[:cut + 1], base.composite[:cut + 1])
        np.testing.assert_array_equal(other.weights[:cut + 1], base.weights[:cut + 1])
        assert not np.allclose(np.nan_to_num(other.composite[cut + 4:]), np.nan_to_num(base.composite[cut + 4:]))
    assert np.isnan(base.composite[:3 + 15 - 1]).all() and not np.isnan(base.composite[3 + 15 - 1]).all()


def zscored(values):
    frame = pd.DataFrame(values)
    return frame.sub(frame.mean(axis=1), axis=0).div(frame.std(axis=1), axis=0).to_numpy()


def forward(prices, period):
    filled = pd.DataFrame(prices).ffill()
    return (filled.shift(-period) / filled - 1).to_numpy()


def test_ic_weights_are_the_trailing_mean_ic_scaled():
    prices, values = panels(1)
    period, window, t = 2, 10, 50
    combination = combine_factors(values, prices, period, window, "ic_weighted")
    returns = forward(prices, period)
    z = np.stack([zscored(v) for v in values])
    means = []
    for k in range(3):
        ics = [pd.Series(z[k, s]).corr(pd.Series(returns[s]), method="spearman")
               for s in range(t - period - window + 1, t - period + 1)]
        means.append(np.nanmean(ics))
    weights = np.array(means) / np.abs(means).sum()
    np.testing.assert_allclose(combination.weights[t], weights, rtol=1e-10)
    expected = (weights[:, None] * z[:, t]).sum(axis=0)
    np.testing.assert_allclose(combination.composite[t], expected, rtol=1e-10)  # NaN where factor 0 is


def test_regression_weights_are_the_trailing_mean_ols_slopes():
    prices, values = panels(2)
    period, window, t = 1, 12, 60
    combination = combine_factors(values, prices, period, window, "regression")
    returns = forward(prices, period)
    z = np.stack([zscored(v) for v in values])
    slopes = []
    for s in range(t - period - window + 1, t - period + 1):
        x, y = z[:, s].T, returns[s]
        rows = ~np.isnan(y) & ~np.isnan(x).any(axis=1)
        design = np.column_stack([np.ones(rows.sum()), x[rows]])
        slopes.append(np.linalg.lstsq(design, y[rows], rcond=None)[0][1:])
    np.testing.assert_allclose(combination.weights[t], np.mean(slopes, axis=0), rtol=1e-9)


def test_scoring_keeps_a_failing_factor_as_an_error_row_and_ranks_by_abs_ic():
    prices, values = panels(3)
    returns = forward(prices, 1)
    factors = {"noise": values[0], "signal": np.nan_to_num(returns, nan=0.0) * -1 + 0.01 * values[1],
               "flat": np.ones_like(prices)}
    scores = score_factors(prices, factors, [1, 5], quantiles=5, max_loss=0.35)
    assert [s.name for s in scores] == ["noise", "signal", "flat"]
    flat = scores[2]
    assert "exceeded" in flat.error, flat.error
    assert not flat.periods
    expected = analyze_factor(prices, factors["noise"], periods=(1, 5))
    assert scores[0].periods[5]["ic_mean"] == expected.period(5).ic_mean
    assert scores[0].periods[1]["icir"] == expected.period(1).risk_adjusted_ic
    assert scores[0].periods[1]["t_stat"] == pytest.approx(stats.ttest_1samp(
        expected.period(1).ic[~np.isnan(expected.period(1).ic)], 0).statistic, rel=1e-12)
    order = [s.name for s in ranked(scores, 1)]
    assert order == ["signal", "noise", "flat"]  # |IC| of the signal ~ 1; the error row last
