"""Pieces every array-in predictor needs: input checks, label encoding, common metadata."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import InvalidTrainingData



def checked_features(features: np.ndarray, feature_columns: Sequence[str]) -> np.ndarray:
    """``features`` as an (n, k) float64 matrix for ``feature_columns`` or ``ValueError``."""
    features = np.asarray(features, dtype=np.float64)
    expected = len(feature_columns)
    if features.ndim != 2 or features.shape[1] != expected:
        raise ValueError(f"features must have shape (n, {expected}) for columns "
                         f"{', '.join(feature_columns)}; got {features.shape}")
    return features


def checked_target(target: np.ndarray, n_rows: int, target_column: str, task: str) -> np.ndarray:
    target = np.asarray(target)
    if target.shape != (n_rows,):
        raise InvalidTrainingData(f"target {target_column!r} has shape {target.shape}, expected ({n_rows},)")
    if task == "regression" and target.dtype.kind not in "biuf":
        raise InvalidTrainingData(f"regression target {target_column!r} must be numeric")
    return target


def encode_labels(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes, codes 0..k-1); numeric classes become float64 so they survive JSON unchanged."""
    classes, codes = np.unique(target, return_inverse=True)
    classes = classes.astype(np.float64) if classes.dtype.kind in "biuf" else classes
    return classes, codes.astype(np.int32)


def known_label_rows(target: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row mask, codes) for the rows of ``target`` whose label is one of ``classes``."""
    target = np.asarray(target)
    if classes.dtype.kind == "f" and target.dtype.kind in "biuf":
        target = target.astype(np.float64)
    known = np.isin(target, classes)
    return known, np.searchsorted(classes, target[known]).astype(np.int32)


def saved_classes(metadata: Mapping[str, Any]) -> np.ndarray | None:
    return None if metadata.get("classes") is None else np.asarray(metadata["classes"])


def common_metadata(predictor: Any, device: str, model_format: str) -> dict[str, Any]:
    """The metadata keys every predictor writes; ``predictor`` has task, classes and params."""
    return {
        "model_type": predictor.model_type,
        "task": predictor.task,
        "feature_columns": list(predictor.config.feature_columns),
        "target_column": predictor.config.target_column,
        "classes": None if predictor.classes is None else predictor.classes.tolist(),
        "params": dict(predictor.params),
        "random_state": predictor.config.random_state,
        "device": device,  # where it trained; a loaded model predicts on the CPU
        "format": model_format,
    }
