"""Random-forest training, our metrics against sklearn.metrics, and the seed guide's example."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk_metrics
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier

from tests.reference_metrics import binary_reference
from utils.engine.backend import cpu_backend
from utils.engine.models import (MODEL_REGISTRY, ModelConfig, RandomForestPredictor, UnknownModelError,
                                 evaluate, infer_task, time_split, train_model)

SMALL_FOREST = {"n_estimators": 12, "max_depth": 6, "n_jobs": 1}


def _columns(features: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    columns = {f"f{index}": features[:, index] for index in range(features.shape[1])}
    columns["target"] = target
    return columns


def _config(n_features: int, **overrides) -> ModelConfig:
    fields = dict(model_type="random_forest", feature_columns=tuple(f"f{i}" for i in range(n_features)),
                  target_column="target", params=dict(SMALL_FOREST))
    fields.update(overrides)
    return ModelConfig(**fields)


def _fitted(features, target, task="auto", **params) -> RandomForestPredictor:
    predictor = RandomForestPredictor(_config(features.shape[1], task=task, params={**SMALL_FOREST, **params}))
    predictor.fit(features, target)
    return predictor


def test_seed_guide_tiny_dataset_trains_as_classification_and_predicts_one_row():
    columns = {"price": [10.0, 10.5, 11.0, 10.8, 11.2], "volume": [1e6, 1.1e6, 1.2e6, 1.15e6, 1.3e6],
               "sma_20": [10.2, 10.3, 10.4, 10.5, 10.6], "rsi": [50, 55, 60, 58, 62], "target": [1, 1, 0, 1, 1]}
    config = ModelConfig(model_type="random_forest", feature_columns=("price", "volume", "sma_20", "rsi"),
                         target_column="target", params={"n_estimators": 100, "max_depth": 5})
    predictor, report = train_model(config, columns, cpu_backend())
    assert report.task == "classification"
    assert report.metrics_scope == "in_sample" and report.n_validation == 0 and report.n_final_fit == 5
    label = predictor.predict(np.array([[10.9, 1.2e6, 10.5, 59.0]]))
    assert label.shape == (1,) and label.dtype == np.float64 and label[0] in (0.0, 1.0)
    assert predictor.metadata()["classes"] == [0.0, 1.0]
    assert set(report.feature_importance) == {"price", "volume", "sma_20", "rsi"}


def test_binary_metrics_match_sklearn():
    features, target = make_classification(n_samples=300, n_features=6, random_state=0)
    predictor = _fitted(features[:200], target[:200])
    held_out, truth = features[200:], target[200:]
    predicted, proba = predictor.predict(held_out), predictor.predict_proba(held_out)
    scores = evaluate("classification", truth, predicted, proba, classes=predictor.classes)
    expected = binary_reference(truth, predicted, proba)
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-12), name
    assert 0.6 < scores["accuracy"] <= 1.0


def test_binary_positive_label_is_the_larger_class():
    truth = np.array([-1.0, -1.0, 1.0, 1.0, 1.0])
    predicted = np.array([-1.0, 1.0, 1.0, 1.0, -1.0])
    proba = np.array([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4]])
    scores = evaluate("classification", truth, predicted, proba, classes=[-1.0, 1.0])
    assert scores["precision"] == pytest.approx(sk_metrics.precision_score(truth, predicted, pos_label=1.0))
    assert scores["recall"] == pytest.approx(sk_metrics.recall_score(truth, predicted, pos_label=1.0))
    assert scores["roc_auc"] == pytest.approx(sk_metrics.roc_auc_score(truth, proba[:, 1]))


def test_multiclass_metrics_match_sklearn_weighted():
    features, target = make_classification(n_samples=400, n_features=8, n_informative=5, n_classes=3,
                                           random_state=1)
    predictor = _fitted(features[:300], target[:300])
    held_out, truth = features[300:], target[300:].astype(np.float64)
    predicted, proba = predictor.predict(held_out), predictor.predict_proba(held_out)
    assert proba.shape == (100, 3) and predictor.metadata()["classes"] == [0.0, 1.0, 2.0]
    scores = evaluate("classification", truth, predicted, proba, classes=predictor.classes)
    expected = {
        "accuracy": sk_metrics.accuracy_score(truth, predicted),
        "precision": sk_metrics.precision_score(truth, predicted, average="weighted"),
        "recall": sk_metrics.recall_score(truth, predicted, average="weighted"),
        "f1": sk_metrics.f1_score(truth, predicted, average="weighted"),
        "roc_auc": sk_metrics.roc_auc_score(truth, proba, multi_class="ovr", average="weighted"),
        "log_loss": sk_metrics.log_loss(truth, proba, labels=[0.0, 1.0, 2.0]),
    }
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-12), name


def test_regression_metrics_match_sklearn():
    features, target = make_regression(n_samples=300, n_features=5, noise=5.0, random_state=2)
    predictor = _fitted(features[:200], target[:200])
    assert predictor.task == "regression" and predictor.predict_proba(features[:3]) is None
    truth, predicted = target[200:], predictor.predict(features[200:])
    scores = evaluate("regression", truth, predicted)
    expected = {
        "rmse": math.sqrt(sk_metrics.mean_squared_error(truth, predicted)),
        "mae": sk_metrics.mean_absolute_error(truth, predicted),
        "r2": sk_metrics.r2_score(truth, predicted),
        "ic": float(np.corrcoef(predicted, truth)[0, 1]),
    }
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-12), name
    assert scores["ic"] > 0.5


def test_degenerate_metrics_stay_finite():
    constant = evaluate("regression", np.ones(5), np.ones(5))
    assert constant["ic"] == 0.0 and all(math.isfinite(value) for value in constant.values())
    one_class = evaluate("classification", np.ones(4), np.ones(4), np.ones((4, 1)), classes=[1.0])
    assert "roc_auc" not in one_class and "log_loss" not in one_class and one_class["accuracy"] == 1.0
    # A validation tail holding only one of the model's two classes: no ROC AUC, log loss still defined.
    partial = evaluate("classification", np.ones(4), np.array([1.0, 0.0, 1.0, 1.0]),
                       np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7]]), classes=[0.0, 1.0])
    assert "roc_auc" not in partial and partial["log_loss"] > 0


def test_chunked_warm_start_equals_one_shot_sklearn_forest_and_reports_progress():
    features, target = make_classification(n_samples=200, n_features=5, random_state=3)
    fractions: list[float] = []
    predictor = RandomForestPredictor(_config(5, params={"n_estimators": 25, "max_depth": 4, "n_jobs": 1}))
    predictor.fit(features, target, progress=fractions.append)
    reference = RandomForestClassifier(n_estimators=25, max_depth=4, random_state=42).fit(features, target)
    np.testing.assert_array_equal(predictor.predict_proba(features), reference.predict_proba(features))
    assert fractions == sorted(fractions) and len(fractions) == 10 and fractions[-1] == 1.0


def test_progress_callback_can_abort_training():
    features, target = make_classification(n_samples=60, n_features=4, random_state=4)

    def cancel(fraction: float) -> None:
        if fraction >= 0.3:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        train_model(_config(4), _columns(features, target), cpu_backend(), progress=cancel)


def test_train_model_reports_held_out_tail_and_refits_on_all_rows():
    features, target = make_regression(n_samples=100, n_features=4, noise=1.0, random_state=5)
    fractions: list[float] = []
    predictor, report = train_model(_config(4), _columns(features, target), cpu_backend(),
                                    progress=fractions.append)
    assert (report.task, report.metrics_scope) == ("regression", "validation")
    assert (report.n_train, report.n_validation, report.n_final_fit) == (80, 20, 100)
    assert set(report.metrics) == {"rmse", "mae", "r2", "ic"} and report.device == "cpu"
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    # The returned model was refit on every row: it matches a direct fit on all of them.
    direct = _fitted(features, target)
    np.testing.assert_array_equal(predictor.predict(features), direct.predict(features))
    assert sum(report.feature_importance.values()) == pytest.approx(1.0)


def test_infer_task():
    assert infer_task(np.array([0.0, 1.0, 1.0])) == "classification"
    assert infer_task(np.array([True, False])) == "classification"
    assert infer_task(np.array(["up", "down"])) == "classification"
    assert infer_task(np.arange(21)) == "regression"
    assert infer_task(np.array([0.5, 1.0, 2.0])) == "regression"


def test_string_labels_round_trip_through_predict():
    features = np.arange(40, dtype=float).reshape(20, 2)
    labels = np.array(["down"] * 10 + ["up"] * 10)
    predictor = _fitted(features, labels)
    assert set(predictor.predict(features)) <= {"down", "up"}


def test_time_split_keeps_time_order_and_falls_back_to_in_sample():
    split = time_split(20, 0.2)
    np.testing.assert_array_equal(split.train, np.arange(16))
    np.testing.assert_array_equal(split.validation, np.arange(16, 20))
    assert split.metrics_scope == "validation"
    for n, fraction in ((9, 0.5), (10, 0.1), (30, 0.0)):
        fallback = time_split(n, fraction)
        assert fallback.metrics_scope == "in_sample" and fallback.train.size == n
    one_class_head = np.array([0] * 16 + [1] * 4)
    assert time_split(20, 0.2, classification_target=one_class_head).metrics_scope == "in_sample"


def test_registry_rejects_unknown_names_and_lists_valid_ones():
    assert "random_forest" in MODEL_REGISTRY.names()
    assert MODEL_REGISTRY.get("random_forest") is RandomForestPredictor
    with pytest.raises(UnknownModelError, match="random_forest"):
        MODEL_REGISTRY.get("os.system")
    with pytest.raises(UnknownModelError):
        train_model(_config(1, model_type="sklearn.svm.SVC"), {"f0": [1.0], "target": [1.0]}, cpu_backend())
