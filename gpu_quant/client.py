"""`Client`: every service of the platform behind one object.

    from gpu_quant import Client
    client = Client("localhost:50051", api_key=None, tls=None)
    run = client.backtest(["000001.SZ", "600000.SH"], "2024-01-01", "2024-12-31",
                          strategy={"strategy_type": "trend_following", "lookback_period": 20})
    run.wait()                       # progress bar from JobService.WatchJob
    result = run.result()            # .metrics dict, .equity / .trades DataFrames
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .backtest import BacktestHandle, Backtests
from .bars import Bars
from .jobs import JobHandle, Jobs
from .models import Models, TrainingHandle
from .realtime import Realtime
from .research import Execution, Factors, Portfolio
from .transport import RetryPolicy, Transport

DEFAULT_TARGET = "localhost:50051"


class Client:
    def __init__(self, target: str = DEFAULT_TARGET, api_key: str | None = None, tls: Any = None, *,
                 timeout: float | None = 60.0, retry: RetryPolicy = RetryPolicy()) -> None:
        self.transport = Transport(target, api_key, tls, timeout=timeout, retry=retry)
        self.jobs = Jobs(self.transport)
        self.backtests = Backtests(self.transport, self.jobs)
        self.bars = Bars(self.transport, self.jobs)
        self.realtime = Realtime(self.transport)
        self.models = Models(self.transport, self.jobs)
        self.factors = Factors(self.transport, self.jobs)
        self.portfolio = Portfolio(self.transport, self.jobs)
        self.execution = Execution(self.transport, self.jobs)

    # ---------------------------------------------------------------- the common calls, flat
    def backtest(self, symbols: Iterable[str] | str, start: str, end: str, strategy: dict[str, Any] | str,
                 capital: float = 1_000_000.0, commission: float = 0.0003, **options: Any) -> BacktestHandle:
        """Submit a backtest (priority=, device= also accepted); returns its handle."""
        return self.backtests.submit(symbols, start, end, strategy, capital=capital, commission=commission, **options)

    def sweep(self, symbols: Iterable[str] | str, start: str, end: str, strategy: dict[str, Any],
              param_grid: dict[str, list[Any]], **options: Any) -> pd.DataFrame:
        """A param_grid sweep as one job; the ranked table (rank 1 = best by rank_by)."""
        return self.backtests.sweep(symbols, start, end, strategy, param_grid, **options)

    def features(self, symbol: str | list[str], names: Iterable[str] = (), **options: Any) -> pd.DataFrame:
        return self.realtime.features(symbol, names, **options)

    def stream(self, ticks: Any, **options: Any):
        return self.realtime.stream(ticks, **options)

    def train(self, model_type: str = "", data: pd.DataFrame | None = None, **options: Any) -> TrainingHandle:
        return self.models.train(model_type, data, **options)

    def predict(self, model_id: str, data: Any) -> pd.DataFrame:
        return self.models.predict(model_id, data)

    def job(self, job_id: str) -> JobHandle:
        """A handle for any job id; backtests and trainings get their richer handles."""
        task_type = self.jobs.get(job_id)["task_type"]
        if task_type == "backtest":
            return self.backtests.handle(job_id)
        if task_type == "training":
            return self.models.handle(job_id)
        return self.jobs.handle(job_id)

    # ---------------------------------------------------------------- the platform's state
    def health(self, service: str = "") -> str:
        """grpc.health.v1 status: "SERVING", "NOT_SERVING" (e.g. Redis unreachable)…"""
        stub = self.transport.stub(health_pb2_grpc.HealthStub)
        response = self.transport.unary(stub.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def status(self) -> dict[str, Any]:
        """Health, every registered worker (alive or lapsed) and each task type's queue
        (waiting, running, dead-lettered), from JobService.GetClusterStatus."""
        cluster = self.jobs.cluster()
        return {"target": self.transport.target, "health": self.health(),
                "queues": {row.pop("task_type"): row for row in cluster.get("queues", [])},
                "workers": {row.pop("worker_id"): row for row in cluster.get("workers", [])}}

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Client", "DEFAULT_TARGET"]
