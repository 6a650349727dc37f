"""Gradient-boosted trees on LightGBM: regression, binary and multiclass classification.

Labels are encoded to 0..k-1 (the ``predict_proba`` column order) and decoded on predict.
Given validation rows, every round's validation loss goes to ``DetailedProgress`` callbacks and,
with ``early_stopping_rounds``, training stops when it has not improved for that many rounds;
the model then keeps the best round's trees. Saved in LightGBM's text format (a model file is
data, never code), with JSON metadata.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from .base import BasePredictor, ModelConfig, ProgressCallback, ProgressInfo, TrainingResult, report_progress
from .gradient_boosting_params import lightgbm_params, validate_params
from .predictor_parts import (checked_features, checked_target, common_metadata, encode_labels,
                              known_label_rows, saved_classes)
from .registry import register_model

MODEL_FILE = "model.txt"
FORMAT = "lightgbm_text"
VALIDATION_NAME = "validation"
_LOSS = {"regression": "l2", "binary": "binary_logloss", "multiclass": "multi_logloss"}


def _objective(task: str, n_classes: int) -> str:
    if task == "regression":
        return "regression"
    return "multiclass" if n_classes > 2 else "binary"


@register_model("gradient_boosting")
class GradientBoostingPredictor(BasePredictor):
    accepts_validation = True

    def __init__(self, config: ModelConfig, backend: Any = None) -> None:
        super().__init__(config, backend)
        self.task: str | None = None if config.task == "auto" else config.task
        self.classes: np.ndarray | None = None
        self.booster: lgb.Booster | None = None
        self.best_iteration: int | None = None  # set when early stopping chose the round count
        self.validation_loss: float | None = None  # at the kept round, when validation rows were given
        self.trained_device = "cpu"

    @classmethod
    def validated_params(cls, config: ModelConfig) -> dict[str, Any]:
        return validate_params(config.params, config.random_state)

    # -- training -------------------------------------------------------------------------
    def fit(self, features: np.ndarray, target: np.ndarray, progress: ProgressCallback | None = None,
            validation: tuple[np.ndarray, np.ndarray] | None = None) -> TrainingResult:
        """``validation=(features, target)`` enables per-round validation loss and early stopping;
        validation rows whose label the training rows lack are left out."""
        started = time.perf_counter()
        features = checked_features(features, self.config.feature_columns)
        self.task = self.task_for(self.config.task, np.asarray(target))
        target = checked_target(target, features.shape[0], self.config.target_column, self.task)
        label = self._encode_training_target(target)
        n_classes = 0 if self.classes is None else self.classes.size
        objective = _objective(self.task, n_classes)
        device_params, self.trained_device = self.backend.lightgbm_device(self.config.device)
        params = {**lightgbm_params(self.params, objective, n_classes), **device_params,
                  "metric": _LOSS[objective]}
        train_set = lgb.Dataset(features, label, params=params, free_raw_data=True)
        valid_sets = self._validation_sets(validation, train_set)

        losses: list[float] = []
        callbacks = [self._round_callback(progress, losses, _LOSS[objective])]
        stopping_rounds = self.params["early_stopping_rounds"]
        if stopping_rounds is not None and valid_sets:
            callbacks.append(lgb.early_stopping(stopping_rounds, first_metric_only=True, verbose=False))
        booster = lgb.train(params, train_set, num_boost_round=self.params["n_estimators"],
                            valid_sets=valid_sets, valid_names=[VALIDATION_NAME] * len(valid_sets),
                            callbacks=callbacks)
        self.best_iteration = None
        if stopping_rounds is not None and valid_sets and booster.best_iteration > 0:
            self.best_iteration = booster.best_iteration
            # keep only the trees that predict: the saved model and the in-memory one agree
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.best_iteration))
        kept_rounds = booster.current_iteration()
        self.validation_loss = losses[kept_rounds - 1] if len(losses) >= kept_rounds > 0 else None
        self.booster = booster
        report_progress(progress, 1.0, ProgressInfo(kept_rounds, self.params["n_estimators"],
                                                     self.validation_loss, _LOSS[objective], "trees"))
        return TrainingResult(task=self.task, n_rows=features.shape[0], n_features=features.shape[1],
                              fit_seconds=time.perf_counter() - started, device=self.trained_device)

    def _encode_training_target(self, target: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            self.classes, codes = encode_labels(target)
            return codes
        self.classes = None
        return target.astype(np.float64)

    def _validation_sets(self, validation: tuple[np.ndarray, np.ndarray] | None,
                         train_set: lgb.Dataset) -> list[lgb.Dataset]:
        if validation is None:
            return []
        features, target = validation
        features = checked_features(features, self.config.feature_columns)
        target = checked_target(target, features.shape[0], self.config.target_column, self.task)
        if self.classes is not None:
            known, label = known_label_rows(target, self.classes)
            features = features[known]
        else:
            label = target.astype(np.float64)
        if not features.shape[0]:
            return []
        return [lgb.Dataset(features, label, reference=train_set)]

    def _round_callback(self, progress: ProgressCallback | None, losses: list[float], loss_name: str) -> Any:
        total = self.params["n_estimators"]

        def after_round(env: Any) -> None:
            loss = next((float(value) for data, _, value, *_ in env.evaluation_result_list
                         if data == VALIDATION_NAME), None)
            if loss is not None:
                losses.append(loss)
            done = env.iteration - env.begin_iteration + 1
            # whatever progress raises (a cancelled job) propagates out of lgb.train
            report_progress(progress, done / total, ProgressInfo(done, total, loss, loss_name, "trees"))

        after_round.order = 10  # before early stopping (order 30), so the last round is reported
        return after_round

    def final_fit_params(self) -> dict[str, Any]:
        if self.best_iteration is None:
            return {}
        return {"n_estimators": self.best_iteration, "early_stopping_rounds": None}

    # -- inference ------------------------------------------------------------------------
    def _require_fitted(self) -> lgb.Booster:
        if self.booster is None:
            raise RuntimeError("gradient_boosting predictor is not fitted")
        return self.booster

    def _class_probabilities(self, features: np.ndarray) -> np.ndarray:
        raw = np.asarray(self._require_fitted().predict(checked_features(features, self.config.feature_columns)),
                         dtype=np.float64)
        n_classes = self.classes.size
        if n_classes == 1:
            return np.ones((raw.shape[0], 1))
        if n_classes == 2:
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, features: np.ndarray) -> np.ndarray:
        booster = self._require_fitted()
        if self.task == "classification":
            return self.classes[np.argmax(self._class_probabilities(features), axis=1)]
        return np.asarray(booster.predict(checked_features(features, self.config.feature_columns)),
                          dtype=np.float64)

    def predict_proba(self, features: np.ndarray) -> np.ndarray | None:
        self._require_fitted()
        return self._class_probabilities(features) if self.task == "classification" else None

    def feature_importance(self) -> dict[str, float]:
        """Total split gain per feature, normalised to sum to 1 (all zero when no tree split)."""
        gains = np.asarray(self._require_fitted().feature_importance(importance_type="gain"), dtype=np.float64)
        gains = np.nan_to_num(gains, nan=0.0, posinf=0.0, neginf=0.0)
        total = gains.sum()
        shares = gains / total if total > 0 else np.zeros_like(gains)
        return {name: float(share) for name, share in zip(self.config.feature_columns, shares)}

    # -- persistence ----------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            **common_metadata(self, self.trained_device, FORMAT),
            "lightgbm_version": lgb.__version__,
            "n_trees": None if self.booster is None else self.booster.current_iteration(),
            "best_iteration": self.best_iteration,
            "validation_loss": self.validation_loss,
        }

    def _write_model(self, directory: Path) -> None:
        (directory / MODEL_FILE).write_text(self._require_fitted().model_to_string())

    def _read_model(self, directory: Path, metadata: dict[str, Any]) -> None:
        booster = lgb.Booster(model_str=(directory / MODEL_FILE).read_text())
        if booster.num_feature() != len(self.config.feature_columns):
            raise ValueError(f"{directory / MODEL_FILE} uses {booster.num_feature()} features, "
                             f"metadata names {len(self.config.feature_columns)}")
        self.booster = booster
        self.classes = saved_classes(metadata)
        self.best_iteration = metadata.get("best_iteration")
        self.validation_loss = metadata.get("validation_loss")
        self.trained_device = metadata.get("device", "cpu")
