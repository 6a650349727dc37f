"""A real Prometheus scrapes the test server and worker: the guide's metrics arrive, every alert
and recording rule evaluates on them without error, and every Grafana panel's query runs.

Needs the `prometheus` binary (Debian: `apt-get install prometheus`); skipped without it.
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import start_http_server

from api_proto import (backtest_pb2, backtest_pb2_grpc, ml_pb2, ml_pb2_grpc, realtime_pb2,
                       realtime_pb2_grpc)
from tests.conftest import wait_until
from tests.system_packages import commands
from tests.unit.test_monitoring_config import dashboard_queries, dashboard_variable_queries, load_rules
from utils.redis_client import free_port

yaml = pytest.importorskip("yaml")

@pytest.fixture(scope="session")
def prometheus_path() -> str:
    """Debian's prometheus, installed with apt-get when missing."""
    return commands(("prometheus",), ("prometheus",))[0]

TRAINING_DATA = {"price": [10.0, 10.5, 11.0, 10.8, 11.2], "volume": [1e6, 1.1e6, 1.2e6, 1.15e6, 1.3e6],
                 "sma_20": [10.2, 10.3, 10.4, 10.5, 10.6], "rsi": [50, 55, 60, 58, 62], "target": [1, 1, 0, 1, 1]}


class PrometheusServer:
    """A throw-away `prometheus` process: temp storage, a free port, 1 s scrapes."""

    def __init__(self, binary: str, directory, server_port: int, worker_port: int) -> None:
        rules = load_rules()
        for group in rules["groups"]:
            group.pop("interval", None)  # evaluate every group each second, not every 30 s
        (directory / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(directory / "alerts.yml")],
                  "scrape_configs": [
                      {"job_name": "quant-server", "static_configs": [{"targets": [f"127.0.0.1:{server_port}"]}]},
                      {"job_name": "quant-workers", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}]}
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(directory / "prometheus.log", "w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._ready, timeout=30, interval=0.1)
        except AssertionError:
            self.stop()
            raise AssertionError(f"prometheus did not become ready:\n{(directory / 'prometheus.log').read_text()}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}")
        try:
            return urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200
        except OSError:
            return False

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            body = urllib.request.urlopen(url, timeout=10).read()
        except urllib.error.HTTPError as exc:  # bad queries answer 400/422 with a JSON error
            body = exc.read()
        return json.loads(body)

    def query(self, expr: str) -> list[dict]:
        reply = self.api("query", query=expr)
        assert reply["status"] == "success", f"{expr}: {reply.get('errorType')}: {reply.get('error')}"
        return reply["data"]["result"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def drive_traffic(channel) -> None:
    """What a user does: a backtest, a training job and a prediction, a tick stream, features."""
    backtests = backtest_pb2_grpc.BacktestServiceStub(channel)
    submitted = backtests.IntegratedBacktest(backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ"], start_time="2024-01-01", end_time="2024-06-30",
        strategy_config=json.dumps({"strategy_type": "trend_following"}), initial_capital=1e6))
    with pytest.raises(Exception):
        backtests.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(backtest_id="bt-missing"))  # NOT_FOUND

    ml = ml_pb2_grpc.MLServiceStub(channel)
    training = ml.TrainModel(ml_pb2.TrainModelRequest(
        model_type="random_forest", training_data=json.dumps(TRAINING_DATA),
        feature_columns=["price", "volume", "sma_20", "rsi"], target_column="target",
        model_params=json.dumps({"n_estimators": 10, "max_depth": 3, "n_jobs": 1})))

    realtime = realtime_pb2_grpc.RealTimeServiceStub(channel)
    start = datetime(2025, 3, 3, 9, 30, tzinfo=timezone.utc)
    ticks = [realtime_pb2.StreamDataRequest(stock_code="OBS.SZ", price=10.0 + 0.01 * i, volume=100.0,
                                            timestamp=(start + timedelta(seconds=i)).isoformat()) for i in range(5)]
    responses = list(realtime.StreamMarketData(iter(ticks), timeout=30))
    assert len(responses) == 5 and not [r.error for r in responses if r.error]
    features = realtime_pb2.FeatureRequest(stock_code="000001.SZ", feature_types=["sma_20", "rsi"])
    realtime.ComputeFeatures(features)
    assert realtime.ComputeFeatures(features).cached  # a hit for cache_hit_rate{cache="features"}
    realtime.ComputeFeatures(realtime_pb2.FeatureRequest(stock_codes=["000001.SZ", "600000.SH"],
                                                         feature_types=["sma_20"]))  # a features job

    wait_until(lambda: backtests.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
        backtest_id=submitted.backtest_id)).status == backtest_pb2.COMPLETED, timeout=60)
    status = wait_until(lambda: (s := ml.GetTrainingStatus(ml_pb2.TrainingStatusRequest(task_id=training.task_id)))
                        .status in ("completed", "failed", "cancelled") and s, timeout=60)
    assert status.status == "completed", status.error
    ml.Predict(ml_pb2.PredictRequest(model_id=status.model_id, input_data=json.dumps(
        {"price": [11.5], "volume": [1.4e6], "sma_20": [10.7], "rsi": [65]})))


