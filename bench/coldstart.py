"""Cold start: the first job of each kind after a worker (re)start, against the same job warm.

End to end over gRPC: a private redis-server (EmbeddedRedis, no persistence), the real server
(``create_server``) in a spawned process, and the worker as ``main_server`` runs it: a
``WorkerSupervisor`` spawning ``run_worker_process``. Bars are imported first: 20 symbols x 1,764
daily bars (7 years) and 2 symbols x 25 sessions of minute bars (execution). Each job is timed from
the submit RPC to its COMPLETED status (``JobService.WatchJob``; the features panel RPC answers
when its job is done); each repeat changes a harmless parameter so no request cache answers it.

Phases, each with its own worker process:
1. empty cache, no warm-up: the very first run after an install (every kernel compiles in its job);
2. empty cache, warm-up on: how long the first start's background warm-up takes to compile everything;
3. the cache populated and marked warm (after 2), warm-up on: start to taking jobs, then the first
   job of each kind; then the worker is killed (SIGKILL) and the supervisor's restart is timed the
   same way (kill to taking jobs, first jobs);
4. the cache populated, warm-up off: what the on-disk cache alone gives.
Cold/warm ratio per kind: the first job over the median of REPEATS warm ones right after it.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bench import Section

REPEATS = 3
GOAL = 2.0
SYMBOLS, DAYS = 20, 1764
FIRST_DAY_NS = 1_420_070_400 * 10**9  # 2015-01-01
DAY_NS = 86_400 * 10**9
MINUTE_SYMBOLS, SESSIONS, SESSION_BARS = 2, 25, 240
START, END = "2015-01-01", "2022-01-01"


def _settings(redis_port: int, data_dir: str, cache_dir: str, warm_up_seconds: float):
    from config.settings import load_settings
    return load_settings(redis_host="127.0.0.1", redis_port=redis_port, redis_embedded="never",
                         grpc_host="127.0.0.1", grpc_port=0, prometheus_port=0, data_dir=Path(data_dir),
                         numba_cache_dir=Path(cache_dir), worker_warm_up_seconds=warm_up_seconds,
                         worker_processes=1, compute_device="cpu", warm_up_indicators="none", log_level="WARNING")


def _server_main(redis_port: int, data_dir: str, ready, stop) -> None:
    import logging
    logging.disable(logging.WARNING)
    from services.server import create_server
    running = create_server(_settings(redis_port, data_dir, str(Path(data_dir) / "server-cache"), 0))
    ready.put(running.port)
    stop.wait()
    running.stop(grace=0)


# ------------------------------------------------------------------ data
def _import(redis_port: int) -> dict[str, list[str]]:
    import redis
    from utils.data.store import BarStore, Bars
    store = BarStore(redis.Redis(port=redis_port))
    rng = np.random.default_rng(11)
    daily = [f"D{index:03d}.SZ" for index in range(SYMBOLS)]
    times = FIRST_DAY_NS + np.arange(DAYS, dtype=np.int64) * DAY_NS
    for symbol in daily:
        close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, DAYS)))
        open_ = close * np.exp(rng.normal(0, 0.004, DAYS))
        store.write(Bars(symbol, times, open_, np.maximum(open_, close) * 1.01, np.minimum(open_, close) * 0.99,
                         close, rng.uniform(5e5, 2e6, DAYS)), replace=True)
    minute = [f"M{index:03d}.SZ" for index in range(MINUTE_SYMBOLS)]
    days = np.busday_offset("2024-01-02", np.arange(SESSIONS), roll="forward").astype("datetime64[ns]").astype(np.int64)
    minute_times = (days[:, None] + 90 * 60 * 10**9 + np.arange(SESSION_BARS) * 60 * 10**9).ravel()
    for symbol in minute:
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.001, minute_times.size)))
        store.write(Bars(symbol, minute_times, close, close * 1.0005, close * 0.9995, close,
                         rng.uniform(2e3, 2e4, minute_times.size)), replace=True)
    return {"daily": daily, "minute": minute, "minute_times": minute_times.tolist()}


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")) + "Z"


# ------------------------------------------------------------------ the jobs
class Client:
    def __init__(self, port: int, data: dict[str, Any]) -> None:
        import grpc
        from api_proto import (backtest_pb2_grpc, execution_pb2_grpc, factor_pb2_grpc, jobs_pb2_grpc, ml_pb2_grpc,
                               portfolio_pb2_grpc, realtime_pb2_grpc)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.backtest = backtest_pb2_grpc.BacktestServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.factor = factor_pb2_grpc.FactorServiceStub(self.channel)
        self.portfolio = portfolio_pb2_grpc.PortfolioServiceStub(self.channel)
        self.realtime = realtime_pb2_grpc.RealTimeServiceStub(self.channel)
        self.execution = execution_pb2_grpc.ExecutionServiceStub(self.channel)
        self.ml = ml_pb2_grpc.MLServiceStub(self.channel)
        self.data = data
        rng = np.random.default_rng(3)
        x = rng.normal(size=(2000, 5))
        columns = {f"f{i}": np.round(x[:, i], 5).tolist() for i in range(5)}
        columns["target"] = (x[:, 0] + rng.normal(scale=0.5, size=2000) > 0).astype(int).tolist()
        self.training_data = json.dumps(columns)
        self._runs = itertools.count()

    def unique_run(self) -> int:
        """A number never used before in this bench: no two requests are identical (the backtest
        service answers an identical request from its result cache)."""
        return next(self._runs)

    def wait(self, job_id: str) -> None:
        from api_proto import jobs_pb2
        for job in self.jobs.WatchJob(jobs_pb2.JobRequest(job_id=job_id), timeout=900):
            if job.status in (jobs_pb2.COMPLETED, jobs_pb2.FAILED, jobs_pb2.CANCELLED):
                if job.status != jobs_pb2.COMPLETED:
                    raise RuntimeError(f"{job_id}: {job.error_message}")
                return

    def _backtest(self, config: dict, run: int) -> None:
        from api_proto import backtest_pb2
        response = self.backtest.SubmitBacktestTask(backtest_pb2.BacktestRequest(
            stock_codes=self.data["daily"][:3], start_time=START, end_time=END, strategy_config=json.dumps(config),
            initial_capital=1_000_000, commission_rate=0.001 + run * 1e-6))
        self.wait(response.backtest_id)

    def backtest_single(self, run: int) -> None:
        self._backtest({"strategy_type": "sma_crossover", "fast": 10, "slow": 30}, run)

    def backtest_sweep(self, run: int) -> None:  # the case: 9 combinations, 3 symbols x 7 years
        self._backtest({"strategy_type": "sma_crossover", "param_grid": {"fast": [5, 10, 20], "slow": [30, 50, 100]}},
                       run)

    def features(self, run: int) -> None:
        from api_proto import realtime_pb2
        names = ["sma_20", "ema_12", "rsi", "macd", "bollinger"]
        self.realtime.ComputeFeatures(realtime_pb2.FeatureRequest(stock_codes=self.data["daily"][:10 + run % 5],
                                                                  feature_types=names), timeout=900)

    def factor_analysis(self, run: int) -> None:
        from api_proto import factor_pb2
        handle = self.factor.AnalyzeFactor(factor_pb2.FactorAnalysisRequest(
            symbols=self.data["daily"], start_time=START, end_time=END, expression="cs_rank(ts_mean(close, 10))",
            periods=[1, 5, 10], quantiles=5, max_loss=0.5 + run * 1e-6))
        self.wait(handle.job_id)

    def portfolio_optimize(self, run: int) -> None:
        from api_proto import portfolio_pb2
        handle = self.portfolio.SubmitOptimization(portfolio_pb2.OptimizeRequest(
            symbols=self.data["daily"][:10], start_time=START, end_time=END, objective="max_sharpe",
            risk_free_rate=0.01 + run * 1e-6))
        self.wait(handle.job_id)

    def risk(self, run: int) -> None:
        from api_proto import portfolio_pb2
        handle = self.portfolio.SubmitRisk(portfolio_pb2.RiskRequest(
            weights={symbol: 0.2 for symbol in self.data["daily"][:5]}, start_time=START, end_time=END,
            mc_scenarios=20_000, seed=run + 1))
        self.wait(handle.job_id)

    def execution_simulate(self, run: int) -> None:
        from api_proto import execution_pb2
        times = self.data["minute_times"]
        orders = [execution_pb2.ParentOrder(symbol=symbol, side=side, quantity=20_000.0 + run,
                                            start_time=_iso(times[-SESSION_BARS * k + 10]),
                                            end_time=_iso(times[-SESSION_BARS * k + 130]))
                  for k in (1, 2, 3) for symbol in self.data["minute"] for side in ("buy", "sell")]
        handle = self.execution.SimulateExecution(execution_pb2.SimulationRequest(
            algorithms=["twap", "vwap", "pov", "almgren_chriss"], orders=orders), timeout=120)
        self.wait(handle.job_id)

    def ml_train(self, run: int) -> None:
        from api_proto import ml_pb2
        response = self.ml.SubmitTrainingJob(ml_pb2.TrainModelRequest(
            model_type="random_forest", training_data=self.training_data, target_column="target",
            feature_columns=[f"f{i}" for i in range(5)],
            model_params=json.dumps({"n_estimators": 50, "max_depth": 6, "random_state": run})))
        self.wait(response.task_id)


KINDS: dict[str, Callable[[Client, int], None]] = {
    "backtest (single run)": Client.backtest_single, "backtest sweep (9 combinations)": Client.backtest_sweep,
    "features panel (10 symbols)": Client.features, "factor analysis": Client.factor_analysis,
    "portfolio (max_sharpe)": Client.portfolio_optimize, "risk report": Client.risk,
    "execution simulation": Client.execution_simulate, "ML training (random forest)": Client.ml_train,
}


def first_and_warm(client: Client) -> dict[str, dict[str, float]]:
    """Per kind: the first job, then the median of REPEATS more (run right after, per kind)."""
    out = {}
    for name, submit in KINDS.items():
        times = []
        for _ in range(1 + REPEATS):
            run = client.unique_run()
            started = time.perf_counter()
            submit(client, run)
            times.append(time.perf_counter() - started)
        warm = statistics.median(times[1:])
        out[name] = {"cold": times[0], "warm": warm, "ratio": times[0] / warm}
    return out


# ------------------------------------------------------------------ processes
def _announced_worker(redis_port: int, pid: int) -> bool:
    import redis
    from utils.queue import keys
    prefix = f"{socket.gethostname()}-{pid}-"
    return any(field.decode().startswith(prefix) for field in redis.Redis(port=redis_port).hkeys(keys.WORKERS))


def _wait_taking_jobs(redis_port: int, supervisor, exclude: int | None = None, timeout: float = 900.0) -> float:
    """Seconds until the supervisor's worker (not ``exclude``) announces itself (after its warm-up)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        pids = [pid for pid in supervisor.pids() if pid != exclude]
        if pids and _announced_worker(redis_port, pids[0]):
            return time.perf_counter() - started
        time.sleep(0.05)
    raise TimeoutError("the worker did not start taking jobs")


