"""The gateway's alert channel: a job failure and its dead letter, a worker whose heartbeat lapses,
and a live portfolio breaching a risk limit (PortfolioService.WatchRisk on gRPC-streamed ticks)."""
from __future__ import annotations

import asyncio
import threading
import time

import grpc
from websockets.asyncio.client import connect

from api_proto import portfolio_pb2, portfolio_pb2_grpc, realtime_pb2, realtime_pb2_grpc
from tests.gateway_helpers import receive_until, start_gateway_for, subscribed, ws_url
from utils.queue import keys
from utils.queue.jobs import JobSpec


def drain(call) -> None:
    try:
        for _update in call:
            pass
    except grpc.RpcError:
        pass  # cancelled at the end


def test_job_failure_dead_letter_worker_loss_and_risk_breach_alerts(platform, channel, redis_client):
    gateway = start_gateway_for(platform.settings, gateway_system_interval_seconds=0.2)
    portfolio = portfolio_pb2_grpc.PortfolioServiceStub(channel)
    realtime = realtime_pb2_grpc.RealTimeServiceStub(channel)
    stop = threading.Event()

    def watch_and_push_prices():
        portfolio.SetRiskLimits(portfolio_pb2.RiskLimitsRequest(
            portfolio_id="desk-ws", weights={"000001.SZ": 0.5, "600000.SH": 0.5}, lookback_days=60,
            limits=portfolio_pb2.RiskLimits(max_weight=0.6)))
        call = portfolio.WatchRisk(portfolio_pb2.WatchRiskRequest(portfolio_id="desk-ws"), timeout=60)
        threading.Thread(target=drain, args=(call,), daemon=True).start()
        def jumps():  # 000001.SZ jumps: its weight drifts past 0.6
            for second in range(300):
                if stop.is_set():
                    return
                yield realtime_pb2.StreamDataRequest(stock_code="000001.SZ", price=1e6, volume=1,
                                                     timestamp=f"2030-01-02T10:{second // 60:02d}:{second % 60:02d}Z")
                time.sleep(0.1)
        try:
            responses = list(realtime.StreamMarketData(jumps(), timeout=60))
            assert not any(r.error for r in responses), responses[0].error
        finally:
            call.cancel()

    async def scenario():
        async with connect(ws_url(gateway)) as ws:
            await subscribed(ws, channel="alert")
            # A job that fails for good: FAILED is announced, and it lands in the dead-letter stream.
            job_id = platform.worker.queue.enqueue(JobSpec("backtest", {"strategy_config": {"strategy_type": "?"}},
                                                           max_attempts=1))
            # A worker that stops heartbeating without saying goodbye.
            redis_client.hset(keys.WORKERS, "ghost-worker", "cpu")
            redis_client.set(keys.worker_alive("ghost-worker"), "cpu", px=3000)  # seen alive, then lapses
            risk = threading.Thread(target=watch_and_push_prices, daemon=True)
            risk.start()
            try:
                kinds = ("job_failed", "dead_letter", "worker_lost", "risk_breach")
                alerts = await receive_until(ws, lambda m: {p.get("kind") for p in m} >= set(kinds), 40)
            finally:
                stop.set()
                await asyncio.to_thread(risk.join, 20)
            return job_id, {p["kind"]: p for p in alerts if p.get("channel") == "alert"}

    try:
        job_id, alerts = asyncio.run(scenario())
    finally:
        gateway.stop()
    assert alerts["job_failed"]["job_id"] == job_id and alerts["job_failed"]["task_type"] == "backtest"
    assert "strategy" in alerts["job_failed"]["error"]
    assert alerts["dead_letter"]["job_id"] == job_id and alerts["dead_letter"]["attempts"] == 1
    assert alerts["worker_lost"]["worker_id"] == "ghost-worker"
    breach = alerts["risk_breach"]
    assert breach["portfolio_id"] == "desk-ws" and breach["limit"] == "max_weight"
    assert breach["value"] > breach["threshold"] == 0.6 and "000001.SZ" in breach["message"]
    assert all(alert["time"].endswith("Z") for alert in alerts.values())
