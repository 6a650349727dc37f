"""cuML paths of the model types (utils/engine/models/cuml_parts.py): ridge/logistic trained on the
GPU and FIL serving forests, each against the scikit-learn CPU path on the same data. cuML is a
GPU-only package (requirements-gpu.txt), so those checks skip here; the always-run tests pin what
a host without cuML does (the CPU path, and a Predict chain with the CPU route only).

Tolerances (cuml_parts' docstring): ridge coefficients 1e-6 relative; logistic coefficients 1e-3
absolute on standardised features; FIL (single precision, as scikit-learn's trees) classes
identical, probabilities and regression values within 1e-6."""
from __future__ import annotations

import numpy as np
import pytest

from utils.engine.backend import cpu_backend, resolve_backend
from utils.engine.models import ModelConfig
from utils.engine.models.cuml_parts import cuml_of
from utils.engine.models.linear import LogisticPredictor, RidgePredictor
from utils.engine.models.random_forest import RandomForestPredictor
from utils.serving.device_chain import build_routes

CUML = cuml_of(None)
NO_CUML = ("cuML is not installed here (a GPU-only package of requirements-gpu.txt); this CPU-equivalence "
           "check is not a reference parity test, so CI=true's no-skip rule does not apply")
needs_cuml = pytest.mark.skipif(CUML is None, reason=NO_CUML)
COLUMNS = ("a", "b", "c", "d")


def data(classification: bool, rows: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(rows, len(COLUMNS))) * [1.0, 5.0, 0.1, 2.0] + [0.0, 3.0, -1.0, 0.5]
    signal = features @ np.array([0.8, -0.3, 4.0, 0.5]) + rng.normal(0, 0.5, rows)
    return features, (signal > np.median(signal)).astype(np.float64) if classification else signal


def config(model_type: str, device: str = "auto", **params) -> ModelConfig:
    return ModelConfig(model_type=model_type, feature_columns=COLUMNS, target_column="y", params=params, device=device)


def test_without_cuml_forests_are_served_on_the_cpu_only():
    if CUML is not None:
        pytest.skip("cuML is installed here: the FIL route is checked by test_fil_serves_forests_like_sklearn")
    features, target = data(True)
    forest = RandomForestPredictor(config("random_forest", n_estimators=5, max_depth=4))
    forest.fit(features, target)
    with pytest.raises(RuntimeError, match="cuML"):
        forest.to_device("gpu:0")
    assert [route.device for route in build_routes(forest, None, "gpu:0")] == ["cpu"]


def test_linear_models_train_on_the_cpu_backend_as_before():
    features, target = data(False)
    ridge = RidgePredictor(config("ridge", alpha=2.0), cpu_backend())
    assert ridge.fit(features, target).device == "cpu" and ridge.metadata()["device"] == "cpu"


def gpu_backend():
    backend = resolve_backend("auto")
    if not backend.is_gpu:
        pytest.skip("no CUDA device: cuML is installed but cannot run here")
    return backend


@needs_cuml
def test_cuml_ridge_equals_the_closed_form():
    features, target = data(False)
    cpu = RidgePredictor(config("ridge", alpha=2.0), cpu_backend())
    cpu.fit(features, target)
    gpu = RidgePredictor(config("ridge", "gpu", alpha=2.0), gpu_backend())
    assert gpu.fit(features, target).device.startswith("gpu")
    cpu_coef, cpu_intercept = cpu.raw_coefficients()
    gpu_coef, gpu_intercept = gpu.raw_coefficients()
    np.testing.assert_allclose(gpu_coef, cpu_coef, rtol=1e-6)
    np.testing.assert_allclose(gpu_intercept, cpu_intercept, rtol=1e-6)


@needs_cuml
def test_cuml_logistic_matches_sklearn():
    features, target = data(True)
    cpu = LogisticPredictor(config("logistic", C=1.0), cpu_backend())
    cpu.fit(features, target)
    gpu = LogisticPredictor(config("logistic", "gpu", C=1.0), gpu_backend())
    assert gpu.fit(features, target).device.startswith("gpu")
    cpu_model = cpu.pipeline.named_steps["model"]
    gpu_model = gpu.pipeline.named_steps["model"]
    np.testing.assert_allclose(gpu_model.coef_, cpu_model.coef_, atol=1e-3)
    margin = np.abs(cpu.predict_proba(features)[:, 1] - 0.5) > 0.05  # rows not on the boundary
    np.testing.assert_array_equal(gpu.predict(features)[margin], cpu.predict(features)[margin])


@needs_cuml
@pytest.mark.parametrize("classification", [True, False])
def test_fil_serves_forests_like_sklearn(classification):
    gpu_backend()
    features, target = data(classification)
    forest = RandomForestPredictor(config("random_forest", n_estimators=20, max_depth=8), cpu_backend())
    forest.fit(features, target)
    placed = forest.to_device("gpu:0")
    if classification:
        np.testing.assert_array_equal(placed.predict(features), forest.predict(features))
        np.testing.assert_allclose(placed.predict_proba(features), forest.predict_proba(features), atol=1e-6)
    else:
        np.testing.assert_allclose(placed.predict(features), forest.predict(features), rtol=1e-6, atol=1e-6)
    assert [route.device for route in build_routes(forest, None, "gpu:0")] == ["gpu:0", "cpu"]
