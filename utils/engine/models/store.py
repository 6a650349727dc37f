"""Saved models on disk: ``<directory>/<model_id>/{model.skops, metadata.json}``.

Only safe formats: skops (loaded with the model class's explicit trusted-type list) and JSON;
sequence models write ``model.pt`` (a torch ``state_dict``, loaded with ``weights_only=True``,
which unpickles tensors and plain containers only) plus a ``sequence.json`` sidecar.
A save is written to a hidden temp directory and renamed into place, so readers never see a
half-written model; replacing an existing id swaps directories (re-run jobs are idempotent).
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops

from .base import METADATA_FILE, BasePredictor
from .errors import InvalidModelId, ModelNotFound
from .registry import MODEL_REGISTRY, ModelRegistry
from .trainer import TrainingReport

MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def validate_model_id(model_id: object) -> str:
    # fullmatch, not ^...$: "$" would accept a trailing newline.
    if not isinstance(model_id, str) or MODEL_ID_PATTERN.fullmatch(model_id) is None:
        raise InvalidModelId(f"model_id must match {MODEL_ID_PATTERN.pattern} "
                             f"(letters, digits, '_' or '-', at most 64), got {model_id!r}")
    return model_id


class ModelStore:
    def __init__(self, directory: str | Path, registry: ModelRegistry = MODEL_REGISTRY) -> None:
        self.directory = Path(directory)
        self.registry = registry

    def model_path(self, model_id: str) -> Path:
        return self.directory / validate_model_id(model_id)

    def exists(self, model_id: str) -> bool:
        return (self.model_path(model_id) / METADATA_FILE).is_file()

    def model_ids(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(entry.name for entry in self.directory.iterdir()
                      if MODEL_ID_PATTERN.fullmatch(entry.name) and (entry / METADATA_FILE).is_file())

    def save(self, model_id: str, predictor: BasePredictor, report: TrainingReport | None = None) -> Path:
        final_path = self.model_path(model_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        temp_path = self.directory / f".tmp-{model_id}-{uuid.uuid4().hex}"
        temp_path.mkdir()
        try:
            predictor.save(temp_path)
            metadata = self._metadata(model_id, predictor, report)
            (temp_path / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False))
            self._swap_in(temp_path, final_path)
        except BaseException:
            shutil.rmtree(temp_path, ignore_errors=True)
            raise
        return final_path

    @staticmethod
    def _metadata(model_id: str, predictor: BasePredictor, report: TrainingReport | None) -> dict[str, Any]:
        metadata = predictor.metadata()
        if report is not None:
            # task and device (where it trained) are already in the predictor's metadata
            skipped = ("task", "device")
            metadata.update({key: value for key, value in report.to_dict().items() if key not in skipped})
        metadata.update({
            "model_id": model_id,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "versions": {"sklearn": sklearn.__version__, "skops": skops.__version__, "numpy": np.__version__},
        })
        if metadata.get("format") == "torch_state_dict":  # torch is imported: the model is a network
            metadata["versions"]["torch"] = sys.modules["torch"].__version__
        return metadata

    def _swap_in(self, temp_path: Path, final_path: Path) -> None:
        if not final_path.exists():
            temp_path.rename(final_path)
            return
        retired_path = self.directory / f".old-{final_path.name}-{uuid.uuid4().hex}"
        final_path.rename(retired_path)
        try:
            temp_path.rename(final_path)
        except BaseException:
            retired_path.rename(final_path)
            raise
        shutil.rmtree(retired_path, ignore_errors=True)

    def read_metadata(self, model_id: str) -> dict[str, Any]:
        path = self.model_path(model_id) / METADATA_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelNotFound(f"no saved model {model_id!r}") from None

    def load(self, model_id: str) -> BasePredictor:
        metadata = self.read_metadata(model_id)
        predictor_class = self.registry.get(metadata.get("model_type"))
        return predictor_class.load(self.model_path(model_id))

    def delete(self, model_id: str) -> None:
        path = self.model_path(model_id)
        if not path.is_dir():
            raise ModelNotFound(f"no saved model {model_id!r}")
        shutil.rmtree(path)
