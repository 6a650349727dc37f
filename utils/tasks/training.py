"""Training job: payload columns -> engine.train_model -> safe model store + Redis registry."""
from __future__ import annotations

import json
import time
from typing import Any

import redis

from utils.engine.models import (InvalidModelConfig, InvalidModelParams, InvalidTrainingData, ModelConfig,
                                 ModelStore, UnknownModelError, train_model)
from utils.engine.backend import BackendUnavailable
from utils.queue import keys
from utils.queue.worker import JobContext, PermanentJobError

BAD_INPUT = (InvalidModelConfig, InvalidModelParams, InvalidTrainingData, UnknownModelError, BackendUnavailable)


def model_id_for(job_id: str) -> str:
    """Deterministic per job, so a re-run after a worker death overwrites rather than duplicates."""
    return "m-" + job_id.split("-", 1)[-1]


def config_from_payload(payload: dict[str, Any]) -> ModelConfig:
    return ModelConfig(model_type=payload["model_type"], feature_columns=tuple(payload["feature_columns"]),
                       target_column=payload["target_column"], task=payload.get("task", "auto"),
                       params=payload.get("params", {}), device=payload.get("device", "auto"))


def register_model_metadata(client: redis.Redis, model_id: str, metadata: dict[str, Any], job_id: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.model(model_id), mapping={"metadata": json.dumps(metadata, allow_nan=False), "job_id": job_id})
    pipe.zadd(keys.MODELS, {model_id: time.time()})
    pipe.execute()


def make_training_handler(model_store: ModelStore, client: redis.Redis, backend: Any):
    def handle(context: JobContext) -> dict[str, Any]:
        payload = context.payload
        try:
            predictor, report = train_model(config_from_payload(payload), payload["columns"], backend,
                                            progress=context.progress)
        except BAD_INPUT as exc:
            raise PermanentJobError(str(exc)) from None
        model_id = model_id_for(context.job_id)
        context.check_cancelled()
        model_store.save(model_id, predictor, report)
        metadata = model_store.read_metadata(model_id)
        register_model_metadata(client, model_id, metadata, context.job_id)
        return {"model_id": model_id, "metrics": report.metrics, "metrics_scope": report.metrics_scope,
                "task": report.task, "device": report.device, "training_seconds": report.training_seconds}
    return handle
