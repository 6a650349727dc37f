"""Real processes: the all-in-one entry point, a worker killed mid-job, Redis going away."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from api_proto import backtest_pb2, backtest_pb2_grpc, ml_pb2, ml_pb2_grpc
from tests.conftest import PROJECT_ROOT, wait_until
from utils.data import keys as data_keys
from utils.queue import keys
from utils.queue.jobs import JobStatus
from utils.queue.streams import JobQueue
from utils.redis_client import EmbeddedRedis, free_port, redis_from_settings


def serving(port: int) -> bool:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def test_all_in_one_server_runs_the_guide_backtest_and_stops_on_sigterm(tmp_path):
    grpc_port, metrics_port, http_port = free_port(), free_port(), free_port()
    env = {**os.environ, "REDIS_EMBEDDED": "always", "GRPC_HOST": "127.0.0.1", "GRPC_PORT": str(grpc_port),
           "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(http_port),
           "PROMETHEUS_PORT": str(metrics_port), "METRICS_HOST": "127.0.0.1", "DATA_DIR": str(tmp_path),
           "COMPUTE_DEVICE": "auto", "SHUTDOWN_GRACE_SECONDS": "5"}
    process = subprocess.Popen([sys.executable, "main_server.py"], cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: serving(grpc_port) or process.poll() is not None, timeout=60, interval=0.2)
        assert process.poll() is None, process.stdout.read()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = backtest_pb2_grpc.BacktestServiceStub(channel)
            response = stub.IntegratedBacktest(backtest_pb2.BacktestRequest(
                stock_codes=["000001.SZ", "600000.SH"], start_time="2024-01-01", end_time="2024-12-31",
                strategy_config=json.dumps({"strategy_type": "trend_following", "lookback_period": 20,
                                            "moving_average_window": 50}),
                initial_capital=1_000_000, commission_rate=0.0003))
            final = wait_until(lambda: (s := stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
                backtest_id=response.backtest_id))).status in (backtest_pb2.COMPLETED, backtest_pb2.FAILED) and s,
                timeout=90)
            assert final.status == backtest_pb2.COMPLETED, final.error_message
        import urllib.request
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'backtest_tasks_total{status="completed"} 1.0' in body
        assert "websocket_connections_active" in body  # the gateway runs in the all-in-one mode
        worker_body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port + 1}/metrics", timeout=5).read().decode()
        for text in (body, worker_body):  # no GPU here: said so, no gpu_utilization for a fake device
            assert 'gpu_metrics_available{source="none"} 0.0' in text and "gpu_utilization{" not in text
        page = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=5).read().decode()
        assert "<title>" in page
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        log = process.stdout.read()
        assert "embedded redis-server" in log and "shutting down" in log
        assert (tmp_path / "redis" / "appendonlydir").exists()  # AOF on, under the data dir
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def server_without_worker(settings):
    from services.server import create_server
    running = create_server(settings)
    yield running
    running.stop(grace=0)


def slow_training_request(rows: int = 6_000, features: int = 10) -> ml_pb2.TrainModelRequest:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, features))
    y = (x[:, 0] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    columns = {f"f{i}": np.round(x[:, i], 5).tolist() for i in range(features)}
    columns["target"] = y.tolist()
    return ml_pb2.TrainModelRequest(model_type="random_forest", training_data=json.dumps(columns),
                                    feature_columns=[f"f{i}" for i in range(features)], target_column="target",
                                    model_params=json.dumps({"n_estimators": 200, "max_depth": 8}))


def test_worker_killed_mid_job_is_restarted_and_the_job_completes_once(settings, server_without_worker):
    from utils.supervisor import WorkerSupervisor
    from utils.tasks.runtime import run_worker_process
    restarts = []
    supervisor = WorkerSupervisor(run_worker_process, settings, 1, on_restart=lambda: restarts.append(1)).start()
    queue = JobQueue(redis_from_settings(settings))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server_without_worker.port}") as channel:
            stub = ml_pb2_grpc.MLServiceStub(channel)
            task_id = stub.TrainModel(slow_training_request(), timeout=30).task_id
            record = wait_until(lambda: (r := queue.get(task_id)) and r.status is JobStatus.RUNNING
                                and r.progress > 0 and r, timeout=60)
            victim = int(record.owner.split("-")[-2])
            assert victim in supervisor.pids()
            os.kill(victim, signal.SIGKILL)
            killed_at = time.time()  # wall clock, like the job record's finished_at
            final = wait_until(lambda: (s := stub.GetTrainingStatus(ml_pb2.TrainingStatusRequest(task_id=task_id)))
                               .status in ("completed", "failed") and s, timeout=120)
            assert final.status == "completed", final.error
            assert final.attempts == 2 and restarts == [1]
            record = queue.get(task_id)
            assert record.finished_at >= killed_at  # the kill hit an unfinished job; the re-run finished it
            assert queue.redis.exists(keys.result(task_id)) == 1
            assert queue.stats("training")["completed"] == 1 and queue.stats("training")["started"] == 2
            assert len(queue.redis.zrange(data_keys.MODELS, 0, -1)) == 1
            assert queue.redis.xlen(keys.stream("training", "normal")) == 0
    finally:
        supervisor.stop(timeout=10)


def test_redis_outage_answers_unavailable_and_recovers(tmp_path, settings_factory):
    from services.server import create_server
    redis_dir = tmp_path / "outage-redis"
    server_redis = EmbeddedRedis(redis_dir, appendonly=True).start()
    settings = settings_factory(redis_port=server_redis.port)
    running = create_server(settings)
    restarted = None
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = backtest_pb2_grpc.BacktestServiceStub(channel)
            request = backtest_pb2.BacktestStatusRequest(backtest_id="bt-missing")
            with pytest.raises(grpc.RpcError) as error:
                stub.GetBacktestStatus(request)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
            server_redis.kill()
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as error:
                stub.GetBacktestStatus(request, timeout=60)
            # UNAVAILABLE, not DEADLINE_EXCEEDED: the server answered instead of hanging on Redis.
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "Redis" in error.value.details() and "Traceback" not in error.value.details()
            wait_until(lambda: not serving(running.port), timeout=60)
            while time.monotonic() - started < 10:  # a 10 s outage: every call answers UNAVAILABLE
                with pytest.raises(grpc.RpcError) as error:
                    stub.GetBacktestStatus(request, timeout=60)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
                time.sleep(1.0)
            # Same address again: the server reconnects by itself.
            restarted = EmbeddedRedis(redis_dir, port=server_redis.port, appendonly=True).start()
            wait_until(lambda: serving(running.port), timeout=60)
            with pytest.raises(grpc.RpcError) as error:
                stub.GetBacktestStatus(request)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        running.stop(grace=0)
        server_redis.stop()
        if restarted:
            restarted.stop()
