"""Turn a prediction request's columns into the feature matrix a saved model expects."""
from __future__ import annotations

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
    return feature_matrix(numeric_columns(columns, feature_columns, InvalidInputData), feature_columns)


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
