"""PPO position sizing over real gRPC + Redis + worker: TrainModel(model_type "ppo_position") as a
queued job with progress in timesteps and the mean episode reward, Predict on observation rows,
and a backtest whose entries the policy sizes (strategy_config.position_model), with the
submit-time checks of the model id."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc, ml_pb2, ml_pb2_grpc
from tests.conftest import wait_until

PARAMS = {"timesteps": 256, "features": ["return_1", "sma_ratio_10", "rsi_14"], "history_bars": 2,
          "long_only": True, "seed": 3, "episode_bars": 64}
COLUMNS = ["return_1", "sma_ratio_10", "rsi_14", "return_1_lag1", "sma_ratio_10_lag1", "rsi_14_lag1", "position"]


def finished(stub, task_id, seen):
    def check():
        status = stub.GetTrainingStatus(ml_pb2.TrainingStatusRequest(task_id=task_id))
        seen.append(status)
        return status.status in ("completed", "failed", "cancelled") and status
    return wait_until(check, timeout=60, interval=0.02)


def backtest_request(**config):
    return backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ", "600000.SH"], start_time="2023-01-01", end_time="2023-12-31",
        strategy_config=json.dumps({"strategy_type": "sma_crossover", "fast": 10, "slow": 30, **config}),
        initial_capital=1_000_000, commission_rate=0.0003)


def test_train_predict_and_backtest_with_a_position_policy(platform, channel):
    ml = ml_pb2_grpc.MLServiceStub(channel)
    backtests = backtest_pb2_grpc.BacktestServiceStub(channel)
    response = ml.TrainModel(ml_pb2.TrainModelRequest(
        model_type="ppo_position", model_params=json.dumps(PARAMS),
        market_data=ml_pb2.MarketDataSource(symbols=["000001.SZ", "600000.SH"], start_time="2018-01-01",
                                            end_time="2022-12-31")))
    seen = []
    status = finished(ml, response.task_id, seen)
    assert status.status == "completed", status.error
    assert status.step_unit == "timesteps" and status.steps_total == 256 and status.progress == 1.0
    assert status.loss_name == "mean_episode_reward" and np.isfinite(status.validation_loss)
    assert any(0 < s.progress < 1 for s in seen)

    metrics = ml.GetModelMetrics(ml_pb2.MetricsRequest(model_id=status.model_id))
    assert metrics.model_type == "ppo_position" and list(metrics.feature_columns) == COLUMNS
    assert {"policy_return", "buy_and_hold_return", "policy_sharpe"} <= set(metrics.metrics)
    directory = platform.settings.models_path / status.model_id
    assert not list(directory.glob("*.zip")) and (directory / "policy.onnx").is_file()

    rows = {name: [0.001, -0.002] for name in COLUMNS} | {"rsi_14": [55.0, 40.0], "rsi_14_lag1": [50.0, 45.0],
                                                           "position": [0.0, 0.5]}
    predicted = ml.Predict(ml_pb2.PredictRequest(model_id=status.model_id, input_data=json.dumps(rows)))
    assert len(predicted.predictions) == 2 and all(0.0 <= p <= 1.0 for p in predicted.predictions)
    with pytest.raises(grpc.RpcError) as raised:
        ml.Predict(ml_pb2.PredictRequest(model_id=status.model_id, input_data=json.dumps(rows | {"position": [2, 0]})))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    submitted = backtests.SubmitBacktestTask(backtest_request(position_model=status.model_id))
    def done():
        record = backtests.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(backtest_id=submitted.backtest_id))
        return record.status in (backtest_pb2.COMPLETED, backtest_pb2.FAILED) and record
    record = wait_until(done, timeout=60)
    assert record.status == backtest_pb2.COMPLETED, record.error_message
    result = backtests.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=submitted.backtest_id))
    assert json.loads(result.strategy_config)["position_model"] == status.model_id
    assert len(result.equity_curve) > 200 and all(trade.size > 0 for trade in result.trades)

    # a model of another type: FAILED_PRECONDITION; an unknown id: NOT_FOUND
    other = ml.TrainModel(ml_pb2.TrainModelRequest(
        model_type="linear", training_data=json.dumps({"a": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1.0, 2.0, 3.1, 4.0, 5.2]}),
        feature_columns=["a"], target_column="y", task="regression"))
    other_status = finished(ml, other.task_id, [])
    assert other_status.status == "completed", other_status.error
    for model_id, code in ((other_status.model_id, grpc.StatusCode.FAILED_PRECONDITION),
                           ("m-nosuchmodel", grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as raised:
            backtests.SubmitBacktestTask(backtest_request(position_model=model_id))
        assert raised.value.code() == code and "position_model" in raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        backtests.SubmitBacktestTask(backtest_request(position_model=status.model_id, position_threshold=2))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "position_threshold" in raised.value.details()
