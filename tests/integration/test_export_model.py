"""ExportModel and Predict on ONNX Runtime over real gRPC + Redis + worker, driven as a client would:
train with TrainModel, export, write model.onnx, run it with onnxruntime; the server itself
serves Predict from the same graph (PREDICT_RUNTIME=onnx). Tolerances: tests/unit/test_onnx_export.py."""
from __future__ import annotations

import json

import grpc
import numpy as np
import onnxruntime
import pytest
from sklearn.datasets import make_regression

from api_proto import ml_pb2, ml_pb2_grpc
from tests.integration.test_api_ml import FEATURES, classification_columns, train
from tests.unit.test_onnx_export import _assert_close
from utils.engine.models import ModelStore

ROWS = 40
MODELS = {  # model type -> (model_params, target column)
    "random_forest": ({"n_estimators": 20, "n_jobs": 1}, "target"),
    "gradient_boosting": ({"n_estimators": 30, "n_jobs": 1}, "ret"),
    "lstm": ({"window": 5, "epochs": 2, "hidden_size": 8, "n_threads": 1}, "ret"),
}


@pytest.fixture
def settings(settings_factory, redis_client):
    return settings_factory(predict_runtime="onnx")


@pytest.fixture
def stub(channel):
    return ml_pb2_grpc.MLServiceStub(channel)


def _training_columns():
    columns = classification_columns(n=200)
    features, target = make_regression(n_samples=200, n_features=4, noise=1.0, random_state=3)
    columns.update({name: (columns[name] + features[:, i]).tolist() for i, name in enumerate(FEATURES)})
    return {**columns, "ret": (target * 0.01).tolist()}


def _run_exported(exported, path, rows):
    """What a client does with the bytes: save them and run the file with onnxruntime."""
    path.write_bytes(exported.content)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features = np.array([rows[name] for name in exported.feature_columns], dtype=np.float32).T
    if exported.input_names[0] == "windows":  # a sequence model: one window per prediction
        window = session.get_inputs()[0].shape[1]
        features = np.lib.stride_tricks.sliding_window_view(features, window, axis=0).transpose(0, 2, 1)
    return session.run(list(exported.output_names), {exported.input_names[0]: np.ascontiguousarray(features)})


def test_export_and_onnx_predict_equal_the_native_model(platform, stub, tmp_path):
    columns = _training_columns()
    rows = {name: columns[name][-ROWS:] for name in FEATURES}
    store = ModelStore(platform.settings.models_path)
    for model_type, (params, target) in MODELS.items():
        model_id = train(stub, model_type=model_type, training_data=json.dumps(columns), feature_columns=FEATURES,
                         target_column=target, model_params=json.dumps(params))
        predicted = stub.Predict(ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(rows)))
        assert predicted.runtime == "onnx" and predicted.device == "cpu", model_type

        native = store.load(model_id)
        features = np.array([rows[name] for name in FEATURES]).T
        expected, expected_probabilities = native.predict(features), native.predict_proba(features)
        history = getattr(native, "history_rows", 0)
        served = np.array(predicted.predictions)
        served_probabilities = np.array([row.values for row in predicted.probabilities]) if predicted.classes else None
        assert np.isnan(served[:history]).all()
        _assert_close(model_type, served[history:], expected[history:],
                      None if served_probabilities is None else served_probabilities[history:],
                      None if expected_probabilities is None else expected_probabilities[history:])

        exported = stub.ExportModel(ml_pb2.ExportModelRequest(model_id=model_id, format="onnx"))
        assert exported.model_id == model_id and exported.format == "onnx" and exported.opset >= 8
        assert list(exported.feature_columns) == FEATURES
        outputs = _run_exported(exported, tmp_path / f"{model_type}.onnx", rows)
        # the file is the graph Predict ran: the same numbers
        np.testing.assert_allclose(outputs[0], served[history:], rtol=1e-12)
        if predicted.classes:
            assert list(exported.output_names) == ["predictions", "probabilities"]
            np.testing.assert_allclose(outputs[1], served_probabilities[history:], rtol=1e-12)
        else:
            assert list(exported.output_names) == ["predictions"]


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


def test_export_errors(platform, stub):
    model_id = train(stub)
    export = stub.ExportModel
    code, details = _code(lambda: export(ml_pb2.ExportModelRequest(model_id=model_id, format="pmml")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "onnx" in details
    code, _ = _code(lambda: export(ml_pb2.ExportModelRequest(model_id=model_id)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _code(lambda: export(ml_pb2.ExportModelRequest(model_id="no-such-model", format="onnx")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(lambda: export(ml_pb2.ExportModelRequest(model_id="../etc", format="onnx")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    # An execution policy is exported as the policy.onnx it was stored with, or refused without one.
    policy = platform.settings.models_path / "policy-1"
    policy.mkdir(parents=True)
    (policy / "metadata.json").write_text(json.dumps({"model_type": "ppo_execution", "feature_columns": ["a", "b"]}))
    code, details = _code(lambda: export(ml_pb2.ExportModelRequest(model_id="policy-1", format="onnx")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "ppo_execution" in details
    (policy / "policy.onnx").write_bytes(b"graph bytes")
    exported = export(ml_pb2.ExportModelRequest(model_id="policy-1", format="onnx"))
    assert exported.content == b"graph bytes" and list(exported.input_names) == ["observation"]
    assert list(exported.output_names) == ["action", "logits"] and list(exported.feature_columns) == ["a", "b"]
