"""cuML pieces shared by the model types (only used when cuML imports; never imported by tests of
CPU paths): linear estimators fitted on the GPU then held as their scikit-learn twins (so saving,
loading and CPU prediction stay scikit-learn's), and FIL (cuML's Forest Inference Library) serving
a fitted scikit-learn forest on a GPU.

Equivalence with the CPU (tests/unit/test_cuml_models.py, where cuML is installed): ridge
coefficients within 1e-6 relative of scikit-learn's closed form; logistic coefficients within
1e-3 (both minimise the same L2-penalised log-loss with L-BFGS, to their own tolerances) and
predictions equal on well-separated rows; FIL in single precision (scikit-learn's trees compare
float32 inputs too): class predictions identical, probabilities and regression values within 1e-6.
"""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np

FIL_PRECISION = "single"  # as scikit-learn's trees: float32 inputs and thresholds


def cuml_of(backend: Any) -> Any:
    """The cuML module a backend found at resolve time, else an import attempt (None if absent)."""
    extras = getattr(backend, "extras", None) or {}
    if extras.get("cuml") is not None:
        return extras["cuml"]
    try:
        return importlib.import_module("cuml")
    except Exception:
        return None


def _host(values: Any) -> np.ndarray:
    if hasattr(values, "get"):  # CuPy
        values = values.get()
    elif hasattr(values, "to_numpy"):  # cuDF
        values = values.to_numpy()
    return np.asarray(values)


def fit_linear_on_gpu(cuml: Any, sklearn_estimator: Any, features: np.ndarray, target: np.ndarray) -> Any:
    """Fit ``sklearn_estimator``'s cuML counterpart (same class name and parameters) on the GPU and
    return ``sklearn_estimator`` carrying the fitted coefficients (``coef_``, ``intercept_``,
    ``classes_``, ``n_features_in_``), so it predicts and saves like a CPU-fitted one."""
    name = type(sklearn_estimator).__name__
    params = {key: value for key, value in sklearn_estimator.get_params().items()
              if key in _CUML_PARAMS.get(name, ())}
    estimator = getattr(cuml.linear_model, name)(**params)
    estimator.fit(np.ascontiguousarray(features, dtype=np.float64), np.ascontiguousarray(target, dtype=np.float64))
    coef = _host(estimator.coef_).astype(np.float64)
    intercept = _host(estimator.intercept_).astype(np.float64)
    if name == "LogisticRegression":
        sklearn_estimator.classes_ = np.unique(target)
        sklearn_estimator.coef_ = np.atleast_2d(coef).reshape(-1, features.shape[1])
        sklearn_estimator.intercept_ = np.atleast_1d(intercept)
        sklearn_estimator.n_iter_ = np.asarray([int(np.max(_host(getattr(estimator, "n_iter_", 0))))], dtype=np.int32)
    else:
        sklearn_estimator.coef_ = coef.reshape(features.shape[1])
        sklearn_estimator.intercept_ = float(np.ravel(intercept)[0]) if np.size(intercept) else 0.0
    sklearn_estimator.n_features_in_ = features.shape[1]
    return sklearn_estimator


_CUML_PARAMS = {"Ridge": ("alpha", "fit_intercept"), "LogisticRegression": ("C", "max_iter", "fit_intercept", "tol")}


class FilForest:
    """A fitted scikit-learn forest served by FIL on one GPU, with the scikit-learn estimator's
    predict/predict_proba shapes (host NumPy out) and its feature importances."""

    def __init__(self, cuml: Any, sklearn_forest: Any, classification: bool, device_id: int = 0) -> None:
        self.sklearn = sklearn_forest
        self.classification = classification
        load = cuml.fil.ForestInference.load_from_sklearn
        try:
            self.fil = load(sklearn_forest, is_classifier=classification, precision=FIL_PRECISION, device_id=device_id)
        except TypeError:  # a cuML whose loader takes no device_id: the current device
            self.fil = load(sklearn_forest, is_classifier=classification, precision=FIL_PRECISION)

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.sklearn.feature_importances_

    def predict(self, features: np.ndarray) -> np.ndarray:
        values = _host(self.fil.predict(np.ascontiguousarray(features, dtype=np.float32)))
        return values.reshape(features.shape[0], -1)[:, 0] if values.ndim > 1 else values

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return _host(self.fil.predict_proba(np.ascontiguousarray(features, dtype=np.float32))).astype(np.float64)
