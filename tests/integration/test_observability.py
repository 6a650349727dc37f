"""Metrics endpoint, health service and reflection, as an operator would use them."""
from __future__ import annotations

import json
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from api_proto import backtest_pb2, backtest_pb2_grpc, realtime_pb2, realtime_pb2_grpc
from tests.conftest import wait_until
from utils.monitoring import serve_metrics


def scrape(platform) -> str:
    if not hasattr(platform, "metrics_port"):
        platform.metrics_port = serve_metrics(platform.registry, "127.0.0.1", 0)
    return urllib.request.urlopen(f"http://127.0.0.1:{platform.metrics_port}/metrics", timeout=5).read().decode()


def test_guide_metric_names_are_served_after_traffic(platform, channel):
    backtests = backtest_pb2_grpc.BacktestServiceStub(channel)
    submitted = backtests.IntegratedBacktest(backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ"], start_time="2024-01-01", end_time="2024-06-30",
        strategy_config=json.dumps({"strategy_type": "trend_following"}), initial_capital=1e6))
    wait_until(lambda: backtests.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
        backtest_id=submitted.backtest_id)).status == backtest_pb2.COMPLETED)
    realtime = realtime_pb2_grpc.RealTimeServiceStub(channel)
    realtime.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code="000001.SZ", feature_types=["rsi"]))
    body = scrape(platform)
    # no GPU here: the series say so (no gpu_utilization sample for a fake "cpu" device)
    assert "gpu_utilization{" not in body
    for needle in ('gpu_metrics_available{source="none"} 0.0',
                   'backtest_tasks_total{status="submitted"} 1.0',
                   'backtest_tasks_total{status="completed"} 1.0',
                   'ml_training_tasks_total{status="submitted"} 0.0',
                   'realtime_streams_active{kind="publish"} 0.0',
                   'cache_hit_rate{cache="features"} 0.0',
                   'queue_depth{priority="normal",state="waiting",task_type="backtest"} 0.0',
                   'dead_letter_jobs{task_type="backtest"} 0.0',
                   'queue_redis_up 1.0',
                   'realtime_tick_backlog 0.0',
                   'realtime_state_snapshots_total',
                   'grpc_requests_total{code="OK",method="IntegratedBacktest"} 1.0',
                   'grpc_request_duration_seconds_bucket{le="0.005",method="ComputeFeatures"}'):
        assert needle in body, needle


def test_errors_are_counted_by_code(platform, channel):
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    for _ in range(2):
        try:
            stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(backtest_id="bt-nope"))
        except grpc.RpcError:
            pass
    assert 'grpc_requests_total{code="NOT_FOUND",method="GetBacktestStatus"} 2.0' in scrape(platform)


def test_health_service_reports_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    reply = health.Check(health_pb2.HealthCheckRequest(service="gpu_api.backtest.BacktestService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_every_service(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"gpu_api.backtest.BacktestService", "gpu_api.realtime.RealTimeService", "gpu_api.ml.MLService",
            "gpu_api.market_data.MarketDataService", "grpc.health.v1.Health"} <= services
    from google.protobuf.descriptor_pool import DescriptorPool
    pool = DescriptorPool(database)
    method = pool.FindServiceByName("gpu_api.backtest.BacktestService").methods_by_name["IntegratedBacktest"]
    assert method.input_type.fields_by_name["strategy_config"].type == method.input_type.fields_by_name[
        "strategy_config"].TYPE_STRING
