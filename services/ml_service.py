"""MLService: queue training jobs, report progress, serve predictions from cached models."""
from __future__ import annotations

import json
import time
from typing import Any

from api_proto import ml_pb2, ml_pb2_grpc
from services import validation
from services.errors import ServiceError, invalid, not_found
from services.job_views import cancel, job_id_field, require_job
from services.ml_export import ExportModelRPC
from services.ml_sentiment import SentimentRPC
from services.ml_typed_rows import TypedRows
from utils.engine.models import (MODEL_REGISTRY, InvalidInputData, InvalidModelConfig, InvalidModelId,
                                 InvalidModelParams, InvalidTrainingData, ModelConfig, ModelNotFound, ModelStore,
                                 UnknownModelError, prepare_features, validate_model_id)
from utils.engine.models.columns import numeric_columns
from utils.engine.models.dataset import TARGET_COLUMN, check_feature_names, parse_target
from utils.engine.models.sequence import SequencePredictor
from utils.engine.execution.policy.predictor import MODEL_TYPE as EXECUTION_POLICY  # registers it
from utils.engine.position.predictor import MODEL_TYPE as POSITION_POLICY  # registers it
from utils.data import keys
from utils.queue.jobs import JobRecord, JobSpec, JobStatus
from utils.queue.streams import JobQueue
from utils.serving.model_cache import ModelCache
from utils.serving.remote_inference import FallbackWarmer, RemoteInference, local_served_by

import grpc

TASK_TYPE = "training"
MAX_PREDICT_BYTES = 8 * 1024 * 1024
MAX_PARAMS_BYTES = 64 * 1024
MAX_COMPARED = 10


def _bad_input(field: str, exc: Exception) -> ServiceError:
    return invalid(field, str(exc))


