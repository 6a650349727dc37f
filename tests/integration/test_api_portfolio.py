"""PortfolioService over real gRPC + Redis + worker: optimisations and risk reports run as queued
jobs and answer what the engine computes on the stored closes; bad requests get a status naming the
field; live limits are re-evaluated on streamed ticks and counted when breached."""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from api_proto import (backtest_pb2, backtest_pb2_grpc, jobs_pb2, jobs_pb2_grpc, portfolio_pb2, portfolio_pb2_grpc,
                       realtime_pb2, realtime_pb2_grpc)
from tests.conftest import wait_until
from tests.integration.test_api_backtest import request as backtest_request, wait_done
from utils.data.timeutil import parse_time
from utils.tasks.factor_panels import aligned_bars

SYMBOLS = ["000001.SZ", "000002.SZ", "600000.SH"]
START, END = "2022-01-01", "2024-12-31"


@pytest.fixture
def stub(channel):
    return portfolio_pb2_grpc.PortfolioServiceStub(channel)


def closes(platform, symbols=SYMBOLS, start=START, end=END) -> np.ndarray:
    aligned = aligned_bars(platform.store, symbols, parse_time(start), parse_time(end), 0, ("close",))
    return aligned.close[:aligned.factor_rows]


def optimize(**fields) -> portfolio_pb2.OptimizeRequest:
    values = dict(symbols=SYMBOLS, start_time=START, end_time=END)
    values.update(fields)
    return portfolio_pb2.OptimizeRequest(**values)


