"""MLService over real gRPC + Redis + worker: train, progress, metrics, predict, registry, bad input."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

from api_proto import ml_pb2, ml_pb2_grpc
from tests.conftest import wait_until

GUIDE_DATA = {
    "price": [10.0, 10.5, 11.0, 10.8, 11.2],
    "volume": [1000000, 1100000, 1200000, 1150000, 1300000],
    "sma_20": [10.2, 10.3, 10.4, 10.5, 10.6],
    "rsi": [50, 55, 60, 58, 62],
    "target": [1, 1, 0, 1, 1],
}
GUIDE_FEATURES = ["price", "volume", "sma_20", "rsi"]
GUIDE_ROW = {"price": [11.5], "volume": [1400000], "sma_20": [10.7], "rsi": [65]}
FEATURES = ["f0", "f1", "f2", "f3"]
SMALL = {"n_estimators": 10, "max_depth": 4, "n_jobs": 1}


@pytest.fixture
def stub(channel):
    return ml_pb2_grpc.MLServiceStub(channel)


def train_request(**overrides):
    values = dict(model_type="random_forest", training_data=json.dumps(GUIDE_DATA), feature_columns=GUIDE_FEATURES,
                  target_column="target", model_params=json.dumps(SMALL))
    values.update(overrides)
    return ml_pb2.TrainModelRequest(**values)


def classification_columns(n=400, seed=0):
    x, y = make_classification(n_samples=n, n_features=4, n_informative=3, n_redundant=0, random_state=seed)
    return {**{name: x[:, i].tolist() for i, name in enumerate(FEATURES)}, "target": y.tolist()}


def wait_trained(stub, task_id, timeout=60, method="GetTrainingStatus"):
    request = ml_pb2.TrainingStatusRequest(task_id=task_id)
    status = wait_until(lambda: (s := getattr(stub, method)(request)).status in ("completed", "failed", "cancelled")
                        and s, timeout=timeout)
    assert status.status == "completed", status.error
    return status


def train(stub, **overrides):
    response = stub.SubmitTrainingJob(train_request(**overrides))
    return wait_trained(stub, response.task_id, method="QueryTrainingProgress").model_id


def test_guide_flow_trains_and_predicts(platform, stub):
    response = stub.TrainModel(train_request(model_params=json.dumps({"n_estimators": 100, "max_depth": 5})))
    assert response.status == "pending" and response.task_id.startswith("tr-")
    status = wait_trained(stub, response.task_id)
    assert status.progress == 1.0 and status.model_id and status.attempts == 1 and status.error == ""
    assert status.task_id == response.task_id

    predicted = stub.Predict(ml_pb2.PredictRequest(model_id=status.model_id, input_data=json.dumps(GUIDE_ROW)))
    assert len(predicted.predictions) == 1 and predicted.predictions[0] in (0.0, 1.0)
    assert list(predicted.classes) == [0.0, 1.0]
    assert len(predicted.probabilities) == 1 and len(predicted.probabilities[0].values) == 2
    assert sum(predicted.probabilities[0].values) == pytest.approx(1.0)
    label = predicted.classes[int(np.argmax(predicted.probabilities[0].values))]
    assert predicted.predictions[0] == label
    assert predicted.prediction_time > 0 and predicted.device == "cpu" and predicted.model_id == status.model_id

    metrics = stub.GetModelMetrics(ml_pb2.MetricsRequest(model_id=status.model_id))
    # Five rows are too few for a hold-out: the metrics say so.
    assert metrics.metrics_scope == "in_sample" and metrics.n_validation == 0 and metrics.n_train == 5
    assert metrics.task == "classification" and metrics.model_type == "random_forest"


def test_validation_metrics_and_importance_for_a_larger_data_set(stub):
    columns = classification_columns()
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES)
    metrics = stub.GetModelMetrics(ml_pb2.MetricsRequest(model_id=model_id))
    assert metrics.model_id == model_id and metrics.task == "classification"
    assert metrics.metrics_scope == "validation" and metrics.n_validation == 80 and metrics.n_train == 320
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"):
        assert name in metrics.metrics, name
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert 0.0 <= metrics.metrics[name] <= 1.0
    assert metrics.metrics["accuracy"] > 0.6  # three informative features: far better than chance
    assert set(metrics.feature_importance) == set(FEATURES)
    assert sum(metrics.feature_importance.values()) == pytest.approx(1.0, abs=1e-6)
    assert list(metrics.feature_columns) == FEATURES and metrics.target_column == "target"
    assert metrics.training_time > 0 and metrics.device == "cpu" and metrics.created_at.startswith("20")

    rows = {name: columns[name][-80:] for name in FEATURES}
    predicted = stub.Predict(ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(rows)))
    assert len(predicted.predictions) == 80 and len(predicted.probabilities) == 80
    assert set(predicted.predictions) <= {0.0, 1.0}
    np.testing.assert_allclose([sum(p.values) for p in predicted.probabilities], 1.0)


def test_regression_target(stub):
    x, y = make_regression(n_samples=200, n_features=4, noise=1.0, random_state=1)
    columns = {**{name: x[:, i].tolist() for i, name in enumerate(FEATURES)}, "ret": y.tolist()}
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES, target_column="ret")
    metrics = stub.GetModelMetrics(ml_pb2.MetricsRequest(model_id=model_id))
    assert metrics.task == "regression" and metrics.metrics_scope == "validation" and metrics.n_validation == 40
    assert set(metrics.metrics) == {"rmse", "mae", "r2", "ic"}
    assert metrics.metrics["rmse"] >= metrics.metrics["mae"] > 0 and -1 <= metrics.metrics["ic"] <= 1
    predicted = stub.Predict(ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(
        {name: [0.0, 1.0] for name in FEATURES})))
    assert len(predicted.predictions) == 2 and not predicted.classes and not predicted.probabilities


def test_predict_uses_the_model_cache(platform, stub):
    model_id = train(stub)
    request = ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(GUIDE_ROW))
    first = stub.Predict(request)
    assert platform.registry.get_sample_value("cache_requests_total", {"cache": "models", "result": "miss"}) == 1
    second = stub.Predict(request)
    assert platform.registry.get_sample_value("cache_requests_total", {"cache": "models", "result": "hit"}) == 1
    assert platform.registry.get_sample_value("cache_hit_rate", {"cache": "models"}) == 0.5
    assert list(second.predictions) == list(first.predictions)
    assert [list(p.values) for p in second.probabilities] == [list(p.values) for p in first.probabilities]


def test_list_and_delete_models(stub):
    first, second = train(stub), train(stub, task="classification")
    listed = [m.model_id for m in stub.ListModels(ml_pb2.ListModelsRequest()).models]
    assert listed == [second, first]
    deleted = stub.DeleteModel(ml_pb2.DeleteModelRequest(model_id=first))
    assert deleted.deleted and deleted.model_id == first
    assert [m.model_id for m in stub.ListModels(ml_pb2.ListModelsRequest()).models] == [second]
    for call, message in [("Predict", ml_pb2.PredictRequest(model_id=first, input_data=json.dumps(GUIDE_ROW))),
                          ("GetModelMetrics", ml_pb2.MetricsRequest(model_id=first)),
                          ("DeleteModel", ml_pb2.DeleteModelRequest(model_id=first))]:
        with pytest.raises(grpc.RpcError) as error:
            getattr(stub, call)(message)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND, call
        assert first in error.value.details() and "Traceback" not in error.value.details()
    assert stub.Predict(ml_pb2.PredictRequest(model_id=second, input_data=json.dumps(GUIDE_ROW))).predictions


def test_cancel_pending_training(platform, stub):
    platform.worker.stop()  # nothing runs: the job stays pending
    response = stub.TrainModel(train_request())
    assert stub.GetTrainingStatus(ml_pb2.TrainingStatusRequest(task_id=response.task_id)).status == "pending"
    cancelled = stub.CancelTraining(ml_pb2.CancelTrainingRequest(task_id=response.task_id))
    assert cancelled.status == "cancelled" and cancelled.task_id == response.task_id and not cancelled.model_id
    again = stub.QueryTrainingProgress(ml_pb2.TrainingStatusRequest(task_id=response.task_id))
    assert again.status == "cancelled"


def with_columns(**changes):
    data = {**GUIDE_DATA, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None})


BAD_TRAINING = [
    (dict(model_type="astrology"), "random_forest"),
    (dict(model_type=""), "model_type"),
    (dict(training_data="{not json"), "training_data"),
    (dict(training_data=""), "training_data"),
    (dict(training_data="[1, 2, 3]"), "training_data"),
    (dict(training_data='{"price": [NaN]}'), "training_data"),
    (dict(training_data=with_columns(rsi=None)), "'rsi'"),
    (dict(training_data=with_columns(rsi=["a", "b", "c", "d", "e"])), "non-numeric"),
    (dict(training_data=with_columns(rsi=[50, 55, 60])), "unequal lengths"),
    (dict(training_data=with_columns(rsi=[50, 55, None, 58, 62])), "training_data"),
    (dict(model_params=json.dumps({"n_estimators": -1})), "n_estimators"),
    (dict(model_params=json.dumps({"n_estimators": 1.5})), "n_estimators"),
    (dict(model_params=json.dumps({"learning_rate": 0.1})), "learning_rate"),
    (dict(model_params="{oops"), "model_params"),
    (dict(model_params="[]"), "model_params"),
    (dict(feature_columns=[]), "feature_columns"),
    (dict(feature_columns=["price", "price"]), "duplicate"),
    (dict(feature_columns=["price", "target"]), "target_column"),
    (dict(target_column=""), "target_column"),
    (dict(target_column="missing"), "'missing'"),
    (dict(task="ranking"), "task"),
    (dict(device="tpu"), "device"),
]


@pytest.mark.parametrize("overrides,needle", BAD_TRAINING)
def test_bad_training_requests_are_invalid(stub, overrides, needle):
    with pytest.raises(grpc.RpcError) as error:
        stub.TrainModel(train_request(**overrides))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in error.value.details(), error.value.details()
    assert "Traceback" not in error.value.details()


def test_bad_predictions_are_invalid(stub):
    model_id = train(stub)
    cases = [
        (dict(input_data=json.dumps({k: v for k, v in GUIDE_ROW.items() if k != "rsi"})), "missing column(s): 'rsi'"),
        (dict(input_data=json.dumps({**GUIDE_ROW, "extra": [1]})), "unexpected column(s): 'extra'"),
        (dict(input_data=json.dumps({**GUIDE_ROW, "rsi": ["high"]})), "non-numeric"),
        (dict(input_data=json.dumps({**GUIDE_ROW, "rsi": [65, 66]})), "unequal lengths"),
        (dict(input_data=json.dumps({k: [] for k in GUIDE_ROW})), "no rows"),
        (dict(input_data="{broken"), "input_data"),
        (dict(input_data=""), "input_data"),
        (dict(input_data="[1]"), "input_data"),
        (dict(model_id="../etc", input_data=json.dumps(GUIDE_ROW)), "model_id"),
        (dict(model_id="", input_data=json.dumps(GUIDE_ROW)), "model_id"),
    ]
    for fields, needle in cases:
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(ml_pb2.PredictRequest(**{"model_id": model_id, **fields}))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert needle in error.value.details(), (fields, error.value.details())
        assert "Traceback" not in error.value.details()
    for call, message in [("GetModelMetrics", ml_pb2.MetricsRequest(model_id="../etc")),
                          ("DeleteModel", ml_pb2.DeleteModelRequest(model_id="a/b"))]:
        with pytest.raises(grpc.RpcError) as error:
            getattr(stub, call)(message)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "model_id" in error.value.details()


@pytest.mark.parametrize("call,message", [
    ("GetTrainingStatus", ml_pb2.TrainingStatusRequest(task_id="tr-unknown")),
    ("QueryTrainingProgress", ml_pb2.TrainingStatusRequest(task_id="tr-unknown")),
    ("CancelTraining", ml_pb2.CancelTrainingRequest(task_id="tr-unknown")),
    ("Predict", ml_pb2.PredictRequest(model_id="m-unknown", input_data=json.dumps(GUIDE_ROW))),
    ("GetModelMetrics", ml_pb2.MetricsRequest(model_id="m-unknown")),
    ("DeleteModel", ml_pb2.DeleteModelRequest(model_id="m-unknown")),
])
def test_unknown_ids_are_not_found(stub, call, message):
    with pytest.raises(grpc.RpcError) as error:
        getattr(stub, call)(message)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown" in error.value.details() and "Traceback" not in error.value.details()


def test_empty_task_id_is_invalid(stub):
    with pytest.raises(grpc.RpcError) as error:
        stub.GetTrainingStatus(ml_pb2.TrainingStatusRequest())
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "task_id" in error.value.details()
