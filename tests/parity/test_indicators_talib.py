"""Parity of the indicator kernels with TA-Lib: NaN positions identical, values within 1e-9."""
import numpy as np
import pytest

talib = pytest.importorskip("talib")

from utils.engine.indicators import bollinger, ema, macd, rsi, sma  # noqa: E402

PERIODS = [2, 3, 5, 14, 20, 50, 200]


def assert_matches(actual, reference):
    actual = np.asarray(actual)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(reference))
    valid = ~np.isnan(reference)
    error = np.abs(actual[valid] - reference[valid])
    assert np.all(error <= 1e-9 * np.maximum(1.0, np.abs(reference[valid]))), error.max()


def random_walk(seed=7, length=5000):
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, length)))


def noisy_with_leading_nans(seed=11, length=3000, leading=37):
    rng = np.random.default_rng(seed)
    values = rng.normal(50.0, 10.0, length)
    values[:leading] = np.nan
    return values


SERIES = {"walk": random_walk(), "noise_leading_nans": noisy_with_leading_nans()}


@pytest.fixture(params=sorted(SERIES))
def close(request):
    return SERIES[request.param]


@pytest.mark.parametrize("period", PERIODS)
def test_sma_ema_rsi_match_talib(close, period):
    assert_matches(sma(np, close, period), talib.SMA(close, period))
    assert_matches(ema(np, close, period), talib.EMA(close, period))
    assert_matches(rsi(np, close, period), talib.RSI(close, period))


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


def test_defaults_match_talib_defaults():
    close = SERIES["walk"]
    assert_matches(rsi(np, close), talib.RSI(close))
    for line, reference in zip(macd(np, close), talib.MACD(close)):
        assert_matches(line, reference)
    for band, reference in zip(bollinger(np, close), talib.BBANDS(close, 20)):
        assert_matches(band, reference)


def test_short_and_all_nan_inputs_are_all_nan_like_talib():
    short = np.array([1.0, 2.0, 3.0])
    assert_matches(sma(np, short, 5), talib.SMA(short, 5))
    assert_matches(rsi(np, short, 3), talib.RSI(short, 3))
    empty = np.full(10, np.nan)
    assert_matches(ema(np, empty, 3), talib.EMA(empty, 3))


def test_interior_nan_propagates_like_talib():
    close = random_walk(length=400)
    close[150] = np.nan
    assert_matches(sma(np, close, 10), talib.SMA(close, 10))
    assert_matches(ema(np, close, 10), talib.EMA(close, 10))
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


def test_panel_columns_equal_series_results():
    columns = [random_walk(seed) for seed in range(3)] + [noisy_with_leading_nans(length=5000, leading=120)]
    panel = np.column_stack(columns)
    for kernel, kwargs in [(sma, {"period": 20}), (ema, {"period": 12}), (rsi, {"period": 14})]:
        result = kernel(np, panel, **kwargs)
        assert result.shape == panel.shape
        for col, series in enumerate(columns):
            np.testing.assert_array_equal(result[:, col], kernel(np, series, **kwargs))
    for multi in (macd, bollinger):
        outputs = multi(np, panel)
        for col, series in enumerate(columns):
            for panel_output, series_output in zip(outputs, multi(np, series)):
                np.testing.assert_array_equal(panel_output[:, col], series_output)
                assert_matches(panel_output[:, col], series_output)