def expect_error(call, code, *needles):
    """``call()`` fails with ``code`` and a message holding each needle (and no traceback)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    for needle in needles:
        assert needle in info.value.details(), info.value.details()
    assert "Traceback" not in info.value.details()


def test_min_volatility_equals_the_engine(platform, stub):
    from utils.engine import portfolio as engine
    response = stub.OptimizePortfolio(optimize(), timeout=120)
    assert response.job_id.startswith("pf-") and response.objective == "min_volatility"
    prices = closes(platform)
    mu, cov = engine.mean_historical(prices), engine.sample_cov(prices)
    expected = engine.optimize(engine.PortfolioProblem(mu=mu, cov=cov), "min_volatility").weights
    got = np.array([response.weights[s] for s in SYMBOLS])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert abs(got.sum() - 1) < 1e-9 and response.solver == "clarabel" and response.status == "optimal"
    performance = engine.portfolio_performance(got, mu, cov)
    assert np.allclose([response.expected_return, response.volatility, response.sharpe_ratio], performance,
                       rtol=1e-12, atol=0)
    assert abs(sum(response.risk_contributions.values()) - 1) < 1e-9
    assert response.observations == prices.shape[0] - 1 and response.compute_time > 0


def test_max_sharpe_with_sectors_and_an_allocation(platform, stub):
    response = stub.OptimizePortfolio(optimize(
        objective="max_sharpe", risk_free_rate=0.01, weight_upper=0.6, sectors={"000001.SZ": "bank", "600000.SH": "bank",
                                                                               "000002.SZ": "property"},
        sector_upper={"bank": 0.7}, portfolio_value=100_000, allocation_method="greedy"), timeout=120)
    weights = dict(response.weights)
    assert weights["000001.SZ"] + weights["600000.SH"] <= 0.7 + 1e-6 and max(weights.values()) <= 0.6 + 1e-6
    latest = closes(platform)[-1]
    spent = sum(n * latest[SYMBOLS.index(s)] for s, n in response.allocation.shares.items())
    assert response.allocation.method == "greedy" and 0 <= response.allocation.leftover < 100_000
    assert abs(spent + response.allocation.leftover - 100_000) < 1e-6


def test_hrp_and_submit_then_get(platform, channel, stub):
    from utils.engine import portfolio as engine
    handle = stub.SubmitOptimization(optimize(objective="hrp", linkage="ward"))
    assert handle.status == jobs_pb2.PENDING and handle.job_id.startswith("pf-")
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    updates = list(jobs.WatchJob(jobs_pb2.JobRequest(job_id=handle.job_id), timeout=120))
    assert updates[-1].status == jobs_pb2.COMPLETED, updates[-1].error_message
    response = stub.GetOptimization(jobs_pb2.JobRequest(job_id=handle.job_id))
    expected = engine.hrp_weights(engine.returns_from_prices(closes(platform)), linkage="ward")
    np.testing.assert_allclose([response.weights[s] for s in SYMBOLS], expected, rtol=0, atol=1e-15)
    assert response.solver == "none"


def test_infeasible_constraints_fail_naming_them(stub):
    expect_error(lambda: stub.OptimizePortfolio(optimize(weight_upper=0.2), timeout=120),
                 grpc.StatusCode.FAILED_PRECONDITION, "infeasible", "weight_upper", "sum to 0.6 < 1")


@pytest.mark.parametrize("fields, field", [
    (dict(objective="max_fun"), "objective"),
    (dict(objective="efficient_risk"), "target_volatility"),
    (dict(symbols=["000001.SZ"]), "symbols"),
    (dict(weight_lower=0.5, weight_upper=0.4), "weight_upper"),
    (dict(risk_model="magic"), "risk_model"),
    (dict(sectors={"XYZ": "a"}), "sectors"),
    (dict(inline_model=portfolio_pb2.InlineModel(expected_returns=[0.1, 0.2], covariance=[1, 0, 0, 1])),
     "inline_model.expected_returns"),
    (dict(max_turnover=0.1), "max_turnover"),
])
def test_invalid_optimisations_name_the_field(stub, fields, field):
    expect_error(lambda: stub.OptimizePortfolio(optimize(**fields), timeout=30), grpc.StatusCode.INVALID_ARGUMENT,
                 field)


def test_inline_model_and_unknown_symbols(stub):
    response = stub.OptimizePortfolio(portfolio_pb2.OptimizeRequest(
        symbols=["A.X", "B.X"], objective="min_volatility",
        inline_model=portfolio_pb2.InlineModel(expected_returns=[0.1, 0.05], covariance=[0.04, 0.0, 0.0, 0.01])),
        timeout=120)
    assert abs(response.weights["A.X"] - 0.2) < 1e-7 and abs(response.weights["B.X"] - 0.8) < 1e-7
    expect_error(lambda: stub.OptimizePortfolio(optimize(symbols=["000001.SZ", "NOPE.X"]), timeout=30),
                 grpc.StatusCode.NOT_FOUND, "NOPE.X")
    expect_error(lambda: stub.GetOptimization(jobs_pb2.JobRequest(job_id="pf-" + "0" * 32)),
                 grpc.StatusCode.NOT_FOUND)


def test_risk_report_equals_the_engine_bit_for_bit(platform, stub):
    from utils.engine.risk import risk_report
    from utils.tasks.risk import carried_returns
    weights = {"000001.SZ": 0.5, "600000.SH": 0.3, "000002.SZ": 0.2}
    response = stub.ComputeRisk(portfolio_pb2.RiskRequest(
        weights=weights, start_time=START, end_time=END, confidence=[0.95, 0.99], mc_scenarios=20_000, seed=7,
        benchmark="000001.SZ", shocks={"000001.SZ": -0.1}), timeout=120)
    assert response.job_id.startswith("rk-") and response.device == "cpu" and response.seed == 7
    ordered = sorted(weights)
    returns = carried_returns(closes(platform, ordered))
    benchmark = carried_returns(closes(platform, ["000001.SZ"]))[:, 0]
    expected = risk_report(returns, np.array([weights[s] for s in ordered]), confidences=(0.95, 0.99),
                           mc_scenarios=20_000, seed=7, benchmark_returns=benchmark,
                           shocks=np.array([-0.1 if s == "000001.SZ" else 0.0 for s in ordered]))
    for got, want in zip(response.levels, expected.levels):
        for name in ("historical_var", "historical_cvar", "parametric_var", "parametric_es", "cornish_fisher_var",
                     "mc_var", "mc_es", "mc_standard_error"):
            assert getattr(got, name) == getattr(want, name), name
    assert response.max_drawdown == expected.max_drawdown and response.beta == expected.beta
    assert response.shock_return == pytest.approx(-0.05, abs=1e-15)
    assert abs(sum(response.component_var.values()) - response.levels[0].parametric_var) < 1e-12
    assert response.worst_windows and response.worst_windows[0].portfolio_return < 0


def test_risk_of_a_backtest_and_bad_risk_requests(platform, channel, stub):
    backtests = backtest_pb2_grpc.BacktestServiceStub(channel)
    backtest_id = backtests.IntegratedBacktest(backtest_request()).backtest_id
    assert wait_done(backtests, backtest_id).status == backtest_pb2.COMPLETED
    response = stub.ComputeRisk(portfolio_pb2.RiskRequest(backtest_id=backtest_id, seed=1, mc_scenarios=1000),
                                timeout=120)
    assert response.levels[0].historical_var >= 0 and list(response.component_var) == [backtest_id]
    expect_error(lambda: stub.ComputeRisk(portfolio_pb2.RiskRequest(weights={"000001.SZ": 1.0}, start_time=START,
                                                                    end_time=END, confidence=[1.5])),
                 grpc.StatusCode.INVALID_ARGUMENT, "confidence[0]")
    expect_error(lambda: stub.ComputeRisk(portfolio_pb2.RiskRequest(weights={"000001.SZ": 1.0}, start_time=START,
                                                                    end_time=END, mc_scenarios=5)),
                 grpc.StatusCode.INVALID_ARGUMENT, "mc_scenarios")
    expect_error(lambda: stub.ComputeRisk(portfolio_pb2.RiskRequest(backtest_id="bt-" + "f" * 32)),
                 grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: stub.ComputeRisk(portfolio_pb2.RiskRequest(weights={"000001.SZ": 1.0}, start_time=START,
                                                                    end_time=END, device="gpu")),
                 grpc.StatusCode.FAILED_PRECONDITION, "gpu")


def test_live_limits_breach_on_streamed_ticks(platform, channel, stub):
    realtime = realtime_pb2_grpc.RealTimeServiceStub(channel)
    state = stub.SetRiskLimits(portfolio_pb2.RiskLimitsRequest(
        portfolio_id="desk-1", weights={"000001.SZ": 0.5, "600000.SH": 0.5}, lookback_days=60,
        limits=portfolio_pb2.RiskLimits(max_weight=0.6, var_95=0.5)))
    assert not state.breaches and abs(state.max_weight - 0.5) < 1e-12 and state.var_95 > 0
    updates: list[portfolio_pb2.RiskUpdate] = []
    call = stub.WatchRisk(portfolio_pb2.WatchRiskRequest(portfolio_id="desk-1"), timeout=30)

    def consume():
        try:
            for update in call:
                updates.append(update)
        except grpc.RpcError:
            pass  # cancelled at the end of the test
    threading.Thread(target=consume, daemon=True).start()
    try:
        wait_until(lambda: updates, timeout=10)
        last_close = closes(platform, ["000001.SZ"], "2015-01-01", "2030-01-01")[-1, 0]
        deadline = time.monotonic() + 10
        while not any(u.breaches for u in updates) and time.monotonic() < deadline:
            # 000001.SZ triples: its weight drifts to 3 / (3 + 1) = 0.75 > 0.6
            realtime.StreamMarketData(iter([realtime_pb2.StreamDataRequest(
                stock_code="000001.SZ", price=float(last_close * 3), volume=1, timestamp="2030-01-02T10:00:00Z")]),
                timeout=10).next()
            time.sleep(0.2)
        breached = next(u for u in updates if u.breaches)
        assert breached.symbol == "000001.SZ" and breached.breaches[0].limit == "max_weight"
        assert abs(breached.weights["000001.SZ"] - 0.75) < 1e-9 and "000001.SZ" in breached.breaches[0].message
        assert platform.registry.get_sample_value("risk_limit_breaches_total", {"limit": "max_weight"}) == 1
    finally:
        call.cancel()
    expect_error(lambda: next(iter(stub.WatchRisk(portfolio_pb2.WatchRiskRequest(portfolio_id="nope")))),
                 grpc.StatusCode.NOT_FOUND, "SetRiskLimits")
    expect_error(lambda: stub.SetRiskLimits(portfolio_pb2.RiskLimitsRequest(
        portfolio_id="desk-2", weights={"000001.SZ": 1.0})), grpc.StatusCode.INVALID_ARGUMENT, "limits")
