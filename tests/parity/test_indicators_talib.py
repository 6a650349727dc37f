"""Parity of the close-only indicator kinds with TA-Lib (and pandas where TA-Lib has no such
indicator): NaN positions identical, values within 1e-9 * max(1, |reference|)."""
import numpy as np
import pytest

from tests.references import require_reference

talib = require_reference("talib")
pd = require_reference("pandas")

from utils.engine.indicators import bollinger, compute_features, ema, macd, rsi, sma  # noqa: E402
from utils.engine.indicators.kernels import host_panels, run_kind, to_caller  # noqa: E402
from tests.indicator_helpers import CLOSE_KINDS  # noqa: E402
from tests.parity.tolerance import assert_matches  # noqa: E402

PERIODS = [2, 3, 5, 14, 20, 50, 200]
KINDS = {kind.name: kind for kind in CLOSE_KINDS}


def random_walk(seed=7, length=10_000):
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, length)))


def noisy_with_leading_nans(seed=11, length=3000, leading=37):
    rng = np.random.default_rng(seed)
    values = rng.normal(50.0, 10.0, length)
    values[:leading] = np.nan
    return values


SERIES = {"walk": random_walk(), "noise_leading_nans": noisy_with_leading_nans()}


def run(name, close, *params):
    """Every output of one kind over ``close`` (a series or a panel)."""
    panels, was_series = host_panels(np, {"close": close})
    return to_caller(np, run_kind(KINDS[name], params, panels), was_series)


# name -> (TA-Lib reference over (close, period), outputs used)
TALIB_SINGLE = {"sma": talib.SMA, "ema": talib.EMA, "wma": talib.WMA, "dema": talib.DEMA,
                "tema": talib.TEMA, "rsi": talib.RSI, "roc": talib.ROC, "mom": talib.MOM}


@pytest.fixture(params=sorted(SERIES))
def close(request):
    return SERIES[request.param]


@pytest.mark.parametrize("name", sorted(TALIB_SINGLE))
@pytest.mark.parametrize("period", PERIODS)
def test_single_output_kinds_match_talib(close, name, period):
    (ours,) = run(name, close, period)
    assert_matches(ours, TALIB_SINGLE[name](close, period))


def test_bit_exact_where_the_steps_mirror_talib_exactly(close):
    # SMA, EMA (fused multiply-add like the installed build), WMA, DEMA, TEMA, ROC, MOM and MACD
    # reproduce the installed TA-Lib bit for bit; RSI and BBANDS' deviation agree to ~1e-13.
    for name in ("sma", "ema", "wma", "dema", "tema", "roc", "mom"):
        for period in (2, 14, 50):
            np.testing.assert_array_equal(run(name, close, period)[0], TALIB_SINGLE[name](close, period))
    for ours, reference in zip(run("macd", close, 12, 26, 9), talib.MACD(close, 12, 26, 9)):
        np.testing.assert_array_equal(ours, reference)


def test_thin_kernels_match_talib(close):
    assert_matches(sma(np, close, 20), talib.SMA(close, 20))
    assert_matches(ema(np, close, 12), talib.EMA(close, 12))
    assert_matches(rsi(np, close), talib.RSI(close))


@pytest.mark.parametrize("period,up,down", [(2, 2.0, 2.0), (5, 1.0, 1.0), (20, 2.0, 1.5), (50, 2.5, 2.5)])
def test_bollinger_matches_talib(close, period, up, down):
    expected = talib.BBANDS(close, period, up, down, 0)
    for band, reference in zip(bollinger(np, close, period, up, down), expected):
        assert_matches(band, reference)


@pytest.mark.parametrize("fast,slow,signal", [(12, 26, 9), (3, 5, 1), (5, 35, 5), (2, 3, 2)])
def test_macd_matches_talib(close, fast, slow, signal):
    expected = talib.MACD(close, fast, slow, signal)
    for line, reference in zip(macd(np, close, fast, slow, signal), expected):
        assert_matches(line, reference)


def exact_window_reference(values, period, statistic):
    """``statistic`` of every full window in long double, two-pass (NaN before the first)."""
    windows = np.lib.stride_tricks.sliding_window_view(values.astype(np.longdouble), period)
    result = np.full(values.shape[0], np.nan)
    result[period - 1:] = statistic(windows).astype(np.float64)
    return result


