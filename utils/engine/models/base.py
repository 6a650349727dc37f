"""The predictor contract: a frozen config in, a fitted model with a safe on-disk form out.

Arrays in, arrays out: ``fit``/``predict`` take a float64 feature matrix whose columns follow
``config.feature_columns``; column-dict handling lives in ``trainer``/``inference``.
"""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..backend import Backend, cpu_backend
from .errors import InvalidModelConfig

TASKS = ("auto", "classification", "regression")
MAX_CLASSES_FOR_AUTO = 20

# Called with the fraction of training done (0..1); may raise to abort training.
ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class ProgressInfo:
    """What a model that trains in rounds (boosting rounds, epochs) can say beside the fraction."""

    done: int  # rounds finished
    total: int  # rounds planned (early stopping may end sooner)
    validation_loss: float | None = None  # on the validation rows, when the fit was given some
    loss_name: str | None = None  # e.g. "l2", "binary_logloss", "multi_logloss"
    unit: str = "rounds"  # what a round is: "trees", "epochs"


class DetailedProgress:
    """Wrap ``callback(fraction, info)`` to receive ``ProgressInfo`` (None when a model has none).

    A plain ``ProgressCallback`` keeps getting the fraction alone; models call ``report_progress``.
    """

    def __init__(self, callback: Callable[[float, ProgressInfo | None], None]) -> None:
        self.callback = callback

    def __call__(self, fraction: float, info: ProgressInfo | None = None) -> None:
        self.callback(fraction, info)


def report_progress(progress: ProgressCallback | None, fraction: float, info: ProgressInfo | None = None) -> None:
    if progress is None:
        return
    if isinstance(progress, DetailedProgress):
        progress(fraction, info)
    else:
        progress(fraction)


@dataclass(frozen=True)
class ModelConfig:
    """What to train: model type, task, hyper-parameters and which columns to use."""

    model_type: str
    feature_columns: tuple[str, ...]
    target_column: str
    task: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    random_state: int = 42
    validation_fraction: float = 0.2

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "ModelConfig":
        """The config a training job's payload names: the service builds it to validate, the worker
        to train."""
        return cls(model_type=payload["model_type"], feature_columns=tuple(payload["feature_columns"]),
                   target_column=payload["target_column"], task=payload.get("task", "auto"),
                   params=payload.get("params", {}), device=payload.get("device", "auto"))

    def __post_init__(self) -> None:
        # Normalise (list -> tuple, private params copy) so callers cannot mutate a frozen config.
        object.__setattr__(self, "feature_columns", tuple(self.feature_columns))
        object.__setattr__(self, "params", dict(self.params or {}))
        if self.task not in TASKS:
            raise InvalidModelConfig(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not self.feature_columns:
            raise InvalidModelConfig("feature_columns must name at least one column")
        names = (*self.feature_columns, self.target_column)
        if not all(isinstance(name, str) and name for name in names):
            raise InvalidModelConfig("feature_columns and target_column must be non-empty strings")
        duplicates = sorted({name for name in self.feature_columns if self.feature_columns.count(name) > 1})
        if duplicates:
            raise InvalidModelConfig(f"duplicate feature_columns: {', '.join(duplicates)}")
        if self.target_column in self.feature_columns:
            raise InvalidModelConfig(f"target_column {self.target_column!r} is also a feature column")
        fraction = self.validation_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
            raise InvalidModelConfig(f"validation_fraction must be in [0, 1), got {fraction!r}")
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, int) or self.random_state < 0:
            raise InvalidModelConfig(f"random_state must be a non-negative integer, got {self.random_state!r}")


@dataclass(frozen=True)
class TrainingResult:
    """What one ``fit`` call did."""

    task: str
    n_rows: int
    n_features: int
    fit_seconds: float
    device: str  # where the estimator actually ran, e.g. "cpu" or "gpu:0"


def infer_task(target: np.ndarray) -> str:
    """'classification' for bool/string targets or integer-valued ones with <= 20 distinct values."""
    target = np.asarray(target)
    if target.dtype.kind in "bUSO":
        return "classification"
    if target.dtype.kind in "iu":
        integer_valued = True
    else:
        integer_valued = bool(np.all(np.isfinite(target)) and np.all(target == np.round(target)))
    if integer_valued and np.unique(target).size <= MAX_CLASSES_FOR_AUTO:
        return "classification"
    return "regression"


