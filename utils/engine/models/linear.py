"""Linear models on standardised features: ``linear`` (OLS) and ``ridge`` regression, ``logistic``
classification. Each is a scikit-learn Pipeline(StandardScaler, model), saved with skops.
``ridge`` and ``logistic`` train with cuML on a GPU backend that has it (device ``auto`` or ``gpu``):
the solver runs on the GPU and its coefficients go into the scikit-learn estimator
(``cuml_parts.fit_linear_on_gpu``), so saving, loading and prediction are unchanged.

Feature importance is |coefficient| on the standardised inputs (mean over classes for
multiclass), normalised to sum to 1; ``raw_coefficients`` gives them in the features' own units.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as skops_io
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .base import BasePredictor, ModelConfig, ProgressCallback, TrainingResult, report_progress
from .cuml_parts import fit_linear_on_gpu
from .errors import InvalidTrainingData
from .param_rules import Rule, boolean, clean_params, count, real
from .predictor_parts import checked_features, checked_target, common_metadata, encode_labels, saved_classes
from .registry import register_model

MODEL_FILE = "model.skops"
FORMAT = "skops"
SCALE_STEP, MODEL_STEP = "scale", "model"
_FIT_INTERCEPT = Rule(boolean, "true or false")


class StandardisedLinearPredictor(BasePredictor):
    """Shared by the three linear model types; subclasses name the estimator and its params."""

    estimator_class: type = LinearRegression
    rules: dict[str, Rule] = {}
    defaults: dict[str, Any] = {}
    gpu_capable = False  # trains with cuML on a GPU backend (ridge, logistic)

    def __init__(self, config: ModelConfig, backend: Any = None) -> None:
        super().__init__(config, backend)
        self.task: str | None = self.supported_tasks[0]
        self.classes: np.ndarray | None = None
        self.pipeline: Pipeline | None = None
        self.trained_device = "cpu"  # where fit ran; a loaded model predicts on the CPU

    @classmethod
    def validated_params(cls, config: ModelConfig) -> dict[str, Any]:
        return clean_params(cls.model_type, config.params, cls.rules, cls.defaults)

    @classmethod
    def trusted_types(cls) -> list[str]:
        """Exactly the non-default types the saved pipeline contains; skops refuses others on load."""
        return [f"{kind.__module__}.{kind.__qualname__}" for kind in (Pipeline, StandardScaler, cls.estimator_class)]

    def fit(self, features: np.ndarray, target: np.ndarray,
            progress: ProgressCallback | None = None) -> TrainingResult:
        started = time.perf_counter()
        features = checked_features(features, self.config.feature_columns)
        self.task = self.task_for(self.config.task, np.asarray(target))
        target = checked_target(target, features.shape[0], self.config.target_column, self.task)
        if self.task == "classification":
            self.classes, fit_target = encode_labels(target)
            if self.classes.size < 2:
                raise InvalidTrainingData(f"{self.model_type} needs at least two classes in "
                                          f"{self.config.target_column!r}; got {self.classes.tolist()}")
        else:
            self.classes, fit_target = None, target.astype(np.float64)
        cuml = self._cuml()
        if cuml is None:
            pipeline = Pipeline([(SCALE_STEP, StandardScaler()), (MODEL_STEP, self.estimator_class(**self.params))])
            self.pipeline, self.trained_device = pipeline.fit(features, fit_target), "cpu"
        else:  # the solver on the GPU; the fitted coefficients held by the scikit-learn estimator
            scaler = StandardScaler().fit(features)
            model = fit_linear_on_gpu(cuml, self.estimator_class(**self.params), scaler.transform(features), fit_target)
            self.pipeline, self.trained_device = Pipeline([(SCALE_STEP, scaler), (MODEL_STEP, model)]), self.backend.label
        report_progress(progress, 1.0)  # one solver call: nothing to report in between
        return TrainingResult(task=self.task, n_rows=features.shape[0], n_features=features.shape[1],
                              fit_seconds=time.perf_counter() - started, device=self.trained_device)

    def _cuml(self) -> Any:
        """cuML for ``ridge``/``logistic`` on a GPU backend that has it (``device`` auto or gpu;
        ``gpu`` without cuML raises BackendUnavailable); None for the scikit-learn path."""
        if not self.gpu_capable or self.backend is None:
            return None
        return self.backend.cuml(self.config.device, self.model_type)

    def _require_fitted(self) -> Pipeline:
        if self.pipeline is None:
            raise RuntimeError(f"{self.model_type} predictor is not fitted")
        return self.pipeline

    def predict(self, features: np.ndarray) -> np.ndarray:
        predictions = self._require_fitted().predict(checked_features(features, self.config.feature_columns))
        if self.task == "classification":
            return self.classes[np.asarray(predictions).astype(np.int64)]
        return np.asarray(predictions, dtype=np.float64)

    def predict_proba(self, features: np.ndarray) -> np.ndarray | None:
        pipeline = self._require_fitted()
        if self.task != "classification":
            return None
        return np.asarray(pipeline.predict_proba(checked_features(features, self.config.feature_columns)),
                          dtype=np.float64)

    def feature_importance(self) -> dict[str, float]:
        coefficients = np.atleast_2d(self._require_fitted().named_steps[MODEL_STEP].coef_)
        weights = np.nan_to_num(np.abs(coefficients).mean(axis=0), nan=0.0, posinf=0.0, neginf=0.0)
        total = weights.sum()
        shares = weights / total if total > 0 else np.zeros_like(weights)
        return {name: float(share) for name, share in zip(self.config.feature_columns, shares)}

    def raw_coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """(coefficients (n_outputs, k), intercepts (n_outputs,)) for unscaled features: one output
        for regression and binary logistic (the larger class), one per class for multiclass."""
        pipeline = self._require_fitted()
        scaler, model = pipeline.named_steps[SCALE_STEP], pipeline.named_steps[MODEL_STEP]
        coefficients = np.atleast_2d(model.coef_) / scaler.scale_
        intercepts = np.atleast_1d(model.intercept_) - coefficients @ scaler.mean_
        return coefficients, intercepts

    def metadata(self) -> dict[str, Any]:
        return common_metadata(self, self.trained_device, FORMAT)

    def _write_model(self, directory: Path) -> None:
        skops_io.dump(self._require_fitted(), directory / MODEL_FILE)

    def _read_model(self, directory: Path, metadata: dict[str, Any]) -> None:
        pipeline = skops_io.load(directory / MODEL_FILE, trusted=self.trusted_types())
        steps = [type(step) for _, step in getattr(pipeline, "steps", [])] if type(pipeline) is Pipeline else []
        if steps != [StandardScaler, self.estimator_class]:
            raise ValueError(f"{directory / MODEL_FILE} holds {type(pipeline).__name__}, expected a Pipeline of "
                             f"StandardScaler and {self.estimator_class.__name__}")
        self.pipeline = pipeline
        self.classes = saved_classes(metadata)
        self.trained_device = metadata.get("device", "cpu")


@register_model("linear")
class LinearRegressionPredictor(StandardisedLinearPredictor):
    supported_tasks = ("regression",)
    estimator_class = LinearRegression
    rules = {"fit_intercept": _FIT_INTERCEPT}
    defaults = {"fit_intercept": True}


@register_model("ridge")
class RidgePredictor(StandardisedLinearPredictor):
    supported_tasks = ("regression",)
    gpu_capable = True
    estimator_class = Ridge
    rules = {"alpha": Rule(real(0.0), "number >= 0 (L2 penalty on standardised coefficients)"),
             "fit_intercept": _FIT_INTERCEPT}
    defaults = {"alpha": 1.0, "fit_intercept": True}


@register_model("logistic")
class LogisticPredictor(StandardisedLinearPredictor):
    supported_tasks = ("classification",)
    gpu_capable = True
    estimator_class = LogisticRegression
    rules = {"C": Rule(real(0.0, low_open=True), "number > 0 (inverse L2 penalty strength)"),
             "max_iter": Rule(count(1, 100_000), "integer 1..100000"),
             "fit_intercept": _FIT_INTERCEPT}
    defaults = {"C": 1.0, "max_iter": 1000, "fit_intercept": True}
