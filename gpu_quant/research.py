"""Factor, portfolio and execution services: thin methods, keyword fields in (the request's field
names; nested messages and maps as dicts), dicts / DataFrames / job handles out."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd

from ._proto import (execution_pb2, execution_pb2_grpc, factor_pb2, factor_pb2_grpc, jobs_pb2, portfolio_pb2,
                     portfolio_pb2_grpc)
from .convert import to_dict, to_request
from .jobs import JobHandle

if TYPE_CHECKING:
    from .jobs import Jobs
    from .transport import Transport


def factor_panel(values: pd.DataFrame) -> dict[str, Any]:
    """A times x symbols frame as a FactorPanel dict (row-major values, NaN kept)."""
    return {"times": [str(stamp.date()) if isinstance(stamp, pd.Timestamp) and stamp == stamp.normalize() else str(stamp)
                      for stamp in values.index],
            "symbols": [str(name) for name in values.columns],
            "values": np.asarray(values, dtype=float).ravel().tolist()}


class _Service:
    stub_class: type

    def __init__(self, transport: "Transport", jobs: "Jobs") -> None:
        self.transport = transport
        self.jobs = jobs
        self.stub = transport.stub(self.stub_class)

    def _call(self, method: str, request: Any, *, idempotent: bool = True) -> Any:
        return self.transport.unary(getattr(self.stub, method), request, idempotent=idempotent, timeout=None)

    def _submit(self, method: str, request: Any, result_method: str) -> JobHandle:
        handle = self._call(method, request, idempotent=False)
        fetch = lambda job_id: to_dict(self._call(result_method, jobs_pb2.JobRequest(job_id=job_id)))  # noqa: E731
        return JobHandle(self.jobs, handle.job_id, fetch)


class Factors(_Service):
    stub_class = factor_pb2_grpc.FactorServiceStub

    def analyze(self, symbols: list[str], start: str, end: str, *, expression: str | None = None,
                values: pd.DataFrame | None = None, **fields: Any) -> JobHandle:
        """AnalyzeFactor (alphalens): an expression or a times x symbols frame of values."""
        request = to_request(factor_pb2.FactorAnalysisRequest, {
            "symbols": list(symbols), "start_time": start, "end_time": end, "expression": expression,
            "values": factor_panel(values) if values is not None else None, **fields})
        return self._submit("AnalyzeFactor", request, "GetFactorAnalysis")

    def report(self, job_id: str, path: str | Path | None = None) -> str:
        html = self._call("GetFactorReport", jobs_pb2.JobRequest(job_id=job_id)).html
        if path is not None:
            Path(path).write_text(html, encoding="utf-8")
        return html

    def compute(self, symbols: list[str], start: str, end: str, **fields: Any) -> JobHandle:
        """ComputeFactors (expressions=[...] or library="alpha158"); result: the set's info."""
        request = to_request(factor_pb2.FactorSetRequest,
                             {"symbols": list(symbols), "start_time": start, "end_time": end, **fields})
        return self._submit("ComputeFactors", request, "GetFactorSet")

    def evaluate(self, symbols: list[str], start: str, end: str, **fields: Any) -> JobHandle:
        """EvaluateFactors; `evaluation_frame(handle.result())` gives one row per factor."""
        request = to_request(factor_pb2.EvaluateFactorsRequest,
                             {"symbols": list(symbols), "start_time": start, "end_time": end, **fields})
        return self._submit("EvaluateFactors", request, "GetFactorEvaluation")

    def combine(self, factor_set_id: str, **fields: Any) -> JobHandle:
        request = to_request(factor_pb2.CombineFactorsRequest, {"factor_set_id": factor_set_id, **fields})
        return self._submit("CombineFactors", request, "GetFactorSet")


def evaluation_frame(result: dict[str, Any]) -> pd.DataFrame:
    """EvaluateFactors' rows, ranked: name, expression, error, loss_fraction, then per period
    `<stat>_<period>` columns."""
    rows = []
    for row in result["rows"]:
        flat = {key: row[key] for key in ("name", "expression", "error", "loss_fraction")}
        for score in row["periods"]:
            flat.update({f"{key}_{score['period']}": value for key, value in score.items() if key != "period"})
        rows.append(flat)
    return pd.DataFrame(rows)


class Portfolio(_Service):
    stub_class = portfolio_pb2_grpc.PortfolioServiceStub

    def optimize(self, symbols: list[str] | None = None, start: str = "", end: str = "", **fields: Any) -> dict[str, Any]:
        """OptimizePortfolio (waits for the job): objective=..., weight bounds, sectors…"""
        request = to_request(portfolio_pb2.OptimizeRequest,
                             {"symbols": list(symbols or []), "start_time": start, "end_time": end, **fields})
        return to_dict(self._call("OptimizePortfolio", request, idempotent=False))

    def submit_optimization(self, symbols: list[str], start: str = "", end: str = "", **fields: Any) -> JobHandle:
        request = to_request(portfolio_pb2.OptimizeRequest,
                             {"symbols": list(symbols), "start_time": start, "end_time": end, **fields})
        return self._submit("SubmitOptimization", request, "GetOptimization")

    def risk(self, **fields: Any) -> dict[str, Any]:
        """ComputeRisk (waits): positions/weights, period, confidence… as RiskRequest fields."""
        return to_dict(self._call("ComputeRisk", to_request(portfolio_pb2.RiskRequest, fields), idempotent=False))

    def submit_risk(self, **fields: Any) -> JobHandle:
        return self._submit("SubmitRisk", to_request(portfolio_pb2.RiskRequest, fields), "GetRiskReport")

    def set_risk_limits(self, **fields: Any) -> dict[str, Any]:
        return to_dict(self._call("SetRiskLimits", to_request(portfolio_pb2.RiskLimitsRequest, fields)))

    def watch_risk(self, **fields: Any) -> Iterator[dict[str, Any]]:
        request = to_request(portfolio_pb2.WatchRiskRequest, fields)
        for update in self.transport.stream(self.stub.WatchRisk, request):
            yield to_dict(update)


class Execution(_Service):
    stub_class = execution_pb2_grpc.ExecutionServiceStub

    def plan(self, algorithm: str, side: str, quantity: float, **fields: Any) -> dict[str, Any]:
        """PlanExecution (TWAP, VWAP, POV, Almgren-Chriss, an RL policy): slice quantities and times."""
        request = to_request(execution_pb2.ExecutionPlanRequest,
                             {"algorithm": algorithm, "side": side, "quantity": quantity, **fields})
        return to_dict(self._call("PlanExecution", request))

    def simulate(self, orders: list[dict[str, Any]], **fields: Any) -> JobHandle:
        """SimulateExecution (a queued job); result: GetSimulation as a dict."""
        request = to_request(execution_pb2.SimulationRequest, {"orders": orders, **fields})
        return self._submit("SimulateExecution", request, "GetSimulation")
