"""``top_k`` (Qlib's TopkDropout on a factor expression) through IntegratedBacktest: queue, worker,
result, and the submit-time validation of the factor, k and n_drop."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc
from tests.integration.test_api_backtest import request as backtest_request
from tests.conftest import wait_until
from tests.integration.test_api_backtest import wait_done

SYMBOLS = ["000001.SZ", "600000.SH", "000002.SZ"]
CONFIG = {"strategy_type": "top_k", "factor": "ts_mean(close, 5) / close - 1", "k": 2, "n_drop": 1, "rebalance": 5}


def request(config=CONFIG, **overrides):
    return backtest_request(**{"stock_codes": SYMBOLS, "strategy_config": json.dumps(config), **overrides})


@pytest.fixture
def stub(channel):
    return backtest_pb2_grpc.BacktestServiceStub(channel)


def test_top_k_backtest_completes_with_trades(stub):
    response = stub.IntegratedBacktest(request())
    status = wait_done(stub, response.backtest_id)
    assert status.status == backtest_pb2.COMPLETED, status.error_message
    result = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id,
                                                                       page_size=10_000))
    config = json.loads(result.strategy_config)
    assert config["strategy_type"] == "top_k" and config["factor"] == CONFIG["factor"] and config["k"] == 2
    assert result.equity_curve[0].time >= "2024-01-01" and result.equity_curve[-1].time <= "2024-12-31"
    assert result.total_trades > 5 and len(result.trades) == result.total_trades
    assert all(trade.commission > 0 and trade.direction == "long" for trade in result.trades)
    assert {trade.symbol for trade in result.trades} <= set(SYMBOLS)
    equity = np.array([point.equity for point in result.equity_curve])
    assert result.performance_metrics.total_return == pytest.approx(equity[-1] / 1_000_000 - 1, rel=1e-12)
    # one name at most leaves per rebalance: at most k + (rebalances) round trips are opened
    assert result.total_trades <= 2 + len(equity) // 5 + 1


def test_top_k_sweep_over_k_and_n_drop(stub):
    grid = {**CONFIG, "param_grid": {"k": [1, 2, 3], "n_drop": [0, 1, 2]}}
    response = stub.IntegratedBacktest(request(grid))
    status = wait_done(stub, response.backtest_id)
    assert status.status == backtest_pb2.COMPLETED, status.error_message
    result = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id))
    assert result.sweep_combinations == 8  # (k=1, n_drop=2) skipped: n_drop > k
    assert {(row.params["k"], row.params["n_drop"]) for row in result.sweep} == {
        (k, n) for k in "123" for n in "012"} - {("1", "2")}
    best = result.sweep[0].params
    config = json.loads(result.strategy_config)
    assert (str(config["k"]), str(config["n_drop"])) == (best["k"], best["n_drop"])


@pytest.mark.parametrize("config, needle", [
    ({**CONFIG, "factor": "ts_mean(close, 5) / clos"}, "strategy_config.factor, column 21: unknown name 'clos'"),
    ({**CONFIG, "factor": "ts_meen(close, 5)"}, "strategy_config.factor, column 1: unknown function 'ts_meen'"),
    ({**CONFIG, "k": 4}, "strategy_config.k must be at most the number of symbols in the request (3), got 4"),
    ({**CONFIG, "param_grid": {"k": [2, 5]}}, "strategy_config.param_grid.k must be at most the number of symbols"),
    ({**CONFIG, "n_drop": 3}, "strategy_config.n_drop must be at most strategy_config.k"),
    ({**CONFIG, "rebalance": 0}, "strategy_config.rebalance"),
    ({**CONFIG, "direction": "long_short"}, "strategy_config.direction: top_k is long-only"),
])
def test_top_k_validation_errors_at_submit(stub, config, needle):
    with pytest.raises(grpc.RpcError) as error:
        stub.IntegratedBacktest(request(config))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in error.value.details() and "Traceback" not in error.value.details()


# ------------------------------------------------------------------ stored factor (factor_set_id + factor_name)
EXPRESSION = CONFIG["factor"]
STORED = {"strategy_type": "top_k", "factor_name": "ma5", "k": 2, "n_drop": 1, "rebalance": 5}


@pytest.fixture
def factor_set(channel):
    """A factor set of the backtest's symbols computed from CONFIG's expression, from well before the
    backtest's start (so the set has values from the first reported bar on, as the expression
    backtest's warm-up gives), plus a second factor."""
    from api_proto import factor_pb2, factor_pb2_grpc, jobs_pb2, jobs_pb2_grpc
    factors, jobs = factor_pb2_grpc.FactorServiceStub(channel), jobs_pb2_grpc.JobServiceStub(channel)
    handle = factors.ComputeFactors(factor_pb2.FactorSetRequest(
        symbols=SYMBOLS, start_time="2023-10-01", end_time="2024-12-31",
        expressions=[EXPRESSION, "-(close / ref(close, 5) - 1)"], names=["ma5", "rev5"]))
    job = wait_until(lambda: (j := jobs.GetJob(jobs_pb2.JobRequest(job_id=handle.job_id))).status in (
        jobs_pb2.COMPLETED, jobs_pb2.FAILED) and j, timeout=60)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    return handle.job_id


