"""Trained execution policies (model type ``ppo_execution``) loaded once per process for
ExecutionService.PlanExecution and the ``execution`` simulation jobs: an ONNX Runtime session per
model (``utils.engine.execution.policy.inference.PolicyPlanner``), never an unpickled SB3 file."""
from __future__ import annotations

import threading
from typing import Any

from utils.engine.models.store import ModelNotFound, ModelStore

MODEL_TYPE = "ppo_execution"


class NotAnExecutionPolicy(ValueError):
    """The model exists but is not a trained execution policy."""


class ExecutionPolicies:
    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._planners: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> Any:
        """The model's planner; ModelNotFound for an unknown id, NotAnExecutionPolicy for another
        model type. Reloaded when the model was trained again (its metadata file changed)."""
        from utils.engine.execution.policy.inference import PolicyPlanner
        metadata = self.store.read_metadata(model_id)  # ModelNotFound
        if metadata.get("model_type") != MODEL_TYPE:
            raise NotAnExecutionPolicy(f"model {model_id!r} is a {metadata.get('model_type')!r} model, not a trained "
                                       f"{MODEL_TYPE} policy; train one with MLService.TrainModel(model_type="
                                       f"'{MODEL_TYPE}')")
        stamp = (self.store.model_path(model_id) / "metadata.json").stat().st_mtime
        with self._lock:
            cached = self._planners.get(model_id)
            if cached is None or cached[0] != stamp:
                cached = self._planners[model_id] = (stamp, PolicyPlanner(self.store.model_path(model_id)))
            return cached[1]


__all__ = ["ExecutionPolicies", "ModelNotFound", "NotAnExecutionPolicy"]
