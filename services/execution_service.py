"""ExecutionService: PlanExecution in the server process (the low-latency path: no queue, no Redis
unless a VWAP profile is read from stored bars), SimulateExecution as a queued ``execution`` job
(``utils/tasks/execution.py``) and GetSimulation for its result."""
from __future__ import annotations

import math
import time
from typing import Any

import grpc
import numpy as np

from api_proto import execution_pb2, execution_pb2_grpc, jobs_pb2
from services import validation
from services.errors import ServiceError, failed_precondition, invalid, not_found
from services.job_views import completed_result, job_id_field
from utils.data.store import BarStore
from utils.data.timeutil import format_time
from utils.queue.jobs import JobSpec, new_job_id
from utils.queue.streams import JobQueue

TASK_TYPE = "execution"
ALGORITHMS = ("twap", "vwap", "pov", "almgren_chriss", "policy")
SIDES = ("buy", "sell")
MAX_SLICES = 100_000
MAX_ORDERS = 100_000
MAX_FILL_ORDERS = 1_000
DEFAULT_LOOKBACK_DAYS = 20
FOLLOW = "follow it with JobService.WatchJob"


def _side(field: str, value: str) -> str:
    if value not in SIDES:
        raise invalid(field, f"must be 'buy' or 'sell', got {value[:20]!r}")
    return value


def _plan_message(algorithm: str, plan: Any, micros: float) -> execution_pb2.ExecutionPlan:
    return execution_pb2.ExecutionPlan(
        quantities=np.asarray(plan.quantities, dtype=np.float64).tolist(),
        holdings=np.asarray(plan.holdings, dtype=np.float64).tolist(),
        expected_cost=plan.expected_cost, cost_variance=plan.cost_variance, utility=plan.utility,
        kappa=plan.kappa, times=np.asarray(plan.times, dtype=np.float64).tolist(), algorithm=algorithm,
        compute_micros=micros)


def _distribution(values: dict[str, float]) -> execution_pb2.Distribution:
    return execution_pb2.Distribution(**{k: (math.nan if v is None else v) for k, v in values.items()})


