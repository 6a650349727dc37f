"""IntegratedBacktest answers with the finished status when the backtest ends within
BACKTEST_SUBMIT_WAIT_SECONDS, so the usage guide's client (submit, then read the status once)
finds it COMPLETED; otherwise it answers with the queued state, and the job goes on."""
from __future__ import annotations

import json

import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc

CONFIG = {"strategy_type": "sma_crossover", "fast": 5, "slow": 20}


def request(commission=0.0003):
    return backtest_pb2.BacktestRequest(stock_codes=["000001.SZ", "600000.SH"], start_time="2024-01-01",
                                        end_time="2024-12-31", strategy_config=json.dumps(CONFIG),
                                        initial_capital=1_000_000, commission_rate=commission)


@pytest.fixture
def settings(settings_factory, redis_client, request):
    return settings_factory(backtest_submit_wait_seconds=getattr(request, "param", 60.0))


@pytest.fixture
def stub(channel):
    return backtest_pb2_grpc.BacktestServiceStub(channel)


def test_the_guide_client_finds_its_backtest_completed(stub):
    response = stub.IntegratedBacktest(request())
    assert response.status == backtest_pb2.COMPLETED, response.message
    status = stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(backtest_id=response.backtest_id))
    assert status.status == backtest_pb2.COMPLETED and status.progress == 1.0
    result = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id))
    assert result.backtest_id == response.backtest_id and len(result.equity_curve) > 200
    # the design document's submit still answers at once
    queued = stub.SubmitBacktestTask(request(commission=0.0004))
    assert queued.status == backtest_pb2.PENDING and queued.message == "queued"


@pytest.mark.parametrize("settings", [0.3], indirect=True)
def test_a_backtest_still_queued_after_the_wait_is_answered_as_queued(platform, stub):
    platform.worker.stop()  # nothing runs: the job stays pending
    response = stub.IntegratedBacktest(request())
    assert response.status == backtest_pb2.PENDING and response.message == "queued"
    status = stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(backtest_id=response.backtest_id))
    assert status.status == backtest_pb2.PENDING  # not cancelled by the wait's end
