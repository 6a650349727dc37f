"""Model metrics (all finite floats, JSON safe) and the time-ordered train/validation split.

Classification: accuracy, precision, recall, f1 — binary when at most two labels occur
(positive label = the larger one), otherwise weighted averages; roc_auc and log_loss need
probabilities and are omitted when undefined (one class present, or labels the probability
columns do not cover). Regression: rmse, mae, r2, ic (Pearson correlation; 0.0 if undefined).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from sklearn import metrics as sk_metrics

MIN_ROWS_FOR_SPLIT = 10
MIN_VALIDATION_ROWS = 2


class TimeSplit(NamedTuple):
    """Row indices in time order; an empty ``validation`` means metrics are in-sample."""

    train: np.ndarray
    validation: np.ndarray

    @property
    def metrics_scope(self) -> str:
        return "validation" if self.validation.size else "in_sample"


def time_split(n: int, validation_fraction: float,
               classification_target: Sequence | np.ndarray | None = None) -> TimeSplit:
    """Train on the head, validate on the last ``floor(n * validation_fraction)`` rows (no shuffle:
    later rows never inform earlier predictions).

    Returns no validation rows (train = all rows; metrics then describe the training data and are
    reported as ``in_sample``) when n < 10, the validation part would have < 2 rows, the train
    part would have < 2 rows, or — given ``classification_target`` — the train part holds fewer
    than 2 classes.
    """
    all_rows = np.arange(n)
    no_validation = TimeSplit(all_rows, all_rows[:0])
    n_validation = int(math.floor(n * validation_fraction))
    n_train = n - n_validation
    if n < MIN_ROWS_FOR_SPLIT or n_validation < MIN_VALIDATION_ROWS or n_train < 2:
        return no_validation
    if classification_target is not None and np.unique(np.asarray(classification_target)[:n_train]).size < 2:
        return no_validation
    return TimeSplit(all_rows[:n_train], all_rows[n_train:])


def _finite(scores: dict[str, float]) -> dict[str, float]:
    """Drop anything NaN/inf so every reported metric is a JSON-safe float."""
    return {name: float(value) for name, value in scores.items() if math.isfinite(float(value))}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    mse = sk_metrics.mean_squared_error(y_true, y_pred)
    ic = 0.0
    if y_true.size >= 2 and np.std(y_true) > 0 and np.std(y_pred) > 0:
        ic = float(np.corrcoef(y_pred, y_true)[0, 1])
    return _finite({
        "rmse": math.sqrt(mse),
        "mae": sk_metrics.mean_absolute_error(y_true, y_pred),
        "r2": sk_metrics.r2_score(y_true, y_pred) if y_true.size >= 2 else 0.0,
        "ic": ic if math.isfinite(ic) else 0.0,
    })


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, y_proba: np.ndarray | None = None,
                           classes: Sequence | np.ndarray | None = None) -> dict[str, float]:
    """``classes`` labels the columns of ``y_proba`` (the model's class order); by default the
    sorted labels seen in ``y_true`` and ``y_pred``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    seen = np.unique(np.concatenate([y_true, y_pred]))
    classes = seen if classes is None else np.asarray(classes)
    labels = np.unique(np.concatenate([seen, classes]))
    if labels.size <= 2:
        average = {"average": "binary", "pos_label": labels[-1]}
    else:
        average = {"average": "weighted"}
    scores = {
        "accuracy": sk_metrics.accuracy_score(y_true, y_pred),
        "precision": sk_metrics.precision_score(y_true, y_pred, zero_division=0, **average),
        "recall": sk_metrics.recall_score(y_true, y_pred, zero_division=0, **average),
        "f1": sk_metrics.f1_score(y_true, y_pred, zero_division=0, **average),
    }
    if y_proba is not None:
        scores.update(_probability_metrics(y_true, np.asarray(y_proba, dtype=np.float64), classes))
    return _finite(scores)


def _probability_metrics(y_true: np.ndarray, y_proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    if y_proba.ndim != 2 or y_proba.shape[1] != classes.size or classes.size < 2:
        return {}
    if not np.isin(y_true, classes).all():  # a label the model never saw has no probability column
        return {}
    scores = {"log_loss": sk_metrics.log_loss(y_true, y_proba, labels=classes)}
    present = np.unique(y_true)
    if classes.size == 2 and present.size == 2:
        positive = classes.max()  # the larger label, as for precision/recall
        positive_column = int(np.flatnonzero(classes == positive)[0])
        scores["roc_auc"] = sk_metrics.roc_auc_score(y_true == positive, y_proba[:, positive_column])
    elif classes.size > 2 and present.size == classes.size:
        scores["roc_auc"] = sk_metrics.roc_auc_score(y_true, y_proba, multi_class="ovr",
                                                     average="weighted", labels=classes)
    return scores


def evaluate(task: str, y_true: np.ndarray, y_pred: np.ndarray, y_proba: np.ndarray | None = None,
             classes: Sequence | np.ndarray | None = None) -> dict[str, float]:
    """Metrics for ``task`` ('classification' or 'regression'); see the module docstring."""
    if task == "classification":
        return classification_metrics(y_true, y_pred, y_proba, classes)
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
