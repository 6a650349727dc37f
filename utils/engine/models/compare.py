"""``compare_models``: train several model types on the same data and rank them.

Every candidate goes through ``train_model`` with the same columns, task and validation split, so
the held-out metrics are comparable. Ranked by ``rank_metric`` (default: ROC-AUC for a binary
classifier, accuracy for multiclass, R² for regression; lower-is-better metrics such as rmse,
mae and log_loss rank ascending).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from .base import BasePredictor, ModelConfig, ProgressCallback
from .errors import InvalidModelConfig
from .trainer import TrainingReport, train_model

LOWER_IS_BETTER = ("rmse", "mae", "log_loss")
MAX_CANDIDATES = 10


def default_rank_metric(task: str, metrics: Mapping[str, float]) -> str:
    if task == "regression":
        return "r2"
    return "roc_auc" if "roc_auc" in metrics else "accuracy"


def compare_models(model_types: list[str], config: ModelConfig, columns: Mapping[str, Any], backend: Any,
                   progress: ProgressCallback | None = None, rank_metric: str | None = None,
                   params_by_type: Mapping[str, dict] | None = None,
                   ) -> tuple[list[dict[str, Any]], BasePredictor, TrainingReport]:
    """``(ranked rows, best predictor, its report)``; each row: rank, model_type, metrics,
    training_seconds, device. ``config.model_type`` is ignored (each candidate's type is used)."""
    types = list(dict.fromkeys(model_types))
    if not 2 <= len(types) <= MAX_CANDIDATES:
        raise InvalidModelConfig(f"compare_models needs 2 to {MAX_CANDIDATES} distinct model types, got {len(types)}")
    params_by_type = params_by_type or {}
    results = []
    for index, model_type in enumerate(types):
        span = None
        if progress is not None:
            span = (lambda i: lambda fraction, *info: progress((i + fraction) / len(types)))(index)
        candidate = replace(config, model_type=model_type, params=dict(params_by_type.get(model_type, {})))
        predictor, report = train_model(candidate, columns, backend, progress=span)
        results.append((model_type, predictor, report))
    task = results[0][2].task
    metric = rank_metric or default_rank_metric(task, results[0][2].metrics)
    if any(metric not in report.metrics for _, _, report in results):
        available = ", ".join(sorted(results[0][2].metrics))
        raise InvalidModelConfig(f"rank metric {metric!r} is not reported for this task; available: {available}")
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    results.sort(key=lambda item: sign * item[2].metrics[metric])
    rows = [{"rank": rank, "model_type": model_type, "metrics": report.metrics, "rank_metric": metric,
             "training_seconds": report.training_seconds, "device": report.device}
            for rank, (model_type, _, report) in enumerate(results, 1)]
    _, best, best_report = results[0]
    return rows, best, best_report
