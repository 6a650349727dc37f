"""The WebSocket gateway with a real client (``websockets``) against real uvicorn on a free port,
real Redis, the real gRPC server on port 0 and an in-process worker."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from datetime import datetime, timedelta

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api_proto import backtest_pb2, backtest_pb2_grpc, realtime_pb2, realtime_pb2_grpc
from services.security import key_digest
from tests.gateway_helpers import receive_until, send, start_gateway_for, subscribed, ws_url
from utils.data import keys as data_keys

BACKTEST = dict(stock_codes=["000001.SZ", "600000.SH", "000002.SZ"], start_time="2020-01-01",
                end_time="2024-12-31", initial_capital=1_000_000, commission_rate=0.0003,
                strategy_config=json.dumps({"strategy_type": "trend_following", "lookback_period": 20,
                                            "moving_average_window": 50}))
# A sweep large enough (> SMALL_JOB_CELLS of utils/tasks/backtest.py) to report progress on the way;
# smaller jobs report only their start and end.
SWEEP = dict(BACKTEST, strategy_config=json.dumps({"strategy_type": "sma_crossover", "param_grid": {
    "fast": list(range(2, 42)), "slow": list(range(50, 250, 14))}}))


@pytest.fixture
def gateway(platform):
    running = start_gateway_for(platform.settings)
    yield running
    running.stop()


def metric_value(gateway, name: str, **labels) -> float:
    return gateway.metrics.registry.get_sample_value(name, labels) or 0.0


def test_backtest_status_goes_pending_running_completed_with_its_result(gateway, channel):
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)

    async def scenario():
        async with connect(ws_url(gateway)) as ws:
            await subscribed(ws, channel="task_status", task_type="backtest")
            await subscribed(ws, channel="calc_result", task_type="backtest")
            job_id = (await asyncio.to_thread(stub.IntegratedBacktest, backtest_pb2.BacktestRequest(**SWEEP))
                      ).backtest_id
            pushes = await receive_until(ws, lambda m: any(p.get("kind") == "job_result" and
                                                           p["job_id"] == job_id for p in m))
            return job_id, pushes

    job_id, pushes = asyncio.run(scenario())
    statuses = [p for p in pushes if p.get("channel") == "task_status" and p["job_id"] == job_id]
    order = [p["status"] for p in statuses]
    assert order[0] == "PENDING" and order[-1] == "COMPLETED", order
    assert set(order) == {"PENDING", "RUNNING", "COMPLETED"} and order == sorted(
        order, key=["PENDING", "RUNNING", "COMPLETED"].index), order
    running = [p["progress"] for p in statuses if p["status"] == "RUNNING"]
    assert any(0 < fraction < 1 for fraction in running), running  # progress on the way
    assert running == sorted(running) and statuses[-1]["progress"] == 1.0
    for push in statuses:
        assert push["task_type"] == "backtest" and push["time"].endswith("Z")
    result = next(p for p in pushes if p.get("kind") == "job_result")
    # The pushed metrics are the stored result's, the same the gRPC side answers.
    answer = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=job_id))
    assert result["metrics"]["total_return"] == pytest.approx(answer.performance_metrics.total_return, rel=1e-12)
    # A subscription by id answers the job's state now, then its changes.
    async def by_id():
        async with connect(ws_url(gateway)) as ws:
            await send(ws, type="subscribe", channel="task_status", job_id=job_id)
            return await receive_until(ws, lambda m: any("status" in p for p in m), 10)
    now = [p for p in asyncio.run(by_id()) if p.get("channel") == "task_status" and "type" not in p][0]
    assert now["status"] == "COMPLETED" and now["progress"] == 1.0
    # The dashboard's JSON read of the same job.
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/api/jobs/{job_id}/equity", timeout=10) as reply:
        curve = json.load(reply)
    assert [round(p.equity, 6) for p in answer.equity_curve] == [round(e, 6) for e in curve["equity"]]


def ticks(symbol: str, stop: threading.Event, count: int = 2000):
    start = datetime(2024, 6, 3, 9, 30)
    for i in range(count):
        if stop.is_set():
            return
        yield realtime_pb2.StreamDataRequest(stock_code=symbol, price=10 + 0.01 * (i % 50), volume=100 + i,
                                             timestamp=(start + timedelta(seconds=i)).isoformat())
        time.sleep(0.01)


def test_market_data_and_indicators_pushed_while_a_grpc_stream_publishes_ticks(gateway, channel):
    stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
    stop = threading.Event()

    async def scenario():
        async with connect(ws_url(gateway)) as ws:
            await subscribed(ws, channel="market_data", symbols=["TEST.WS"])
            await subscribed(ws, channel="calc_result", symbols=["TEST.WS"])
            streaming = asyncio.create_task(asyncio.to_thread(
                lambda: list(stub.StreamMarketData(ticks("TEST.WS", stop), timeout=60))))
            try:
                return await receive_until(ws, lambda m: sum(p.get("channel") == "market_data" for p in m) >= 3
                                           and any(p.get("kind") == "indicators" for p in m), 30)
            finally:
                stop.set()
                responses = await streaming
                assert responses and not any(r.error for r in responses)

    pushes = asyncio.run(scenario())
    market = [p for p in pushes if p.get("channel") == "market_data"]
    assert all(p["symbol"] == "TEST.WS" and p["time"] for p in market)
    prices = [price for p in market for price in p["price"]]
    stamps = [stamp for p in market for stamp in p["timestamp"]]
    assert stamps == sorted(stamps) and all(10 <= price < 10.5 for price in prices)
    indicators = next(p for p in pushes if p.get("kind") == "indicators")
    assert indicators["channel"] == "calc_result" and "sma_5" in indicators["indicators"]
    assert len(indicators["indicators"]["sma_5"]) == len(indicators["timestamp"])


def test_api_keys_header_or_first_message_and_refusals(platform, channel):
    key = "gateway-test-key"
    gateway = start_gateway_for(platform.settings, api_keys=f"desk:{key_digest(key).hex()}",
                                gateway_auth_timeout_seconds=2.0)

    async def scenario():
        async with connect(ws_url(gateway)) as ws:  # no key: the first message must be auth
            await send(ws, type="subscribe", channel="alert")
            refused = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert refused["error"] == "unauthenticated" and closed.value.rcvd.code == 1008
        with pytest.raises(InvalidStatus) as wrong:  # a wrong key in the header: refused at the upgrade
            async with connect(ws_url(gateway), additional_headers={"x-api-key": "nope"}):
                pass
        assert wrong.value.response.status_code == 403
        async with connect(ws_url(gateway), additional_headers={"authorization": f"Bearer {key}"}) as ws:
            await subscribed(ws, channel="alert")
        async with connect(ws_url(gateway)) as ws:
            await send(ws, type="auth", api_key=key)
            assert json.loads(await ws.recv())["type"] == "authenticated"
            await subscribed(ws, channel="system")
            # Workers and queue depths now, then every interval; the in-process worker shows up alive.
            await receive_until(ws, lambda m: any(p.get("channel") == "system" and "queues" in p and
                                                  any(w["alive"] for w in p["workers"]) for p in m), 20)

    try:
        asyncio.run(scenario())
        assert metric_value(gateway, "websocket_auth_rejections_total", reason="missing_key") == 1
        assert metric_value(gateway, "websocket_auth_rejections_total", reason="unknown_key") == 1
        request = urllib.request.Request(f"http://127.0.0.1:{gateway.port}/api/overview")
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(request, timeout=5)
        assert denied.value.code == 401
        request.add_header("x-api-key", key)
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert "queues" in json.load(reply)
    finally:
        gateway.stop()


def test_a_slow_consumer_drops_its_oldest_market_data_and_never_stalls_a_fast_one(platform, redis_client):
    gateway = start_gateway_for(platform.settings, gateway_queue_size=32)
    symbol, count = "SLOW.WS", 400
    width = 2000  # ticks per message: ~50 kB pushes fill the slow client's socket buffers quickly

    async def scenario():
        async with connect(ws_url(gateway), max_queue=1, compression=None) as slow, \
                connect(ws_url(gateway), compression=None) as fast:
            await subscribed(slow, channel="market_data", symbols=[symbol])
            await subscribed(fast, channel="market_data", symbols=[symbol])
            assert metric_value(gateway, "websocket_connections_active") == 2
            # The slow client now stops reading; publish as the tick writer does.
            started = time.monotonic()
            fast_reading = asyncio.create_task(receive_until(fast, lambda m: len(m) >= count, 30))
            for i in range(count):
                redis_client.publish(data_keys.live_channel(symbol), json.dumps(
                    {"timestamp": [f"t{i:05d}"] * width, "price": [1.0] * width, "volume": [i] * width,
                     "indicators": {}}))
                await asyncio.sleep(0.005)  # a pace the fast client keeps up with
            fast_pushes = await fast_reading
            elapsed = time.monotonic() - started
            return fast_pushes, elapsed

    try:
        fast_pushes, elapsed = asyncio.run(scenario())
        assert [p["timestamp"][0] for p in fast_pushes] == [f"t{i:05d}" for i in range(count)]  # all, in order
        assert elapsed < 20, elapsed
        assert metric_value(gateway, "websocket_messages_dropped_total", channel="market_data",
                            reason="slow_consumer") > 0
        time.sleep(0.5)
        assert metric_value(gateway, "websocket_connections_active") == 0
    finally:
        gateway.stop()


def test_idle_clients_are_disconnected_and_pings_keep_them(platform):
    gateway = start_gateway_for(platform.settings, gateway_idle_timeout_seconds=1.0)

    async def scenario():
        async with connect(ws_url(gateway)) as quiet, connect(ws_url(gateway)) as chatty:
            for _ in range(4):  # 2 s: longer than the idle timeout
                await send(chatty, type="ping")
                assert json.loads(await asyncio.wait_for(chatty.recv(), 5)) == {"type": "pong"}
                await asyncio.sleep(0.5)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(quiet.recv(), 5)
            assert closed.value.rcvd.code == 1001
            await send(chatty, type="ping")
            assert json.loads(await asyncio.wait_for(chatty.recv(), 5)) == {"type": "pong"}

    try:
        asyncio.run(scenario())
    finally:
        gateway.stop()


def test_two_gateways_behind_a_balancer_push_the_same_job_from_redis(gateway, channel, platform):
    other = start_gateway_for(platform.settings)
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)

    async def follow(url, job_ids):
        async with connect(url) as ws:
            await subscribed(ws, channel="task_status", task_type="*")
            job_ids.append(None)  # ready
            return await receive_until(ws, lambda m: any(p.get("status") == "COMPLETED" for p in m), 60)

    async def scenario():
        ready: list = []
        first = asyncio.create_task(follow(ws_url(gateway), ready))
        second = asyncio.create_task(follow(ws_url(other), ready))
        while len(ready) < 2:
            await asyncio.sleep(0.02)
        request = backtest_pb2.BacktestRequest(**{**BACKTEST, "stock_codes": ["000001.SZ"]})
        job_id = (await asyncio.to_thread(stub.IntegratedBacktest, request)).backtest_id
        return job_id, await first, await second

    try:
        job_id, *both = asyncio.run(scenario())
    finally:
        other.stop()
    for pushes in both:
        statuses = [p["status"] for p in pushes if p.get("job_id") == job_id and "status" in p]
        assert statuses[0] == "PENDING" and statuses[-1] == "COMPLETED", statuses
