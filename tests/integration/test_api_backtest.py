"""BacktestService over real gRPC + Redis + worker."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc, market_data_pb2, market_data_pb2_grpc
from tests.conftest import wait_until

GUIDE_CONFIG = {"strategy_type": "trend_following", "lookback_period": 20, "moving_average_window": 50}


def request(**overrides):
    values = dict(stock_codes=["000001.SZ", "600000.SH"], start_time="2024-01-01", end_time="2024-12-31",
                  strategy_config=json.dumps(GUIDE_CONFIG), initial_capital=1_000_000, commission_rate=0.0003)
    values.update(overrides)
    return backtest_pb2.BacktestRequest(**values)


@pytest.fixture
def stub(channel):
    return backtest_pb2_grpc.BacktestServiceStub(channel)


def wait_done(stub, backtest_id, timeout=60):
    return wait_until(lambda: (s := stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
        backtest_id=backtest_id))).status in (backtest_pb2.COMPLETED, backtest_pb2.FAILED, backtest_pb2.CANCELLED)
        and s, timeout=timeout)


def test_guide_backtest_completes_with_consistent_metrics(stub):
    response = stub.IntegratedBacktest(request())  # answers finished when that is quick (see test_backtest_e2e)
    assert response.status in (backtest_pb2.PENDING, backtest_pb2.RUNNING, backtest_pb2.COMPLETED)
    assert response.backtest_id.startswith("bt-")
    status = wait_done(stub, response.backtest_id)
    assert status.status == backtest_pb2.BacktestStatus.COMPLETED, status.error_message
    assert status.progress == 1.0 and status.attempts == 1 and status.device == "cpu"
    result = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id))
    metrics = result.performance_metrics
    equity = np.array([p.equity for p in result.equity_curve])
    assert result.equity_curve[0].time >= "2024-01-01" and result.equity_curve[-1].time <= "2024-12-31"
    # The metrics are fractions derived from the curve itself.
    assert metrics.total_return == pytest.approx(equity[-1] / 1_000_000 - 1, rel=1e-12)
    peak = np.maximum.accumulate(equity)
    assert metrics.max_drawdown == pytest.approx(np.max(1 - equity / peak), rel=1e-12)
    assert 0 <= metrics.max_drawdown < 1
    returns = np.diff(np.concatenate([[1_000_000], equity])) / np.concatenate([[1_000_000], equity[:-1]])
    assert set(result.symbol_metrics) == {"000001.SZ", "600000.SH"}
    assert json.loads(result.strategy_config)["moving_average_window"] == 50
    assert result.total_trades == len(result.trades)
    for trade in result.trades:
        assert trade.commission > 0 and trade.symbol in ("000001.SZ", "600000.SH")
    assert np.isfinite(metrics.sharpe_ratio) and returns.size == equity.size


def test_both_naming_styles_and_history(stub):
    first = stub.SubmitBacktestTask(request(stock_codes=["000002.SZ"]))
    wait_done(stub, first.backtest_id)
    result = stub.QueryBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=first.backtest_id, page_size=1))
    assert len(result.trades) <= 1
    if result.total_trades > 1:
        assert result.next_page_token == "1"
        rest = stub.QueryBacktestResult(backtest_pb2.BacktestResultRequest(
            backtest_id=first.backtest_id, page_size=1000, page_token=result.next_page_token))
        assert len(rest.trades) == result.total_trades - 1
    second = stub.IntegratedBacktest(request())
    wait_done(stub, second.backtest_id)
    history = stub.GetBacktestHistory(backtest_pb2.BacktestHistoryRequest())
    assert [b.backtest_id for b in history.backtests] == [second.backtest_id, first.backtest_id]
    only = stub.GetBacktestHistory(backtest_pb2.BacktestHistoryRequest(stock_code="000002.SZ"))
    assert [b.backtest_id for b in only.backtests] == [first.backtest_id]
    assert only.backtests[0].status == backtest_pb2.COMPLETED and only.backtests[0].strategy_type == "trend_following"
    paged = stub.GetBacktestHistory(backtest_pb2.BacktestHistoryRequest(page_size=1))
    assert len(paged.backtests) == 1 and paged.next_page_token
    following = stub.GetBacktestHistory(backtest_pb2.BacktestHistoryRequest(page_size=1, page_token=paged.next_page_token))
    assert following.backtests[0].backtest_id == first.backtest_id


def test_watch_streams_until_done(stub):
    response = stub.IntegratedBacktest(request())
    updates = list(stub.WatchBacktest(backtest_pb2.BacktestStatusRequest(backtest_id=response.backtest_id), timeout=60))
    assert updates[-1].status == backtest_pb2.COMPLETED
    progress = [u.progress for u in updates]
    assert progress == sorted(progress)


def test_cancel_pending_backtest(platform, stub):
    platform.worker.stop()  # nothing runs: the job stays pending
    response = stub.IntegratedBacktest(request())
    cancelled = stub.CancelBacktest(backtest_pb2.CancelBacktestRequest(backtest_id=response.backtest_id))
    assert cancelled.status == backtest_pb2.CANCELLED and "pending" in cancelled.message
    again = stub.CancelBacktest(backtest_pb2.CancelBacktestRequest(backtest_id=response.backtest_id))
    assert again.status == backtest_pb2.CANCELLED and "already" in again.message
    with pytest.raises(grpc.RpcError) as error:
        stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "CANCELLED" in error.value.details()


def test_imported_symbol_is_backtested(channel, stub):
    market = market_data_pb2_grpc.MarketDataServiceStub(channel)
    days = np.arange(np.datetime64("2023-01-02"), np.datetime64("2023-12-30"))
    close = 50 + np.arange(days.size) * 0.1
    bars = [market_data_pb2.Bar(time=str(d), open=c, high=c + 0.5, low=c - 0.5, close=c, volume=1000)
            for d, c in zip(days, close)]
    market.ImportBars(market_data_pb2.ImportBarsRequest(symbol="RISING", bars=bars))
    response = stub.IntegratedBacktest(request(stock_codes=["RISING"], start_time="2023-03-01", end_time="2023-12-31"))
    status = wait_done(stub, response.backtest_id)
    assert status.status == backtest_pb2.COMPLETED, status.error_message
    result = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id))
    assert result.performance_metrics.total_return > 0  # a steady rise is captured by trend following
    assert result.performance_metrics.max_drawdown < 0.01


BAD_REQUESTS = [
    (dict(stock_codes=[]), grpc.StatusCode.INVALID_ARGUMENT, "stock_codes"),
    (dict(stock_codes=["000001.SZ", "000001.SZ"]), grpc.StatusCode.INVALID_ARGUMENT, "twice"),
    (dict(stock_codes=["bad symbol!"]), grpc.StatusCode.INVALID_ARGUMENT, "stock_codes[0]"),
    (dict(stock_codes=["NOPE.SZ"]), grpc.StatusCode.NOT_FOUND, "NOPE.SZ"),
    (dict(start_time="2024-12-31", end_time="2024-01-01"), grpc.StatusCode.INVALID_ARGUMENT, "start_time"),
    (dict(start_time="yesterday"), grpc.StatusCode.INVALID_ARGUMENT, "start_time"),
    (dict(start_time="1990-01-01", end_time="1990-12-31"), grpc.StatusCode.NOT_FOUND, "no bars between"),
    (dict(strategy_config="{not json"), grpc.StatusCode.INVALID_ARGUMENT, "strategy_config"),
    (dict(strategy_config="[1, 2]"), grpc.StatusCode.INVALID_ARGUMENT, "JSON object"),
    (dict(strategy_config=json.dumps({"strategy_type": "astrology"})), grpc.StatusCode.INVALID_ARGUMENT, "trend_following"),
    (dict(strategy_config=json.dumps({**GUIDE_CONFIG, "moving_average_window": -3})), grpc.StatusCode.INVALID_ARGUMENT,
     "moving_average_window"),
    (dict(initial_capital=-5), grpc.StatusCode.INVALID_ARGUMENT, "initial_capital"),
    (dict(initial_capital=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, "initial_capital"),
    (dict(commission_rate=0.5), grpc.StatusCode.INVALID_ARGUMENT, "commission_rate"),
    (dict(device="tpu"), grpc.StatusCode.INVALID_ARGUMENT, "device"),
    (dict(device="gpu"), grpc.StatusCode.FAILED_PRECONDITION, "no GPU worker"),
]


@pytest.mark.parametrize("overrides,code,needle", BAD_REQUESTS)
def test_bad_submissions_are_rejected_with_a_named_field(stub, overrides, code, needle):
    with pytest.raises(grpc.RpcError) as error:
        stub.IntegratedBacktest(request(**overrides))
    assert error.value.code() == code
    assert needle in error.value.details()
    assert "Traceback" not in error.value.details()


@pytest.mark.parametrize("call,message", [
    ("GetBacktestStatus", backtest_pb2.BacktestStatusRequest(backtest_id="bt-unknown")),
    ("GetBacktestResult", backtest_pb2.BacktestResultRequest(backtest_id="bt-unknown")),
    ("CancelBacktest", backtest_pb2.CancelBacktestRequest(backtest_id="bt-unknown")),
])
def test_unknown_ids_are_not_found(stub, call, message):
    with pytest.raises(grpc.RpcError) as error:
        getattr(stub, call)(message)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "bt-unknown" in error.value.details()


def test_empty_id_is_invalid(stub):
    with pytest.raises(grpc.RpcError) as error:
        stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest())
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "backtest_id" in error.value.details()