@contextlib.contextmanager
def _worker(settings) -> Iterator[Any]:
    from utils.supervisor import WorkerSupervisor
    from utils.tasks.runtime import run_worker_process
    supervisor = WorkerSupervisor(run_worker_process, settings, 1, check_seconds=0.05).start()
    try:
        yield supervisor
    finally:
        supervisor.stop(timeout=30)


def _cache_size(path: Path) -> dict[str, float]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return {"kernels": sum(1 for p in files if p.suffix == ".nbc"), "mb": sum(p.stat().st_size for p in files) / 1e6}


def measure() -> dict:
    from utils.compile_cache import WARM_MARKER, is_warm
    from utils.redis_client import EmbeddedRedis
    ctx = mp.get_context("spawn")
    out: dict[str, Any] = {"load": [os.getloadavg()[0]]}
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        redis_server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False).start()
        data_dir = str(Path(tmp) / "data")
        ready, stop = ctx.Queue(), ctx.Event()
        server = ctx.Process(target=_server_main, args=(redis_server.port, data_dir, ready, stop))
        server.start()
        try:
            data = _import(redis_server.port)
            client = Client(ready.get(timeout=120), data)
            port = redis_server.port

            # 1. empty cache, no warm-up
            with _worker(_settings(port, data_dir, f"{tmp}/cache-1", 0)) as supervisor:
                out["empty_ready"] = _wait_taking_jobs(port, supervisor)
                out["empty"] = first_and_warm(client)
            out["load"].append(os.getloadavg()[0])

            # 2. empty cache, warm-up on: a first start warms up in the background
            cache = Path(f"{tmp}/cache-2")
            with _worker(_settings(port, data_dir, str(cache), 600)) as supervisor:
                out["first_start_ready"] = _wait_taking_jobs(port, supervisor)
                started = time.perf_counter()
                while not (cache / WARM_MARKER).exists() and time.perf_counter() - started < 900:
                    time.sleep(0.2)
                out["background_warm_up"] = time.perf_counter() - started + out["first_start_ready"]
            out["cache"] = _cache_size(cache)
            out["load"].append(os.getloadavg()[0])

            # 3. populated cache, warm-up on: a restart, then a crash and the supervisor's restart
            out["marked_warm"] = is_warm(cache)  # False if someone edited a kernel source meanwhile
            with _worker(_settings(port, data_dir, str(cache), 600)) as supervisor:
                out["restart_ready"] = _wait_taking_jobs(port, supervisor)
                out["restart"] = first_and_warm(client)
                killed = supervisor.pids()[0]
                os.kill(killed, signal.SIGKILL)
                out["crash_ready"] = _wait_taking_jobs(port, supervisor, exclude=killed)
                out["crash"] = first_and_warm(client)
            out["load"].append(os.getloadavg()[0])

            # 4. populated cache, no warm-up: the on-disk cache alone
            with _worker(_settings(port, data_dir, str(cache), 0)) as supervisor:
                out["cache_only_ready"] = _wait_taking_jobs(port, supervisor)
                out["cache_only"] = first_and_warm(client)
            out["load"].append(os.getloadavg()[0])
            client.channel.close()
        finally:
            stop.set()
            server.join(timeout=30)
            if server.is_alive():
                server.kill()
            redis_server.stop()
    return out


