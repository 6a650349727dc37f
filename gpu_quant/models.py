"""MLService: train (a job handle), predict on a DataFrame, list / inspect / export / delete models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from ._proto import ml_pb2, ml_pb2_grpc
from .convert import frame, to_dict
from .jobs import JobHandle

if TYPE_CHECKING:
    from .jobs import Jobs
    from .transport import Transport

MODEL_COLUMNS = ["model_id", "model_type", "task", "created_at", "device", "training_time", "n_train",
                 "n_validation", "feature_columns", "target_column", "metrics"]


def _columns_json(table: pd.DataFrame | dict[str, Iterable[Any]]) -> str:
    """Column-wise JSON ({"rsi": [..], ...}) as TrainModel and Predict take it; NaN -> null."""
    if isinstance(table, pd.DataFrame):
        table = {str(name): table[name].to_numpy() for name in table.columns}
    columns = {}
    for name, values in table.items():
        values = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
        if values.dtype.kind in "fc":
            columns[name] = [None if not np.isfinite(value) else float(value) for value in values]
        elif values.dtype.kind in "iub":
            columns[name] = values.astype(float).tolist()
        else:
            columns[name] = values.tolist()
    return json.dumps(columns)


class TrainingHandle(JobHandle):
    """A training job; result() is its final GetTrainingStatus as a dict (model_id, comparison…)."""

    @property
    def model_id(self) -> str:
        return self.result()["model_id"]


class Models:
    def __init__(self, transport: "Transport", jobs: "Jobs") -> None:
        self.transport = transport
        self.jobs = jobs
        self.stub = transport.stub(ml_pb2_grpc.MLServiceStub)

    def train(self, model_type: str = "", data: pd.DataFrame | None = None, *, features: Iterable[str] = (),
              target: str = "", params: dict[str, Any] | None = None, market_data: dict[str, Any] | None = None,
              compare: Iterable[str] = (), task: str = "", device: str = "", rank_metric: str = "") -> TrainingHandle:
        """Inline training data (`data` frame with the feature and target columns) or stored bars
        (`market_data={"symbols": [...], "features": [...], "target": "next_return_sign", ...}`)."""
        request = ml_pb2.TrainModelRequest(
            model_type=model_type, feature_columns=list(features), target_column=target,
            model_params=json.dumps(params) if params else "", task=task, device=device,
            compare_model_types=list(compare), rank_metric=rank_metric)
        if data is not None:
            request.training_data = _columns_json(data)
        if market_data is not None:
            request.market_data.CopyFrom(ml_pb2.MarketDataSource(**market_data))
        response = self.transport.unary(self.stub.SubmitTrainingJob, request, idempotent=False)
        return TrainingHandle(self.jobs, response.task_id, self.training_status)

    def training_status(self, task_id: str) -> dict[str, Any]:
        return to_dict(self.transport.unary(self.stub.GetTrainingStatus, ml_pb2.TrainingStatusRequest(task_id=task_id)))

    def handle(self, task_id: str) -> TrainingHandle:
        return TrainingHandle(self.jobs, task_id, self.training_status)

    def predict(self, model_id: str, data: pd.DataFrame | dict[str, Iterable[Any]]) -> pd.DataFrame:
        """One row per input row: `prediction`, and `p_<class>` probabilities for classifiers."""
        response = self.transport.unary(self.stub.Predict, ml_pb2.PredictRequest(
            model_id=model_id, input_data=_columns_json(data)))
        table = pd.DataFrame({"prediction": list(response.predictions)})
        if response.probabilities:
            names = [f"p_{value:g}" for value in response.classes] or [
                f"p_{i}" for i in range(len(response.probabilities[0].values))]
            probabilities = np.array([list(row.values) for row in response.probabilities])
            for position, name in enumerate(names):
                table[name] = probabilities[:, position]
        if isinstance(data, pd.DataFrame) and len(data.index) == len(table):
            table.index = data.index
        table.attrs.update(model_id=response.model_id, device=response.device, runtime=response.runtime,
                           served_by=response.served_by, prediction_time=response.prediction_time)
        return table

    def ls(self) -> pd.DataFrame:
        response = self.transport.unary(self.stub.ListModels, ml_pb2.ListModelsRequest())
        return frame((to_dict(model) for model in response.models), columns=MODEL_COLUMNS)

    def metrics(self, model_id: str) -> dict[str, Any]:
        return to_dict(self.transport.unary(self.stub.GetModelMetrics, ml_pb2.MetricsRequest(model_id=model_id)))

    def delete(self, model_id: str) -> bool:
        return self.transport.unary(self.stub.DeleteModel, ml_pb2.DeleteModelRequest(model_id=model_id)).deleted

    def export(self, model_id: str, path: str | Path | None = None, format: str = "onnx") -> dict[str, Any]:
        """ExportModel; the graph is written to `path` when given (content left out of the dict then)."""
        response = to_dict(self.transport.unary(self.stub.ExportModel, ml_pb2.ExportModelRequest(
            model_id=model_id, format=format)))
        if path is not None:
            Path(path).write_bytes(response.pop("content"))
        return response

    def sentiment(self, texts: Iterable[str], **fields: Any) -> dict[str, Any]:
        return to_dict(self.transport.unary(self.stub.AnalyzeSentiment, ml_pb2.SentimentRequest(
            texts=list(texts), **fields)))
