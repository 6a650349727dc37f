"""Predict serving over real gRPC + Redis: micro-batching, device fallback, ONNX agreement, cache."""
from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

from api_proto import ml_pb2, ml_pb2_grpc
from utils.serving import device_chain, serving_model
from utils.serving.onnx_forest import ORT_MAX_ROWS, FastForest
from tests.integration.test_api_ml import FEATURES, classification_columns, train
from utils.engine.models import ModelConfig, ModelStore, RandomForestPredictor

N_CLIENTS = 50


@pytest.fixture
def settings(settings_factory, redis_client):
    # A long batching window and enough RPC threads that 50 concurrent requests meet in batches;
    # a short device timeout so that the hanging-GPU tests finish quickly.
    return settings_factory(predict_max_wait_ms=20, predict_timeout_seconds=0.5, grpc_max_workers=64)


@pytest.fixture
def stub(channel):
    return ml_pb2_grpc.MLServiceStub(channel)


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


def rows_of(columns, start, count):
    return {name: columns[name][start:start + count] for name in FEATURES}


def concurrent_predicts(stub, model_id, requests):
    """Send every request at once (one thread each); returns responses or RpcErrors in order."""
    barrier = threading.Barrier(len(requests))
    results = [None] * len(requests)

    def send(index, columns):
        barrier.wait()
        try:
            results[index] = stub.Predict(ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(columns)),
                                          timeout=30)
        except grpc.RpcError as error:
            results[index] = error
    threads = [threading.Thread(target=send, args=(i, c)) for i, c in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_requests_get_their_own_rows_and_are_coalesced(platform, stub):
    columns = classification_columns(n=600, seed=3)
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES,
                     model_params=json.dumps({"n_estimators": 100}))
    direct = ModelStore(platform.settings.models_path).load(model_id)
    requests = [rows_of(columns, 7 * i, 1 + i % 3) for i in range(N_CLIENTS)]

    responses = concurrent_predicts(stub, model_id, requests)

    for request, response in zip(requests, responses):
        assert not isinstance(response, grpc.RpcError), response
        features = np.column_stack([request[name] for name in FEATURES])
        assert list(response.predictions) == direct.predict(features).tolist()
        np.testing.assert_allclose([p.values for p in response.probabilities], direct.predict_proba(features),
                                   atol=1e-6)
        assert response.device == "cpu" and response.prediction_time > 0
    registry = platform.registry
    calls = sample(registry, "ml_predict_batch_rows_count", model_type="random_forest", device="cpu")
    rows = sample(registry, "ml_predict_batch_rows_sum", model_type="random_forest", device="cpu")
    assert rows == sum(len(r["f0"]) for r in requests)
    assert 1 <= calls < N_CLIENTS / 2, f"{calls} model calls for {N_CLIENTS} concurrent requests"
    # Concurrent first requests share one load (and one batcher): one miss, the rest hits.
    assert sample(registry, "cache_requests_total", cache="models", result="miss") == 1
    assert sample(registry, "cache_requests_total", cache="models", result="hit") == N_CLIENTS - 1
    assert sample(registry, "cache_hit_rate", cache="models") == pytest.approx((N_CLIENTS - 1) / N_CLIENTS)
    assert sample(registry, "ml_predictions_total", model_type="random_forest", device="cpu") == rows


def test_regression_rows_match_the_native_model(platform, stub):
    x, y = make_regression(n_samples=300, n_features=4, noise=1.0, random_state=2)
    columns = {**{name: x[:, i].tolist() for i, name in enumerate(FEATURES)}, "ret": y.tolist()}
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES, target_column="ret")
    direct = ModelStore(platform.settings.models_path).load(model_id)
    requests = [rows_of(columns, 5 * i, 2) for i in range(20)]
    for request, response in zip(requests, concurrent_predicts(stub, model_id, requests)):
        expected = direct.predict(np.column_stack([request[name] for name in FEATURES]))
        np.testing.assert_allclose(response.predictions, expected, rtol=1e-12)  # native float64, no ORT
        assert not response.probabilities


def test_validation_errors_name_columns_while_others_are_served(platform, stub):
    columns = classification_columns(n=200, seed=4)
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES)
    good = rows_of(columns, 0, 2)
    bad = [({k: v for k, v in good.items() if k != "f2"}, "missing column(s): 'f2'"),
           ({**good, "volume": [1, 2]}, "unexpected column(s): 'volume'"),
           ({**good, "f1": ["up", "down"]}, "non-numeric column(s): 'f1'")]
    requests = [good] * 10 + [columns for columns, _ in bad]
    responses = concurrent_predicts(stub, model_id, requests)
    assert all(len(r.predictions) == 2 for r in responses[:10])
    for (_, needle), error in zip(bad, responses[10:]):
        assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "input_data" in error.details() and needle in error.details(), error.details()


def test_batching_can_be_switched_off(settings_factory, redis_client):
    from services.server import create_server
    settings = settings_factory(predict_max_batch_rows=0)
    running = create_server(settings)
    from tests.conftest import InProcessWorker
    worker = InProcessWorker(settings).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = ml_pb2_grpc.MLServiceStub(channel)
            columns = classification_columns(n=200, seed=5)
            model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES)
            responses = concurrent_predicts(stub, model_id, [rows_of(columns, i, 1) for i in range(8)])
            assert all(len(r.predictions) == 1 for r in responses)
        assert sample(running.registry, "ml_predict_batch_rows_count", model_type="random_forest", device="cpu") == 8
    finally:
        worker.stop()
        running.stop(grace=0)