# ------------------------------------------------------------------ report
def _table(rows: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| job | first after start (s) | warm, median of 3 (s) | first / warm | ≤ 2× |", "|---|---:|---:|---:|:-:|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['cold']:.3f} | {row['warm']:.3f} | {row['ratio']:.2f} | "
                     f"{'yes' if row['ratio'] <= GOAL else 'no'} |")
    return lines


def render(result: dict) -> str:
    load = " / ".join(f"{value:.1f}" for value in result["load"])
    met = [name for name, row in result["crash"].items() if row["ratio"] <= GOAL]
    lines = [
        "Command: `.venv/bin/python -m bench coldstart`. " + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
        "",
        f"1-minute load average at the start and after each phase: {load} on 2 CPUs (above ~2, other processes "
        "were competing for the cores and every time here is inflated).",
        "",
        "| worker start | to taking jobs (s) |",
        "|---|---:|",
        f"| empty cache, warm-up off (phase 1) | {result['empty_ready']:.1f} |",
        f"| empty cache, warm-up on: first start (taking jobs while warming up in the background) | "
        f"{result['first_start_ready']:.1f} |",
        f"| … its background warm-up compiling every task type's kernels, from the start | "
        f"{result['background_warm_up']:.1f} |",
        f"| restart, cache populated, warm-up on (loads the kernels before taking jobs) | {result['restart_ready']:.1f} |",
        f"| crash (SIGKILL) → supervisor's restart taking jobs, cache populated, warm-up on | "
        f"{result['crash_ready']:.1f} |",
        f"| restart, cache populated, warm-up off | {result['cache_only_ready']:.1f} |",
        "",
        f"The cache after the warm-up: {result['cache']['kernels']} compiled kernels, {result['cache']['mb']:.1f} MB"
        + ("." if result["marked_warm"] else " (but a kernel source changed before phase 3, so its worker warmed "
           "up in the background: rerun on a quiet tree)."),
        "",
        "### After the supervisor's restart of a killed worker (cache populated, warm-up on)",
        "", *_table(result["crash"]), "",
        f"Goal (first job of each kind within {GOAL:.0f}× its warm time): met for {len(met)} of "
        f"{len(result['crash'])} kinds here.",
        "",
        "### After a restart (cache populated, warm-up on)",
        "", *_table(result["restart"]), "",
        "### After a restart with the on-disk cache only (warm-up off)",
        "", *_table(result["cache_only"]), "",
        "### The very first run after an install (empty cache, warm-up off: each job compiles its kernels)",
        "", *_table(result["empty"]), "",
        "Not covered: `Predict` (served by the server process from its in-process model cache, not by a worker).",
    ]
    return "\n".join(lines)


def run() -> Section:
    return Section("Cold start: the first job of each kind after a (re)start", render(measure()))


if __name__ == "__main__":
    print(render(measure()))
