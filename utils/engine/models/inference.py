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
    """Validate ``columns`` against ``predictor`` and return (predictions, probabilities or None)."""
    features = prepare_features(predictor.metadata(), columns)
    return predictor.predict(features), predictor.predict_proba(features)
