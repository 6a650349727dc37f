"""RealTimeService over real gRPC + Redis: tick streams, subscriptions, features over history."""
from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta

import grpc
import numpy as np
import pytest
import talib

from api_proto import market_data_pb2, market_data_pb2_grpc, realtime_pb2, realtime_pb2_grpc
from tests.conftest import wait_until

DEFAULT_STREAM_KEYS = {"price", "volume", "sma_5", "sma_20", "ema_12", "rsi"}
GUIDE_FEATURES = ["sma_20", "sma_50", "rsi", "macd", "bollinger"]
START = datetime(2024, 1, 2, 9, 30)


@pytest.fixture
def stub(channel):
    return realtime_pb2_grpc.RealTimeServiceStub(channel)


@pytest.fixture
def market(channel):
    return market_data_pb2_grpc.MarketDataServiceStub(channel)


def stamp(i: int) -> str:
    return (START + timedelta(seconds=i)).isoformat()


def prices_walk(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(10 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 4)


def single(symbol, price, volume, timestamp, **kwargs):
    return realtime_pb2.StreamDataRequest(stock_code=symbol, price=price, volume=volume, timestamp=timestamp,
                                          **kwargs)


def stream(stub, messages, timeout=30):
    return list(stub.StreamMarketData(iter(messages), timeout=timeout))


def assert_rejected(response, needle):
    assert response.error and needle in response.error, response.error
    assert len(response.processed_data) == 0 and "Traceback" not in response.error


# ------------------------------------------------------------------ streaming
def test_single_tick_form_matches_batch_indicators(stub):
    prices = prices_walk(60)
    responses = stream(stub, [single("000001.SZ", float(p), 1000 + i, stamp(i)) for i, p in enumerate(prices)])
    assert len(responses) == len(prices)
    assert len({r.stream_id for r in responses}) == 1 and responses[0].stream_id
    assert [r.sequence for r in responses] == list(range(1, len(prices) + 1))
    for i, response in enumerate(responses):
        assert response.error == "" and response.stock_code == "000001.SZ" and response.timestamp == stamp(i)
        data = response.processed_data
        assert set(data) == DEFAULT_STREAM_KEYS
        assert data["price"] == prices[i] and data["volume"] == 1000 + i
        if i < 19:
            assert math.isnan(data["sma_20"])
        else:
            assert data["sma_20"] == pytest.approx(np.mean(prices[i - 19:i + 1]), rel=0, abs=1e-12)
        if i < 4:
            assert math.isnan(data["sma_5"])
    rsi = talib.RSI(prices, 14)
    ema = talib.EMA(prices, 12)
    streamed_rsi = np.array([r.processed_data["rsi"] for r in responses])
    streamed_ema = np.array([r.processed_data["ema_12"] for r in responses])
    np.testing.assert_array_equal(np.isnan(streamed_rsi), np.isnan(rsi))
    np.testing.assert_allclose(streamed_rsi, rsi, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(streamed_ema, ema, rtol=1e-12, equal_nan=True)


def test_guide_stream_with_now_timestamps(stub):
    """The guide sends datetime.now() for three symbols in turn: every tick is accepted."""
    def generate():
        for i in range(30):
            for code in ("000001.SZ", "600000.SH", "000002.SZ"):
                yield realtime_pb2.StreamDataRequest(stock_code=code, price=10.0 + i * 0.1,
                                                     volume=1000000 + i * 1000, timestamp=datetime.now().isoformat())
                time.sleep(0.0001)  # now() must move on between two ticks of one symbol
    responses = list(stub.StreamMarketData(generate(), timeout=30))
    assert len(responses) == 90 and not [r.error for r in responses if r.error]
    last = responses[-1].processed_data
    assert last["sma_20"] == pytest.approx(np.mean(10.0 + np.arange(10, 30) * 0.1), abs=1e-12)


def test_long_stream_rsi_and_sma_match_talib(stub):
    """Past the server's per-symbol window the values still follow the whole history."""
    prices = prices_walk(700, seed=3)
    responses = stream(stub, [realtime_pb2.StreamDataRequest(
        ticks=[realtime_pb2.Tick(stock_code="LONG", price=float(p), volume=1, timestamp=stamp(i))
               for i, p in enumerate(prices[k:k + 100], start=k)],
        feature_types=["rsi", "sma_600", "bollinger"]) for k in range(0, 700, 100)], timeout=60)
    assert len(responses) == 700 and not [r.error for r in responses if r.error]
    streamed = {key: np.array([r.processed_data[key] for r in responses]) for key in ("rsi", "sma_600", "bb_upper")}
    np.testing.assert_allclose(streamed["rsi"], talib.RSI(prices, 14), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(streamed["bb_upper"], talib.BBANDS(prices, 20, 2, 2, 0)[0], rtol=1e-9, equal_nan=True)
    assert np.isnan(streamed["sma_600"][:599]).all()
    np.testing.assert_allclose(streamed["sma_600"][599:], talib.SMA(prices, 600)[599:], rtol=1e-12)


def test_batched_form_mixes_symbols_in_order(stub):
    symbols = ["AAA", "BBB", "CCC"]
    ticks = [realtime_pb2.Tick(stock_code=symbols[i % 3], price=10 + i, volume=i, timestamp=stamp(i // 3))
             for i in range(30)]
    responses = stream(stub, [realtime_pb2.StreamDataRequest(ticks=ticks[:12]),
                              realtime_pb2.StreamDataRequest(ticks=ticks[12:])])
    assert len(responses) == 30
    assert [r.sequence for r in responses] == list(range(1, 31))
    assert [r.stock_code for r in responses] == [t.stock_code for t in ticks]
    assert [r.timestamp for r in responses] == [t.timestamp for t in ticks]
    assert [r.processed_data["price"] for r in responses] == [t.price for t in ticks]
    # Indicators are per symbol: AAA's ticks are 10, 13, 16, ... so its sma_5 after 5 ticks is 16.
    aaa = [r for r in responses if r.stock_code == "AAA"]
    assert math.isnan(aaa[3].processed_data["sma_5"]) and aaa[4].processed_data["sma_5"] == pytest.approx(16)


def test_feature_types_change_the_returned_set_and_stick(stub):
    messages = [single("SYM", 10 + i * 0.1, 1, stamp(i)) for i in range(40)]
    messages[0].feature_types.extend(["macd", "bollinger"])
    messages[35].feature_types.extend(["sma_3"])
    responses = stream(stub, messages)
    assert len(responses) == 40 and not [r.error for r in responses if r.error]
    macd_keys = {"price", "volume", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower"}
    for response in responses[:35]:
        assert set(response.processed_data) == macd_keys
    for response in responses[35:]:
        assert set(response.processed_data) == {"price", "volume", "sma_3"}
    prices = 10 + np.arange(40) * 0.1
    upper, middle, lower = talib.BBANDS(prices[:35], 20, 2, 2, 0)
    assert responses[34].processed_data["bb_middle"] == pytest.approx(middle[-1], rel=1e-12)
    assert responses[34].processed_data["bb_upper"] == pytest.approx(upper[-1], rel=1e-12)
    assert responses[39].processed_data["sma_3"] == pytest.approx(np.mean(prices[37:40]), rel=1e-12)


BAD_TICKS = [
    (dict(price=float("nan")), "price"),
    (dict(price=-1.0), "price"),
    (dict(price=0.0), "price"),
    (dict(volume=-5.0), "volume"),
    (dict(volume=float("inf")), "volume"),
    (dict(timestamp="not a time"), "timestamp"),
    (dict(timestamp=""), "timestamp"),
    (dict(timestamp=stamp(1)), "duplicate"),
    (dict(timestamp=stamp(0)), "out-of-order"),
    (dict(stock_code="bad code!"), "stock_code"),
    (dict(stock_code=""), "stock_code"),
]


@pytest.mark.parametrize("fields,needle", BAD_TICKS)
def test_bad_tick_gets_an_error_and_the_stream_goes_on(stub, fields, needle):
    bad = {"stock_code": "ERR", "price": 50.0, "volume": 100.0, "timestamp": stamp(5), **fields}
    responses = stream(stub, [single("ERR", 9.0, 100.0, stamp(0), feature_types=["sma_3"]),
                              single("ERR", 10.0, 100.0, stamp(1)),
                              realtime_pb2.StreamDataRequest(**bad),
                              single("ERR", 11.0, 100.0, stamp(2))])
    assert [r.sequence for r in responses] == [1, 2, 3, 4]
    assert_rejected(responses[2], needle)
    assert not responses[0].error and not responses[1].error and not responses[3].error
    # The rejected tick was not applied: sma_3 after the next good tick is over 9, 10, 11.
    assert responses[3].processed_data["price"] == 11.0 and responses[3].timestamp == stamp(2)
    assert responses[3].processed_data["sma_3"] == pytest.approx(10.0, abs=1e-12)


def test_bad_ticks_in_a_batch_do_not_stop_the_others(stub):
    ticks = [realtime_pb2.Tick(stock_code="B1", price=10, volume=1, timestamp=stamp(0)),
             realtime_pb2.Tick(stock_code="B1", price=float("nan"), volume=1, timestamp=stamp(1)),
             realtime_pb2.Tick(stock_code="B2", price=10, volume=1, timestamp=stamp(0)),
             realtime_pb2.Tick(stock_code="B1", price=11, volume=1, timestamp=stamp(0)),
             realtime_pb2.Tick(stock_code="B1", price=12, volume=1, timestamp=stamp(2))]
    responses = stream(stub, [realtime_pb2.StreamDataRequest(ticks=ticks)])
    assert [r.sequence for r in responses] == [1, 2, 3, 4, 5]
    assert [bool(r.error) for r in responses] == [False, True, False, True, False]
    assert_rejected(responses[1], "price")
    assert_rejected(responses[3], "duplicate")
    assert responses[4].processed_data["price"] == 12


def test_unknown_feature_in_stream_names_the_valid_ones(stub):
    responses = stream(stub, [single("UF", 10, 1, stamp(0), feature_types=["sma_20", "nope"]),
                              single("UF", 11, 1, stamp(1))])
    assert len(responses) == 2
    assert_rejected(responses[0], "nope")
    for name in ("sma", "ema", "rsi", "macd", "bollinger"):
        assert name in responses[0].error
    # The bad message's tick was skipped; the defaults still apply to the next message.
    assert not responses[1].error and set(responses[1].processed_data) == DEFAULT_STREAM_KEYS
    assert responses[1].sequence == 2


# -------------------------------------------------------------- subscriptions
def test_subscriber_receives_other_clients_ticks_of_its_symbols(platform, stub):
    received: list[realtime_pb2.MarketData] = []
    call = stub.SubscribeMarketData(realtime_pb2.SubscriptionRequest(stock_codes=["SUB.A"]), timeout=30)

    def consume():
        try:
            for update in call:
                received.append(update)
        except grpc.RpcError:
            pass  # cancelled at the end of the test
    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        wait_until(lambda: platform.registry.get_sample_value("realtime_streams_active", {"kind": "subscribe"}) == 1,
                   timeout=10)
        # Streamed by another client; retried (bounded) in case the subscription lags the gauge.
        i = 0
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            ticks = [realtime_pb2.Tick(stock_code="SUB.B", price=50 + i, volume=2, timestamp=stamp(i)),
                     realtime_pb2.Tick(stock_code="SUB.A", price=10 + i, volume=1, timestamp=stamp(i))]
            stream(stub, [realtime_pb2.StreamDataRequest(ticks=ticks, feature_types=["sma_1", "rsi"])])
            i += 1
            time.sleep(0.1)
        assert received, "the subscriber got nothing within 10 s"
        time.sleep(0.3)  # anything for SUB.B would have arrived by now
        assert {u.stock_code for u in received} == {"SUB.A"}
        first = received[0]
        assert first.price >= 10 and first.volume == 1 and first.timestamp
        # Indicators as computed for the sending stream (finite ones only): sma_1 is the price.
        assert first.indicators["sma_1"] == first.price and "rsi" not in first.indicators
    finally:
        call.cancel()
        reader.join(timeout=5)
    wait_until(lambda: platform.registry.get_sample_value("realtime_streams_active", {"kind": "subscribe"}) == 0,
               timeout=10)


def test_columnar_subscriber_gets_waiting_ticks_as_one_batch(platform, stub):
    batches: list[realtime_pb2.TickBatch] = []
    call = stub.SubscribeMarketData(realtime_pb2.SubscriptionRequest(stock_codes=["COL.A", "COL.B"], columnar=True,
                                                                     batch_window_ms=20), timeout=30)

    def consume():
        try:
            for update in call:
                assert not update.stock_code and update.HasField("batch")
                batches.append(update.batch)
        except grpc.RpcError:
            pass  # cancelled at the end of the test
    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        wait_until(lambda: platform.registry.get_sample_value("realtime_streams_active", {"kind": "subscribe"}) == 1,
                   timeout=10)
        sent: dict[str, tuple[str, float]] = {}
        i = 0
        deadline = time.monotonic() + 10
        while not batches and time.monotonic() < deadline:
            ticks = [realtime_pb2.Tick(stock_code=symbol, price=10 + i + k, volume=1 + k, timestamp=stamp(i))
                     for k, symbol in enumerate(("COL.A", "COL.B", "COL.C"))]
            for tick in ticks:
                sent[tick.timestamp + tick.stock_code] = (tick.stock_code, tick.price)
            stream(stub, [realtime_pb2.StreamDataRequest(ticks=ticks, feature_types=["sma_1"])])
            i += 1
            time.sleep(0.1)
        assert batches, "the subscriber got nothing within 10 s"
        time.sleep(0.3)
        codes = [code for batch in batches for code in batch.stock_codes]
        assert set(codes) <= {"COL.A", "COL.B"} and codes
        for batch in batches:
            assert len(batch.timestamps) == len(batch.stock_codes) == len(batch.values["price"].values)
            assert not batch.sequences and not batch.errors
            for code, time_, price, sma in zip(batch.stock_codes, batch.timestamps, batch.values["price"].values,
                                               batch.values["sma_1"].values):
                assert sent[time_ + code] == (code, price) and sma == price
    finally:
        call.cancel()
        reader.join(timeout=5)


@pytest.mark.parametrize("fields,needle", [(dict(batch_window_ms=50), "needs columnar"),
                                           (dict(columnar=True, batch_window_ms=10_001), "at most 10000")])
def test_bad_batch_windows_are_invalid(stub, fields, needle):
    with pytest.raises(grpc.RpcError) as error:
        next(iter(stub.SubscribeMarketData(realtime_pb2.SubscriptionRequest(stock_codes=["COL.A"], **fields),
                                           timeout=10)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in error.value.details()


def test_updates_as_batch_fills_missing_indicators_with_nan():
    from services.realtime_service import updates_as_batch
    batch = updates_as_batch([
        ("A", {"timestamp": ["t1", "t2"], "price": [1.0, 2.0], "volume": [5.0, 6.0], "indicators": {"x": [None, 3.0]}}),
        ("B", {"timestamp": ["t3"], "price": [4.0], "volume": [7.0], "indicators": {"y": [8.0]}})])
    assert list(batch.stock_codes) == ["A", "A", "B"] and list(batch.timestamps) == ["t1", "t2", "t3"]
    assert list(batch.values["price"].values) == [1.0, 2.0, 4.0]
    assert np.array_equal(batch.values["x"].values, [np.nan, 3.0, np.nan], equal_nan=True)
    assert np.array_equal(batch.values["y"].values, [np.nan, np.nan, 8.0], equal_nan=True)


@pytest.mark.parametrize("codes,needle", [([], "stock_codes"), (["bad code!"], "stock_codes[0]"),
                                           (["A", "A"], "twice")])
def test_bad_subscriptions_are_invalid(stub, codes, needle):
    with pytest.raises(grpc.RpcError) as error:
        next(iter(stub.SubscribeMarketData(realtime_pb2.SubscriptionRequest(stock_codes=codes), timeout=10)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in error.value.details() and "Traceback" not in error.value.details()


# ----------------------------------------------------------- features (batch)
def stored(market, symbol):
    bars = market.GetBars(market_data_pb2.GetBarsRequest(symbol=symbol)).bars
    return np.array([b.close for b in bars]), [b.time for b in bars]


def talib_features(close):
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2, 0)
    return {"sma_20": talib.SMA(close, 20), "sma_50": talib.SMA(close, 50), "rsi": talib.RSI(close, 14),
            "macd": macd, "macd_signal": signal, "macd_hist": hist,
            "bb_upper": upper, "bb_middle": middle, "bb_lower": lower}


def cache_hit_rate(platform, cache):
    return platform.registry.get_sample_value("cache_hit_rate", {"cache": cache})


def test_compute_features_match_talib_and_cache_by_version(platform, stub, market):
    request = realtime_pb2.FeatureRequest(stock_code="000001.SZ", feature_types=GUIDE_FEATURES)
    close, times = stored(market, "000001.SZ")
    expected = talib_features(close)

    first = stub.ComputeFeatures(request)
    assert first.stock_code == "000001.SZ" and first.timestamp == times[-1] and not first.cached
    assert set(first.features) == set(expected)
    for key, series in expected.items():
        assert first.features[key] == pytest.approx(series[-1], rel=1e-9), key
    assert len(first.series) == 0 and len(first.series_times) == 0

    second = stub.ProcessFeatureCalculation(request)
    assert second.cached and dict(second.features) == dict(first.features) and second.timestamp == first.timestamp
    assert cache_hit_rate(platform, "features") == 0.5

    # A write bumps the symbol's version: the cache must not serve the old values.
    market.ImportBars(market_data_pb2.ImportBarsRequest(symbol="000001.SZ", bars=[market_data_pb2.Bar(
        time="2026-01-05", open=close[-1], high=close[-1] * 1.6, low=close[-1], close=close[-1] * 1.5, volume=1e6)]))
    third = stub.ComputeFeatures(request)
    assert not third.cached and third.timestamp == "2026-01-05"
    new_close, _ = stored(market, "000001.SZ")
    assert new_close.size == close.size + 1
    for key, series in talib_features(new_close).items():
        assert third.features[key] == pytest.approx(series[-1], rel=1e-9), key
    assert third.features["sma_20"] != first.features["sma_20"]
    assert cache_hit_rate(platform, "features") == pytest.approx(1 / 3)


def test_return_series_gives_the_lookback_tail(stub, market):
    close, times = stored(market, "600000.SH")
    response = stub.ComputeFeatures(realtime_pb2.FeatureRequest(
        stock_code="600000.SH", feature_types=["sma_20", "macd"], lookback=30, return_series=True))
    assert list(response.series_times) == times[-30:]
    assert set(response.series) == {"sma_20", "macd", "macd_signal", "macd_hist"}
    expected = talib_features(close)
    for key, values in response.series.items():
        assert len(values.values) == 30
        np.testing.assert_allclose(values.values, expected[key][-30:], rtol=1e-9)
        assert response.features[key] == values.values[-1]
    # A different lookback is a different cache entry.
    other = stub.ComputeFeatures(realtime_pb2.FeatureRequest(
        stock_code="600000.SH", feature_types=["sma_20", "macd"], lookback=5, return_series=True))
    assert not other.cached and len(other.series_times) == 5


def test_short_history_gives_nan_not_an_error(stub, market):
    market.ImportBars(market_data_pb2.ImportBarsRequest(symbol="SHORT", bars=[market_data_pb2.Bar(
        time=f"2024-01-{d:02d}", open=10 + d, high=11 + d, low=9 + d, close=10 + d, volume=1) for d in range(1, 6)]))
    response = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code="SHORT", feature_types=["sma_3", "sma_20"]))
    assert response.features["sma_3"] == pytest.approx(14.0) and math.isnan(response.features["sma_20"])
    assert response.timestamp == "2024-01-05"


def test_list_features(stub):
    features = {f.name: f for f in stub.ListFeatures(realtime_pb2.ListFeaturesRequest()).features}
    assert {"sma", "ema", "rsi", "macd", "bollinger"} <= set(features)
    assert list(features["macd"].outputs) == ["macd", "macd_signal", "macd_hist"]
    assert list(features["bollinger"].outputs) == ["bb_upper", "bb_middle", "bb_lower"]
    assert features["sma"].defaults["period"] == 20 and features["rsi"].defaults["period"] == 14
    assert features["sma"].pattern == "sma_<period>" and features["sma"].description
    assert list(features["sma"].inputs) == ["close"]
    assert list(features["atr"].inputs) == ["high", "low", "close"] and "volume" in features["mfi"].inputs


@pytest.mark.parametrize("fields,code,needle", [
    (dict(stock_code="000001.SZ", feature_types=["sma_20", "astrology"]), grpc.StatusCode.INVALID_ARGUMENT, "astrology"),
    (dict(stock_code="000001.SZ", feature_types=["sma_0"]), grpc.StatusCode.INVALID_ARGUMENT, "sma_0"),
    (dict(stock_code="000001.SZ", feature_types=["macd_26_12"]), grpc.StatusCode.INVALID_ARGUMENT, "fast"),
    (dict(stock_code="", feature_types=["rsi"]), grpc.StatusCode.INVALID_ARGUMENT, "stock_code"),
    (dict(stock_code="bad code!", feature_types=["rsi"]), grpc.StatusCode.INVALID_ARGUMENT, "stock_code"),
    (dict(stock_code="NOPE.SZ", feature_types=["rsi"]), grpc.StatusCode.NOT_FOUND, "NOPE.SZ"),
    (dict(stock_code="000001.SZ", lookback=-1, return_series=True), grpc.StatusCode.INVALID_ARGUMENT, "lookback"),
])
def test_bad_feature_requests(stub, fields, code, needle):
    with pytest.raises(grpc.RpcError) as error:
        stub.ComputeFeatures(realtime_pb2.FeatureRequest(**fields))
    assert error.value.code() == code
    assert needle in error.value.details() and "Traceback" not in error.value.details()
    if needle == "astrology":
        for name in ("sma", "ema", "rsi", "macd", "bollinger", "atr", "adx", "vwap"):
            assert name in error.value.details()


def test_range_features_over_stored_bars_match_talib(channel):
    import talib
    from api_proto import market_data_pb2, market_data_pb2_grpc
    bars = market_data_pb2_grpc.MarketDataServiceStub(channel).GetBars(
        market_data_pb2.GetBarsRequest(symbol="000001.SZ")).bars
    high, low, close, volume = (np.array([getattr(b, f) for b in bars]) for f in ("high", "low", "close", "volume"))
    reply = realtime_pb2_grpc.RealTimeServiceStub(channel).ComputeFeatures(realtime_pb2.FeatureRequest(
        stock_code="000001.SZ", feature_types=["atr_14", "adx_14", "stoch", "mfi_14", "obv", "cci_20", "willr_14"]))
    expected = {"atr_14": talib.ATR(high, low, close, 14)[-1], "adx_14": talib.ADX(high, low, close, 14)[-1],
                "plus_di_14": talib.PLUS_DI(high, low, close, 14)[-1],
                "minus_di_14": talib.MINUS_DI(high, low, close, 14)[-1],
                "stoch_k": talib.STOCH(high, low, close, 14, 3, 0, 3, 0)[0][-1],
                "stoch_d": talib.STOCH(high, low, close, 14, 3, 0, 3, 0)[1][-1],  # stoch = stoch_14_3_3
                "mfi_14": talib.MFI(high, low, close, volume, 14)[-1], "obv": talib.OBV(close, volume)[-1],
                "cci_20": talib.CCI(high, low, close, 20)[-1], "willr_14": talib.WILLR(high, low, close, 14)[-1]}
    assert set(reply.features) == set(expected)  # every key carries the parameters as asked
    for key, value in expected.items():
        assert reply.features[key] == pytest.approx(value, rel=1e-9), key


def test_two_periods_of_multi_output_features_answer_under_the_names_asked(channel):
    bars = market_data_pb2_grpc.MarketDataServiceStub(channel).GetBars(
        market_data_pb2.GetBarsRequest(symbol="000001.SZ")).bars
    high, low, close = (np.array([getattr(b, f) for b in bars]) for f in ("high", "low", "close"))
    names = ["adx_14", "adx_20", "bollinger_10", "bollinger_20_1.5", "macd", "macd_5_35", "stoch", "stoch_5_3_2"]
    stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
    reply = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code="000001.SZ", feature_types=names,
                                                             lookback=40, return_series=True))
    expected = {}
    for period in (14, 20):
        expected |= {f"adx_{period}": talib.ADX(high, low, close, period),
                     f"plus_di_{period}": talib.PLUS_DI(high, low, close, period),
                     f"minus_di_{period}": talib.MINUS_DI(high, low, close, period)}
    for suffix, (period, nbdev) in {"_10": (10, 2.0), "_20_1.5": (20, 1.5)}.items():
        expected |= dict(zip((f"bb_upper{suffix}", f"bb_middle{suffix}", f"bb_lower{suffix}"),
                             talib.BBANDS(close, period, nbdev, nbdev, 0)))
    for suffix, (fast, slow) in {"": (12, 26), "_5_35": (5, 35)}.items():
        expected |= dict(zip((f"macd{suffix}", f"macd_signal{suffix}", f"macd_hist{suffix}"),
                             talib.MACD(close, fast, slow, 9)))
    for suffix, (fastk, slowk, slowd) in {"": (14, 3, 3), "_5_3_2": (5, 3, 2)}.items():
        expected |= dict(zip((f"stoch_k{suffix}", f"stoch_d{suffix}"),
                             talib.STOCH(high, low, close, fastk, slowk, 0, slowd, 0)))
    assert set(reply.features) == set(reply.series) == set(expected)
    for key, values in expected.items():
        assert reply.features[key] == pytest.approx(values[-1], rel=1e-9), key
        np.testing.assert_allclose(reply.series[key].values, values[-40:], rtol=1e-9, err_msg=key)
    for name in names:  # each name alone answers the same keys with the same values
        alone = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code="000001.SZ", feature_types=[name]))
        assert alone.features and all(reply.features[key] == value for key, value in alone.features.items()), name