def resolve_task(task: str, target: np.ndarray) -> str:
    return infer_task(target) if task == "auto" else task


class BasePredictor(abc.ABC):
    """One trainable model type. Subclasses register themselves with ``@register_model``."""

    model_type: str = ""  # set by the registry decorator
    supported_tasks: tuple[str, ...] = ("classification", "regression")
    # True when ``fit`` takes ``validation=(features, target)`` (early stopping, validation loss).
    accepts_validation: bool = False
    # Preceding rows each prediction reads (sequence models: window - 1). ``predict`` on n rows
    # still returns n values; the first ``history_rows`` are NaN (those rows are history only).
    history_rows: int = 0

    def __init__(self, config: ModelConfig, backend: Backend | None = None) -> None:
        self.config = config
        # Where to run comes from the worker's backend; without one, the CPU (never a probe of CUDA).
        self.backend = backend if backend is not None else cpu_backend()
        self.params = self.validated_params(config)

    @classmethod
    @abc.abstractmethod
    def validated_params(cls, config: ModelConfig) -> dict[str, Any]:
        """``config.params`` checked and filled with defaults, without building a model; raises
        ``InvalidModelParams`` naming the parameter."""

    @classmethod
    def task_for(cls, task: str, target: np.ndarray) -> str:
        """``task`` resolved for this model type: 'auto' means its only task, or is inferred."""
        supported = cls.supported_tasks
        resolved = supported[0] if task == "auto" and len(supported) == 1 else resolve_task(task, target)
        if resolved not in supported:
            raise InvalidModelConfig(f"model type {cls.model_type!r} does not support task {resolved!r}; "
                                     f"supported: {', '.join(supported)}")
        return resolved

    def final_fit_params(self) -> dict[str, Any]:
        """Param overrides for the refit on all rows, learned by this (train-split) fit, e.g. the
        number of boosting rounds early stopping chose. Empty by default."""
        return {}

    @abc.abstractmethod
    def fit(self, features: np.ndarray, target: np.ndarray,
            progress: ProgressCallback | None = None) -> TrainingResult:
        """Train on ``features`` (n, k) and ``target`` (n,); ``progress`` may raise to abort."""

    @abc.abstractmethod
    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class labels (classification) or values (regression), one per row."""

    @abc.abstractmethod
    def predict_proba(self, features: np.ndarray) -> np.ndarray | None:
        """(n, n_classes) probabilities in ``metadata()['classes']`` order; None for regression."""

    @abc.abstractmethod
    def feature_importance(self) -> dict[str, float]:
        """Feature name -> importance; empty when the model cannot say."""

    def save(self, directory: str | Path) -> Path:
        """Write the model in a safe format (never pickle) and its metadata into an existing directory."""
        directory = Path(directory)
        self._write_model(directory)
        write_metadata(directory, self.metadata())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "BasePredictor":
        """Rebuild a predictor written by ``save`` (it predicts on the CPU), trusting only known types."""
        directory = Path(directory)
        metadata, config = read_metadata(directory)
        predictor = cls(config)
        predictor._read_model(directory, metadata)
        return predictor

    @abc.abstractmethod
    def _write_model(self, directory: Path) -> None:
        """Write the fitted model's own files (safe formats only); raises when not fitted."""

    @abc.abstractmethod
    def _read_model(self, directory: Path, metadata: dict[str, Any]) -> None:
        """Restore the state ``_write_model`` wrote, refusing any type it did not write."""

    @abc.abstractmethod
    def metadata(self) -> dict[str, Any]:
        """JSON-safe description: model_type, task, columns, classes, params, device, format."""


METADATA_FILE = "metadata.json"


def write_metadata(directory: Path, metadata: Mapping[str, Any]) -> None:
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))


def read_metadata(directory: Path) -> tuple[dict[str, Any], ModelConfig]:
    """The saved metadata and the config to rebuild its predictor with (on the CPU)."""
    metadata = json.loads((directory / METADATA_FILE).read_text())
    config = ModelConfig(model_type=metadata["model_type"], task=metadata["task"],
                         feature_columns=tuple(metadata["feature_columns"]),
                         target_column=metadata["target_column"], params=metadata["params"],
                         random_state=metadata.get("random_state", 42), device="cpu")
    return metadata, config
