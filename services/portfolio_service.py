"""PortfolioService: optimisation (task type ``portfolio``) and risk reports (task type ``risk``) as
queued jobs, waited for within the caller's deadline or fetched later by id, plus the live risk
limits of ``services/risk_watch.py``. Validates and queues only; ``utils/tasks/portfolio.py`` and
``utils/tasks/risk.py`` compute."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from api_proto import jobs_pb2, portfolio_pb2, portfolio_pb2_grpc
from services import portfolio_requests as checks
from services.backtest_service import completed_backtest
from services.errors import invalid
from services.job_views import completed_result, job_id_field, run_job
from services.live_feed import LiveFeed
from services.risk_watch import RiskLimitRPCs
from services.stored_data import require_bars_in_range
from utils.data.store import BarStore
from utils.data.timeutil import format_time, parse_times
from utils.queue.jobs import JobSpec, new_job_id
from utils.queue.streams import JobQueue

OPTIMIZE_TYPE = "portfolio"
RISK_TYPE = "risk"
WAIT_SECONDS = 600.0  # the most a request/response RPC waits when the caller set no deadline
FOLLOW = "follow it with JobService.WatchJob"


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def optimize_response(job_id: str, result: dict[str, Any]) -> portfolio_pb2.OptimizeResponse:
    allocation = result.get("allocation")
    return portfolio_pb2.OptimizeResponse(
        job_id=job_id, weights=result["weights"], expected_return=_nan(result["expected_return"]),
        volatility=_nan(result["volatility"]), sharpe_ratio=_nan(result["sharpe_ratio"]),
        risk_contributions={s: _nan(v) for s, v in result["risk_contributions"].items()},
        solver=result["solver"], status=result["status"], compute_time=result.get("compute_time", 0.0),
        allocation=portfolio_pb2.Allocation(**allocation) if allocation else None, objective=result["objective"],
        covariance_fixed=result["covariance_fixed"], warnings=result["warnings"],
        observations=result["observations"])


def risk_response(job_id: str, result: dict[str, Any]) -> portfolio_pb2.RiskReport:
    return portfolio_pb2.RiskReport(
        job_id=job_id,
        levels=[portfolio_pb2.RiskLevel(**{k: _nan(v) for k, v in level.items()}) for level in result["levels"]],
        annual_volatility=_nan(result["annual_volatility"]), max_drawdown=_nan(result["max_drawdown"]),
        beta=_nan(result["beta"]), component_var={s: _nan(v) for s, v in result["component_var"].items()},
        worst_windows=[portfolio_pb2.StressWindow(start_time=w["start_time"], end_time=w["end_time"],
                                                  portfolio_return=_nan(w["portfolio_return"]))
                       for w in result["worst_windows"]],
        shock_return=result["shock_return"], observations=result["observations"],
        compute_time=result.get("compute_time", 0.0), device=result.get("device", "cpu"), seed=result["seed"],
        mc_scenarios=result["mc_scenarios"])


class PortfolioServicer(RiskLimitRPCs, portfolio_pb2_grpc.PortfolioServiceServicer):
    def __init__(self, queue: JobQueue, store: BarStore, settings: Any, feed: LiveFeed, metrics: Any) -> None:
        self.queue = queue
        self.store = store
        self.settings = settings
        self.feed = feed
        self.metrics = metrics

    # ------------------------------------------------------------ optimisation
    def _optimize_spec(self, request) -> JobSpec:
        payload = checks.optimize_payload(request, self.settings.max_symbols_per_request)
        if payload["inline"] is None:
            stored = payload["symbols"] + ([payload["market_symbol"]] if payload["market_symbol"] else [])
            require_bars_in_range(self.store, stored, payload["start_ns"], payload["end_ns"], request.start_time,
                                  request.end_time)
        meta = {"symbols": payload["symbols"][:20], "objective": payload["objective"]}
        return JobSpec(OPTIMIZE_TYPE, payload, "normal", self.settings.job_max_attempts, meta)

    def OptimizePortfolio(self, request, context):
        job_id, result = run_job(self.queue, self._optimize_spec(request), context, WAIT_SECONDS)
        return optimize_response(job_id, result)

    def SubmitOptimization(self, request, context):
        return self._enqueue(self._optimize_spec(request))

    def GetOptimization(self, request, context):
        job_id = job_id_field("job_id", request.job_id, OPTIMIZE_TYPE)
        _, result = completed_result(self.queue, job_id, OPTIMIZE_TYPE, FOLLOW)
        return optimize_response(job_id, result)

    # ------------------------------------------------------------ risk reports
    def _risk_spec(self, request) -> JobSpec:
        payload = checks.risk_payload(request, self.settings.max_symbols_per_request)
        if "backtest_id" in payload:
            _, backtest = completed_backtest(self.queue, payload["backtest_id"], whole=False)
            curve = backtest.get("equity_curve") or {}
            times, ok = parse_times(list(curve.get("time", [])))
            equity = np.asarray(curve.get("equity", []), dtype=np.float64)
            if equity.size < 3 or not ok.all() or not (equity > 0).all():
                raise invalid("backtest_id", f"backtest {payload['backtest_id']} has no usable equity curve "
                                             f"(it needs at least 3 positive points)")
            payload.update(equity=equity.tolist(), equity_times=times.tolist())
            meta = {"backtest_id": payload["backtest_id"]}
        else:
            stored = list(payload["weights"]) + ([payload["benchmark"]] if payload["benchmark"] else [])
            require_bars_in_range(self.store, stored, payload["start_ns"], payload["end_ns"], request.start_time,
                                  request.end_time)
            meta = {"symbols": list(payload["weights"])[:20], "start_time": format_time(payload["start_ns"]),
                    "end_time": format_time(payload["end_ns"])}
        return JobSpec(RISK_TYPE, payload, "normal", self.settings.job_max_attempts, meta)

    def ComputeRisk(self, request, context):
        job_id, result = run_job(self.queue, self._risk_spec(request), context, WAIT_SECONDS)
        return risk_response(job_id, result)

    def SubmitRisk(self, request, context):
        return self._enqueue(self._risk_spec(request))

    def GetRiskReport(self, request, context):
        job_id = job_id_field("job_id", request.job_id, RISK_TYPE)
        _, result = completed_result(self.queue, job_id, RISK_TYPE, FOLLOW)
        return risk_response(job_id, result)

    def _enqueue(self, spec: JobSpec) -> jobs_pb2.JobHandle:
        job_id = self.queue.enqueue(spec, new_job_id(spec.task_type))
        return jobs_pb2.JobHandle(job_id=job_id, status=jobs_pb2.PENDING, message="queued")
