import math

import numpy as np
import pytest

from utils.engine.indicators import (MissingInputError, UnknownFeatureError, compute_features,
                                     latest_values, list_features, parse_feature, sma)
from utils.engine.indicators.features import KINDS, session_starts
from utils.engine.indicators.streaming import StreamState
from tests.indicator_helpers import CLOSE_KINDS, max_lookback


@pytest.mark.parametrize("name,kernel,params,keys,lookback", [
    ("sma", "sma", (20,), ("sma",), 19),
    ("sma_20", "sma", (20,), ("sma_20",), 19),
    ("sma_50", "sma", (50,), ("sma_50",), 49),
    ("ema", "ema", (12,), ("ema",), 11),
    ("ema_12", "ema", (12,), ("ema_12",), 11),
    ("rsi", "rsi", (14,), ("rsi",), 14),
    ("rsi_14", "rsi", (14,), ("rsi_14",), 14),
    ("macd", "macd", (12, 26, 9), ("macd", "macd_signal", "macd_hist"), 33),
    ("macd_12_26_9", "macd", (12, 26, 9), ("macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"), 33),
    ("macd_5_35", "macd", (5, 35, 9), ("macd_5_35", "macd_signal_5_35", "macd_hist_5_35"), 42),
    ("macd_5_35_5", "macd", (5, 35, 5), ("macd_5_35_5", "macd_signal_5_35_5", "macd_hist_5_35_5"), 38),
    ("bollinger", "bollinger", (20, 2.0), ("bb_upper", "bb_middle", "bb_lower"), 19),
    ("bollinger_20_2", "bollinger", (20, 2.0), ("bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2"), 19),
    ("adx", "adx", (14,), ("adx", "plus_di", "minus_di"), 27),
    ("adx_20", "adx", (20,), ("adx_20", "plus_di_20", "minus_di_20"), 39),
    ("stoch_5", "stoch", (5, 3, 3), ("stoch_k_5", "stoch_d_5"), 8),
    ("bollinger_10_1.5", "bollinger", (10, 1.5),
     ("bb_upper_10_1.5", "bb_middle_10_1.5", "bb_lower_10_1.5"), 9),
    (" SMA_20 ", "sma", (20,), ("sma_20",), 19),
    ("wma", "wma", (20,), ("wma",), 19),
    ("dema_10", "dema", (10,), ("dema_10",), 18),
    ("tema_10", "tema", (10,), ("tema_10",), 27),
    ("roc", "roc", (10,), ("roc",), 10),
    ("mom_5", "mom", (5,), ("mom_5",), 5),
    ("volatility", "volatility", (20,), ("volatility",), 20),
    ("volatility_60", "volatility", (60,), ("volatility_60",), 60),
    ("zscore_30", "zscore", (30,), ("zscore_30",), 29),
])
def test_parse_feature(name, kernel, params, keys, lookback):
    spec = parse_feature(name)
    assert (spec.kernel, spec.params, spec.output_keys, spec.lookback) == (kernel, params, keys, lookback)


@pytest.mark.parametrize("name", [
    "foo", "sma_x", "sma_0", "sma_10001", "sma_-5", "sma_1.5", "sma_", "sma__20", "sma_20_3",
    "macd_26_12", "macd_12_12_9", "bollinger_20_0", "bollinger_20_nan", "bollinger_20_inf", "",
    "volatility_1", "zscore_1", "wma_0", "roc_x", "smaa", "sma20",
])
def test_bad_names_raise_and_list_valid_names(name):
    with pytest.raises(UnknownFeatureError) as caught:
        parse_feature(name)
    message = str(caught.value)
    assert repr(name.strip().lower()) in message or repr(name) in message
    for pattern in ("sma_<period>", "rsi", "macd_<fast>_<slow>_<signal>", "bollinger_<period>_<nbdev>"):
        assert pattern in message
    assert isinstance(caught.value, ValueError)


def test_compute_features_keys_and_values():
    close = 100 + np.cumsum(np.random.default_rng(3).normal(size=300))
    features = compute_features(np, ["sma_20", "rsi", "rsi_14", "macd", "macd_12_26_9", "bollinger"], close)
    assert list(features) == ["sma_20", "rsi", "rsi_14", "macd", "macd_signal", "macd_hist", "macd_12_26_9",
                              "macd_signal_12_26_9", "macd_hist_12_26_9", "bb_upper", "bb_middle", "bb_lower"]
    np.testing.assert_array_equal(features["macd_hist"], features["macd_hist_12_26_9"])
    np.testing.assert_array_equal(features["sma_20"], sma(np, close, 20))
    np.testing.assert_array_equal(features["rsi"], features["rsi_14"])
    np.testing.assert_array_equal(features["bb_middle"], features["sma_20"])
    latest = latest_values(features)
    assert latest["sma_20"] == pytest.approx(close[-20:].mean(), rel=1e-12)
    assert all(isinstance(value, float) for value in latest.values())


def test_compute_features_validates_before_computing():
    with pytest.raises(UnknownFeatureError, match="nope"):
        compute_features(np, ["sma", "nope"], np.arange(50.0))


def test_latest_values_allows_nan_and_panels():
    short = compute_features(np, ["sma_50"], np.arange(10.0))
    assert math.isnan(latest_values(short)["sma_50"])
    panel = compute_features(np, ["sma_2"], np.arange(10.0).reshape(5, 2))
    assert latest_values(panel)["sma_2"] == [7.0, 8.0]


