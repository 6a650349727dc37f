"""Ticks streamed in are aggregated into time bars that equal a pandas resample of them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import numpy as np
import pandas as pd
import pytest

from api_proto import market_data_pb2, market_data_pb2_grpc, realtime_pb2, realtime_pb2_grpc

START = datetime(2026, 3, 2, 23, 50, tzinfo=timezone.utc)  # crosses midnight: two daily bars


def make_ticks(n: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    seconds = np.cumsum(rng.integers(1, 9, n))
    times = [START + timedelta(seconds=int(s)) for s in seconds]
    price = np.round(20 * np.exp(np.cumsum(rng.normal(0, 0.001, n))), 4)
    volume = rng.integers(1, 500, n).astype(float)
    return times, price, volume


def send(port, times, price, volume, batched: bool):
    ticks = [realtime_pb2.Tick(stock_code="BARS", price=float(p), volume=float(v), timestamp=t.isoformat())
             for t, p, v in zip(times, price, volume)]
    if batched:
        messages = [realtime_pb2.StreamDataRequest(ticks=ticks[i:i + 37], columnar_response=True)
                    for i in range(0, len(ticks), 37)]
    else:
        messages = [realtime_pb2.StreamDataRequest(stock_code=t.stock_code, price=t.price, volume=t.volume,
                                                   timestamp=t.timestamp) for t in ticks]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        list(realtime_pb2_grpc.RealTimeServiceStub(channel).StreamMarketData(iter(messages), timeout=60))


def expected_bars(times, price, volume, rule: str) -> pd.DataFrame:
    frame = pd.DataFrame({"price": price, "volume": volume}, index=pd.DatetimeIndex(times))
    bars = frame["price"].resample(rule).ohlc()
    bars["volume"] = frame["volume"].resample(rule).sum()
    return bars.dropna()


def stored_bars(port, interval: str) -> pd.DataFrame:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = market_data_pb2_grpc.MarketDataServiceStub(channel).GetBars(
            market_data_pb2.GetBarsRequest(symbol="BARS", interval=interval))
    index = pd.DatetimeIndex([pd.Timestamp(b.time.rstrip("Z"), tz="UTC") for b in reply.bars])
    return pd.DataFrame({"open": [b.open for b in reply.bars], "high": [b.high for b in reply.bars],
                         "low": [b.low for b in reply.bars], "close": [b.close for b in reply.bars],
                         "volume": [b.volume for b in reply.bars]}, index=index)


@pytest.fixture
def servers(settings):
    from services.server import create_server
    started = []
    yield lambda: started.append(create_server(settings)) or started[-1]
    for running in started:
        running.stop(grace=0)


@pytest.mark.parametrize("batched", [True, False])
def test_bars_equal_a_resample_of_the_ticks_across_a_restart(servers, batched):
    times, price, volume = make_ticks(400)
    first = servers()
    send(first.port, times[:250], price[:250], volume[:250], batched)
    first.stop(grace=0)  # in the middle of a forming bar
    second = servers()
    send(second.port, times[250:], price[250:], volume[250:], batched)
    for interval, rule in (("1m", "1min"), ("5m", "5min"), ("1d", "1D")):
        pd.testing.assert_frame_equal(stored_bars(second.port, interval), expected_bars(times, price, volume, rule),
                                      check_freq=False, check_names=False, rtol=1e-12)
    assert len(stored_bars(second.port, "1d")) == 2


def test_features_run_on_tick_bars(servers):
    import talib
    times, price, volume = make_ticks(600, seed=8)
    server = servers()
    send(server.port, times, price, volume, batched=True)
    closes = expected_bars(times, price, volume, "1min")["close"].to_numpy()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
        reply = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code="BARS", interval="1m",
                                                                 feature_types=["sma_10", "rsi"]))
        assert reply.features["sma_10"] == pytest.approx(talib.SMA(closes, 10)[-1], rel=1e-12)
        assert reply.features["rsi"] == pytest.approx(talib.RSI(closes, 14)[-1], rel=1e-9)
        with pytest.raises(grpc.RpcError) as error:
            stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code="BARS", interval="7m"))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "interval" in error.value.details()
