"""ExecutionService over real gRPC + Redis + worker: plans equal the engine's, VWAP profiles come
from stored intraday bars, simulations run as queued jobs and equal the in-process simulation, and
bad requests get a status naming the field."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from api_proto import execution_pb2, execution_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from tests.integration.test_api_portfolio import expect_error
from utils.data.store import Bars
from utils.data.timeutil import parse_time
from utils.engine.execution import plan_execution
from utils.engine.execution.profile import intraday_volume_profile

DAYS = ("2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08")
MINUTES = 240  # bars per session


def minute_bars(symbol: str, seed: int) -> Bars:
    """Five sessions of 1-minute bars with a U-shaped volume curve."""
    rng = np.random.default_rng(seed)
    times = np.concatenate([parse_time(f"{day}T01:30:00Z") + np.arange(MINUTES, dtype=np.int64) * 60 * 10**9
                            for day in DAYS])
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.001, times.size)))
    u_shape = 1 + 2 * ((np.arange(MINUTES) - MINUTES / 2) / (MINUTES / 2)) ** 2
    volume = np.tile(u_shape, len(DAYS)) * rng.uniform(5_000, 15_000, times.size)
    return Bars(symbol, times, close, close * 1.0005, close * 0.9995, close, volume)


@pytest.fixture
def stub(platform, channel):
    for index, symbol in enumerate(("MIN.A", "MIN.B")):
        platform.store.write(minute_bars(symbol, index), replace=True, source="test")
    return execution_pb2_grpc.ExecutionServiceStub(channel)


def test_almgren_chriss_and_twap_plans_equal_the_engine(stub):
    fields = dict(algorithm="almgren_chriss", side="sell", quantity=1e6, slices=5, horizon=5.0, sigma=0.95, eta=2.5e-6,
                  gamma=2.5e-7, epsilon=0.0625, risk_aversion=1e-6)
    plan = stub.PlanExecution(execution_pb2.ExecutionPlanRequest(**fields))
    expected = plan_execution("almgren_chriss", "sell", 1e6, 5, 5.0, sigma=0.95, eta=2.5e-6, gamma=2.5e-7,
                              epsilon=0.0625, risk_aversion=1e-6)
    assert list(plan.quantities) == list(expected.quantities) and list(plan.holdings) == list(expected.holdings)
    assert (plan.expected_cost, plan.cost_variance, plan.kappa) == (expected.expected_cost, expected.cost_variance,
                                                                     expected.kappa)
    assert plan.utility == pytest.approx(plan.expected_cost + 1e-6 * plan.cost_variance, rel=1e-12)
    assert sum(plan.quantities) == 1e6 and plan.holdings[-1] == 0 and plan.compute_micros > 0
    twap = stub.PlanExecution(execution_pb2.ExecutionPlanRequest(algorithm="twap", side="buy", quantity=10_050,
                                                                 slices=4, horizon=1.0, lot_size=100))
    assert sum(twap.quantities) == 10_050 and all(q % 100 == 0 for q in twap.quantities[:-1])
    assert list(twap.times) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_vwap_profile_from_stored_minute_bars(platform, stub):
    plan = stub.PlanExecution(execution_pb2.ExecutionPlanRequest(algorithm="vwap", side="buy", quantity=50_000,
                                                                 slices=8, horizon=240, symbol="MIN.A",
                                                                 lookback_days=3))
    bars = platform.store.read("MIN.A")
    profile = intraday_volume_profile(bars.time, bars.volume, 8, 3)
    np.testing.assert_allclose(plan.quantities, 50_000 * profile, rtol=1e-12)
    assert plan.quantities[0] > plan.quantities[3] < plan.quantities[-1]  # the U shape
    expect_error(lambda: stub.PlanExecution(execution_pb2.ExecutionPlanRequest(
        algorithm="vwap", side="buy", quantity=1000, slices=8, horizon=1, symbol="000001.SZ")),
        grpc.StatusCode.FAILED_PRECONDITION, "intraday bars")


@pytest.mark.parametrize("fields, needle, code", [
    (dict(algorithm="magic"), "algorithm", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(side="hold"), "side", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(quantity=-5), "quantity", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(slices=0), "slices", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(algorithm="almgren_chriss", sigma=0.95, eta=1e-9, gamma=1e-3, risk_aversion=1e-6), "non-convex",
     grpc.StatusCode.INVALID_ARGUMENT),
    (dict(algorithm="pov", participation=0.1, expected_volumes=[100, 100, 100, 100]), "left",
     grpc.StatusCode.INVALID_ARGUMENT),
    (dict(algorithm="vwap"), "symbol", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(algorithm="vwap", symbol="NOPE.X"), "NOPE.X", grpc.StatusCode.NOT_FOUND),
    (dict(algorithm="policy"), "model_id", grpc.StatusCode.INVALID_ARGUMENT),
])
def test_bad_plans_name_the_problem(stub, fields, needle, code):
    values = dict(algorithm="twap", side="buy", quantity=1000, slices=4, horizon=1.0)
    values.update(fields)
    expect_error(lambda: stub.PlanExecution(execution_pb2.ExecutionPlanRequest(**values)), code, needle)


def orders(count: int) -> list[execution_pb2.ParentOrder]:
    """Hour-long orders spread over the sessions, alternating sides and symbols."""
    out = []
    for index in range(count):
        day = DAYS[1 + index % 4]
        hour = 1 + index % 3
        out.append(execution_pb2.ParentOrder(
            symbol=("MIN.A", "MIN.B")[index % 2], side=("buy", "sell")[index % 2], quantity=20_000 + 1000 * index,
            start_time=f"{day}T0{hour + 1}:00:00Z", end_time=f"{day}T0{hour + 1}:59:00Z"))
    return out


def finish(channel, job_id):
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    updates = list(jobs.WatchJob(jobs_pb2.JobRequest(job_id=job_id), timeout=120))
    return updates[-1]


def test_simulation_through_the_queue_equals_in_process(platform, channel, stub):
    from utils.tasks.execution import simulate
    request = execution_pb2.SimulationRequest(orders=orders(12), algorithms=["twap", "vwap", "pov", "almgren_chriss"],
                                              impact=execution_pb2.ImpactModel(kind="sqrt", coefficient=0.2,
                                                                               participation_cap=0.3),
                                              participation=0.15, include_fills=True)
    handle = stub.SimulateExecution(request)
    assert handle.job_id.startswith("ex-") and handle.status == jobs_pb2.PENDING
    job = finish(channel, handle.job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    result = stub.GetSimulation(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert [a.algorithm for a in result.algorithms] == ["twap", "vwap", "pov", "almgren_chriss"]
    payload = platform.queue.get(handle.job_id).payload
    expected = simulate(platform.store, payload)
    for got, want in zip(result.algorithms, expected["algorithms"]):
        assert got.pos == want["pos"] and len(got.orders) == 12
        for name in ("pa_bps", "shortfall_bps", "ffr"):
            assert getattr(got, name).mean == want[name]["mean"], name
        for outcome, order in zip(got.orders, want["orders"]):
            assert list(outcome.fills) == order["fills"]
            assert len(outcome.fills) == 60 and sum(outcome.fills) <= 20_000 + 1000 * outcome.order + 1e-6
    twap = result.algorithms[0]
    assert all(np.isfinite(o.shortfall_bps) for o in twap.orders)
    assert result.orders_per_second > 0 and result.device == "cpu"


def test_without_impact_twap_matches_the_twap_price(channel, stub):
    request = execution_pb2.SimulationRequest(orders=orders(4), algorithms=["twap"],
                                              impact=execution_pb2.ImpactModel(kind="sqrt", coefficient=0.0))
    job = finish(channel, stub.SimulateExecution(request).job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    twap = stub.GetSimulation(jobs_pb2.JobRequest(job_id=job.job_id)).algorithms[0]
    assert all(abs(o.pa_bps) < 1e-9 and o.ffr == 1.0 for o in twap.orders), [(o.pa_bps, o.ffr) for o in twap.orders]
    assert twap.ffr.mean == 1.0 and twap.pos == np.mean([o.pa_bps > 0 for o in twap.orders])


def test_bad_simulations(channel, stub):
    expect_error(lambda: stub.SimulateExecution(execution_pb2.SimulationRequest()), grpc.StatusCode.INVALID_ARGUMENT,
                 "orders")
    expect_error(lambda: stub.SimulateExecution(execution_pb2.SimulationRequest(orders=orders(1), algorithms=["x"])),
                 grpc.StatusCode.INVALID_ARGUMENT, "algorithms")
    bad = execution_pb2.ParentOrder(symbol="MIN.A", side="buy", quantity=10, start_time="2030-01-01",
                                    end_time="2030-01-02")
    expect_error(lambda: stub.SimulateExecution(execution_pb2.SimulationRequest(
        orders=[bad], impact=execution_pb2.ImpactModel(participation_cap=1.5))), grpc.StatusCode.INVALID_ARGUMENT,
        "participation_cap")
    job = finish(channel, stub.SimulateExecution(execution_pb2.SimulationRequest(orders=[bad])).job_id)
    assert job.status == jobs_pb2.FAILED and "orders[0]" in job.error_message and "no stored bars" in job.error_message
    expect_error(lambda: stub.SimulateExecution(execution_pb2.SimulationRequest(orders=[execution_pb2.ParentOrder(
        symbol="NOPE.X", side="buy", quantity=1, start_time="2024-01-01", end_time="2024-01-02")])),
        grpc.StatusCode.NOT_FOUND, "NOPE.X")


def test_a_trained_policy_plans_and_simulates(platform, channel, stub):
    from api_proto import ml_pb2, ml_pb2_grpc
    from tests.conftest import wait_until
    from tests.integration.test_ppo_execution_training import policy_request
    ml = ml_pb2_grpc.MLServiceStub(channel)
    task = ml.TrainModel(policy_request()).task_id
    status = wait_until(lambda: (s := ml.GetTrainingStatus(ml_pb2.TrainingStatusRequest(task_id=task))).status
                        in ("completed", "failed") and s, timeout=90)
    assert status.status == "completed", status.error
    state = execution_pb2.PolicyState(recent_prices=[20.0, 20.1, 20.05, 19.9, 20.2], recent_volumes=[1e4] * 5)
    plan = stub.PlanExecution(execution_pb2.ExecutionPlanRequest(algorithm="policy", side="buy", quantity=9000,
                                                                 slices=6, horizon=6, model_id=status.model_id,
                                                                 state=state))
    assert len(plan.quantities) == 6 and sum(plan.quantities) == pytest.approx(9000, rel=1e-12)
    assert plan.holdings[0] == 9000 and plan.holdings[-1] == 0 and plan.algorithm == "policy"
    job = finish(channel, stub.SimulateExecution(execution_pb2.SimulationRequest(
        orders=orders(6), algorithms=["twap", "policy"], model_id=status.model_id)).job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    result = stub.GetSimulation(jobs_pb2.JobRequest(job_id=job.job_id))
    assert [a.algorithm for a in result.algorithms] == ["twap", "policy"]
    assert all(0 < o.ffr <= 1 for o in result.algorithms[1].orders)
    expect_error(lambda: stub.PlanExecution(execution_pb2.ExecutionPlanRequest(
        algorithm="policy", side="buy", quantity=1, slices=2, horizon=1, model_id="nope", state=state)),
        grpc.StatusCode.NOT_FOUND, "ppo_execution")
    expect_error(lambda: stub.PlanExecution(execution_pb2.ExecutionPlanRequest(
        algorithm="policy", side="buy", quantity=1, slices=2, horizon=1, model_id=status.model_id)),
        grpc.StatusCode.INVALID_ARGUMENT, "recent_prices")
