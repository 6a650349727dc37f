import math

import numpy as np
import pytest

from utils.engine.indicators import (UnknownFeatureError, compute_features, latest_values,
                                     list_features, max_lookback, parse_feature, sma)


@pytest.mark.parametrize("name,kernel,params,keys,lookback", [
    ("sma", "sma", (20,), ("sma",), 19),
    ("sma_20", "sma", (20,), ("sma_20",), 19),
    ("sma_50", "sma", (50,), ("sma_50",), 49),
    ("ema", "ema", (12,), ("ema",), 11),
    ("ema_12", "ema", (12,), ("ema_12",), 11),
    ("rsi", "rsi", (14,), ("rsi",), 14),
    ("rsi_14", "rsi", (14,), ("rsi_14",), 14),
    ("macd", "macd", (12, 26, 9), ("macd", "macd_signal", "macd_hist"), 33),
    ("macd_12_26_9", "macd", (12, 26, 9), ("macd", "macd_signal", "macd_hist"), 33),
    ("macd_5_35_5", "macd", (5, 35, 5), ("macd_5_35_5", "macd_signal_5_35_5", "macd_hist_5_35_5"), 38),
    ("bollinger", "bollinger", (20, 2.0), ("bb_upper", "bb_middle", "bb_lower"), 19),
    ("bollinger_20_2", "bollinger", (20, 2.0), ("bb_upper", "bb_middle", "bb_lower"), 19),
    ("bollinger_10_1.5", "bollinger", (10, 1.5),
     ("bb_upper_10_1.5", "bb_middle_10_1.5", "bb_lower_10_1.5"), 9),
    (" SMA_20 ", "sma", (20,), ("sma_20",), 19),
])
def test_parse_feature(name, kernel, params, keys, lookback):
    spec = parse_feature(name)
    assert (spec.kernel, spec.params, spec.output_keys, spec.lookback) == (kernel, params, keys, lookback)


@pytest.mark.parametrize("name", [
    "foo", "sma_x", "sma_0", "sma_10001", "sma_-5", "sma_1.5", "sma_", "sma__20", "sma_20_3",
    "macd_26_12", "macd_12_12_9", "bollinger_20_0", "bollinger_20_nan", "bollinger_20_inf", "",
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
    assert list(features) == ["sma_20", "rsi", "rsi_14", "macd", "macd_signal", "macd_hist",
                              "bb_upper", "bb_middle", "bb_lower"]
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
    assert set(described) == {"sma", "ema", "rsi", "macd", "bollinger"}
    assert described["macd"]["outputs"] == ["macd", "macd_signal", "macd_hist"]
    assert described["macd"]["lookback"] == "slow - 1 + signal - 1"
    assert [param["default"] for param in described["macd"]["params"]] == [12, 26, 9]
    assert described["sma"]["params"][0]["default"] == 20
