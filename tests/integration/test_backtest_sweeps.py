"""Sweeps, walk-forward, the request cache, and the richer strategy configs over gRPC + queue."""
from __future__ import annotations

import json

import grpc
import pytest

from api_proto import backtest_pb2
from tests.conftest import wait_until
from tests.integration.test_api_backtest import request, stub, wait_done  # noqa: F401 (fixture)

GRID_CONFIG = {"strategy_type": "sma_crossover", "param_grid": {"fast": [5, 10, 20], "slow": [20, 50, 100]},
               "rank_by": "sharpe_ratio"}


def result_of(stub, backtest_id):
    return stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=backtest_id))


def test_param_grid_returns_a_ranked_table_and_the_best_backtest(stub):
    response = stub.SubmitBacktestTask(request(strategy_config=json.dumps(GRID_CONFIG)))
    assert wait_done(stub, response.backtest_id).status == backtest_pb2.COMPLETED
    result = result_of(stub, response.backtest_id)
    assert result.sweep_combinations == 8  # (20, 20) breaks fast < slow and is left out
    assert [row.rank for row in result.sweep] == list(range(1, 9))
    sharpes = [row.metrics.sharpe_ratio for row in result.sweep]
    assert sharpes == sorted(sharpes, reverse=True) and result.rank_by == "sharpe_ratio"
    best = result.sweep[0]
    config = json.loads(result.strategy_config)
    assert (str(config["fast"]), str(config["slow"])) == (best.params["fast"], best.params["slow"])
    # The headline backtest is the best set's, with the same numbers as its table row.
    assert result.performance_metrics.total_return == pytest.approx(best.metrics.total_return, rel=1e-12)
    assert result.performance_metrics.num_trades == best.metrics.num_trades


def test_walk_forward_reports_in_and_out_of_sample_windows(stub):
    config = {**GRID_CONFIG, "walk_forward": {"splits": 3, "train_fraction": 0.6}}
    response = stub.SubmitBacktestTask(request(strategy_config=json.dumps(config), start_time="2020-01-01"))
    assert wait_done(stub, response.backtest_id).status == backtest_pb2.COMPLETED
    windows = result_of(stub, response.backtest_id).walk_forward
    assert [w.window for w in windows] == [1, 2, 3]
    for window in windows:
        assert window.train_start < window.train_end < window.test_start <= window.test_end
        assert set(window.best_params) == {"fast", "slow"}
    assert windows[0].test_end < windows[1].train_start or windows[0].test_end <= windows[1].test_start


def test_identical_request_returns_the_cached_backtest(platform, stub):
    config = json.dumps({"strategy_type": "sma_crossover", "fast": 7, "slow": 40, "direction": "long_short"})
    first = stub.SubmitBacktestTask(request(strategy_config=config))
    assert wait_done(stub, first.backtest_id).status == backtest_pb2.COMPLETED
    again = stub.SubmitBacktestTask(request(strategy_config=config))
    assert again.backtest_id == first.backtest_id and again.status == backtest_pb2.COMPLETED
    assert "cached" in again.message
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for metric in platform.registry.collect() for s in metric.samples}
    assert samples[("cache_hit_rate", (("cache", "backtests"),))] > 0
    other = stub.SubmitBacktestTask(request(strategy_config=config, commission_rate=0.001))
    assert other.backtest_id != first.backtest_id


def test_signals_rules_long_short_with_stops_run_end_to_end(stub):
    config = {"strategy_type": "signals", "entry": "sma(close,10) crosses_above sma(close,30) and rsi(close,14) < 70",
              "exit": "sma(close,10) crosses_below sma(close,30)", "direction": "long_short",
              "stop_loss": 0.05, "take_profit": 0.1, "slippage_bps": 2, "commission_min": 5}
    response = stub.SubmitBacktestTask(request(strategy_config=json.dumps(config), start_time="2020-01-01"))
    status = wait_done(stub, response.backtest_id)
    assert status.status == backtest_pb2.COMPLETED, status.error_message
    trades = result_of(stub, response.backtest_id).trades
    assert {t.direction for t in trades} == {"long", "short"}
    assert {t.exit_reason for t in trades} & {"stop_loss", "take_profit"}
    assert all(t.commission >= 5 for t in trades if not t.is_open)


