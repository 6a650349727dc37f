"""scikit-learn's own metric functions, the reference our evaluation is checked against."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as sk_metrics


def binary_reference(truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": sk_metrics.accuracy_score(truth, predicted),
        "precision": sk_metrics.precision_score(truth, predicted),
        "recall": sk_metrics.recall_score(truth, predicted),
        "f1": sk_metrics.f1_score(truth, predicted),
        "roc_auc": sk_metrics.roc_auc_score(truth, proba[:, 1]),
        "log_loss": sk_metrics.log_loss(truth, proba),
    }