def test_max_lookback_and_nan_prefix_agree():
    names = ["sma_20", "macd", "rsi"]
    assert max_lookback(names) == 33
    assert max_lookback([]) == 0
    features = compute_features(np, names, np.linspace(10, 20, 100))
    for key, series in features.items():
        assert not np.isnan(series[33:]).any(), key


def test_list_features_describes_every_kind():
    described = {entry["name"]: entry for entry in list_features()}
    assert set(described) == set(KINDS)
    assert {kind.name for kind in CLOSE_KINDS} == {"sma", "ema", "wma", "dema", "tema", "rsi", "macd",
                                                  "bollinger", "roc", "mom", "volatility", "zscore"}
    assert described["volatility"]["lookback"] == "period" and described["volatility"]["inputs"] == ["close"]
    assert described["macd"]["outputs"] == ["macd", "macd_signal", "macd_hist"]
    assert described["macd"]["lookback"] == "slow - 1 + signal - 1"
    assert [param["default"] for param in described["macd"]["params"]] == [12, 26, 9]
    assert described["sma"]["params"][0]["default"] == 20


def test_compute_features_takes_a_mapping_of_bars_and_names_missing_inputs():
    close = 100 + np.cumsum(np.random.default_rng(5).normal(size=200))
    from_mapping = compute_features(np, ["sma_10", "macd"], {"close": close, "volume": np.ones(200)})
    from_array = compute_features(np, ["sma_10", "macd"], close)
    assert from_mapping.keys() == from_array.keys()
    for key in from_array:
        np.testing.assert_array_equal(from_mapping[key], from_array[key])
    with pytest.raises(MissingInputError, match="close") as caught:
        compute_features(np, ["sma_10"], {"volume": np.ones(200)})
    assert isinstance(caught.value, UnknownFeatureError) and isinstance(caught.value, ValueError)
    assert caught.value.feature == "sma_10" and caught.value.missing == ("close",)


def test_leading_nans_start_each_column_at_its_first_valid_row():
    close = np.arange(1.0, 31.0)
    close[:5] = np.nan
    features = compute_features(np, ["sma_3", "volatility_3"], close)
    assert np.isnan(features["sma_3"][:7]).all() and features["sma_3"][7] == 7.0
    assert np.isnan(features["volatility_3"][:8]).all() and not np.isnan(features["volatility_3"][8])


def test_session_starts_where_the_utc_date_changes():
    day = 86_400 * 10**9
    times = np.array([0, 3600 * 10**9, day - 1, day, day + 5, 3 * day], dtype=np.int64)
    assert session_starts(times).tolist() == [True, False, False, True, False, True]


def test_duplicate_requests_answer_once_in_request_order():
    features = compute_features(np, ["macd_12_26_9", "sma_5", " MACD_12_26_9", "macd"], np.linspace(1, 2, 60))
    assert list(features) == ["macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9", "sma_5",
                              "macd", "macd_signal", "macd_hist"]


MULTI_OUTPUT_PERIODS = {"macd": ("macd_12_26", "macd_5_35_5"), "bollinger": ("bollinger_10", "bollinger_20_1.5"),
                        "stoch": ("stoch_14", "stoch_5_3_2"), "adx": ("adx_14", "adx_20")}


def ohlcv_bars(rows=400, seed=9):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    spread = np.abs(rng.normal(0, 0.004, rows))
    return {"open": close, "high": close * (1 + spread), "low": close * (1 - spread), "close": close,
            "volume": rng.lognormal(8, 1, rows)}


@pytest.mark.parametrize("kind", sorted(MULTI_OUTPUT_PERIODS))
def test_two_periods_of_a_multi_output_kind_in_one_request_both_answer(kind):
    assert KINDS[kind].n_outputs > 1
    bars = ohlcv_bars()
    names = ["sma_5", *MULTI_OUTPUT_PERIODS[kind], kind]
    together = compute_features(np, names, bars)
    alone = {}
    for name in names:
        alone.update(compute_features(np, [name], bars))
    assert list(together) == list(alone) and len(together) == 1 + 3 * KINDS[kind].n_outputs
    for key, values in alone.items():
        np.testing.assert_array_equal(together[key], values, err_msg=key)
    stream = StreamState.create(names)
    streamed = stream.update_many(**bars)
    assert list(streamed) == list(together)
    for key, values in together.items():
        np.testing.assert_array_equal(streamed[key], values, err_msg=key)


def test_every_multi_output_kind_is_covered_by_the_two_period_test():
    assert {name for name, kind in KINDS.items() if kind.n_outputs > 1} == set(MULTI_OUTPUT_PERIODS)


def test_every_kind_is_declared_once_in_one_family():
    from utils.engine.indicators.kinds import (momentum, moving_averages, range_oscillators, trend, volatility,
                                               volume)
    families = [moving_averages.MOVING_AVERAGE_KINDS, momentum.MOMENTUM_KINDS, volatility.VOLATILITY_KINDS,
                range_oscillators.RANGE_OSCILLATOR_KINDS, trend.TREND_KINDS, volume.VOLUME_KINDS]
    names = [kind.name for family in families for kind in family]
    assert len(names) == len(set(names)) and set(names) == set(KINDS)
