"""Training job: payload columns -> engine.train_model -> safe model store + Redis registry."""
from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import redis

from utils.engine.models import (InvalidModelConfig, InvalidModelParams, InvalidTrainingData, ModelConfig,
                                 UnknownModelError, train_model)
from utils.data.store import SymbolNotFound
from utils.engine.backend import BackendUnavailable
from utils.engine.models.base import DetailedProgress, ProgressInfo
from utils.engine.models.compare import compare_models
from utils.engine.models.dataset import TARGET_COLUMN, feature_columns_of, market_training_columns
from utils.engine.execution.policy.predictor import MODEL_TYPE as EXECUTION_POLICY, train_execution_model
from utils.engine.position.predictor import MODEL_TYPE as POSITION_POLICY, train_position_model
from utils.data import factor_sets, keys
from utils.data import sentiment as stored_sentiment
from utils.queue.worker import JobContext, PermanentJobError

BAD_INPUT = (InvalidModelConfig, InvalidModelParams, InvalidTrainingData, UnknownModelError, BackendUnavailable)


def model_id_for(job_id: str) -> str:
    """Deterministic per job, so a re-run after a worker death overwrites rather than duplicates."""
    return "m-" + job_id.split("-", 1)[-1]


def register_model_metadata(client: redis.Redis, model_id: str, metadata: dict[str, Any], job_id: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.model(model_id), mapping={"metadata": json.dumps(metadata, allow_nan=False), "job_id": job_id})
    pipe.zadd(keys.MODELS, {model_id: time.time()})
    pipe.execute()


def training_progress(context: JobContext, unit_by_type: dict[str, str] | None = None) -> DetailedProgress:
    """A model progress callback that reports the fraction and, when the model gives them, the
    rounds done and the current validation loss (shown by GetTrainingStatus)."""
    def report(fraction: float, info: ProgressInfo | None) -> None:
        detail = None
        if info is not None:
            detail = {"done": info.done, "total": info.total, "unit": info.unit,
                      "validation_loss": info.validation_loss, "loss_name": info.loss_name}
            if detail["validation_loss"] is not None and not math.isfinite(detail["validation_loss"]):
                detail["validation_loss"] = None
        context.progress(fraction, detail)
    return DetailedProgress(report)


def load_market_bars(store: Any, source: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each source symbol's stored bars in the source's range, as columns."""
    try:
        stored = store.read_many(source["symbols"], source.get("start_ns"), source.get("end_ns"))
    except SymbolNotFound as exc:
        raise PermanentJobError(f"market_data: {exc}") from None
    empty = [symbol for symbol, bars in stored.items() if len(bars) == 0]
    if empty:
        raise PermanentJobError(f"market_data: no bars in the requested range for {', '.join(empty)}")
    return {symbol: bars.columns() for symbol, bars in stored.items()}


def load_market_columns(store: Any, source: dict[str, Any]) -> dict[str, list[float]]:
    """Training columns from stored bars (see ``utils.engine.models.dataset``)."""
    bars = load_market_bars(store, source)
    if stored_sentiment.COLUMN in source["features"]:
        for symbol, columns in bars.items():
            columns[stored_sentiment.COLUMN] = stored_sentiment.sentiment_column(store.redis, symbol, columns["time"])
    return market_training_columns(bars, source["features"], source["target"],
                                   stored_factor_columns(store.redis, source, bars) if source.get("factor_set_id")
                                   else None)


def stored_factor_columns(redis: Any, source: dict[str, Any], bars: dict[str, dict[str, Any]]
                          ) -> dict[str, dict[str, np.ndarray]]:
    """The source's stored factors (``factor_set_id``, ``factor_names``) as feature columns on each
    symbol's bars: the set's value where the bar's time is one of its dates, NaN (the row is dropped)
    where it is not."""
    set_id, names = source["factor_set_id"], source["factor_names"]
    meta = factor_sets.read_meta(redis, set_id)
    stored = None if meta is None else factor_sets.read_factors(redis, set_id, meta, names)
    if stored is None:
        raise PermanentJobError(f"market_data.factor_set_id: factor set {set_id} has expired or was removed; "
                                f"compute it again")
    columns = {}
    for symbol, symbol_bars in bars.items():
        times = np.asarray(symbol_bars["time"], dtype=np.int64)
        columns[symbol] = {name: factor_sets.align_panel(stored[index], meta["times_ns"], meta["symbols"], times,
                                                         [symbol])[:, 0] for index, name in enumerate(names)}
    return columns


def make_training_handler(resources: Any):
    """``resources``: a ``utils.tasks.resources.WorkerResources``."""
    model_store, client, backend, store = (resources.model_store, resources.redis, resources.backend,
                                           resources.bar_store)

    def handle(context: JobContext) -> dict[str, Any]:
        payload = context.payload
        progress = training_progress(context)
        comparison: list[dict[str, Any]] = []
        try:
            if payload["model_type"] == EXECUTION_POLICY:  # an RL policy, trained on orders cut from bars
                predictor, report = train_execution_model(load_market_bars(store, payload["market_data"]),
                                                          ModelConfig.from_payload(payload), progress)
            elif payload["model_type"] == POSITION_POLICY:  # an RL policy, trained on each symbol's bars
                predictor, report = train_position_model(load_market_bars(store, payload["market_data"]),
                                                         ModelConfig.from_payload(payload), progress)
            else:
                if "market_data" in payload:
                    columns = load_market_columns(store, payload["market_data"])
                    payload = {**payload, "feature_columns": feature_columns_of(columns),
                               "target_column": TARGET_COLUMN}
                else:
                    columns = payload["columns"]
                config = ModelConfig.from_payload(payload)
                if payload.get("compare_model_types"):
                    comparison, predictor, report = compare_models(
                        payload["compare_model_types"], config, columns, backend, progress=progress,
                        rank_metric=payload.get("rank_metric") or None)
                else:
                    predictor, report = train_model(config, columns, backend, progress=progress)
        except BAD_INPUT as exc:
            raise PermanentJobError(str(exc)) from None
        model_id = model_id_for(context.job_id)
        context.check_cancelled()
        model_store.save(model_id, predictor, report)
        metadata = model_store.read_metadata(model_id)
        register_model_metadata(client, model_id, metadata, context.job_id)
        result = {"model_id": model_id, "model_type": predictor.model_type, "metrics": report.metrics,
                  "metrics_scope": report.metrics_scope, "task": report.task, "device": report.device,
                  "training_seconds": report.training_seconds}
        if comparison:
            result["comparison"] = comparison
        return result
    return handle