class MLServicer(ExportModelRPC, SentimentRPC, ml_pb2_grpc.MLServiceServicer):
    def __init__(self, queue: JobQueue, model_store: ModelStore, model_cache: ModelCache,
                 settings: Any, metrics: Any, remote: RemoteInference | None = None) -> None:
        self.queue = queue
        self.remote = remote  # ML_GPU_INFERENCE_URL: asked first, the local model is the fallback
        self.warm_fallback = FallbackWarmer(model_cache.get, settings.model_cache_ttl) if remote else None
        self.model_store = model_store
        self.models = model_cache
        self.settings = settings
        self.metrics = metrics
        self.typed_rows = TypedRows(settings.max_rows_per_request)
        self._counters: dict[tuple[str, str], Any] = {}

    # -------------------------------------------------------------- training
    def TrainModel(self, request, context):
        return self._submit(request)

    def SubmitTrainingJob(self, request, context):
        return self._submit(request)

    def _submit(self, request) -> ml_pb2.TrainModelResponse:
        compare = list(dict.fromkeys(request.compare_model_types))
        model_types = compare or [request.model_type]
        for model_type in model_types:
            if model_type not in MODEL_REGISTRY.names():
                field = "compare_model_types" if compare else "model_type"
                raise invalid(field, f"unknown model {model_type!r}; valid: {', '.join(MODEL_REGISTRY.names())}")
        if compare and EXECUTION_POLICY in compare:
            raise invalid("compare_model_types", f"{EXECUTION_POLICY} is an execution policy, not a predictor; "
                                                 f"train it alone (model_type)")
        if compare and POSITION_POLICY in compare:
            raise invalid("compare_model_types", f"{POSITION_POLICY} is a reinforcement-learning policy; "
                                                 f"train it alone (model_type)")
        policy = not compare and request.model_type in (EXECUTION_POLICY, POSITION_POLICY)
        if policy and not request.HasField("market_data"):
            what = "cut into orders" if request.model_type == EXECUTION_POLICY else "(its features come from params)"
            raise invalid("market_data", f"{request.model_type} trains on stored bars {what}: give "
                                         f"market_data.symbols (and optionally a time range)")
        if compare and not 2 <= len(compare) <= MAX_COMPARED:
            raise invalid("compare_model_types", f"name 2 to {MAX_COMPARED} distinct model types, got {len(compare)}")
        params = validation.json_object("model_params", request.model_params, MAX_PARAMS_BYTES, required=False)
        market = request.market_data if request.HasField("market_data") else None
        if market is not None:
            if request.training_data:
                raise invalid("training_data", "give either training_data or market_data, not both")
            source = self._market_source(market, needs_features=not policy)
            sequence = [t for t in model_types if issubclass(MODEL_REGISTRY.get(t), SequencePredictor)]
            if sequence and len(source["symbols"]) > 1:
                raise invalid("market_data.symbols", f"{', '.join(sequence)} learn(s) from windows of consecutive "
                                                     f"rows of one series; give one symbol, not {len(source['symbols'])}")
            columns = None
            feature_columns, target_column = ["placeholder"], TARGET_COLUMN
        else:
            columns = validation.column_rows("training_data", validation.json_object(
                "training_data", request.training_data, self.settings.max_training_data_bytes),
                self.settings.max_rows_per_request)
            if not request.feature_columns:
                raise invalid("feature_columns", "must name at least one column of training_data")
            if not request.target_column:
                raise invalid("target_column", "is required (the column of training_data to predict)")
            feature_columns, target_column = list(request.feature_columns), request.target_column
        payload = {"model_type": model_types[0], "feature_columns": feature_columns,
                   "target_column": target_column, "task": request.task or "auto", "params": params,
                   "device": validation.device("device", request.device)}
        try:
            config = ModelConfig.from_payload(payload)
            if columns is not None:
                numeric_columns(columns, (*config.feature_columns, config.target_column), InvalidTrainingData)
            if not compare:  # validates params, no training (a comparison trains each type with defaults)
                MODEL_REGISTRY.validated_params(config)
        except InvalidTrainingData as exc:
            raise _bad_input("training_data", exc) from None
        except InvalidModelParams as exc:
            raise _bad_input("model_params", exc) from None
        except (InvalidModelConfig, UnknownModelError, ValueError) as exc:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        if market is not None:
            payload["market_data"] = source
        else:
            payload["columns"] = columns
        if compare:
            payload["compare_model_types"] = compare
            payload["rank_metric"] = request.rank_metric
        meta = {"model_type": "compare:" + ",".join(compare) if compare else request.model_type}
        job_id = self.queue.enqueue(JobSpec(TASK_TYPE, payload, "normal", self.settings.job_max_attempts, meta))
        return ml_pb2.TrainModelResponse(task_id=job_id, status="pending")

    def _market_source(self, market, needs_features: bool = True) -> dict[str, Any]:
        symbols = validation.symbols("market_data.symbols", list(market.symbols), self.settings.max_symbols_per_request)
        start_ns, end_ns = None, None
        if market.start_time:
            start_ns = validation.time_ns("market_data.start_time", market.start_time)
        if market.end_time:
            end_ns = validation.time_ns("market_data.end_time", market.end_time)
        if start_ns is not None and end_ns is not None and start_ns > end_ns:
            raise invalid("market_data.start_time", "must not be after market_data.end_time")
        features = list(dict.fromkeys(market.features))
        factors = self._market_factors(market, symbols)
        if needs_features and not features and not factors:
            raise invalid("market_data.features", "name at least one feature, e.g. rsi, sma_20, macd, return_1 "
                                                  "(or give market_data.factor_set_id)")
        try:
            parse_target(market.target or "next_return_sign")
            check_feature_names(features)
        except InvalidTrainingData as exc:
            raise invalid("market_data", str(exc)) from None
        return {"symbols": symbols, "start_ns": start_ns, "end_ns": end_ns, "features": features,
                "target": market.target or "next_return_sign", **factors}

    def _market_factors(self, market, symbols: list[str]) -> dict[str, Any]:
        """A stored factor set's factors as extra features: the set is COMPLETED and still stored,
        the names are its factors (default all) and none repeats a requested feature, and its
        symbols cover the source's."""
        if not market.factor_set_id:
            if market.factor_names:
                raise invalid("market_data.factor_names", "needs market_data.factor_set_id")
            return {}
        from services import factor_requests
        meta = factor_requests.stored_set(self.queue, self.queue.redis, "market_data.factor_set_id",
                                          market.factor_set_id)
        names = list(market.factor_names)
        for index, name in enumerate(names):
            if name not in meta["names"]:
                listed = ", ".join(meta["names"][:50]) + (", ..." if len(meta["names"]) > 50 else "")
                raise invalid(f"market_data.factor_names[{index}]", f"{name[:40]!r} is not a factor of factor set "
                                                                    f"{meta['id']}; its factors: {listed}")
        names = list(dict.fromkeys(names)) or list(meta["names"])
        clash = [name for name in names if name in set(market.features) | {TARGET_COLUMN}]
        if clash:
            raise invalid("market_data.factor_names", f"{clash[0][:40]!r} is also a feature or the target column; "
                                                      f"choose other factor names (or leave that feature out)")
        missing = [symbol for symbol in symbols if symbol not in set(meta["symbols"])]
        if missing:
            raise invalid("market_data.symbols", f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
                                                 f"not in factor set {meta['id']} (its symbols must cover these)")
        return {"factor_set_id": meta["id"], "factor_names": names}

    def _status(self, record: JobRecord) -> ml_pb2.TrainingStatusResponse:
        model_id, comparison = "", []
        if record.status is JobStatus.COMPLETED:
            result = self.queue.result(record.id) or {}
            model_id = result.get("model_id", "")
            comparison = [ml_pb2.ModelComparisonRow(rank=row["rank"], model_type=row["model_type"],
                                                    metrics=row["metrics"], training_seconds=row["training_seconds"])
                          for row in result.get("comparison", [])]
        detail = record.progress_detail
        return ml_pb2.TrainingStatusResponse(
            task_id=record.id, status=record.status.value.lower(), progress=record.progress, model_id=model_id,
            error=record.error, attempts=record.attempts, steps_done=int(detail.get("done", 0)),
            steps_total=int(detail.get("total", 0)), step_unit=detail.get("unit", ""),
            validation_loss=float(detail.get("validation_loss") or 0.0), loss_name=detail.get("loss_name") or "",
            comparison=comparison)

    def GetTrainingStatus(self, request, context):
        task_id = job_id_field("task_id", request.task_id, TASK_TYPE)
        return self._status(require_job(self.queue, task_id, TASK_TYPE))

    def QueryTrainingProgress(self, request, context):
        return self.GetTrainingStatus(request, context)

    def CancelTraining(self, request, context):
        task_id = job_id_field("task_id", request.task_id, TASK_TYPE)
        record, _ = cancel(self.queue, task_id, TASK_TYPE)
        return self._status(record)

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
        reason = ""
        if self.remote is not None:
            remaining = context.time_remaining() if context is not None else None
            response, reason = self.remote.predict(request, None if remaining is None else time.monotonic() + remaining)
            if response is not None:
                self.warm_fallback(model_id)
                return response
        response = self._predict_local(model_id, request, context)
        response.served_by = local_served_by(response.device, reason)
        return response

    def _predict_local(self, model_id: str, request, context) -> ml_pb2.PredictResponse:
        typed = len(request.rows) > 0 or len(request.feature_names) > 0
        if typed and request.input_data:
            raise invalid("input_data", "give either input_data (JSON columns) or rows + feature_names, not both")
        columns = None if typed else validation.column_rows("input_data", validation.json_object(
            "input_data", request.input_data, MAX_PREDICT_BYTES), self.settings.max_rows_per_request)
        try:
            model = self.models.get(model_id)
        except ModelNotFound:
            raise not_found(f"no model with id {model_id!r}") from None
        started = time.perf_counter()
        remaining = context.time_remaining() if context is not None else None
        deadline = None if remaining is None else time.monotonic() + remaining
        if typed:
            features = self.typed_rows.matrix(model_id, model.metadata, request.rows, request.feature_names)
        else:
            try:
                features = prepare_features(model.metadata, columns)
            except ValueError as exc:  # InvalidInputData, or numpy refusing a nested/ragged column
                detail = exc if isinstance(exc, InvalidInputData) else "each column must be a flat list of numbers"
                raise invalid("input_data", str(detail)) from None
        try:
            (predictions, probabilities), device = model.predict(features, deadline)
        except InvalidInputData as exc:
            raise _bad_input("rows" if typed else "input_data", exc) from None
        elapsed = time.perf_counter() - started  # this request's own time, queueing in the batch included
        self._count(model.model_type, device, len(predictions))
        response = ml_pb2.PredictResponse(predictions=predictions.tolist(), prediction_time=elapsed,
                                          device=device, model_id=model_id, runtime=getattr(model, "runtime", "native"))
        if probabilities is not None:
            response.classes.extend(self._classes(model))
            response.probabilities.extend(ml_pb2.ClassProbabilities(values=row) for row in probabilities.tolist())
        return response

    def _count(self, model_type: str, device: str, rows: int) -> None:
        counter = self._counters.get((model_type, device))
        if counter is None:  # the labelled child once per (model type, device), not per request
            counter = self._counters[(model_type, device)] = self.metrics.predictions.labels(
                model_type=model_type, device=device)
        counter.inc(rows)

    @staticmethod
    def _classes(model: Any) -> list[float]:
        classes = getattr(model, "response_classes", None)
        if classes is None:  # computed once per loaded model
            classes = [float(c) for c in model.metadata.get("classes", [])]
            try:
                model.response_classes = classes
            except AttributeError:
                pass
        return classes

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
