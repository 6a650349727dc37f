"""Every exportable model type's ONNX graph, run in a fresh onnxruntime session, against the native
predictor; and Predict's ONNX runtime (PREDICT_RUNTIME=onnx) in the serving layer.

Tolerances (float32 graphs; the native models compute in float64):
  linear, ridge, logistic          1e-5  regression values (relative, and x max|value| near 0);
                                          probabilities absolute; class labels exact
  random_forest                    1e-5  the same (labels exact: fully grown trees vote, so ties stay ties)
  gradient_boosting (LightGBM)     1e-4  the same
  lstm, gru, transformer, dlinear  1e-4  the same, one prediction per window
Measured here: at most ~6e-6 relative (linear), ~2e-6 (forest regression), ~1e-7 (probabilities).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from prometheus_client import CollectorRegistry
from sklearn.datasets import make_classification, make_regression

from config.settings import load_settings
from utils.engine.backend import cpu_backend
from utils.engine.models import MODEL_REGISTRY, InvalidInputData, ModelConfig
from utils.engine.models.onnx_export import (FEATURES, PREDICTIONS, PROBABILITIES, WINDOWS, NotExportable,
                                             export_onnx)
from utils.monitoring import Metrics
from utils.serving.serving_model import ServingFactory

N_FEATURES = 5
TOLERANCE = {"linear": 1e-5, "ridge": 1e-5, "logistic": 1e-5, "random_forest": 1e-5, "gradient_boosting": 1e-4,
             "lstm": 1e-4, "gru": 1e-4, "transformer": 1e-4, "dlinear": 1e-4}
SEQUENCE = {"window": 5, "epochs": 2, "batch_size": 64, "n_threads": 1}
PARAMS = {"random_forest": {"n_estimators": 25, "n_jobs": 1}, "gradient_boosting": {"n_estimators": 40, "n_jobs": 1},
          "lstm": {**SEQUENCE, "hidden_size": 8}, "gru": {**SEQUENCE, "hidden_size": 8},
          "transformer": {**SEQUENCE, "hidden_size": 8, "num_heads": 2, "num_layers": 1},
          "dlinear": SEQUENCE}
CASES = [("random_forest", "classification"), ("random_forest", "regression"), ("linear", "regression"),
         ("ridge", "regression"), ("logistic", "classification"), ("logistic", "binary"),
         ("gradient_boosting", "classification"), ("gradient_boosting", "binary"),
         ("gradient_boosting", "regression"), ("lstm", "classification"), ("lstm", "regression"),
         ("gru", "regression"), ("transformer", "classification"), ("dlinear", "regression")]


def _data(task: str, rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    if task == "regression":
        features, target = make_regression(n_samples=rows, n_features=N_FEATURES, noise=5.0, random_state=0)
        return features * [1.0, 10.0, 1e3, 0.01, 1.0], target * 100 + 50  # mixed scales, as prices and volumes
    classes = 2 if task == "binary" else 3
    features, codes = make_classification(n_samples=rows, n_features=N_FEATURES, n_informative=3, n_classes=classes,
                                          n_clusters_per_class=1, random_state=1)
    return features, np.array([-1.0, 1.0, 4.0])[codes]  # labels that are not the 0..k-1 codes


def _fitted(model_type: str, task: str):
    features, target = _data(task)
    config = ModelConfig(model_type, tuple(f"f{i}" for i in range(N_FEATURES)), "target",
                         task="regression" if task == "regression" else "classification",
                         params=PARAMS.get(model_type, {}))
    predictor = MODEL_REGISTRY.get(model_type)(config)
    predictor.fit(features, target)
    return predictor, features


def _assert_close(model_type, actual, expected, actual_probabilities=None, expected_probabilities=None):
    tolerance = TOLERANCE[model_type]
    if expected_probabilities is None:
        scale = np.nanmax(np.abs(expected))
        np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)
        return
    np.testing.assert_array_equal(actual, expected)  # class labels: exact
    np.testing.assert_allclose(actual_probabilities, expected_probabilities, rtol=0, atol=tolerance)


@pytest.mark.parametrize("model_type, task", CASES)
def test_exported_graph_equals_native_predict(model_type, task):
    predictor, features = _fitted(model_type, task)
    exported = export_onnx(predictor)
    session = onnxruntime.InferenceSession(exported.content, providers=["CPUExecutionProvider"])
    classifier = task != "regression"
    assert exported.output_names == ((PREDICTIONS, PROBABILITIES) if classifier else (PREDICTIONS,))
    assert [output.name for output in session.get_outputs()] == list(exported.output_names)
    assert exported.feature_columns == predictor.config.feature_columns
    declared = {entry.domain: entry.version for entry in onnx.load_from_string(exported.content).opset_import}
    assert exported.opset == declared.get("", declared.get("ai.onnx"))  # LightGBM's converter declares 8 or 9
    expected, expected_probabilities = predictor.predict(features), predictor.predict_proba(features)
    if exported.window:
        assert exported.input_names == (WINDOWS,) and exported.window == PARAMS[model_type]["window"]
        window = exported.window
        graph_input = np.lib.stride_tricks.sliding_window_view(features, window, axis=0).transpose(0, 2, 1)
        expected = expected[window - 1:]  # the native predictor's first window - 1 rows are NaN history
        if classifier:
            expected_probabilities = expected_probabilities[window - 1:]
    else:
        assert exported.input_names == (FEATURES,)
        graph_input = features
    outputs = session.run(None, {exported.input_names[0]: np.ascontiguousarray(graph_input, dtype=np.float32)})
    assert outputs[0].dtype == np.float64 and outputs[0].shape == expected.shape
    if classifier:
        assert outputs[1].shape == (len(expected), len(predictor.classes))
        assert set(outputs[0]) <= set(predictor.classes.tolist())  # labels, not codes
        _assert_close(model_type, outputs[0], expected, outputs[1], expected_probabilities)
    else:
        _assert_close(model_type, outputs[0], expected)


def test_an_execution_policy_is_not_a_predictor_graph():
    import utils.engine.execution.policy.predictor  # noqa: F401 - registers ppo_execution
    predictor = MODEL_REGISTRY.get("ppo_execution")(ModelConfig("ppo_execution", ("observation",), "action"))
    with pytest.raises(NotExportable, match="ppo_execution"):
        export_onnx(predictor)


def test_an_unfitted_model_is_not_exportable():
    predictor = MODEL_REGISTRY.get("linear")(ModelConfig("linear", ("a", "b"), "y"))
    with pytest.raises(NotExportable, match="not fitted"):
        export_onnx(predictor)


# -- Predict's runtime switch ----------------------------------------------------------------------
def _serving(predictor, runtime: str):
    settings = load_settings(predict_runtime=runtime, predict_max_batch_rows=0, redis_embedded="never")
    return ServingFactory(settings, Metrics(CollectorRegistry()), cpu_backend())(predictor, "m")


@pytest.mark.parametrize("model_type, task", [("random_forest", "classification"), ("gradient_boosting", "regression"),
                                              ("lstm", "classification")])
def test_predict_runtime_onnx_serves_the_graph(model_type, task):
    predictor, features = _fitted(model_type, task)
    onnx_model, native_model = _serving(predictor, "onnx"), _serving(predictor, "native")
    native = "compiled" if model_type == "random_forest" else "native"  # the forest kernel (cc present)
    assert (onnx_model.runtime, native_model.runtime) == ("onnx", native)
    (predictions, probabilities), device = onnx_model.predict(features)
    (expected, expected_probabilities), _ = native_model.predict(features)
    assert device == "cpu" and predictions.shape == expected.shape
    history = getattr(predictor, "history_rows", 0)
    assert np.isnan(predictions[:history]).all()  # a sequence model's history rows, as natively
    _assert_close(model_type, predictions[history:], expected[history:],
                  None if probabilities is None else probabilities[history:],
                  None if expected_probabilities is None else expected_probabilities[history:])


def test_onnx_sequence_predict_needs_a_full_window():
    predictor, features = _fitted("gru", "regression")
    with pytest.raises(InvalidInputData, match="windows of 5 rows"):
        _serving(predictor, "onnx").predict(features[:4])
