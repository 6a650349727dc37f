"""Random forest on scikit-learn, or cuML when the backend is a GPU with cuML installed.

Class labels are encoded to 0..k-1 before fitting (cuML needs it; it also pins the
``predict_proba`` column order), and decoded back to the original values on predict.
Saved with skops; a cuML forest is converted to scikit-learn on save (``as_sklearn``), so a
loaded model predicts on the CPU, or on a GPU through cuML's FIL (``to_device``: Predict's GPU
route on a server with cuML; ``cuml_parts.FilForest``).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as skops_io
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.tree._tree import Tree

from .base import BasePredictor, ModelConfig, ProgressCallback, TrainingResult, resolve_task
from .cuml_parts import FilForest, cuml_of
from .errors import InvalidTrainingData
from .predictor_parts import common_metadata, saved_classes
from .random_forest_params import validate_params
from .registry import register_model

MODEL_FILE = "model.skops"
FORMAT = "skops"
PROGRESS_CHUNKS = 10
_SKLEARN_CLASSES = {"classification": RandomForestClassifier, "regression": RandomForestRegressor}
# Exactly the non-default types a fitted forest contains; skops refuses anything else on load.
TRUSTED_TYPES = [f"{cls.__module__}.{cls.__qualname__}" for cls in (
    RandomForestClassifier, RandomForestRegressor, DecisionTreeClassifier, DecisionTreeRegressor, Tree)]


def _tree_counts(total: int, chunks: int = PROGRESS_CHUNKS) -> list[int]:
    """Increasing forest sizes ending at ``total``, one per progress report."""
    return [int(count) for count in np.unique(np.linspace(0, total, chunks + 1).round().astype(int))[1:]]


@register_model("random_forest")
class RandomForestPredictor(BasePredictor):
    def __init__(self, config: ModelConfig, backend: Any = None) -> None:
        super().__init__(config, backend)
        self.task: str | None = None if config.task == "auto" else config.task
        self.classes: np.ndarray | None = None
        self.estimator: Any = None
        self.trained_device = "cpu"  # where fit ran; a loaded model predicts on the CPU

    @classmethod
    def validated_params(cls, config: ModelConfig) -> dict[str, Any]:
        return validate_params(config.params, config.random_state)

    # -- training -------------------------------------------------------------------------
    def fit(self, features: np.ndarray, target: np.ndarray,
            progress: ProgressCallback | None = None) -> TrainingResult:
        started = time.perf_counter()
        features = self._checked_features(features)
        target = np.asarray(target)
        if target.shape != (features.shape[0],):
            raise InvalidTrainingData(f"target {self.config.target_column!r} has shape {target.shape}, "
                                      f"expected ({features.shape[0]},)")
        self.task = resolve_task(self.config.task, target)
        if self.task == "classification":
            classes, encoded_target = np.unique(target, return_inverse=True)
            self.classes = classes.astype(np.float64) if classes.dtype.kind in "biuf" else classes
            fit_target = encoded_target.astype(np.int32)
        else:
            if target.dtype.kind not in "biuf":
                raise InvalidTrainingData(f"regression target {self.config.target_column!r} must be numeric")
            self.classes, fit_target = None, target.astype(np.float64)

        cuml = self.backend.cuml(self.config.device)
        if cuml is not None:
            self._fit_cuml(cuml, features, fit_target, progress)
        else:
            self._fit_sklearn(features, fit_target, progress)
        return TrainingResult(task=self.task, n_rows=features.shape[0], n_features=features.shape[1],
                              fit_seconds=time.perf_counter() - started, device=self.trained_device)

    def _fit_sklearn(self, features: np.ndarray, fit_target: np.ndarray,
                     progress: ProgressCallback | None) -> None:
        # warm_start grows the same forest chunk by chunk; sklearn draws tree seeds so that the
        # result equals one fit with the full n_estimators.
        estimator = _SKLEARN_CLASSES[self.task](**{**self.params, "warm_start": True})
        for tree_count in _tree_counts(self.params["n_estimators"]):
            estimator.set_params(n_estimators=tree_count)
            estimator.fit(features, fit_target)
            if progress is not None:
                progress(tree_count / self.params["n_estimators"])
        estimator.set_params(warm_start=False)
        self.estimator, self.trained_device = estimator, "cpu"

    def _fit_cuml(self, cuml: Any, features: np.ndarray, fit_target: np.ndarray,
                  progress: ProgressCallback | None) -> None:
        # cuML has no n_jobs and needs an integer max_depth (its default, 16, stands in for None).
        gpu_params = {name: value for name, value in self.params.items()
                      if name != "n_jobs" and not (name == "max_depth" and value is None)}
        estimator_class = (cuml.ensemble.RandomForestClassifier if self.task == "classification"
                           else cuml.ensemble.RandomForestRegressor)
        estimator = estimator_class(**gpu_params)
        estimator.fit(features.astype(np.float32), fit_target.astype(
            np.int32 if self.task == "classification" else np.float32))
        if progress is not None:
            progress(1.0)  # cuML builds all trees in one call
        self.estimator, self.trained_device = estimator, self.backend.label

    # -- inference ------------------------------------------------------------------------
    def _checked_features(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        expected = len(self.config.feature_columns)
        if features.ndim != 2 or features.shape[1] != expected:
            raise ValueError(f"features must have shape (n, {expected}) for columns "
                             f"{', '.join(self.config.feature_columns)}; got {features.shape}")
        return features

    def _require_fitted(self) -> None:
        if self.estimator is None:
            raise RuntimeError("random_forest predictor is not fitted")

    def predict(self, features: np.ndarray) -> np.ndarray:
        self._require_fitted()
        predictions = np.asarray(self._host(self.estimator.predict(self._estimator_input(features))))
        if self.task == "classification":
            return self.classes[predictions.astype(np.int64)]
        return predictions.astype(np.float64)

    def predict_proba(self, features: np.ndarray) -> np.ndarray | None:
        self._require_fitted()
        if self.task != "classification":
            return None
        probabilities = self._host(self.estimator.predict_proba(self._estimator_input(features)))
        return np.asarray(probabilities, dtype=np.float64)

    def _estimator_input(self, features: np.ndarray) -> np.ndarray:
        features = self._checked_features(features)
        return features if isinstance(self.estimator, tuple(_SKLEARN_CLASSES.values())) \
            else features.astype(np.float32)

    def to_device(self, device: str) -> "RandomForestPredictor":
        """A copy of this forest served by cuML's FIL on ``device`` ("gpu:N"): the serving chain's
        GPU route (``utils/serving/device_chain.build_routes``; the CPU route stays behind it).
        Raises when cuML is not installed (the chain then serves from the CPU)."""
        self._require_fitted()
        cuml = cuml_of(self.backend)
        if cuml is None:
            raise RuntimeError("cuML (FIL) is not installed; random forests are served on the CPU")
        forest = self.estimator if isinstance(self.estimator, tuple(_SKLEARN_CLASSES.values())) \
            else self.estimator.as_sklearn()
        placed = copy.copy(self)
        placed.estimator = FilForest(cuml, forest, self.task == "classification", int(device.rsplit(":", 1)[-1]))
        placed.backend = None  # FilForest hands back host arrays
        return placed

    def _host(self, values: Any) -> Any:
        return self.backend.to_numpy(values) if self.backend is not None else values

    def feature_importance(self) -> dict[str, float]:
        self._require_fitted()
        importances = getattr(self.estimator, "feature_importances_", None)
        if importances is None:
            return {}
        importances = np.nan_to_num(np.asarray(importances, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return {name: float(value) for name, value in zip(self.config.feature_columns, importances)}

    # -- persistence ----------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return common_metadata(self, self.trained_device, FORMAT)

    def _write_model(self, directory: Path) -> None:
        self._require_fitted()
        estimator = self.estimator
        if not isinstance(estimator, tuple(_SKLEARN_CLASSES.values())):
            if not hasattr(estimator, "as_sklearn"):
                raise NotImplementedError("this cuML version cannot convert its forest to scikit-learn "
                                          "(as_sklearn); it cannot be saved in a safe format")
            estimator = estimator.as_sklearn()
        skops_io.dump(estimator, directory / MODEL_FILE)

    def _read_model(self, directory: Path, metadata: dict[str, Any]) -> None:
        estimator = skops_io.load(directory / MODEL_FILE, trusted=TRUSTED_TYPES)
        expected_class = _SKLEARN_CLASSES[self.task]
        if type(estimator) is not expected_class:
            raise ValueError(f"{directory / MODEL_FILE} holds {type(estimator).__name__}, "
                             f"expected {expected_class.__name__}")
        self.estimator = estimator
        self.trained_device = metadata.get("device", "cpu")
        self.classes = saved_classes(metadata)