def result_of(stub, response):
    status = wait_done(stub, response.backtest_id)
    assert status.status == backtest_pb2.COMPLETED, status.error_message
    return stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id,
                                                                     page_size=10_000))


def test_stored_factor_backtest_equals_the_expression_backtest(stub, factor_set):
    expression = result_of(stub, stub.IntegratedBacktest(request()))
    stored_config = {**STORED, "factor_set_id": factor_set}
    stored = result_of(stub, stub.IntegratedBacktest(request(stored_config)))
    assert stored.backtest_id != expression.backtest_id
    config = json.loads(stored.strategy_config)
    assert config["factor_set_id"] == factor_set and config["factor_name"] == "ma5" and "factor" not in config
    assert [p.time for p in stored.equity_curve] == [p.time for p in expression.equity_curve]
    np.testing.assert_allclose([p.equity for p in stored.equity_curve],
                               [p.equity for p in expression.equity_curve], rtol=1e-12)
    assert stored.total_trades == expression.total_trades > 5
    assert [(t.symbol, t.entry_time, t.exit_time, t.size) for t in stored.trades] == \
        [(t.symbol, t.entry_time, t.exit_time, t.size) for t in expression.trades]
    # the other factor of the set is another backtest, and the same request is served from the cache
    other = stub.IntegratedBacktest(request({**stored_config, "factor_name": "rev5"}))
    assert other.backtest_id != stored.backtest_id
    again = stub.IntegratedBacktest(request(stored_config))
    assert again.backtest_id == stored.backtest_id and again.message.startswith("cached")
    # a sweep over k reads the stored factor too
    swept = result_of(stub, stub.IntegratedBacktest(request({**stored_config, "param_grid": {"k": [1, 2]}})))
    assert swept.sweep_combinations == 2


def test_stored_factor_dates_outside_the_set_are_not_eligible(stub, factor_set):
    """A backtest starting before the set's first date: no trade before it (NaN = not eligible)."""
    result = result_of(stub, stub.IntegratedBacktest(request({**STORED, "factor_set_id": factor_set},
                                                             start_time="2023-06-01")))
    assert result.equity_curve[0].time < "2023-10-01"
    assert min(trade.entry_time for trade in result.trades) >= "2023-10-01"


def test_stored_factor_validation_errors_at_submit(stub, factor_set):
    def error_of(config, **overrides):
        with pytest.raises(grpc.RpcError) as error:
            stub.IntegratedBacktest(request(config, **overrides))
        return error.value.code(), error.value.details()

    code, details = error_of({**STORED, "factor_set_id": "fs-" + "0" * 32})
    assert code == grpc.StatusCode.NOT_FOUND and "fs-" + "0" * 32 in details
    code, details = error_of({**STORED, "factor_set_id": factor_set, "factor_name": "nope"})
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "strategy_config.factor_name" in details and "'nope'" in details and "ma5, rev5" in details
    code, details = error_of({**STORED, "factor_set_id": factor_set}, stock_codes=SYMBOLS + ["GAPS.X"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "GAPS.X" in details and factor_set in details
    code, details = error_of({**STORED, "factor_set_id": factor_set, "factor": EXPRESSION})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not both" in details
    code, details = error_of({"strategy_type": "top_k", "factor_set_id": factor_set})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "strategy_config.factor_name is required" in details
    code, details = error_of({"strategy_type": "top_k", "k": 2, "n_drop": 1})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "strategy_config.factor is required" in details
    code, details = error_of({**STORED, "factor_set_id": factor_set, "param_grid": {"factor_name": ["ma5"]}})
    assert code == grpc.StatusCode.INVALID_ARGUMENT \
        and "param_grid.factor_name is not a parameter that can be swept" in details