def test_entry_is_swept_and_tells_cached_backtests_apart(stub):
    grid = {"strategy_type": "sma_crossover", "slow": 40, "param_grid": {"fast": [5, 10], "entry": ["cross", "level"]}}
    response = stub.SubmitBacktestTask(request(strategy_config=json.dumps(grid)))
    assert wait_done(stub, response.backtest_id).status == backtest_pb2.COMPLETED
    result = result_of(stub, response.backtest_id)
    assert sorted((row.params["fast"], row.params["entry"]) for row in result.sweep) == [
        ("10", "cross"), ("10", "level"), ("5", "cross"), ("5", "level")]
    ids = {}
    for entry in ("cross", "level"):  # the normalised config (the cache key) holds entry
        config = json.dumps({"strategy_type": "sma_crossover", "fast": 5, "slow": 40, "entry": entry})
        submitted = stub.SubmitBacktestTask(request(strategy_config=config))
        assert wait_done(stub, submitted.backtest_id).status == backtest_pb2.COMPLETED
        assert json.loads(result_of(stub, submitted.backtest_id).strategy_config)["entry"] == entry
        ids[entry] = submitted.backtest_id
    assert ids["cross"] != ids["level"]
    default = stub.SubmitBacktestTask(request(strategy_config=json.dumps(
        {"strategy_type": "sma_crossover", "fast": 5, "slow": 40})))
    assert default.backtest_id == ids["cross"] and "cached" in default.message


@pytest.mark.parametrize("config,needle", [
    ({"strategy_type": "signals", "entry": "sma(close,10) >> 3"}, "column"),
    ({"strategy_type": "sma_crossover", "param_grid": {"fast": [50], "slow": [10]}}, "no valid combination"),
    ({"strategy_type": "sma_crossover", "param_grid": {"speed": [1]}}, "param_grid.speed"),
    ({"strategy_type": "sma_crossover", "walk_forward": {"splits": 3}}, "needs a param_grid"),
    ({"strategy_type": "sma_crossover", "direction": "both"}, "strategy_config.direction"),
    ({"strategy_type": "sma_crossover", "entry": "touch"}, "strategy_config.entry must be one of cross, level"),
    ({"strategy_type": "momentum", "stop_loss": 0.1}, "stops and sizing"),
])
def test_bad_strategy_configs_are_invalid_argument(stub, config, needle):
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitBacktestTask(request(strategy_config=json.dumps(config)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in caught.value.details()


def test_cancel_stops_a_running_sweep_before_it_finishes(stub):
    grid = {"strategy_type": "sma_crossover", "param_grid": {"fast": list(range(2, 60)), "slow": list(range(60, 300, 5))}}
    response = stub.SubmitBacktestTask(request(strategy_config=json.dumps(grid), start_time="2015-01-01",
                                               stock_codes=["000001.SZ", "600000.SH", "000002.SZ"]))
    status_request = backtest_pb2.BacktestStatusRequest(backtest_id=response.backtest_id)
    wait_until(lambda: stub.GetBacktestStatus(status_request).progress >= 0.3, timeout=120, interval=0.02)
    stub.CancelBacktest(backtest_pb2.CancelBacktestRequest(backtest_id=response.backtest_id))
    status = wait_done(stub, response.backtest_id, timeout=120)
    # A running job turns CANCELLED only when the sweep itself stopped at a progress check (the
    # worker writes it after JobCancelled); an ignored cancel would end COMPLETED with progress 1.
    assert status.status == backtest_pb2.CANCELLED and status.progress < 1.0