@pytest.mark.parametrize("period", [5, 14, 20, 50])
def test_volatility_matches_pandas(close, period):
    (ours,) = run("volatility", close, period)
    assert_matches(ours, pd.Series(close).pct_change().rolling(period).std().to_numpy())
    returns = np.concatenate([[np.nan], close[1:] / close[:-1] - 1.0])
    exact = exact_window_reference(
        returns, period, lambda w: np.sqrt(((w - w.mean(axis=1)[:, None]) ** 2).sum(axis=1) / (period - 1)))
    assert_matches(ours, exact, 1e-12)


@pytest.mark.parametrize("period", [5, 14, 20, 50])
def test_zscore_matches_pandas(close, period):
    (ours,) = run("zscore", close, period)
    series = pd.Series(close)
    reference = ((series - series.rolling(period).mean()) / series.rolling(period).std(ddof=0)).to_numpy()
    # pandas' own rolling moments drift (up to ~1e-8 from the exact value at period 5), so the
    # tight check is against an exact long-double two-pass.
    assert_matches(ours, reference, 1e-7)
    exact = exact_window_reference(close, period, lambda w: (w[:, -1] - w.mean(axis=1)) / np.sqrt(
        ((w - w.mean(axis=1)[:, None]) ** 2).mean(axis=1)))
    assert_matches(ours, exact, 1e-11)


def test_defaults_match_talib_defaults():
    close = SERIES["walk"]
    assert_matches(rsi(np, close), talib.RSI(close))
    for line, reference in zip(macd(np, close), talib.MACD(close)):
        assert_matches(line, reference)
    for band, reference in zip(bollinger(np, close), talib.BBANDS(close, 20)):
        assert_matches(band, reference)
    features = compute_features(np, ["roc", "mom"], close)
    assert_matches(features["roc"], talib.ROC(close))
    assert_matches(features["mom"], talib.MOM(close))


def test_short_and_all_nan_inputs_are_all_nan_like_talib():
    short = np.array([1.0, 2.0, 3.0])
    assert_matches(sma(np, short, 5), talib.SMA(short, 5))
    assert_matches(rsi(np, short, 3), talib.RSI(short, 3))
    assert_matches(run("tema", short, 2)[0], talib.TEMA(short, 2))
    empty = np.full(10, np.nan)
    assert_matches(ema(np, empty, 3), talib.EMA(empty, 3))
    for kind in KINDS:
        assert all(np.isnan(output).all() for output in run(kind, empty, *[p.default for p in KINDS[kind].params]))


def test_interior_nan_propagates_like_talib():
    close = random_walk(length=400)
    close[150] = np.nan
    for name in ("sma", "ema", "wma", "dema", "tema", "roc", "mom"):
        assert_matches(run(name, close, 10)[0], TALIB_SINGLE[name](close, 10))
    for line, reference in zip(macd(np, close), talib.MACD(close)):
        assert_matches(line, reference)
    for band, reference in zip(bollinger(np, close, 10), talib.BBANDS(close, 10)):
        assert_matches(band, reference)


def test_rsi_keeps_nan_after_a_gap_where_talib_reports_zero():
    # Documented deviation: TA-Lib emits RSI 0.0 (maximally oversold) forever after a NaN input.
    close = random_walk(length=200)
    close[100] = np.nan
    ours, reference = rsi(np, close, 14), talib.RSI(close, 14)
    assert_matches(ours[:100], reference[:100])
    assert np.all(reference[100:] == 0.0)
    assert np.all(np.isnan(ours[100:]))


def test_roc_is_zero_where_the_lagged_close_is_zero_like_talib():
    close = random_walk(length=50)
    close[10] = 0.0
    assert_matches(run("roc", close, 3)[0], talib.ROC(close, 3))


def test_panel_columns_equal_series_results():
    columns = [random_walk(seed, 5000) for seed in range(3)] + [noisy_with_leading_nans(length=5000, leading=120)]
    panel = np.column_stack(columns)
    for name, kind in KINDS.items():
        params = [param.default for param in kind.params]
        outputs = run(name, panel, *params)
        for col, series in enumerate(columns):
            for panel_output, series_output in zip(outputs, run(name, series, *params)):
                assert panel_output.shape == panel.shape
                np.testing.assert_array_equal(panel_output[:, col], series_output)
