"""Turn a prediction request's columns into the feature matrix a saved model expects."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .base import BasePredictor
from .columns import feature_matrix, numeric_columns
from .errors import InvalidInputData


def prepare_features(predictor_metadata: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    """(n, k) float64 matrix in the model's ``feature_columns`` order.

    The request must carry exactly the model's feature columns: missing or extra columns,
    unequal lengths, no rows, non-numeric or non-finite values raise ``InvalidInputData``.
    """
    feature_columns = list(predictor_metadata["feature_columns"])
    if not isinstance(columns, Mapping):
        raise InvalidInputData(f"columns must be a mapping of column name to values, got {type(columns).__name__}")
    missing = [name for name in feature_columns if name not in columns]
    extra = sorted(str(name) for name in columns if name not in feature_columns)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing column(s): {', '.join(map(repr, missing))}")
        if extra:
            problems.append(f"unexpected column(s): {', '.join(map(repr, extra))}")
        raise InvalidInputData(f"{'; '.join(problems)}; the model uses {', '.join(map(repr, feature_columns))}")
    small = _small_matrix(columns, feature_columns)
    if small is not None:
        return small
    return feature_matrix(numeric_columns(columns, feature_columns, InvalidInputData), feature_columns)


SMALL_ROWS = 64  # requests up to this many rows may take the plain-Python path below
_EXACT_INT = 2 ** 53


def _small_matrix(columns: Mapping[str, Any], feature_columns: list[str]) -> np.ndarray | None:
    """The matrix of a small request whose values are all plain finite floats/ints (no bools),
    built without per-column numpy work (single-row Predict calls are mostly that work); None when
    anything is unusual, and the full check then accepts or explains it. Same values either way."""
    first = columns[feature_columns[0]]
    if type(first) is not list or not 0 < len(first) <= SMALL_ROWS:
        return None
    rows = len(first)
    for name in feature_columns:
        column = columns[name]
        if type(column) is not list or len(column) != rows:
            return None
        for value in column:
            kind = type(value)
            if not ((kind is float and math.isfinite(value)) or (kind is int and -_EXACT_INT < value < _EXACT_INT)):
                return None
    return np.array([columns[name] for name in feature_columns], dtype=np.float64).T.copy()


def predict_columns(predictor: BasePredictor, columns: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate ``columns`` against ``predictor`` and return (predictions, probabilities or None).

    One prediction per input row. A sequence model (``history_rows > 0``, i.e. window - 1) reads
    each row together with the rows before it, so rows must be in time order and number at least
    ``history_rows + 1`` (else ``InvalidInputData``); its first ``history_rows`` predictions and
    probability rows are NaN. To predict the latest bar, send the last ``window`` rows.
    """
    return predict_features(predictor, prepare_features(predictor.metadata(), columns))


def predict_features(predictor: BasePredictor, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions, probabilities or None) for a matrix ``prepare_features`` returned.

    Rows of a row-wise model (``history_rows == 0``) are independent, so matrices of several
    requests may be stacked into one call and the results split back (Predict's micro-batching).
    """
    return predictor.predict(features), predictor.predict_proba(features)