def simulation_message(job_id: str, result: dict[str, Any]) -> execution_pb2.SimulationResult:
    algorithms = []
    for entry in result["algorithms"]:
        algorithms.append(execution_pb2.AlgorithmResult(
            algorithm=entry["algorithm"], pa_bps=_distribution(entry["pa_bps"]),
            shortfall_bps=_distribution(entry["shortfall_bps"]), ffr=_distribution(entry["ffr"]), pos=entry["pos"],
            orders=[execution_pb2.OrderOutcome(**{k: (math.nan if v is None else v) for k, v in order.items()})
                    for order in entry["orders"]]))
    return execution_pb2.SimulationResult(job_id=job_id, algorithms=algorithms,
                                          orders_per_second=result["orders_per_second"],
                                          compute_time=result.get("compute_time", 0.0),
                                          device=result.get("device", "cpu"))


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    def __init__(self, queue: JobQueue, store: BarStore, settings: Any, policies: Any) -> None:
        self.queue = queue
        self.store = store
        self.settings = settings
        self.policies = policies  # model id -> loaded policy planner (utils.serving.execution_policies)

    # ------------------------------------------------------------ plans
    def PlanExecution(self, request, context):
        from utils.engine.execution import plan_execution
        began = time.perf_counter()
        algorithm = request.algorithm or "twap"
        if algorithm not in ALGORITHMS:
            raise invalid("algorithm", f"must be one of {', '.join(ALGORITHMS)}, got {algorithm[:40]!r}")
        side = _side("side", request.side or "buy")
        if not (math.isfinite(request.quantity) and request.quantity > 0):
            raise invalid("quantity", f"must be a positive number, got {request.quantity}")
        if not 1 <= request.slices <= MAX_SLICES:
            raise invalid("slices", f"must be 1..{MAX_SLICES:,}, got {request.slices}")
        if algorithm == "policy":
            plan = self._policy_plan(request, side)
        else:
            extra: dict[str, Any] = {}
            if algorithm == "almgren_chriss":
                extra = dict(sigma=request.sigma, eta=request.eta, gamma=request.gamma, epsilon=request.epsilon,
                             risk_aversion=request.risk_aversion)
            elif algorithm == "vwap":
                extra = dict(volume_profile=self._volume_profile(request))
            elif algorithm == "pov":
                extra = dict(participation=request.participation, expected_volumes=list(request.expected_volumes))
            try:
                plan = plan_execution(algorithm, side, request.quantity, request.slices, request.horizon,
                                      request.lot_size, **extra)
            except ValueError as exc:
                raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        return _plan_message(algorithm, plan, (time.perf_counter() - began) * 1e6)

    def _volume_profile(self, request) -> list[float]:
        from utils.engine.execution.profile import NoIntradayProfile, intraday_volume_profile
        if request.volume_profile:
            if request.symbol:
                raise invalid("volume_profile", "give either volume_profile or symbol, not both")
            return list(request.volume_profile)
        if not request.symbol:
            raise invalid("symbol", "vwap needs a stored symbol (its intraday bars give the profile) or "
                                    "volume_profile")
        symbol = validation.symbol("symbol", request.symbol)
        lookback = request.lookback_days or DEFAULT_LOOKBACK_DAYS
        if not 1 <= lookback <= 250:
            raise invalid("lookback_days", f"must be 1..250 (0 = {DEFAULT_LOOKBACK_DAYS}), got {lookback}")
        info = self.store.info(symbol)
        if info is None:
            raise not_found(f"symbol {symbol!r} has no stored bars; import its intraday bars with "
                            f"MarketDataService.ImportBars")
        bars = self.store.read(symbol)
        try:
            return intraday_volume_profile(bars.time, bars.volume, request.slices, lookback).tolist()
        except NoIntradayProfile as exc:
            raise failed_precondition(f"symbol {symbol!r}: {exc}") from None

    def _policy(self, model_id: str) -> Any:
        from utils.serving.execution_policies import ModelNotFound, NotAnExecutionPolicy
        try:
            return self.policies.get(validation.identifier("model_id", model_id, "model"))
        except ModelNotFound:
            raise not_found(f"no trained model {model_id[:80]!r}; train one with MLService.TrainModel(model_type="
                            f"'ppo_execution')") from None
        except NotAnExecutionPolicy as exc:
            raise failed_precondition(str(exc)) from None

    def _policy_plan(self, request, side: str) -> Any:
        from utils.engine.execution import ExecutionPlan
        from utils.engine.execution.policy.inference import PlanState
        if not request.model_id:
            raise invalid("model_id", "policy needs the id of a trained ppo_execution model")
        planner = self._policy(request.model_id)
        state = request.state
        prices = list(state.recent_prices)
        volumes = list(state.recent_volumes) or [1.0] * len(prices)
        if not prices:
            raise invalid("state.recent_prices", "policy needs the recent bar prices (at least one)")
        remaining = state.remaining_quantity or request.quantity
        try:
            quantities = planner.plan(PlanState(side=1 if side == "buy" else -1, quantity=request.quantity,
                                                n_bars=request.slices, prices=np.asarray(prices),
                                                volumes=np.asarray(volumes), elapsed_fraction=state.elapsed_fraction,
                                                remaining=remaining))
        except ValueError as exc:
            raise invalid("state", str(exc)) from None
        holdings = remaining - np.r_[0.0, np.cumsum(quantities)]
        holdings[-1] = 0.0
        tau = request.horizon / request.slices if request.horizon > 0 else 1.0
        return ExecutionPlan(quantities=quantities, holdings=holdings, times=np.arange(request.slices + 1) * tau,
                             expected_cost=0.0, cost_variance=0.0, utility=0.0, kappa=0.0)

    # ------------------------------------------------------------ simulation
    def SimulateExecution(self, request, context):
        payload = self._simulation_payload(request)
        job_id = new_job_id(TASK_TYPE)
        meta = {"orders": len(payload["orders"]), "algorithms": payload["algorithms"],
                "symbols": sorted({o["symbol"] for o in payload["orders"]})[:20]}
        self.queue.enqueue(JobSpec(TASK_TYPE, payload, "normal", self.settings.job_max_attempts, meta), job_id)
        return jobs_pb2.JobHandle(job_id=job_id, status=jobs_pb2.PENDING, message="queued")

    def _simulation_payload(self, request) -> dict[str, Any]:
        if not request.orders:
            raise invalid("orders", "is empty; give at least one parent order")
        if len(request.orders) > MAX_ORDERS:
            raise invalid("orders", f"has {len(request.orders):,} orders; the limit is {MAX_ORDERS:,} per job")
        orders = []
        for index, order in enumerate(request.orders):
            field = f"orders[{index}]"
            symbol = validation.symbol(f"{field}.symbol", order.symbol)
            if not (math.isfinite(order.quantity) and order.quantity > 0):
                raise invalid(f"{field}.quantity", f"must be a positive number, got {order.quantity}")
            start, end = validation.time_range(f"{field}.start_time", order.start_time, f"{field}.end_time",
                                               order.end_time)
            orders.append({"symbol": symbol, "side": _side(f"{field}.side", order.side or "buy"),
                           "quantity": order.quantity, "start_ns": start, "end_ns": end})
        symbols = sorted({o["symbol"] for o in orders})
        infos = self.store.info_many(symbols)
        for symbol in symbols:
            if infos[symbol] is None:
                raise not_found(f"symbol {symbol!r} has no stored bars; import them with MarketDataService.ImportBars")
        algorithms = list(dict.fromkeys(request.algorithms)) or ["twap"]
        for algorithm in algorithms:
            if algorithm not in ALGORITHMS:
                raise invalid("algorithms", f"{algorithm[:40]!r} is not one of {', '.join(ALGORITHMS)}")
        if "policy" in algorithms:
            if not request.model_id:
                raise invalid("model_id", "the policy algorithm needs a trained ppo_execution model id")
            self._policy(request.model_id)  # NOT_FOUND / FAILED_PRECONDITION now, not in the job
        impact = request.impact
        kind = impact.kind or "sqrt"
        if kind not in ("sqrt", "linear"):
            raise invalid("impact.kind", f"must be 'sqrt' or 'linear', got {kind[:20]!r}")
        for name in ("coefficient", "eta", "gamma", "epsilon"):
            validation.finite(f"impact.{name}", getattr(impact, name), 0.0)
        cap = impact.participation_cap if impact.HasField("participation_cap") else 1.0
        if not 0 < cap <= 1:
            raise invalid("impact.participation_cap", f"must be in (0, 1], got {cap}")
        participation = request.participation or 0.1
        if not 0 < participation <= 1:
            raise invalid("participation", f"must be in (0, 1], got {participation}")
        if request.include_fills and len(orders) > MAX_FILL_ORDERS:
            raise invalid("include_fills", f"is allowed for up to {MAX_FILL_ORDERS:,} orders, got {len(orders):,}")
        return {"orders": orders, "algorithms": algorithms,
                "impact": {"kind": kind, "coefficient": impact.coefficient if impact.HasField("coefficient") else 0.1,
                           "eta": impact.eta, "gamma": impact.gamma, "epsilon": impact.epsilon,
                           "participation_cap": cap},
                "participation": participation, "risk_aversion": validation.finite(
                    "risk_aversion", request.risk_aversion or 1e-6, 0.0),
                "model_id": request.model_id or None, "include_fills": request.include_fills,
                "submitted": format_time(time.time_ns())}

    def GetSimulation(self, request, context):
        job_id = job_id_field("job_id", request.job_id, TASK_TYPE)
        _, result = completed_result(self.queue, job_id, TASK_TYPE, FOLLOW)
        return simulation_message(job_id, result)