# ------------------------------------------------------------------ device fallback
class FakeGpuCopy:
    """What ``to_device`` returns in these tests: a third-party GPU path we can break."""

    def __init__(self, predictor, mode, release):
        self.predictor, self.mode, self.release = predictor, mode, release

    def _fail_or_hang(self):
        if self.mode == "error":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if self.mode == "hang":
            self.release.wait(30)

    def predict(self, features):
        self._fail_or_hang()
        return self.predictor.predict(features)

    def predict_proba(self, features):
        return self.predictor.predict_proba(features)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend the server has gpu:0 and random forests can move there; ``mode`` picks the failure."""
    state = {"mode": "ok"}
    release = threading.Event()
    monkeypatch.setattr(device_chain, "serving_gpu", lambda backend: "gpu:0")
    monkeypatch.setattr(RandomForestPredictor, "to_device",
                        lambda self, device: FakeGpuCopy(self, state["mode"], release), raising=False)
    yield state
    release.set()  # let hung calls finish


def predict_one(stub, model_id, columns):
    return stub.Predict(ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(rows_of(columns, 0, 3))),
                        timeout=30)


def fallbacks(platform, reason):
    return sample(platform.registry, "predict_fallbacks_total", **{"from": "gpu:0", "to": "cpu", "reason": reason})


def test_a_working_gpu_serves_and_says_so(platform, stub, fake_gpu):
    columns = classification_columns(n=200, seed=6)
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES)
    response = predict_one(stub, model_id, columns)
    assert response.device == "gpu:0" and len(response.predictions) == 3
    assert sample(platform.registry, "ml_predictions_total", model_type="random_forest", device="gpu:0") == 3


@pytest.mark.parametrize("mode,reason", [("error", "error"), ("hang", "timeout")])
def test_a_failing_gpu_falls_back_to_the_cpu(platform, stub, fake_gpu, mode, reason):
    columns = classification_columns(n=200, seed=7)
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES)
    direct = ModelStore(platform.settings.models_path).load(model_id)
    expected = direct.predict(np.column_stack([columns[name][:3] for name in FEATURES])).tolist()
    fake_gpu["mode"] = mode

    began = time.monotonic()
    response = predict_one(stub, model_id, columns)
    assert response.device == "cpu" and list(response.predictions) == expected
    assert fallbacks(platform, reason) == 1
    if mode == "hang":  # lower bounds only: a "timeout" fallback cannot happen before the timeout
        assert time.monotonic() - began >= platform.settings.predict_timeout_seconds
        assert response.prediction_time >= platform.settings.predict_timeout_seconds  # the real time it took

    # Within the cool-down the broken GPU is skipped: a "cooldown" fallback, no second try of the GPU.
    again = predict_one(stub, model_id, columns)
    assert again.device == "cpu" and list(again.predictions) == expected
    assert fallbacks(platform, "cooldown") == 1 and fallbacks(platform, reason) == 1


@pytest.mark.parametrize("mode,code", [("hang", grpc.StatusCode.DEADLINE_EXCEEDED),
                                       ("error", grpc.StatusCode.UNAVAILABLE)])
def test_an_exhausted_chain_is_a_clear_error(platform, stub, fake_gpu, monkeypatch, mode, code):
    columns = classification_columns(n=200, seed=8)
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES)
    fake_gpu["mode"] = mode
    broken_cpu = FakeGpuCopy(None, mode, threading.Event())
    monkeypatch.setattr(serving_model, "fast_path",
                        lambda predictor, *args: lambda features: broken_cpu._fail_or_hang())
    with pytest.raises(grpc.RpcError) as error:
        predict_one(stub, model_id, columns)
    broken_cpu.release.set()
    assert error.value.code() == code
    details = error.value.details()
    assert model_id in details and "gpu:0" in details and "cpu" in details and "Traceback" not in details
    assert ("timed out" if mode == "hang" else "illegal memory access") in details
    assert fallbacks(platform, "timeout" if mode == "hang" else "error") == 1


# ------------------------------------------------------------------ ONNX Runtime agreement
@pytest.mark.parametrize("max_depth", [None, 6])  # pure leaves (votes) / mixed leaves
@pytest.mark.parametrize("rows", [1, 64, ORT_MAX_ROWS, 5000])
def test_onnx_forest_labels_equal_scikit_learn(rows, max_depth):
    # Few, coarse features: many rows get exactly tied votes, the case float32 could flip.
    x, y = make_classification(n_samples=3000, n_features=4, n_informative=2, n_redundant=0, flip_y=0.3,
                               random_state=9)
    x = np.round(x, 1)
    config = ModelConfig("random_forest", tuple(FEATURES), "target", params={"n_estimators": 100, "n_jobs": 1, "max_depth": max_depth})
    predictor = RandomForestPredictor(config)
    predictor.fit(x, y)
    fast = FastForest(predictor)
    assert fast.runtime == "onnxruntime" and fast.votes_only == (max_depth is None)
    queries = np.round(np.random.default_rng(rows).normal(size=(rows, 4)), 1)
    labels, probabilities = fast.predict(queries)
    assert labels.tolist() == predictor.predict(queries).tolist()
    np.testing.assert_allclose(probabilities, predictor.predict_proba(queries), atol=1e-6)
