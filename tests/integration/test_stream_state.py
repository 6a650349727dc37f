"""Streaming indicator state: bit-for-bit equal to batch, across streams and server restarts."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import numpy as np
import pytest

from api_proto import realtime_pb2, realtime_pb2_grpc
from utils.engine.indicators.features import compute_features
from utils.data import keys
from utils.redis_client import redis_from_settings

FEATURES = ["sma_20", "ema_12", "rsi", "macd", "bollinger"]
START = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def prices(n: int, seed: int = 3) -> np.ndarray:
    return np.round(50 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.002, n))), 4)


def stream(port: int, symbol: str, values: np.ndarray, first_index: int = 0, features=FEATURES):
    def requests():
        for offset, price in enumerate(values):
            yield realtime_pb2.StreamDataRequest(
                stock_code=symbol, price=float(price), volume=100.0, feature_types=features,
                timestamp=(START + timedelta(seconds=first_index + offset)).isoformat())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return list(realtime_pb2_grpc.RealTimeServiceStub(channel).StreamMarketData(requests(), timeout=60))


def batch_last(values: np.ndarray, features=FEATURES) -> dict[str, float]:
    series = compute_features(np, features, values)
    return {key: float(np.asarray(column)[-1]) for key, column in series.items()}


def assert_bit_equal(received: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert np.array_equal(np.float64(received[key]), np.float64(value), equal_nan=True), key


@pytest.fixture
def server_factory(settings):
    from services.server import create_server
    started = []

    def start():
        running = create_server(settings)
        started.append(running)
        return running
    yield start
    for running in started:
        running.stop(grace=0)


def test_stream_values_equal_batch_bit_for_bit(server_factory):
    server = server_factory()
    values = prices(400)
    responses = stream(server.port, "AAA", values)
    assert all(not r.error for r in responses)
    for n in (1, 19, 20, 34, 400):
        assert_bit_equal(dict(responses[n - 1].processed_data), batch_last(values[:n]))


def test_state_survives_a_server_restart(server_factory, settings):
    values = prices(600)
    first = server_factory()
    stream(first.port, "AAA", values[:350])
    first.stop(grace=0)  # flushes the snapshot
    assert redis_from_settings(settings, decode=False).exists(keys.stream_state("AAA"))
    second = server_factory()
    responses = stream(second.port, "AAA", values[350:], first_index=350)
    assert_bit_equal(dict(responses[-1].processed_data), batch_last(values))


def test_state_is_rebuilt_from_stored_ticks_without_a_snapshot(server_factory, settings):
    values = prices(500)
    first = server_factory()
    stream(first.port, "AAA", values[:300])
    first.stop(grace=0)
    redis_from_settings(settings).delete(keys.stream_state("AAA"))
    second = server_factory()
    responses = stream(second.port, "AAA", values[300:], first_index=300)
    assert_bit_equal(dict(responses[-1].processed_data), batch_last(values))


def test_feature_added_later_is_built_from_the_stored_ticks(server_factory):
    server = server_factory()
    values = prices(300)
    stream(server.port, "AAA", values[:200], features=["sma_5"])
    responses = stream(server.port, "AAA", values[200:], first_index=200, features=["ema_12", "rsi"])
    assert_bit_equal(dict(responses[-1].processed_data), batch_last(values, ["ema_12", "rsi"]))


def test_order_is_enforced_per_symbol_across_streams(server_factory):
    server = server_factory()
    stream(server.port, "AAA", prices(10))
    late = stream(server.port, "AAA", prices(1), first_index=5)
    assert "out-of-order" in late[0].error and not late[0].processed_data
    other_symbol = stream(server.port, "BBB", prices(1), first_index=5)
    assert not other_symbol[0].error


def test_compute_features_runs_over_streamed_ticks_without_bars(server_factory):
    server = server_factory()
    values = prices(120)
    stream(server.port, "TICKONLY", values)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
        reply = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code="TICKONLY", feature_types=FEATURES))
        assert_bit_equal(dict(reply.features), batch_last(values))
        assert not reply.cached
        stream(server.port, "TICKONLY", prices(1, seed=9), first_index=120)  # a new tick: new version
        again = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code="TICKONLY", feature_types=FEATURES))
        assert not again.cached and again.features["sma_20"] != reply.features["sma_20"]


def test_columnar_batched_response_matches_batch_and_keeps_errors_in_place(server_factory):
    server = server_factory()
    a, b = prices(300, seed=1), prices(300, seed=2)
    ticks = []
    for i in range(300):
        stamp = (START + timedelta(seconds=i)).isoformat()
        ticks.append(realtime_pb2.Tick(stock_code="AAA", price=float(a[i]), volume=10.0, timestamp=stamp))
        ticks.append(realtime_pb2.Tick(stock_code="BBB", price=float(b[i]), volume=10.0, timestamp=stamp))
    ticks.insert(101, realtime_pb2.Tick(stock_code="AAA", price=float("nan"), volume=1.0, timestamp="2030-01-01"))
    messages = [realtime_pb2.StreamDataRequest(ticks=ticks[:350], feature_types=FEATURES, columnar_response=True),
                realtime_pb2.StreamDataRequest(ticks=ticks[350:], columnar_response=True)]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        replies = list(realtime_pb2_grpc.RealTimeServiceStub(channel).StreamMarketData(iter(messages), timeout=60))
    assert len(replies) == 2
    first, second = replies[0].batch, replies[1].batch
    assert list(first.sequences) == list(range(1, 351)) and list(second.sequences) == list(range(351, 602))
    assert "price must be finite" in first.errors[101] and sum(bool(e) for e in (*first.errors, *second.errors)) == 1
    codes = list(first.stock_codes) + list(second.stock_codes)
    for symbol, values in (("AAA", a), ("BBB", b)):
        last = max(i for i, code in enumerate(codes) if code == symbol)
        batch = second if last >= 350 else first
        row = last - 350 if last >= 350 else last
        received = {key: series.values[row] for key, series in batch.values.items() if key not in ("price", "volume")}
        assert_bit_equal(received, batch_last(values))


def test_backlog_full_answers_resource_exhausted_and_keeps_the_server_up(tmp_path, settings_factory):
    from services.server import create_server
    from utils.redis_client import EmbeddedRedis
    own_redis = EmbeddedRedis(tmp_path / "bp-redis", appendonly=False).start()
    server = create_server(settings_factory(redis_port=own_redis.port, tick_backlog_max=1000))
    try:
        stream(server.port, "AAA", prices(5))  # the symbol's state exists; then storage goes away
        own_redis.kill()
        batch = [realtime_pb2.Tick(stock_code="AAA", price=50.0, volume=1.0,
                                   timestamp=(START + timedelta(seconds=10 + i)).isoformat()) for i in range(600)]
        later = [realtime_pb2.Tick(stock_code="AAA", price=50.0, volume=1.0,
                                   timestamp=(START + timedelta(seconds=700 + i)).isoformat()) for i in range(600)]
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
            with pytest.raises(grpc.RpcError) as error:
                list(stub.StreamMarketData(iter([realtime_pb2.StreamDataRequest(ticks=batch, columnar_response=True,
                                                                                 feature_types=FEATURES),
                                                 realtime_pb2.StreamDataRequest(ticks=later, columnar_response=True)]),
                                           timeout=30))
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "waiting to be stored" in error.value.details()
            reply = stub.ListFeatures(realtime_pb2.ListFeaturesRequest())  # still serving
            assert reply.features
    finally:
        server.stop(grace=0)
