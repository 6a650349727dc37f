"""One ``BasePredictor`` for the four sequence architectures, registered as lstm, gru,
transformer and dlinear.

Prediction convention (rows in, one output per row): row ``r`` is predicted from the window of
rows ``r - window + 1 .. r``, so ``predict`` on n >= window time-ordered rows returns n values of
which the first ``window - 1`` (``history_rows``) are NaN — those rows only serve as history.
Fewer than ``window`` rows raise ``InvalidInputData``. ``predict_proba`` has NaN rows likewise.

Training: the target of a window is the target of its last row. Validation windows (the rows
passed as ``validation``, each with the preceding rows as history, or else the tail
``validation_fraction`` of the windows when ``patience`` is set) give the early-stopping loss;
only the order of training windows within an epoch is shuffled. Features (and a regression
target) are standardised with statistics of the training rows, saved with the model.

On disk: ``model.pt`` (a ``state_dict`` of tensors; loaded with ``torch.load(weights_only=True)``),
``sequence.json`` (architecture, sizes, scaler statistics) and ``metadata.json``. No pickle.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..base import BasePredictor, ModelConfig, ProgressCallback, TrainingResult
from ..errors import InvalidInputData, InvalidTrainingData
from ..predictor_parts import checked_features, checked_target, common_metadata, encode_labels, saved_classes
from ..registry import register_model
from .params import validate_params
from .windows import Standardiser, WindowedRows, split_windows, window_count, window_targets

MODEL_FILE = "model.pt"
SEQUENCE_FILE = "sequence.json"
FORMAT = "torch_state_dict"


def _torch_runtime() -> tuple[Any, Any, Any]:
    """torch and our modules built on it, imported on first use, so a host without torch still
    imports the model package and serves the other model types."""
    import torch

    from . import networks, training
    return torch, networks, training


class SequencePredictor(BasePredictor):
    architecture: str = ""  # set by each registered subclass
    accepts_validation = True

    def __init__(self, config: ModelConfig, backend: Any = None) -> None:
        super().__init__(config, backend)
        self.task: str | None = None if config.task == "auto" else config.task
        self.classes: np.ndarray | None = None
        self.network: Any = None  # a torch.nn.Module once fitted or loaded
        self.device: Any = "cpu"  # the torch.device the network lives on
        self.trained_device = "cpu"  # where fit ran; a loaded model predicts on the CPU
        self.feature_scaler: Standardiser | None = None
        self.target_scaler: Standardiser | None = None  # regression only
        self.summary: dict[str, Any] = {}

    @classmethod
    def validated_params(cls, config: ModelConfig) -> dict[str, Any]:
        return validate_params(cls.architecture, config.params)

    @property
    def window(self) -> int:
        return self.params["window"]

    @property
    def history_rows(self) -> int:
        return self.window - 1

    # -- training -------------------------------------------------------------------------
    def fit(self, features: np.ndarray, target: np.ndarray, progress: ProgressCallback | None = None,
            validation: tuple[np.ndarray, np.ndarray] | None = None) -> TrainingResult:
        """Train on time-ordered rows; ``validation`` = the (features, target) rows that follow them."""
        started = time.perf_counter()
        self.task = self.task_for(self.config.task, target)
        features, target = self._checked_rows(features, target)
        n_train_rows = features.shape[0]
        if validation is not None:
            validation_features, validation_target = self._checked_rows(*validation)
            features = np.concatenate([features, validation_features])
            target = np.concatenate([target, validation_target])
        if window_count(n_train_rows, self.window) < 1 or window_count(features.shape[0], self.window) < 2:
            raise InvalidTrainingData(f"{self.model_type} with window={self.window} needs at least "
                                      f"{self.window + 1} rows, got {n_train_rows}")
        fit_target = self._encoded_target(window_targets(target, self.window))
        train, held_out = self._window_split(fit_target, n_train_rows, validation is not None)
        # statistics from the rows the training windows cover, never from validation rows
        self.feature_scaler = Standardiser.fit(features[:int(train[-1]) + self.window])
        if self.task == "regression":
            self.target_scaler = Standardiser.fit(fit_target[train, None])
            fit_target = self.target_scaler.transform(fit_target[:, None])[:, 0]
        result = self._train(features, fit_target, train, held_out, progress)
        self.summary = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                        "best_validation_loss": result.best_validation_loss,
                        "stopped_early": result.stopped_early, "train_windows": int(train.size),
                        "validation_windows": int(held_out.size)}
        return TrainingResult(task=self.task, n_rows=n_train_rows, n_features=features.shape[1],
                              fit_seconds=time.perf_counter() - started, device=self.trained_device)

    def _window_split(self, fit_target: np.ndarray, n_train_rows: int,
                      has_validation_rows: bool) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) window indices; validation windows are always the tail."""
        n_windows = fit_target.shape[0]
        if has_validation_rows:  # windows ending on a validation row validate
            n_train_windows = window_count(n_train_rows, self.window)
            return np.arange(n_train_windows), np.arange(n_train_windows, n_windows)
        if self.params["patience"] is not None:  # early stopping needs a tail of its own
            return split_windows(n_windows, self.config.validation_fraction,
                                 fit_target if self.task == "classification" else None)
        return np.arange(n_windows), np.arange(0)

    def _train(self, features: np.ndarray, fit_target: np.ndarray, train: np.ndarray, held_out: np.ndarray,
               progress: ProgressCallback | None) -> Any:
        torch, networks, training = _torch_runtime()
        self.device = self.backend.torch_device(self.config.device, self.model_type)
        settings = training.LoopSettings(**{name: self.params[name] for name in (
            "epochs", "batch_size", "learning_rate", "weight_decay", "patience", "mixed_precision")})
        target_dtype = torch.long if self.task == "classification" else torch.float32
        with training.torch_threads(self.params["n_threads"]), \
                training.seeded(self.config.random_state, self.device):
            windows = WindowedRows(self.feature_scaler.transform(features), self.window, self.device)
            targets = torch.as_tensor(fit_target, dtype=target_dtype, device=self.device)
            self.network = networks.build_network(self.architecture, features.shape[1], self._n_outputs(),
                                                  self.params).to(self.device)
            result = training.train_network(
                self.network, windows, targets, torch.as_tensor(train, device=self.device),
                torch.as_tensor(held_out, device=self.device), self.task, settings, self.config.random_state,
                progress)
        self.network.eval()
        self.trained_device = training.device_label(self.device)
        return result

    def final_fit_params(self) -> dict[str, Any]:
        """The refit on all rows trains the epoch count early stopping chose, without holding out."""
        if not self.summary.get("validation_windows") or self.params["patience"] is None:
            return {}
        return {"epochs": self.summary["best_epoch"], "patience": None}

    def _encoded_target(self, window_target: np.ndarray) -> np.ndarray:
        """Class codes (classification) or float64 values, one per window."""
        if self.task == "classification":
            self.classes, codes = encode_labels(window_target)
            return codes.astype(np.int64)
        if not np.all(np.isfinite(window_target)):
            raise InvalidTrainingData(f"regression target {self.config.target_column!r} has NaN or inf values")
        self.classes = None
        return window_target.astype(np.float64)

    def _n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def _checked_rows(self, features: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = self._checked_features(features, InvalidTrainingData)
        return features, checked_target(target, features.shape[0], self.config.target_column, self.task)

    # -- inference ------------------------------------------------------------------------
    def _checked_features(self, features: np.ndarray, error: type[ValueError] = InvalidInputData) -> np.ndarray:
        features = checked_features(features, self.config.feature_columns)
        if not np.all(np.isfinite(features)):
            raise error("features contain NaN or inf values")
        return features

    def _outputs(self, features: np.ndarray) -> np.ndarray:
        """(n, outputs) float64 network outputs, NaN for the first ``history_rows`` rows."""
        if self.network is None:
            raise RuntimeError(f"{self.model_type} predictor is not fitted")
        features = self._checked_features(features)
        if features.shape[0] < self.window:
            raise InvalidInputData(f"{self.model_type} predicts from windows of {self.window} rows: pass at "
                                   f"least {self.window} time-ordered rows (got {features.shape[0]}); "
                                   f"the first {self.history_rows} only serve as history")
        torch, _, training = _torch_runtime()
        windows = WindowedRows(self.feature_scaler.transform(features), self.window, self.device)
        indices = torch.arange(len(windows), device=self.device)
        with training.torch_threads(self.params["n_threads"]):
            outputs = training.network_outputs(self.network, windows, indices).cpu().numpy().astype(np.float64)
        return np.concatenate([np.full((self.history_rows, outputs.shape[1]), np.nan), outputs])

    def predict(self, features: np.ndarray) -> np.ndarray:
        outputs = self._outputs(features)
        if self.task == "regression":
            return self.target_scaler.inverse(outputs)[:, 0]
        labels = np.full(outputs.shape[0], np.nan if self.classes.dtype.kind == "f" else None,
                         dtype=np.float64 if self.classes.dtype.kind == "f" else object)
        labels[self.history_rows:] = self.classes[outputs[self.history_rows:].argmax(axis=1)]
        return labels

    def predict_proba(self, features: np.ndarray) -> np.ndarray | None:
        if self.task != "classification":
            if self.network is None:
                raise RuntimeError(f"{self.model_type} predictor is not fitted")
            return None
        logits = self._outputs(features)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def feature_importance(self) -> dict[str, float]:
        return {}  # no cheap, honest attribution for these networks

    # -- persistence ----------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {**common_metadata(self, self.trained_device, FORMAT), "window": self.window,
                "history_rows": self.history_rows, "training": dict(self.summary)}

    def _write_model(self, directory: Path) -> None:
        if self.network is None:
            raise RuntimeError(f"{self.model_type} predictor is not fitted")
        torch, _, _ = _torch_runtime()
        state = {name: value.detach().cpu() for name, value in self.network.state_dict().items()}
        torch.save(state, directory / MODEL_FILE)
        sequence = {"architecture": self.architecture, "n_features": len(self.config.feature_columns),
                    "n_outputs": self._n_outputs(), "feature_scaler": self.feature_scaler.to_dict(),
                    "target_scaler": None if self.target_scaler is None else self.target_scaler.to_dict()}
        (directory / SEQUENCE_FILE).write_text(json.dumps(sequence, indent=2, allow_nan=False))

    def _read_model(self, directory: Path, metadata: dict[str, Any]) -> None:
        sequence = json.loads((directory / SEQUENCE_FILE).read_text())
        if sequence.get("architecture") != self.architecture:
            raise ValueError(f"{directory / SEQUENCE_FILE} describes a {sequence.get('architecture')!r} "
                             f"network, expected {self.architecture!r}")
        self.classes = saved_classes(metadata)
        self.feature_scaler = Standardiser.from_dict(sequence["feature_scaler"])
        if sequence["target_scaler"] is not None:
            self.target_scaler = Standardiser.from_dict(sequence["target_scaler"])
        torch, networks, _ = _torch_runtime()
        network = networks.build_network(self.architecture, sequence["n_features"], sequence["n_outputs"],
                                         self.params)
        # weights_only: only tensors and plain containers are unpickled, never arbitrary objects
        network.load_state_dict(torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True))
        self.network = network.eval()
        self.trained_device = metadata.get("device", "cpu")
        self.summary = dict(metadata.get("training", {}))


def _architecture(name: str, class_name: str) -> type[SequencePredictor]:
    """A registered ``SequencePredictor`` for one architecture (the classes differ in nothing else)."""
    namespace = {"architecture": name, "__module__": __name__, "__qualname__": class_name}
    return register_model(name)(type(class_name, (SequencePredictor,), namespace))


LSTMPredictor = _architecture("lstm", "LSTMPredictor")
GRUPredictor = _architecture("gru", "GRUPredictor")
TransformerPredictor = _architecture("transformer", "TransformerPredictor")
DLinearPredictor = _architecture("dlinear", "DLinearPredictor")
