"""MLService: queue training jobs, report progress, serve predictions from cached models."""
from __future__ import annotations

import json
import time
from typing import Any

from api_proto import ml_pb2, ml_pb2_grpc
from services import validation
from services.errors import ServiceError, invalid, not_found
from services.job_views import require_job
from services.model_cache import ModelCache
from utils.engine.backend import cpu_backend
from utils.engine.models import (MODEL_REGISTRY, InvalidInputData, InvalidModelConfig, InvalidModelId,
                                 InvalidModelParams, InvalidTrainingData, ModelNotFound, ModelStore,
                                 UnknownModelError, predict_columns, validate_model_id)
from utils.engine.models.columns import numeric_columns
from utils.queue import keys
from utils.queue.jobs import JobRecord, JobSpec, JobStatus
from utils.queue.streams import JobQueue
from utils.tasks.training import config_from_payload

import grpc

TASK_TYPE = "training"
NOUN = "training task"
MAX_PREDICT_BYTES = 8 * 1024 * 1024
MAX_PARAMS_BYTES = 64 * 1024


def _bad_input(field: str, exc: Exception) -> ServiceError:
    return invalid(field, str(exc))


class MLServicer(ml_pb2_grpc.MLServiceServicer):
    def __init__(self, queue: JobQueue, model_store: ModelStore, model_cache: ModelCache,
                 settings: Any, metrics: Any) -> None:
        self.queue = queue
        self.model_store = model_store
        self.models = model_cache
        self.settings = settings
        self.metrics = metrics

    # -------------------------------------------------------------- training
    def TrainModel(self, request, context):
        return self._submit(request)

    def SubmitTrainingJob(self, request, context):
        return self._submit(request)

    def _submit(self, request) -> ml_pb2.TrainModelResponse:
        if request.model_type not in MODEL_REGISTRY.names():
            raise invalid("model_type", f"unknown model {request.model_type!r}; valid: {', '.join(MODEL_REGISTRY.names())}")
        columns = validation.json_object("training_data", request.training_data, self.settings.max_training_data_bytes)
        params = validation.json_object("model_params", request.model_params, MAX_PARAMS_BYTES, required=False)
        if not request.feature_columns:
            raise invalid("feature_columns", "must name at least one column of training_data")
        if not request.target_column:
            raise invalid("target_column", "is required (the column of training_data to predict)")
        payload = {"model_type": request.model_type, "feature_columns": list(request.feature_columns),
                   "target_column": request.target_column, "task": request.task or "auto", "params": params,
                   "device": validation.device("device", request.device)}
        try:
            config = config_from_payload(payload)
            numeric_columns(columns, (*config.feature_columns, config.target_column), InvalidTrainingData)
            MODEL_REGISTRY.get(config.model_type)(config, cpu_backend())  # validates params, no training
        except InvalidTrainingData as exc:
            raise _bad_input("training_data", exc) from None
        except InvalidModelParams as exc:
            raise _bad_input("model_params", exc) from None
        except (InvalidModelConfig, UnknownModelError, ValueError) as exc:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        payload["columns"] = columns
        meta = {"model_type": request.model_type}
        job_id = self.queue.enqueue(JobSpec(TASK_TYPE, payload, "normal", self.settings.job_max_attempts, meta))
        return ml_pb2.TrainModelResponse(task_id=job_id, status="pending")

    def _status(self, record: JobRecord) -> ml_pb2.TrainingStatusResponse:
        model_id = ""
        if record.status is JobStatus.COMPLETED:
            model_id = (self.queue.result(record.id) or {}).get("model_id", "")
        return ml_pb2.TrainingStatusResponse(task_id=record.id, status=record.status.value.lower(),
                                             progress=record.progress, model_id=model_id, error=record.error,
                                             attempts=record.attempts)

    def GetTrainingStatus(self, request, context):
        task_id = validation.identifier("task_id", request.task_id, NOUN)
        return self._status(require_job(self.queue, task_id, TASK_TYPE, NOUN))

    def QueryTrainingProgress(self, request, context):
        return self.GetTrainingStatus(request, context)

    def CancelTraining(self, request, context):
        task_id = validation.identifier("task_id", request.task_id, NOUN)
        require_job(self.queue, task_id, TASK_TYPE, NOUN)
        self.queue.cancel(task_id)
        return self._status(require_job(self.queue, task_id, TASK_TYPE, NOUN))

    # ---------------------------------------------------------------- models
    def _model_id(self, value: str) -> str:
        try:
            return validate_model_id(value)
        except InvalidModelId as exc:
            raise _bad_input("model_id", exc) from None

    def _metadata(self, model_id: str) -> dict[str, Any]:
        raw = self.queue.redis.hget(keys.model(model_id), "metadata")
        if raw:
            return json.loads(raw)
        try:
            return self.model_store.read_metadata(model_id)
        except ModelNotFound:
            raise not_found(f"no model with id {model_id!r}; train one with TrainModel "
                            f"(model ids come from GetTrainingStatus once completed)") from None

    def Predict(self, request, context):
        model_id = self._model_id(request.model_id)
        columns = validation.json_object("input_data", request.input_data, MAX_PREDICT_BYTES)
        try:
            predictor = self.models.get(model_id)
        except ModelNotFound:
            raise not_found(f"no model with id {model_id!r}") from None
        started = time.perf_counter()
        try:
            predictions, probabilities = predict_columns(predictor, columns)
        except InvalidInputData as exc:
            raise _bad_input("input_data", exc) from None
        elapsed = time.perf_counter() - started
        metadata = predictor.metadata()
        self.metrics.predictions.labels(model_type=metadata.get("model_type", ""), device="cpu").inc(len(predictions))
        response = ml_pb2.PredictResponse(predictions=predictions.tolist(), prediction_time=elapsed,
                                          device="cpu", model_id=model_id)
        if probabilities is not None:
            response.classes.extend(float(c) for c in metadata.get("classes", []))
            response.probabilities.extend(ml_pb2.ClassProbabilities(values=row) for row in probabilities.tolist())
        return response

    def _metrics_message(self, model_id: str, metadata: dict[str, Any]) -> ml_pb2.ModelMetrics:
        report = metadata.get("report", metadata)
        return ml_pb2.ModelMetrics(
            model_id=model_id, model_type=metadata.get("model_type", ""), task=metadata.get("task", ""),
            metrics=report.get("metrics", {}), metrics_scope=report.get("metrics_scope", ""),
            feature_importance=report.get("feature_importance", {}),
            training_time=report.get("training_seconds", 0.0), device=report.get("device", metadata.get("device", "")),
            n_train=report.get("n_train", 0), n_validation=report.get("n_validation", 0),
            feature_columns=metadata.get("feature_columns", []), target_column=metadata.get("target_column", ""),
            created_at=metadata.get("created_at", ""))

    def GetModelMetrics(self, request, context):
        model_id = self._model_id(request.model_id)
        return self._metrics_message(model_id, self._metadata(model_id))

    def ListModels(self, request, context):
        model_ids = self.queue.redis.zrevrange(keys.MODELS, 0, -1)
        return ml_pb2.ListModelsResponse(models=[self._metrics_message(m, self._metadata(m)) for m in model_ids
                                                 if self.queue.redis.exists(keys.model(m))])

    def DeleteModel(self, request, context):
        model_id = self._model_id(request.model_id)
        existed = bool(self.queue.redis.delete(keys.model(model_id)))
        self.queue.redis.zrem(keys.MODELS, model_id)
        if self.model_store.exists(model_id):
            self.model_store.delete(model_id)
            existed = True
        self.models.evict(model_id)
        if not existed:
            raise not_found(f"no model with id {model_id!r}")
        return ml_pb2.DeleteModelResponse(model_id=model_id, deleted=True)