@pytest.fixture
def prometheus(prometheus_path, platform, channel, tmp_path):
    """Prometheus scraping the server's and the in-process worker's /metrics after real traffic."""
    endpoints = [start_http_server(0, addr="127.0.0.1", registry=registry)[0]
                 for registry in (platform.registry, platform.worker.worker.metrics.registry)]
    server = PrometheusServer(prometheus_path, tmp_path, *(endpoint.server_address[1] for endpoint in endpoints))
    try:
        drive_traffic(channel)
        # Wait for a scrape after the last call and for the rules to have evaluated on it.
        wait_until(lambda: server.query('grpc_requests_total{method="Predict"}')
                   and server.query('job_duration_seconds_count{job="quant-workers", task_type="training"}'),
                   timeout=30, interval=0.2)
        time.sleep(2.5)
        yield server
    finally:
        server.stop()
        for endpoint in endpoints:
            endpoint.shutdown()
            endpoint.server_close()


# Each expression must return at least one series (a value filter in it is part of the check).
EXPECTED_SERIES = [
    # the usage guide's names
    'gpu_metrics_available{job="quant-server", source="none"} == 0',  # no GPU on the test host
    'backtest_tasks_total{status="completed"} >= 1',
    'backtest_tasks_total{status="submitted"} >= 1',
    'realtime_streams_active{kind="publish"}',
    'ml_training_tasks_total{status="completed"} >= 1',
    'cache_hit_rate{cache="features"} > 0',
    # queue
    'queue_depth{task_type="backtest", priority="normal", state="waiting"}',
    'queue_depth{task_type="training", state="in_flight"}',
    'dead_letter_jobs{task_type="backtest"}',
    'queue_redis_up == 1',
    'feature_tasks_total{status="completed"} >= 1',
    # latency and RPC outcomes
    'grpc_request_duration_seconds_bucket{method="IntegratedBacktest", le="+Inf"} >= 1',
    'grpc_requests_total{method="StreamMarketData", code="OK"} >= 1',
    'grpc_requests_total{method="GetBacktestStatus", code="NOT_FOUND"} >= 1',
    'histogram_quantile(0.99, sum by (method, le) (rate(grpc_request_duration_seconds_bucket[1m])))',
    # from the worker's own endpoint
    'job_duration_seconds_count{job="quant-workers", task_type="backtest", outcome="completed"} >= 1',
    'job_handoff_seconds_count{job="quant-workers", task_type="training"} >= 1',
    'jobs_in_progress{job="quant-workers", task_type="backtest"}',
    # streams and Predict
    'realtime_ticks_processed_total >= 5',
    'ml_predictions_total >= 1',
    'up{job="quant-server"} == 1',
    'up{job="quant-workers"} == 1',
]


def test_scraped_metrics_have_series_after_real_traffic(prometheus):
    missing = [expr for expr in EXPECTED_SERIES if not prometheus.query(expr)]
    assert not missing, f"no series for: {missing}"


def test_every_rule_evaluates_and_nothing_alerts_on_a_healthy_platform(prometheus):
    groups = prometheus.api("rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    expected = sum(len(group["rules"]) for group in load_rules()["groups"])
    assert len(rules) == expected
    wait_until(lambda: all(rule["health"] == "ok" or rule.get("lastError")
                           for group in prometheus.api("rules")["data"]["groups"] for rule in group["rules"]),
               timeout=10, interval=0.2)
    rules = [rule for group in prometheus.api("rules")["data"]["groups"] for rule in group["rules"]]
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not broken, broken
    # The recording rules produced series from the real counters.
    assert {series["metric"]["task_type"] for series in prometheus.query("task_type:quant_jobs_finished:increase10m")} \
        == {"backtest", "training", "features"}

    def active_alerts() -> list[str]:
        return [rule["name"] for group in prometheus.api("rules")["data"]["groups"] for rule in group["rules"]
                if rule["type"] == "alerting" and rule["state"] != "inactive"]

    # A scrape that timed out while the test process was busy makes `up` 0 for a second
    # (WorkerDown pending); on a healthy platform every alert is inactive again at the next scrape.
    try:
        wait_until(lambda: not active_alerts(), timeout=10, interval=0.5)
    except AssertionError:
        active = active_alerts()
        assert not active, (f"alerts pending/firing on a healthy platform: {active}; up over the last minute: "
                            f"{prometheus.query('up[1m]')}; targets: {prometheus.api('targets')['data']['activeTargets']}")


def test_every_dashboard_query_runs(prometheus):
    errors = []
    for dashboard, title, expr in dashboard_queries():
        reply = prometheus.api("query", query=expr)
        if reply["status"] != "success":
            errors.append(f"{dashboard} / {title}: {expr}\n    {reply.get('errorType')}: {reply.get('error')}")
    for dashboard, label, selector in dashboard_variable_queries():
        reply = prometheus.api(f"label/{label}/values", **{"match[]": selector})
        if reply["status"] != "success":  # empty is fine (no GPU here)
            errors.append(f"{dashboard} variable {label} over {selector}: {reply}")
    assert not errors, "\n".join(errors)
