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


# ------------------------------------------------------------------ stored factors as features
FACTOR_EXPRESSIONS = {"ma5": "ts_mean(close, 5) / close - 1", "rev10": "-(close / ref(close, 10) - 1)"}


@pytest.fixture
def factor_set(channel):
    """A factor set over the symbols on a window shorter than the training period: the training rows
    outside it have no factor value and are dropped."""
    from api_proto import factor_pb2, factor_pb2_grpc, jobs_pb2, jobs_pb2_grpc
    factors, jobs = factor_pb2_grpc.FactorServiceStub(channel), jobs_pb2_grpc.JobServiceStub(channel)
    handle = factors.ComputeFactors(factor_pb2.FactorSetRequest(
        symbols=SYMBOLS, start_time="2023-01-01", end_time="2024-06-30",
        expressions=list(FACTOR_EXPRESSIONS.values()), names=list(FACTOR_EXPRESSIONS)))
    job = wait_until(lambda: (j := jobs.GetJob(jobs_pb2.JobRequest(job_id=handle.job_id))).status in (
        jobs_pb2.COMPLETED, jobs_pb2.FAILED) and j, timeout=60)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    return handle.job_id


def direct_rows(store, features, names):
    """The expected training columns: each symbol's bars in the period, the set's factors joined by
    date with pandas (dates outside the set: NaN, so dropped), through the dataset builder."""
    import pandas as pd

    from utils.data.timeutil import parse_time
    from utils.engine.factors.expressions import evaluate_factors
    start, end = parse_time("2022-01-01"), parse_time("2024-12-31")
    bars = {s: store.read(s, start, end).columns() for s in SYMBOLS}
    set_bars = {s: store.read(s, parse_time("2023-01-01"), parse_time("2024-06-30")) for s in SYMBOLS}
    window = {field: pd.DataFrame({s: pd.Series(getattr(b, field), index=b.time) for s, b in set_bars.items()})
              .sort_index() for field in ("open", "high", "low", "close", "volume")}
    panels = {field: frame.to_numpy() for field, frame in window.items()}
    panels["time"] = window["close"].index.to_numpy()
    values = evaluate_factors(dict((n, FACTOR_EXPRESSIONS[n]) for n in names), panels)
    extra = {}
    for column, symbol in enumerate(SYMBOLS):
        frame = pd.DataFrame({n: np.asarray(values[n])[:, column] for n in names}, index=window["close"].index)
        joined = frame.reindex(bars[symbol]["time"])
        extra[symbol] = {n: joined[n].to_numpy() for n in names}
    return market_training_columns(bars, features, "next_return", extra)


def test_training_on_stored_factors_as_features(stub, platform, factor_set):
    source = ml_pb2.MarketDataSource(symbols=SYMBOLS, start_time="2022-01-01", end_time="2024-12-31",
                                     features=["rsi", "return_1"], target="next_return", factor_set_id=factor_set)
    response = stub.TrainModel(market_request(market_data=source, model_type="linear", model_params=""))
    status = wait_trained(stub, response.task_id)
    assert status.status == "completed", status.error
    metrics = stub.GetModelMetrics(ml_pb2.MetricsRequest(model_id=status.model_id))
    expected = direct_rows(platform.store, ["rsi", "return_1"], ["ma5", "rev10"])
    assert list(metrics.feature_columns) == [c for c in expected if c != "target"]
    assert sorted(metrics.feature_columns) == ["ma5", "return_1", "rev10", "rsi"]
    assert metrics.n_train + metrics.n_validation == len(expected["target"]) > 200
    # the worker's build is the direct build, value for value
    from utils.tasks.training import load_market_columns
    payload = {"symbols": SYMBOLS, "start_ns": None, "end_ns": None, "features": ["rsi", "return_1"],
               "target": "next_return", "factor_set_id": factor_set, "factor_names": ["ma5", "rev10"]}
    from utils.data.timeutil import parse_time
    payload.update(start_ns=parse_time("2022-01-01"), end_ns=parse_time("2024-12-31"))
    built = load_market_columns(platform.store, payload)
    assert list(built) == list(expected)
    for name in expected:
        np.testing.assert_allclose(built[name], expected[name], rtol=1e-12)
    # a subset of the set's factors, and factors alone
    subset = stub.TrainModel(market_request(market_data=ml_pb2.MarketDataSource(
        symbols=SYMBOLS, start_time="2022-01-01", end_time="2024-12-31", target="next_return",
        factor_set_id=factor_set, factor_names=["rev10"]), model_type="linear", model_params=""))
    status = wait_trained(stub, subset.task_id)
    assert status.status == "completed", status.error
    assert list(stub.GetModelMetrics(ml_pb2.MetricsRequest(model_id=status.model_id)).feature_columns) == ["rev10"]


def test_stored_factor_training_validation(stub, factor_set):
    def error_of(**fields):
        values = dict(symbols=SYMBOLS, features=["rsi"], target="next_return", factor_set_id=factor_set)
        values.update(fields)
        with pytest.raises(grpc.RpcError) as caught:
            stub.TrainModel(market_request(market_data=ml_pb2.MarketDataSource(**values)))
        return caught.value.code(), caught.value.details()

    code, details = error_of(factor_set_id="fs-" + "0" * 32)
    assert code == grpc.StatusCode.NOT_FOUND and "fs-" + "0" * 32 in details
    code, details = error_of(factor_names=["ma5", "nope"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "market_data.factor_names[1]" in details \
        and "ma5, rev10" in details
    code, details = error_of(symbols=SYMBOLS + ["000002.SZ"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "000002.SZ" in details and factor_set in details
    code, details = error_of(factor_set_id="", factor_names=["ma5"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "needs market_data.factor_set_id" in details
