"""TrainModel with model_type "ppo_execution" over real gRPC + Redis + worker: a queued training
job with progress in timesteps, stored in the model store in safe formats, listed by ListModels,
refused by Predict and by the validation of bad requests."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from api_proto import ml_pb2, ml_pb2_grpc
from tests.conftest import wait_until
from utils.engine.execution.policy.env import observation_names
from utils.engine.execution.policy.inference import PolicyPlanner

PARAMS = {"timesteps": 1024, "window_bars": 8, "side": "both", "seed": 1}


@pytest.fixture
def stub(channel):
    return ml_pb2_grpc.MLServiceStub(channel)


def policy_request(**overrides):
    values = dict(model_type="ppo_execution", model_params=json.dumps(PARAMS),
                  market_data=ml_pb2.MarketDataSource(symbols=["000001.SZ"], start_time="2019-01-01",
                                                      end_time="2023-12-31"))
    values.update(overrides)
    return ml_pb2.TrainModelRequest(**values)


def test_train_model_trains_a_policy_as_a_queued_job(platform, stub):
    response = stub.TrainModel(policy_request())
    assert response.status == "pending" and response.task_id.startswith("tr-")
    seen = []

    def finished():
        status = stub.GetTrainingStatus(ml_pb2.TrainingStatusRequest(task_id=response.task_id))
        seen.append(status.progress)
        return status.status in ("completed", "failed", "cancelled") and status

    status = wait_until(finished, timeout=60, interval=0.02)
    assert status.status == "completed", status.error
    assert status.progress == 1.0 and status.step_unit == "timesteps" and status.steps_total == 1024
    assert any(0 < fraction < 1 for fraction in seen)  # progress was reported while it trained

    metrics = stub.GetModelMetrics(ml_pb2.MetricsRequest(model_id=status.model_id))
    assert metrics.model_type == "ppo_execution" and metrics.metrics_scope == "validation"
    assert list(metrics.feature_columns) == observation_names(5) and metrics.target_column == "action"
    assert metrics.n_validation > 0 and metrics.n_train > metrics.n_validation
    for name in ("policy_pa_bps", "twap_pa_bps", "policy_ffr", "policy_pos", "policy_vs_twap_pa_bps"):
        assert name in metrics.metrics and np.isfinite(metrics.metrics[name])
    assert metrics.metrics["twap_ffr"] == pytest.approx(1.0)
    listed = stub.ListModels(ml_pb2.ListModelsRequest())
    assert status.model_id in [model.model_id for model in listed.models]

    directory = platform.settings.models_path / status.model_id
    assert not list(directory.glob("*.zip")) and (directory / "policy.onnx").is_file()
    planner = PolicyPlanner(directory, providers=["CPUExecutionProvider"])
    assert planner.act(np.zeros(len(observation_names(5)), dtype=np.float32)) in range(5)

    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(ml_pb2.PredictRequest(model_id=status.model_id, input_data=json.dumps(
            {name: [0.0] for name in observation_names(5)})))
    assert "ExecutionService.PlanExecution" in raised.value.details()


@pytest.mark.parametrize("overrides, field", [
    ({"market_data": None, "training_data": json.dumps({"a": [1.0], "target": [0.0]}), "feature_columns": ["a"],
      "target_column": "target"}, "market_data"),
    ({"model_params": json.dumps({"side": "short"})}, "side"),
    ({"model_params": json.dumps({"timesteps": 10})}, "timesteps"),
    ({"model_type": "", "compare_model_types": ["ppo_execution", "random_forest"]}, "compare_model_types"),
])
def test_bad_policy_requests_are_refused(stub, overrides, field):
    with pytest.raises(grpc.RpcError) as raised:
        stub.TrainModel(policy_request(**overrides))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in raised.value.details()
