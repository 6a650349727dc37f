"""Column dict in, trained predictor and report out.

Convention: the model is first fit on the head of the rows (time order) and scored on the
tail; the returned model is then refit on ALL rows, so the saved model has seen the most recent
data. The reported metrics therefore estimate how the training procedure generalises (they
come from the train-split model), not the refit model itself. When no meaningful split exists
(see ``evaluation.time_split``) there is one fit on all rows and metrics are ``in_sample``.
Models with ``accepts_validation`` also get the tail in the split fit (early stopping, validation
loss in progress); the refit takes the split fit's ``final_fit_params()`` (e.g. its round count).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

import numpy as np

from .base import BasePredictor, DetailedProgress, ModelConfig, ProgressCallback
from .columns import feature_matrix, numeric_columns
from .errors import InvalidTrainingData
from .evaluation import evaluate, time_split
from .registry import MODEL_REGISTRY, ModelRegistry


@dataclass(frozen=True)
class TrainingReport:
    task: str
    metrics: dict[str, float]
    metrics_scope: str  # "validation" (held-out tail) or "in_sample"
    n_train: int  # rows of the fit that produced ``metrics``
    n_validation: int  # held-out rows scored (0 when in_sample)
    n_final_fit: int  # rows the returned model was fit on (all rows)
    feature_importance: dict[str, float]
    training_seconds: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _progress_span(progress: ProgressCallback | None, start: float, end: float) -> ProgressCallback | None:
    """Map a phase's 0..1 progress onto [start, end] of the whole job."""
    if progress is None:
        return None
    if isinstance(progress, DetailedProgress):
        return DetailedProgress(lambda fraction, info: progress(start + (end - start) * fraction, info))
    return lambda fraction: progress(start + (end - start) * fraction)


def _score(predictor: BasePredictor, task: str, features: np.ndarray, target: np.ndarray,
           scored_from: int = 0) -> dict[str, float]:
    """Metrics on rows ``scored_from:``; earlier rows are only history for a sequence model, whose
    first ``history_rows`` predictions are NaN (no full window) and are never scored."""
    first = max(scored_from, predictor.history_rows)
    classes = predictor.metadata().get("classes")
    probabilities = predictor.predict_proba(features)
    return evaluate(task, target[first:], predictor.predict(features)[first:],
                    None if probabilities is None else probabilities[first:], classes)


def train_model(config: ModelConfig, columns: Mapping[str, Any], backend: Any,
                progress: ProgressCallback | None = None,
                registry: ModelRegistry = MODEL_REGISTRY) -> tuple[BasePredictor, TrainingReport]:
    """Validate ``columns`` (feature and target columns; others are ignored), train, evaluate.

    Raises ``UnknownModelError``, ``InvalidModelParams``, ``InvalidTrainingData``; whatever
    ``progress`` raises propagates (that is how a job is cancelled).
    """
    started = time.perf_counter()
    predictor_class = registry.get(config.model_type)
    numeric = numeric_columns(columns, (*config.feature_columns, config.target_column), InvalidTrainingData)
    features = feature_matrix(numeric, config.feature_columns)
    target = numeric[config.target_column]
    task = predictor_class.task_for(config.task, target)
    config = replace(config, task=task)
    n_rows = target.shape[0]
    predictor = predictor_class(config, backend)  # validates params before any work is done

    split = time_split(n_rows, config.validation_fraction, target if task == "classification" else None)
    if split.validation.size:
        train_share = split.train.size / (split.train.size + n_rows)
        train_rows, validation_rows = split.train, split.validation
        validation = ({"validation": (features[validation_rows], target[validation_rows])}
                      if predictor_class.accepts_validation else {})
        predictor.fit(features[train_rows], target[train_rows], _progress_span(progress, 0.0, train_share),
                      **validation)
        # the rows just before the tail are the first validation windows' history, not scored
        history = min(predictor.history_rows, int(validation_rows[0]))
        scored_rows = np.arange(validation_rows[0] - history, validation_rows[-1] + 1)
        metrics = _score(predictor, task, features[scored_rows], target[scored_rows], scored_from=history)
        # what the split fit learned (e.g. early stopping's round count) carries into the refit
        config = replace(config, params={**config.params, **predictor.final_fit_params()})
        predictor = predictor_class(config, backend)
        fit_result = predictor.fit(features, target, _progress_span(progress, train_share, 1.0))
    else:
        fit_result = predictor.fit(features, target, progress)
        metrics = _score(predictor, task, features, target)

    report = TrainingReport(
        task=task, metrics=metrics, metrics_scope=split.metrics_scope, n_train=int(split.train.size),
        n_validation=int(split.validation.size), n_final_fit=n_rows,
        feature_importance=predictor.feature_importance(),
        training_seconds=time.perf_counter() - started, device=fit_result.device)
    return predictor, report
