"""Remote GPU inference with real processes: `main_server.py inference` as a subprocess, a main
server with ML_GPU_INFERENCE_URL pointing at it, both loading the trained model from the shared
Redis model store (MODEL_STORE_URI=redis://). Remote up, killed, slow, failing; the breaker."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest

from api_proto import ml_pb2, ml_pb2_grpc
from tests.conftest import PROJECT_ROOT, InProcessWorker, wait_until
from tests.integration.test_api_ml import FEATURES, classification_columns, wait_trained
from tests.integration.test_processes import serving
from utils.redis_client import free_port

TIMEOUT = 1.5  # ML_REMOTE_TIMEOUT_SECONDS
FAILURES = 2  # ML_REMOTE_BREAKER_FAILURES
COOLDOWN = 3.0  # ML_REMOTE_BREAKER_COOLDOWN_SECONDS


class Remote:
    """`python main_server.py inference` on ``port`` against the test Redis."""

    def __init__(self, tmp_path, redis_port: int, port: int, **env: str) -> None:
        self.port, self.metrics_port = port, free_port()
        self.env = {**os.environ, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_port),
                    "REDIS_EMBEDDED": "never", "MODEL_STORE_URI": "redis://", "DATA_DIR": str(tmp_path / "gpu-box"),
                    "GRPC_HOST": "127.0.0.1", "INFERENCE_PORT": str(port), "ML_INFERENCE_DEVICE": "cpu",
                    "PROMETHEUS_PORT": str(self.metrics_port), "METRICS_HOST": "127.0.0.1",
                    "ML_GPU_INFERENCE_URL": "", **env}
        self.process: subprocess.Popen | None = None

    def start(self) -> "Remote":
        self.process = subprocess.Popen([sys.executable, "main_server.py", "inference"], cwd=PROJECT_ROOT,
                                        env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: serving(self.port) or self.process.poll() is not None, timeout=90, interval=0.2)
        assert self.process.poll() is None, self.process.stdout.read()
        return self

    def warm(self, model_id: str) -> None:
        """Load the model on the remote (a cold load can outlast the short test timeout)."""
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            ml_pb2_grpc.MLServiceStub(channel).Predict(
                ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(ROWS)), timeout=60)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def remote_port():
    return free_port()


@pytest.fixture
def remotes(tmp_path, redis_server):
    started: list[Remote] = []

    def start(port: int, **env: str) -> Remote:
        started.append(Remote(tmp_path, redis_server.port, port, **env).start())
        return started[-1]
    yield start
    for remote in started:
        remote.kill()


@pytest.fixture
def cpu_server(settings_factory, redis_client, remote_port):
    """The main server (in process, CPU) with ML_GPU_INFERENCE_URL and one in-process worker."""
    from services.server import create_server
    settings = settings_factory(model_store_uri="redis://", ml_gpu_inference_url=f"127.0.0.1:{remote_port}",
                                ml_remote_timeout_seconds=TIMEOUT, ml_remote_breaker_failures=FAILURES,
                                ml_remote_breaker_cooldown_seconds=COOLDOWN)
    running = create_server(settings)
    worker = InProcessWorker(settings).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    running.stub = ml_pb2_grpc.MLServiceStub(channel)
    yield running
    channel.close()
    worker.stop()
    running.stop(grace=0)


ROWS = {name: values[:20] for name, values in classification_columns(n=20, seed=3).items() if name in FEATURES}


def trained_model(stub) -> str:
    request = ml_pb2.TrainModelRequest(model_type="random_forest", training_data=json.dumps(classification_columns()),
                                       feature_columns=FEATURES, target_column="target",
                                       model_params=json.dumps({"n_estimators": 20, "max_depth": 5, "n_jobs": 1}))
    return wait_trained(stub, stub.TrainModel(request).task_id).model_id


def predict(stub, model_id: str) -> tuple[ml_pb2.PredictResponse, float]:
    started = time.monotonic()
    response = stub.Predict(ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(ROWS)), timeout=30)
    return response, time.monotonic() - started


def fallbacks(server, port: int, reason: str) -> float:
    value = server.registry.get_sample_value("predict_fallbacks_total", {
        "from": f"remote:127.0.0.1:{port}", "to": "local", "reason": reason})
    return value or 0.0


def test_remote_answers_then_a_killed_remote_falls_back_and_the_breaker_opens_and_closes(
        cpu_server, remotes, remote_port):
    model_id = trained_model(cpu_server.stub)
    remote = remotes(remote_port)
    remote.warm(model_id)

    answer, _ = predict(cpu_server.stub, model_id)
    assert answer.served_by == f"remote:127.0.0.1:{remote_port}/cpu" and answer.device == "cpu"
    # The inference role serves Predict only, with the usual metrics endpoint.
    with grpc.insecure_channel(f"127.0.0.1:{remote_port}") as channel:
        with pytest.raises(grpc.RpcError) as error:
            ml_pb2_grpc.MLServiceStub(channel).ListModels(ml_pb2.ListModelsRequest(), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    body = urllib.request.urlopen(f"http://127.0.0.1:{remote.metrics_port}/metrics", timeout=5).read().decode()
    assert 'grpc_requests_total{code="OK",method="Predict"} 2.0' in body

    remote.kill()
    local, seconds = predict(cpu_server.stub, model_id)
    # Refused at once, then the retry waits for the connection until the timeout: one timeout.
    assert local.served_by == "local:cpu (fallback: unavailable)" and seconds < TIMEOUT + 1
    np.testing.assert_allclose(answer.predictions, local.predictions, atol=1e-6)
    np.testing.assert_allclose([row.values for row in answer.probabilities],
                               [row.values for row in local.probabilities], atol=1e-6)
    assert list(answer.classes) == list(local.classes)

    for _ in range(FAILURES - 1):  # the FAILURES-th failed request in a row opens the breaker
        assert predict(cpu_server.stub, model_id)[0].served_by == "local:cpu (fallback: unavailable)"
    skipped, seconds = predict(cpu_server.stub, model_id)
    assert skipped.served_by == "local:cpu (fallback: breaker_open)" and seconds < 0.5
    assert fallbacks(cpu_server, remote_port, "unavailable") == FAILURES
    assert fallbacks(cpu_server, remote_port, "breaker_open") == 1
    opened = time.monotonic()

    remotes(remote_port).warm(model_id)  # back on the same address; skipped until the cool-down ends
    if time.monotonic() - opened < COOLDOWN - 0.3:
        assert predict(cpu_server.stub, model_id)[0].served_by.endswith("(fallback: breaker_open)")
    time.sleep(max(0.0, COOLDOWN - (time.monotonic() - opened)) + 0.1)
    trial, seconds = predict(cpu_server.stub, model_id)  # half-open: one trial, which succeeds and closes it
    assert trial.served_by.startswith("remote:"), (trial.served_by, seconds)
    assert all(predict(cpu_server.stub, model_id)[0].served_by.startswith("remote:") for _ in range(3))
    assert cpu_server.registry.get_sample_value("predict_remote_seconds_count", {"outcome": "ok"}) == 5


def test_slow_remote_falls_back_after_the_timeout_and_the_open_breaker_skips_the_wait(
        cpu_server, remotes, remote_port):
    model_id = trained_model(cpu_server.stub)
    remotes(remote_port, INFERENCE_TEST_HOOKS="1", INFERENCE_TEST_DELAY_SECONDS="5")
    for _ in range(FAILURES):
        answer, seconds = predict(cpu_server.stub, model_id)
        assert answer.served_by == "local:cpu (fallback: timeout)"
        assert TIMEOUT <= seconds < TIMEOUT + 1  # one try: a timeout is not retried
    assert fallbacks(cpu_server, remote_port, "timeout") == FAILURES
    answer, seconds = predict(cpu_server.stub, model_id)
    assert answer.served_by == "local:cpu (fallback: breaker_open)" and seconds < 0.5
    time.sleep(COOLDOWN + 0.1)
    answer, seconds = predict(cpu_server.stub, model_id)  # the half-open trial times out: open again
    assert answer.served_by == "local:cpu (fallback: timeout)" and seconds >= TIMEOUT
    answer, seconds = predict(cpu_server.stub, model_id)
    assert answer.served_by == "local:cpu (fallback: breaker_open)" and seconds < 0.5


def test_remote_error_falls_back_with_reason_error(cpu_server, remotes, remote_port):
    model_id = trained_model(cpu_server.stub)
    remotes(remote_port, INFERENCE_TEST_HOOKS="1", INFERENCE_TEST_ERROR="true")
    answer, seconds = predict(cpu_server.stub, model_id)
    assert answer.served_by == "local:cpu (fallback: error)" and seconds < TIMEOUT
    assert fallbacks(cpu_server, remote_port, "error") == 1
    # A model nobody has: after the remote's error the local path answers NOT_FOUND.
    with pytest.raises(grpc.RpcError) as error:
        cpu_server.stub.Predict(ml_pb2.PredictRequest(model_id="no-such-model", input_data=json.dumps(ROWS)))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
