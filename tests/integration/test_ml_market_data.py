"""Training on stored market data (features from the indicator engine + a target definition),
model comparison, and training progress details, over real gRPC + Redis + worker."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from api_proto import ml_pb2, ml_pb2_grpc
from tests.conftest import wait_until
from utils.engine.models.dataset import market_training_columns

SYMBOLS = ["000001.SZ", "600000.SH"]
FEATURES = ["rsi", "sma_20", "macd", "return_1"]


@pytest.fixture
def stub(channel):
    return ml_pb2_grpc.MLServiceStub(channel)


def market_request(**overrides):
    values = dict(model_type="gradient_boosting", model_params=json.dumps({"n_estimators": 30}),
                  market_data=ml_pb2.MarketDataSource(symbols=SYMBOLS, start_time="2022-01-01", end_time="2024-12-31",
                                                      features=FEATURES, target="next_return_sign"))
    values.update(overrides)
    return ml_pb2.TrainModelRequest(**values)


def wait_trained(stub, task_id, timeout=120):
    return wait_until(lambda: (s := stub.GetTrainingStatus(ml_pb2.TrainingStatusRequest(task_id=task_id)))
                      .status in ("completed", "failed", "cancelled") and s, timeout=timeout)


def test_training_on_stored_bars_with_engine_features(stub, platform):
    response = stub.TrainModel(market_request())
    status = wait_trained(stub, response.task_id)
    assert status.status == "completed", status.error
    assert status.step_unit == "trees" and 0 < status.steps_done <= 30 and status.steps_total == 30
    metrics = stub.GetModelMetrics(ml_pb2.MetricsRequest(model_id=status.model_id))
    # the model's inputs are the features' output keys
    assert set(metrics.feature_importance) == {"rsi", "sma_20", "macd", "macd_signal", "macd_hist", "return_1"}
    assert 0.0 <= metrics.metrics["accuracy"] <= 1.0 and metrics.metrics_scope == "validation"


def test_dataset_rows_are_the_engine_features_and_the_next_day_sign():
    rng = np.random.default_rng(1)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, 120)))
    days = (np.arange(120) + 19_000) * 86_400 * 10**9
    bars = {"time": days, "open": close, "high": close, "low": close, "close": close, "volume": np.ones(120)}
    columns = market_training_columns({"A": bars}, ["sma_5", "return_1"], "next_return_sign")
    sma5 = np.convolve(close, np.ones(5) / 5, mode="valid")  # rows 4.. of SMA(5)
    assert len(columns["target"]) == 120 - 4 - 1  # warm-up rows and the last row (no next day) dropped
    np.testing.assert_allclose(columns["sma_5"], sma5[:-1], rtol=1e-12)
    np.testing.assert_array_equal(columns["target"], (close[5:] / close[4:-1] - 1 > 0).astype(float))


def test_compare_models_ranks_candidates_and_keeps_the_best(stub):
    response = stub.TrainModel(market_request(compare_model_types=["logistic", "gradient_boosting", "random_forest"],
                                              model_params=""))
    status = wait_trained(stub, response.task_id, timeout=240)
    assert status.status == "completed", status.error
    rows = list(status.comparison)
    assert [row.rank for row in rows] == [1, 2, 3]
    assert {row.model_type for row in rows} == {"logistic", "gradient_boosting", "random_forest"}
    scores = [row.metrics["roc_auc"] for row in rows]
    assert scores == sorted(scores, reverse=True)
    models = stub.ListModels(ml_pb2.ListModelsRequest())
    assert any(model.model_id == status.model_id for model in models.models)


@pytest.mark.parametrize("overrides,needle", [
    (dict(market_data=ml_pb2.MarketDataSource(symbols=SYMBOLS, features=["rsii"], target="next_return_sign")),
     "rsii"),
    (dict(market_data=ml_pb2.MarketDataSource(symbols=SYMBOLS, features=["rsi"], target="tomorrow")),
     "next_return"),
    (dict(market_data=ml_pb2.MarketDataSource(symbols=SYMBOLS, features=[], target="next_return")),
     "market_data.features"),
    (dict(compare_model_types=["random_forest", "xgboost"]), "xgboost"),
    (dict(compare_model_types=["random_forest"]), "2 to 10"),
    (dict(training_data=json.dumps({"a": [1.0]})), "either training_data or market_data"),
    (dict(model_type="lstm"), "one series"),
])
def test_bad_market_training_requests_are_invalid_argument(stub, overrides, needle):
    with pytest.raises(grpc.RpcError) as caught:
        stub.TrainModel(market_request(**overrides))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in caught.value.details()


def test_unknown_symbol_fails_the_job_with_its_name(stub):
    response = stub.TrainModel(market_request(market_data=ml_pb2.MarketDataSource(
        symbols=["NOPE.SZ"], features=["rsi"], target="next_return_sign")))
    status = wait_trained(stub, response.task_id)
    assert status.status == "failed" and "NOPE.SZ" in status.error
