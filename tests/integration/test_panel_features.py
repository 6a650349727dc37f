"""Panel requests: many symbols in one queued job, values identical to per-symbol requests."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from api_proto import market_data_pb2, market_data_pb2_grpc, realtime_pb2, realtime_pb2_grpc

FEATURES = ["sma_20", "rsi", "macd", "macd_5_35", "bollinger", "atr_14", "adx", "adx_20", "vwap"]


def import_symbol(channel, symbol: str, days: np.ndarray, seed: int) -> None:
    close = 30 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.01, days.size)))
    bars = [market_data_pb2.Bar(time=str(d), open=c, high=c * 1.01, low=c * 0.99, close=c, volume=1000 + i)
            for i, (d, c) in enumerate(zip(days, close))]
    market_data_pb2_grpc.MarketDataServiceStub(channel).ImportBars(
        market_data_pb2.ImportBarsRequest(symbol=symbol, bars=bars))


def test_panel_equals_single_symbol_requests(channel):
    calendar = np.arange(np.datetime64("2022-01-03"), np.datetime64("2023-06-30"))
    for i in range(6):
        import_symbol(channel, f"P{i}", calendar, seed=i)
    import_symbol(channel, "OTHERCAL", calendar[::2], seed=99)  # a second calendar: its own panel
    stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
    symbols = [f"P{i}" for i in range(6)] + ["OTHERCAL", "000001.SZ"]
    panel = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_codes=symbols, feature_types=FEATURES), timeout=60)
    assert panel.task_id.startswith("ft-") and panel.device == "cpu" and set(panel.panel) == set(symbols)
    for symbol in symbols:
        single = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code=symbol, feature_types=FEATURES))
        assert panel.panel[symbol].timestamp == single.timestamp
        assert set(panel.panel[symbol].features) == set(single.features)
        assert {"plus_di", "plus_di_20", "macd_hist", "macd_hist_5_35"} <= set(single.features)
        for key, value in single.features.items():
            assert np.array_equal(panel.panel[symbol].features[key], value, equal_nan=True), (symbol, key)


@pytest.mark.parametrize("fields,code,needle", [
    (dict(stock_codes=["000001.SZ", "NOPE"]), grpc.StatusCode.NOT_FOUND, "NOPE"),
    (dict(stock_codes=["000001.SZ", "000001.SZ"]), grpc.StatusCode.INVALID_ARGUMENT, "twice"),
    (dict(stock_codes=["000001.SZ"], return_series=True), grpc.StatusCode.INVALID_ARGUMENT, "return_series"),
    (dict(stock_codes=["000001.SZ"], feature_types=["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
    (dict(stock_codes=["000001.SZ"], interval="7m"), grpc.StatusCode.INVALID_ARGUMENT, "interval"),
])
def test_bad_panel_requests(channel, fields, code, needle):
    with pytest.raises(grpc.RpcError) as error:
        realtime_pb2_grpc.RealTimeServiceStub(channel).ComputeFeatures(realtime_pb2.FeatureRequest(**fields))
    assert error.value.code() == code and needle in error.value.details()


def test_panel_without_a_worker_times_out_and_cancels_its_job(platform, channel):
    platform.worker.stop()
    with pytest.raises(grpc.RpcError) as error:
        realtime_pb2_grpc.RealTimeServiceStub(channel).ComputeFeatures(
            realtime_pb2.FeatureRequest(stock_codes=["000001.SZ"]), timeout=1.0)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_panel_with_a_symbol_still_in_warm_up_returns_nan_not_a_failure(channel):
    import_symbol(channel, "SHORT", np.arange(np.datetime64("2024-01-02"), np.datetime64("2024-01-12")), seed=3)
    reply = realtime_pb2_grpc.RealTimeServiceStub(channel).ComputeFeatures(realtime_pb2.FeatureRequest(
        stock_codes=["SHORT", "000001.SZ"], feature_types=["sma_5", "sma_50"]), timeout=60)
    assert reply.panel["SHORT"].features["sma_5"] > 0
    assert np.isnan(reply.panel["SHORT"].features["sma_50"])  # 10 bars: still in warm-up
    assert reply.panel["000001.SZ"].features["sma_50"] > 0
