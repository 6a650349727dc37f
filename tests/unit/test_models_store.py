"""Saving and loading models: safe formats only, atomic writes, strict model ids."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import skops.io as skops_io
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from utils.engine.backend import Backend, BackendUnavailable, cpu_backend
from utils.engine.models import (InvalidModelId, ModelConfig, ModelNotFound, ModelStore, RandomForestPredictor,
                                 train_model)

PARAMS = {"n_estimators": 8, "max_depth": 5, "n_jobs": 1}


class NotAModel:
    """Stands in for an arbitrary type an attacker might place in a model file."""

    def __init__(self) -> None:
        self.payload = "x"


def _trained(kind: str = "classification"):
    if kind == "classification":
        features, target = make_classification(n_samples=120, n_features=4, random_state=0)
    else:
        features, target = make_regression(n_samples=120, n_features=4, random_state=0)
    columns = {f"f{i}": features[:, i] for i in range(4)} | {"target": target}
    config = ModelConfig(model_type="random_forest", feature_columns=("f0", "f1", "f2", "f3"),
                         target_column="target", params=PARAMS)
    predictor, report = train_model(config, columns, cpu_backend())
    return predictor, report, features


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, kind):
    predictor, report, features = _trained(kind)
    store = ModelStore(tmp_path)
    path = store.save("model_1", predictor, report)
    assert sorted(entry.name for entry in path.iterdir()) == ["metadata.json", "model.skops"]
    assert [entry.name for entry in tmp_path.iterdir()] == ["model_1"]  # no temp dirs left behind

    loaded = store.load("model_1")
    np.testing.assert_array_equal(loaded.predict(features), predictor.predict(features))
    if kind == "classification":
        np.testing.assert_array_equal(loaded.predict_proba(features), predictor.predict_proba(features))
    metadata = store.read_metadata("model_1")
    assert metadata["task"] == kind and metadata["format"] == "skops"
    assert metadata["feature_columns"] == ["f0", "f1", "f2", "f3"] and metadata["target_column"] == "target"
    assert metadata["metrics"] == report.metrics and metadata["metrics_scope"] == "validation"
    assert metadata["classes"] == ([0.0, 1.0] if kind == "classification" else None)
    assert {"sklearn", "skops", "numpy"} <= set(metadata["versions"]) and metadata["created_at"]
    assert store.exists("model_1") and store.model_ids() == ["model_1"]


def test_save_replaces_an_existing_model_and_delete_removes_it(tmp_path):
    classifier, _, _ = _trained("classification")
    regressor, _, _ = _trained("regression")
    store = ModelStore(tmp_path)
    store.save("m", classifier)
    store.save("m", regressor)
    assert store.read_metadata("m")["task"] == "regression"
    assert [entry.name for entry in tmp_path.iterdir()] == ["m"]
    store.delete("m")
    assert not store.exists("m")
    with pytest.raises(ModelNotFound):
        store.load("m")
    with pytest.raises(ModelNotFound):
        store.delete("m")


@pytest.mark.parametrize("model_id", ["../evil", "..", "a/b", "/etc/passwd", "", "a" * 65, "ok\n",
                                      "a.b", "a b", None, 7])
def test_path_traversal_and_malformed_model_ids_are_rejected(tmp_path, model_id):
    store = ModelStore(tmp_path / "models")
    predictor, _, _ = _trained()
    with pytest.raises(InvalidModelId, match="model_id"):
        store.save(model_id, predictor)
    with pytest.raises(InvalidModelId):
        store.load(model_id)
    with pytest.raises(InvalidModelId):
        store.delete(model_id)
    assert not (tmp_path / "evil").exists()


def test_load_refuses_untrusted_types_in_the_model_file(tmp_path):
    predictor, _, _ = _trained()
    store = ModelStore(tmp_path)
    path = store.save("m", predictor)
    skops_io.dump({"model": NotAModel()}, path / "model.skops")
    with pytest.raises(Exception, match="Untrusted types"):
        store.load("m")


def test_load_refuses_a_trusted_but_unexpected_estimator(tmp_path):
    predictor, _, features = _trained()
    store = ModelStore(tmp_path)
    path = store.save("m", predictor)
    skops_io.dump(LogisticRegression().fit(features, predictor.predict(features)), path / "model.skops")
    with pytest.raises(ValueError, match="expected RandomForestClassifier"):
        store.load("m")


def test_failed_save_leaves_no_partial_model(tmp_path):
    store = ModelStore(tmp_path)
    unfitted = RandomForestPredictor(ModelConfig(model_type="random_forest", feature_columns=("f0",),
                                                 target_column="target"))
    with pytest.raises(RuntimeError, match="not fitted"):
        store.save("m", unfitted)
    assert list(tmp_path.iterdir()) == []


class _FakeGpuForest:
    """Mimics the cuML forest surface we use: no n_jobs, float32 in, as_sklearn() out."""

    sklearn_class: type = RandomForestClassifier

    def __init__(self, **params):
        assert "n_jobs" not in params
        self._forest = self.sklearn_class(**params)

    def fit(self, features, target):
        assert features.dtype == np.float32
        self._forest.fit(features, target)
        return self

    def predict(self, features):
        return self._forest.predict(features)

    def predict_proba(self, features):
        return self._forest.predict_proba(features)

    def as_sklearn(self):
        return self._forest


class _FakeGpuRegressor(_FakeGpuForest):
    sklearn_class = RandomForestRegressor


def test_cuml_branch_trains_on_gpu_backend_and_saves_as_sklearn(tmp_path):
    fake_cuml = SimpleNamespace(ensemble=SimpleNamespace(RandomForestClassifier=_FakeGpuForest,
                                                         RandomForestRegressor=_FakeGpuRegressor))
    gpu_backend = Backend(name="gpu", xp=np, device_id=0, extras={"cuml": fake_cuml})  # a GPU with a stand-in cuML
    features, target = make_classification(n_samples=80, n_features=3, n_informative=2, n_redundant=0, random_state=1)
    columns = {"a": features[:, 0], "b": features[:, 1], "c": features[:, 2], "target": target}
    config = ModelConfig(model_type="random_forest", feature_columns=("a", "b", "c"), target_column="target",
                         params={"n_estimators": 5, "max_depth": None})
    predictor, report = train_model(config, columns, gpu_backend)
    assert report.device == "gpu:0" and predictor.metadata()["device"] == "gpu:0"
    store = ModelStore(tmp_path)
    store.save("gpu_model", predictor, report)
    loaded = store.load("gpu_model")
    np.testing.assert_array_equal(loaded.predict(features), predictor.predict(features))
    assert json.loads((tmp_path / "gpu_model" / "metadata.json").read_text())["device"] == "gpu:0"


def test_explicit_gpu_request_without_cuml_fails_loudly():
    gpu_without_cuml = Backend(name="gpu", xp=np, device_id=0, extras={"cuml": None})
    config = ModelConfig(model_type="random_forest", feature_columns=("a",), target_column="target", device="gpu")
    predictor = RandomForestPredictor(config, gpu_without_cuml)
    with pytest.raises(BackendUnavailable, match="cuML"):
        predictor.fit(np.arange(6.0).reshape(6, 1), np.array([0, 1] * 3))
