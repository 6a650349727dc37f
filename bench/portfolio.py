"""Portfolio benchmark: optimisation against PyPortfolioOpt, end to end over gRPC, and the
Monte-Carlo VaR/ES (issue 13, "Performance").

1. ``optimize``: min_volatility and max_sharpe on 500 assets x 2,520 days. Ours end to end:
   ``PortfolioService.OptimizePortfolio`` on a warm server and worker (``platform_processes``) whose
   private Redis holds the closes as daily bars; and the engine in process. Anchor: PyPortfolioOpt in
   process on the same closes as a DataFrame, from the frame to ``portfolio_performance``.
2. ``hrp``: hierarchical risk parity on 2,000 assets, ours (in process and ``objective="hrp"`` over
   gRPC) against ``pypfopt.HRPOpt(returns).optimize()``.
3. ``mc``: ``risk_report`` with 1,000,000 normal Monte-Carlo scenarios on 500 assets with NumPy, and
   with CuPy when a CUDA device is visible. Needs neither Redis nor gRPC.

``BENCH_PORTFOLIO_PARTS``: a comma list of optimize, hrp, mc (default all); a part not run keeps its
text from docs/benchmarks.md, so e.g. ``BENCH_PORTFOLIO_PARTS=mc`` on a GPU machine replaces only the
Monte-Carlo part. ``BENCH_QUICK=1``: tiny sizes (numbers meaningless), for a smoke run.
"""
from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np

from bench import Section
from bench.backtest import _peak_increase
from bench.factor import _environment, _import_universe, _mib, _s, dates

QUICK = os.environ.get("BENCH_QUICK") == "1"
PART_NAMES = ("optimize", "hrp", "mc")
DAYS, MV_ASSETS, HRP_ASSETS = (160, 40, 120) if QUICK else (2520, 500, 2000)
MC_ASSETS, MC_SCENARIOS = (40, 20_000) if QUICK else (500, 1_000_000)
MV_REPEATS = 2 if QUICK else 5  # mean-variance: gRPC calls, ours in process, PyPortfolioOpt (~1.2 s each)
HRP_REPEATS = 2 if QUICK else 3  # HRPOpt takes ~40 s a run on the 2-core machine
MC_REPEATS = 1 if QUICK else 2  # CPU Monte Carlo (~8 s a run on the 2-core machine)
GPU_REPEATS = 3
SEED = 20260413
OBJECTIVES = ("min_volatility", "max_sharpe")
TARGET_MV, TARGET_HRP, TARGET_GPU = 5.0, 10.0, 20.0
WEIGHT_TOL, PERFORMANCE_RTOL, HRP_TOL = 1e-5, 1e-6, 1e-12
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def parts() -> tuple[str, ...]:
    chosen = os.environ.get("BENCH_PORTFOLIO_PARTS", "all").replace(" ", "").lower()
    names = PART_NAMES if chosen in ("", "all") else tuple(chosen.split(","))
    unknown = [name for name in names if name not in PART_NAMES]
    if unknown:
        raise SystemExit(f"BENCH_PORTFOLIO_PARTS: unknown part(s) {unknown}; known: {', '.join(PART_NAMES)}, all")
    return names


# ------------------------------------------------------------------ data
def closes(days: int, assets: int, seed: int) -> np.ndarray:
    """(days x assets) closes: a one-factor random walk with Student-t(4) market and own daily
    returns (own volatility 1-3 %/day, beta 0.5-1.5, drift ~7.5 %/year); 10 % of the assets listed
    late (first close within the first 60 % of the days), one gap of 1-5 days per 20 assets."""
    rng = np.random.default_rng(seed)
    market = rng.standard_t(4, days) * (0.01 / math.sqrt(2.0))
    own = rng.standard_t(4, (days, assets)) * (rng.uniform(0.01, 0.03, assets) / math.sqrt(2.0))
    log_returns = rng.normal(0.0003, 0.0003, assets) + market[:, None] * rng.uniform(0.5, 1.5, assets) + own
    prices = rng.uniform(5, 200, assets) * np.exp(np.cumsum(log_returns, axis=0))
    for asset in np.flatnonzero(rng.random(assets) < 0.10):
        prices[:rng.integers(20, int(days * 0.6)), asset] = np.nan
    for _ in range(max(1, assets // 20)):
        start = rng.integers(1, days - 10)
        prices[start:start + rng.integers(1, 6), rng.integers(0, assets)] = np.nan
    return prices


def _frame(prices: np.ndarray):
    import pandas as pd
    return pd.DataFrame(prices, index=dates(prices.shape[0]), columns=[f"A{i:04d}" for i in range(prices.shape[1])])


# ------------------------------------------------------------------ the two sides, in process
def ours_frontier(prices: np.ndarray, objective: str) -> dict:
    """mean_historical + sample_cov + optimize + portfolio_performance, the job's defaults."""
    from utils.engine import portfolio as engine
    began = time.perf_counter()
    mu = engine.mean_historical(prices)
    cov, _ = engine.fix_nonpositive_semidefinite(engine.sample_cov(prices, fix_psd=False))
    estimated = time.perf_counter()
    weights = engine.optimize(engine.PortfolioProblem(mu, cov), objective).weights
    solved = time.perf_counter()
    performance = engine.portfolio_performance(weights, mu, cov, 0.0)
    return {"weights": weights, "performance": performance, "seconds": time.perf_counter() - began,
            "estimators": estimated - began, "solve": solved - estimated}


def pypfopt_frontier(frame, objective: str, tight: bool = True) -> dict:
    """PyPortfolioOpt from the price frame to portfolio_performance; ``tight``: the parity tests'
    Clarabel settings (pypfopt's default solver stops max_sharpe at its iteration limit here)."""
    from pypfopt import EfficientFrontier, expected_returns, risk_models

    from utils.engine.portfolio.conic import SOLVER_SETTINGS
    options = {"solver": "CLARABEL", "solver_options": dict(SOLVER_SETTINGS)} if tight else {}
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frontier = EfficientFrontier(expected_returns.mean_historical_return(frame), risk_models.sample_cov(frame),
                                     **options)
        if objective == "max_sharpe":
            frontier.max_sharpe(risk_free_rate=0.0)
        else:
            frontier.min_volatility()
        performance = frontier.portfolio_performance(risk_free_rate=0.0)
    return {"weights": np.array(list(frontier.weights), dtype=float), "performance": performance,
            "seconds": time.perf_counter() - began}


def _agreement(weights, performance, reference: dict) -> tuple[float, float]:
    """(largest absolute weight difference, largest relative difference of return/volatility/Sharpe)."""
    expected = np.asarray(reference["performance"], dtype=float)
    return (float(np.abs(np.asarray(weights) - reference["weights"]).max()),
            float((np.abs(np.asarray(performance, dtype=float) - expected) / np.abs(expected)).max()))


# ------------------------------------------------------------------ the service
class Service:
    """OptimizePortfolio on the spawned server, closes already stored under ``symbols``."""

    def __init__(self, port: int, symbols: list[str], days: int) -> None:
        import grpc

        from api_proto import portfolio_pb2, portfolio_pb2_grpc
        self.pb, self.symbols = portfolio_pb2, symbols
        iso = [str(day.date()) for day in dates(days)]
        self.first, self.last = iso[0], iso[-1]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.stub = portfolio_pb2_grpc.PortfolioServiceStub(self.channel)

    def optimize(self, objective: str, count: int) -> dict:
        symbols = self.symbols[:count]
        began = time.perf_counter()
        response = self.stub.OptimizePortfolio(self.pb.OptimizeRequest(
            symbols=symbols, start_time=self.first, end_time=self.last, objective=objective), timeout=600)
        return {"seconds": time.perf_counter() - began, "compute": response.compute_time,
                "weights": np.array([response.weights[s] for s in symbols]),
                "performance": (response.expected_return, response.volatility, response.sharpe_ratio)}


def worker_steps(store, symbols: list[str], days: int, objective: str) -> dict:
    """The worker's steps (utils/tasks/portfolio.py), each timed once in this process on the same Redis."""
    from utils.data.timeutil import parse_time
    from utils.engine import portfolio as engine
    from utils.tasks import portfolio as task
    iso = [str(day.date()) for day in dates(days)]
    payload = {"symbols": symbols, "objective": objective, "start_ns": parse_time(iso[0]),
               "end_ns": parse_time(iso[-1])}
    steps, clock = {}, time.perf_counter()

    def lap(name):
        nonlocal clock
        steps[name] = time.perf_counter() - clock
        clock = time.perf_counter()

    times, prices = task.stored_closes(store, symbols, payload["start_ns"], payload["end_ns"])
    lap("read and align the closes (Redis)")
    returns = engine.returns_from_prices(prices)
    lap("returns")
    if objective == "hrp":
        weights = engine.hrp_weights(returns)
        lap("hrp_weights")
        engine.hrp_performance(weights, returns)
        lap("hrp_performance")
        cov = engine.sample_cov(prices)
        lap("sample_cov with its PSD eigen-check (only for the risk contributions)")
    else:
        mu, cov, _ = task.estimates(store, payload, prices, times)
        lap("estimators (mean_historical, sample_cov, PSD check)")
        weights = engine.optimize(task._problem(payload, mu, cov, None), objective).weights
        lap("solver (optimize)")
        engine.portfolio_performance(weights, mu, cov, 0.0)
    engine.risk_contributions(weights, cov)
    lap("performance, risk contributions")
    return steps


# ------------------------------------------------------------------ 1 + 2
def measure_optimisation(prices: np.ndarray, chosen: tuple[str, ...]) -> dict:
    """Parts 1 and 2; ours over gRPC, ours in process and the anchor interleaved run by run, so that
    load drift on the shared machine hits all three."""
    import redis
    from pypfopt import HRPOpt, expected_returns

    from bench.backtest_service import platform_processes
    from utils.data.store import BarStore
    from utils.engine.portfolio import hrp_weights, returns_from_prices
    mv_prices, out = prices[:, :MV_ASSETS], {}
    mv_frame = _frame(mv_prices)
    for objective in OBJECTIVES:  # imports, Clarabel and cvxpy set-up
        ours_frontier(mv_prices[:, :20], objective)
        pypfopt_frontier(mv_frame.iloc[:, :20], objective)
    settings = {"MAX_SYMBOLS_PER_REQUEST": str(max(500, HRP_ASSETS))}
    with _environment(**settings), platform_processes("bench-portfolio-") as processes:
        began = time.perf_counter()
        symbols = _import_universe(processes.redis_port, prices)
        out["import_seconds"] = time.perf_counter() - began
        print(f"[bench:portfolio] imported {len(symbols)} symbols x {DAYS} days in {out['import_seconds']:.1f} s",
              flush=True)
        service = Service(processes.port, symbols, DAYS)
        store = BarStore(redis.Redis(port=processes.redis_port))
        if "optimize" in chosen:
            for objective in OBJECTIVES:
                service.optimize(objective, MV_ASSETS)  # warm-up
                runs = {"grpc": [], "ours": [], "pypfopt": []}
                for _ in range(MV_REPEATS):
                    runs["grpc"].append(service.optimize(objective, MV_ASSETS))
                    runs["ours"].append(ours_frontier(mv_prices, objective))
                    runs["pypfopt"].append(pypfopt_frontier(mv_frame, objective))
                best = {side: min(values, key=lambda run: run["seconds"]) for side, values in runs.items()}
                try:
                    default = pypfopt_frontier(mv_frame, objective, tight=False)
                    default["agree"] = _agreement(default["weights"], default["performance"], best["pypfopt"])
                except Exception as exc:  # pypfopt's default solver gives up on max_sharpe
                    default = {"error": f"{type(exc).__name__}: {exc}"}
                out[objective] = {
                    "runs": runs, "best": best, "default": default,
                    "grpc_agree": _agreement(best["grpc"]["weights"], best["grpc"]["performance"], best["pypfopt"]),
                    "ours_agree": _agreement(best["ours"]["weights"], best["ours"]["performance"], best["pypfopt"]),
                    "steps": worker_steps(store, symbols[:MV_ASSETS], DAYS, objective)}
                ratio = best["pypfopt"]["seconds"] / best["grpc"]["seconds"]
                print(f"[bench:portfolio] {objective}: gRPC {best['grpc']['seconds']:.2f} s (worker "
                      f"{best['grpc']['compute']:.2f}), in process {best['ours']['seconds']:.2f} s, PyPortfolioOpt "
                      f"{best['pypfopt']['seconds']:.2f} s: {ratio:.1f}x; |dw| {out[objective]['grpc_agree'][0]:.1e}, "
                      f"perf {out[objective]['grpc_agree'][1]:.1e}", flush=True)
        if "hrp" in chosen:
            returns_frame = expected_returns.returns_from_prices(_frame(prices))
            service.optimize("hrp", MV_ASSETS)  # warm-up
            hrp_weights(returns_from_prices(prices[:, :20]))
            runs = {"grpc": [], "ours": [], "pypfopt": []}
            for _ in range(HRP_REPEATS):
                runs["grpc"].append(service.optimize("hrp", HRP_ASSETS))
                began = time.perf_counter()
                weights = hrp_weights(returns_from_prices(prices))
                runs["ours"].append({"seconds": time.perf_counter() - began, "weights": weights})
                began = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reference = HRPOpt(returns_frame).optimize()
                runs["pypfopt"].append({"seconds": time.perf_counter() - began,
                                        "weights": np.array([reference[name] for name in returns_frame.columns])})
                print(f"[bench:portfolio] hrp: gRPC {runs['grpc'][-1]['seconds']:.2f} s, in process "
                      f"{runs['ours'][-1]['seconds']:.2f} s, HRPOpt {runs['pypfopt'][-1]['seconds']:.1f} s", flush=True)
            best = {side: min(values, key=lambda run: run["seconds"]) for side, values in runs.items()}
            reference = runs["pypfopt"][0]["weights"]
            out["hrp"] = {"runs": runs, "best": best,
                          "grpc_agree": float(np.abs(best["grpc"]["weights"] - reference).max()),
                          "ours_agree": float(np.abs(best["ours"]["weights"] - reference).max()),
                          "steps": worker_steps(store, symbols, DAYS, "hrp")}
        service.channel.close()
    return out


# ------------------------------------------------------------------ 3. Monte Carlo
def _cupy():
    """CuPy when it imports and sees a CUDA device, else None (with the reason)."""
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy, ""
        return None, "no CUDA device"
    except Exception as exc:  # not installed, or no driver
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:120]


def _mc_runs(returns: np.ndarray, weights: np.ndarray, xp, repeats: int, sync=lambda: None) -> dict:
    """risk_report with MC_SCENARIOS normal scenarios, and the Monte Carlo alone (portfolio_loading +
    normal_scenarios on the report's covariance); wall and process CPU seconds."""
    from utils.engine.risk import risk_report
    from utils.engine.risk.moments import asset_mean_covariance
    from utils.engine.risk.monte_carlo import (
        DEFAULT_CHUNK_SCENARIOS,
        normal_scenarios,
        portfolio_loading,
    )

    device_returns = xp.asarray(np.nan_to_num(returns))
    _, covariance = asset_mean_covariance(device_returns, xp)
    device_weights = xp.asarray(weights)

    def report():
        cpu = time.process_time()
        result = risk_report(returns, weights, mc_scenarios=MC_SCENARIOS, seed=SEED, xp=xp)
        sync()
        return result, time.process_time() - cpu

    def alone():
        sync()
        began = time.perf_counter()
        normal_scenarios(0.0, portfolio_loading(covariance, device_weights, xp), 1, MC_SCENARIOS, SEED,
                         DEFAULT_CHUNK_SCENARIOS, xp)
        sync()
        return time.perf_counter() - began

    (result, cpu), seconds, peak = _peak_increase(report)
    runs, alone_runs = [(seconds, cpu)], [alone()]
    for _ in range(repeats - 1):  # interleaved, so that load drift hits both
        began = time.perf_counter()
        _, cpu = report()
        runs.append((time.perf_counter() - began, cpu))
        alone_runs.append(alone())
    best = min(runs)
    return {"seconds": best[0], "cpu": best[1], "runs": [run[0] for run in runs], "peak": peak,
            "alone": min(alone_runs), "level": result.levels[0]}


def measure_mc(prices: np.ndarray) -> dict:
    from utils.engine.portfolio import returns_from_prices
    from utils.engine.risk import risk_report
    returns = returns_from_prices(prices[:, :MC_ASSETS])
    weights = np.full(MC_ASSETS, 1.0 / MC_ASSETS)
    risk_report(returns[:, :10], weights[:10], mc_scenarios=1000, seed=SEED)  # imports
    print(f"[bench:portfolio] Monte Carlo {MC_SCENARIOS:,} scenarios x {MC_ASSETS} assets on the CPU ...", flush=True)
    out = {"observations": returns.shape[0], "cpu": _mc_runs(returns, weights, np, MC_REPEATS), "gpu": None}
    cpu = out["cpu"]
    print(f"[bench:portfolio] CPU: risk_report {cpu['seconds']:.2f} s (process CPU {cpu['cpu']:.2f} s), MC alone "
          f"{cpu['alone']:.2f} s, peak +{cpu['peak'] / 2**20:.0f} MiB, 95 % VaR {cpu['level'].mc_var:.6f}", flush=True)
    cupy, out["gpu_reason"] = _cupy()
    if cupy is not None:
        try:
            sync = cupy.cuda.Device().synchronize
            risk_report(returns, weights, mc_scenarios=100_000, seed=SEED, xp=cupy)  # cuBLAS, cuRAND, kernels
            pool = cupy.get_default_memory_pool()
            pool.free_all_blocks()
            gpu = _mc_runs(returns, weights, cupy, GPU_REPEATS, sync)
            gpu["pool"] = pool.total_bytes()
            name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
            gpu["name"] = name.decode() if isinstance(name, bytes) else str(name)
            out["gpu"] = gpu
            print(f"[bench:portfolio] GPU ({gpu['name']}): risk_report {gpu['seconds']:.3f} s, MC alone "
                  f"{gpu['alone']:.3f} s: {cpu['seconds'] / gpu['seconds']:.1f}x", flush=True)
        except Exception as exc:
            out["gpu_reason"] = f"CuPy run failed: {type(exc).__name__}: {exc}".splitlines()[0][:200]
    return out


# ------------------------------------------------------------------ report
def _run_line(load: tuple[float, float]) -> str:
    date = subprocess.run(["date", "-u"], capture_output=True, text=True, check=False).stdout.strip()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return (("**BENCH_QUICK=1: tiny sizes, numbers meaningless.** " if QUICK else "")
            + f"Run: {date}, {os.cpu_count()} CPUs ({model}); 1-minute load average at the start / end of this "
            f"part: {load[0]:.1f} / {load[1]:.1f} (other processes share the machine; above ~{os.cpu_count()} "
            "every number here is inflated).")


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _steps(steps: dict) -> str:
    return "; ".join(f"{name} {value:.3f}" for name, value in steps.items())


def render_optimize(result: dict, load: tuple[float, float]) -> str:
    import pypfopt
    lines = [_run_line(load), "",
             f"{MV_ASSETS} assets × {DAYS:,} days. Ours end to end: `OptimizePortfolio(symbols, start_time, end_time, "
             "objective)` over gRPC to the warm server, which queues a `portfolio` job and waits for the worker "
             "(read the stored closes from Redis, align them, estimate, solve, answer). Anchor: PyPortfolioOpt "
             f"{pypfopt.__version__} in this process, `EfficientFrontier(expected_returns.mean_historical_return(df), "
             "risk_models.sample_cov(df), solver=\"CLARABEL\", solver_options=SOLVER_SETTINGS)` → objective → "
             "`portfolio_performance()`, timed from the DataFrame (built outside the timing) to the performance. "
             f"Best of {MV_REPEATS} each, gRPC call / in-process ours / PyPortfolioOpt interleaved, after a warm-up "
             "call of each.", "",
             "| objective | PyPortfolioOpt s | ours over gRPC s | … worker `compute_time` s | ours in process s "
             "| PyPortfolioOpt / ours over gRPC | target | met? |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for objective in OBJECTIVES:
        best = result[objective]["best"]
        ratio = best["pypfopt"]["seconds"] / best["grpc"]["seconds"]
        lines.append(f"| {objective} | {best['pypfopt']['seconds']:.2f} | {best['grpc']['seconds']:.2f} | "
                     f"{best['grpc']['compute']:.2f} | {best['ours']['seconds']:.2f} | {ratio:.1f}× | "
                     f"≥ {TARGET_MV:.0f}× | {_met(ratio >= TARGET_MV)} |")
    lines += ["", "| objective | max abs weight diff, gRPC | … in process | max rel perf diff, gRPC | … in process "
                  "| tolerance | met? |", "|---|---:|---:|---:|---:|---|---|"]
    for objective in OBJECTIVES:
        (grpc_w, grpc_p), (ours_w, ours_p) = result[objective]["grpc_agree"], result[objective]["ours_agree"]
        ok = max(grpc_w, ours_w) <= WEIGHT_TOL and max(grpc_p, ours_p) <= PERFORMANCE_RTOL
        lines.append(f"| {objective} | {grpc_w:.1e} | {ours_w:.1e} | {grpc_p:.1e} | {ours_p:.1e} | weights "
                     f"{WEIGHT_TOL:g}, performance {PERFORMANCE_RTOL:g} | {_met(ok)} |")
    lines += ["", "Where the time goes (s):"]
    for objective in OBJECTIVES:
        entry = result[objective]
        best, default = entry["best"], entry["default"]
        lines.append(
            f"- {objective}: in process, estimators {best['ours']['estimators']:.3f} + solver "
            f"{best['ours']['solve']:.3f}; the worker's steps timed once in this process on the same Redis: "
            f"{_steps(entry['steps'])}. Runs (s): gRPC " + ", ".join(_s(r["seconds"]) for r in entry["runs"]["grpc"])
            + "; PyPortfolioOpt " + ", ".join(_s(r["seconds"]) for r in entry["runs"]["pypfopt"])
            + ". PyPortfolioOpt with its default solver settings, one run: "
            + (default["error"] if "error" in default else
               f"{default['seconds']:.2f} s, max abs weight diff to the tight run {default['agree'][0]:.1e}") + ".")
    lines += ["", f"Not timed: importing the bars ({result['import_seconds']:.1f} s for {HRP_ASSETS:,} symbols with "
                  "`BarStore.write`), building the DataFrame. The anchor runs Clarabel with the parity tests' settings "
                  "(tolerances 1e-10) so that both sides solve to the same accuracy; ours calls Clarabel directly. "
                  "risk_free_rate 0 on both sides."]
    return "\n".join(lines)


def render_hrp(result: dict, load: tuple[float, float]) -> str:
    import pypfopt
    entry = result["hrp"]
    best = entry["best"]
    ours_ratio = best["pypfopt"]["seconds"] / best["ours"]["seconds"]
    grpc_ratio = best["pypfopt"]["seconds"] / best["grpc"]["seconds"]
    agree = max(entry["grpc_agree"], entry["ours_agree"])
    return "\n".join([
        _run_line(load), "",
        f"{HRP_ASSETS:,} assets × {DAYS:,} days (the same generator; the first {MV_ASSETS} are the assets above). "
        "Ours in process: `hrp_weights(returns_from_prices(prices))` (returns included); over gRPC: "
        "`OptimizePortfolio(objective=\"hrp\")` (the worker also computes the performance and the sample covariance "
        f"for the risk contributions). Anchor: PyPortfolioOpt {pypfopt.__version__} `HRPOpt(returns_df).optimize()` "
        f"(single linkage), `returns_df = expected_returns.returns_from_prices(df)` built outside the timing. "
        f"Best of {HRP_REPEATS}, interleaved.", "",
        "| engine | seconds | HRPOpt / ours | target | met? |", "|---|---:|---:|---|---|",
        f"| ours in process | {best['ours']['seconds']:.2f} | {ours_ratio:.1f}× | ≥ {TARGET_HRP:.0f}× | "
        f"{_met(ours_ratio >= TARGET_HRP)} |",
        f"| ours over gRPC (worker `compute_time` {best['grpc']['compute']:.2f}) | {best['grpc']['seconds']:.2f} | "
        f"{grpc_ratio:.1f}× | ≥ {TARGET_HRP:.0f}× | {_met(grpc_ratio >= TARGET_HRP)} |",
        f"| anchor: `HRPOpt.optimize()` | {_s(best['pypfopt']['seconds'])} | 1.0× | | |", "",
        f"Weights equal: max abs difference {entry['ours_agree']:.1e} in process, {entry['grpc_agree']:.1e} over gRPC "
        f"(tolerance {HRP_TOL:g}: {_met(agree <= HRP_TOL)}). The worker's steps timed once in this process (s): "
        f"{_steps(entry['steps'])}. Runs (s): HRPOpt " + ", ".join(_s(r["seconds"]) for r in entry["runs"]["pypfopt"])
        + "; gRPC " + ", ".join(_s(r["seconds"]) for r in entry["runs"]["grpc"]) + "."])


def render_mc(result: dict, load: tuple[float, float]) -> str:
    cpu, gpu = result["cpu"], result["gpu"]
    level = cpu["level"]
    lines = [
        _run_line(load), "",
        f"`risk_report(returns, weights, mc_scenarios={MC_SCENARIOS:,}, seed={SEED})` (normal model, 1-day "
        f"horizon, confidences 0.95 and 0.99, default chunk of 16,384 scenarios) on {MC_ASSETS} assets' daily "
        f"returns ({result['observations']:,} days, the first {MC_ASSETS} assets of the generator), equal weights. "
        "The whole report is timed (historical, parametric and Cornish-Fisher measures, drawdown and windows are "
        f"a few ms of it); \"MC alone\" is `portfolio_loading` (eigendecomposition of the {MC_ASSETS} × "
        f"{MC_ASSETS} covariance) + `normal_scenarios`, interleaved with the reports. Host inputs; on the GPU the "
        "report copies them to the device and the results back "
        "(timed), after a warm-up report of 100,000 scenarios.", "",
        "| device | risk_report s | process CPU s | MC alone s | peak memory increase | CPU / device | target | met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
        f"| CPU, NumPy {np.__version__}, best of {len(cpu['runs'])} | {cpu['seconds']:.2f} | {cpu['cpu']:.2f} | "
        f"{cpu['alone']:.2f} | {_mib(cpu['peak'])} RSS | 1.0× | | |"]
    if gpu is None:
        lines += ["", f"GPU: not measured on this machine (no CUDA device; {result['gpu_reason']}); see the note."]
    else:
        ratio = cpu["seconds"] / gpu["seconds"]
        gap = abs(gpu["level"].mc_var - level.mc_var) / level.mc_standard_error
        lines.append(f"| GPU, CuPy on {gpu['name']}, best of {len(gpu['runs'])} | {gpu['seconds']:.3f} | "
                     f"{gpu['cpu']:.2f} | {gpu['alone']:.3f} | {_mib(gpu['peak'])} RSS, {_mib(gpu['pool'])} "
                     f"CuPy pool | {ratio:.1f}× (MC alone {cpu['alone'] / gpu['alone']:.1f}×) | ≥ {TARGET_GPU:.0f}× | "
                     f"{_met(ratio >= TARGET_GPU)} |")
        lines += ["", f"GPU vs CPU 95 % MC VaR: {gpu['level'].mc_var:.6f} vs {level.mc_var:.6f}, {gap:.1f} standard "
                      "errors apart (different random streams: cuRAND vs PCG64)."]
    lines += ["", f"CPU 95 % MC VaR {level.mc_var:.6f} (standard error {level.mc_standard_error:.1e}), ES "
                  f"{level.mc_es:.6f}; parametric VaR {level.parametric_var:.6f}. Peak RSS: VmHWM reset before the "
                  "first run, above the RSS at its start. CPU runs (s): " + ", ".join(_s(s) for s in cpu["runs"])
              + ". Note: GPU numbers come from a run of `BENCH_PORTFOLIO_PARTS=mc .venv/bin/python -m bench "
                "portfolio` on a machine with a CUDA device and CuPy; that run replaces only this part."]
    return "\n".join(lines)


def _kept_parts() -> dict[str, str]:
    """Each part's text in the existing docs/benchmarks.md (for the parts not run now)."""
    text = DOC.read_text() if DOC.exists() else ""
    found = re.findall(r"<!-- portfolio:(\w+) -->\n(.*?)\n<!-- /portfolio:\1 -->", text, flags=re.DOTALL)
    return dict(found)


def run() -> Section:
    chosen = parts()
    prices = closes(DAYS, HRP_ASSETS, SEED)
    print(f"[bench:portfolio] parts {', '.join(chosen)}; {HRP_ASSETS} assets x {DAYS} days, "
          f"{np.isnan(prices).mean() * 100:.1f} % NaN", flush=True)
    bodies = _kept_parts()
    if "optimize" in chosen or "hrp" in chosen:
        load_start = os.getloadavg()[0]
        result = measure_optimisation(prices, chosen)
        load = (load_start, os.getloadavg()[0])
        if "optimize" in chosen:
            bodies["optimize"] = render_optimize(result, load)
        if "hrp" in chosen:
            bodies["hrp"] = render_hrp(result, load)
    if "mc" in chosen:
        load_start = os.getloadavg()[0]
        mc = measure_mc(prices)
        bodies["mc"] = render_mc(mc, (load_start, os.getloadavg()[0]))
    titles = {"optimize": f"Mean-variance: {MV_ASSETS} assets × {DAYS:,} days, OptimizePortfolio vs PyPortfolioOpt",
              "hrp": f"HRP: {HRP_ASSETS:,} assets × {DAYS:,} days vs HRPOpt",
              "mc": f"Monte-Carlo VaR/ES: {MC_ASSETS} assets × {MC_SCENARIOS:,} scenarios"}
    lines = [
        "Command: `.venv/bin/python -m bench portfolio`" + (" (**BENCH_QUICK=1: tiny sizes, numbers meaningless**)"
                                                            if QUICK else "")
        + f"; parts run this time: {', '.join(chosen)} (`BENCH_PORTFOLIO_PARTS`, default all; a part not run keeps "
        "its earlier text and its own run line). Each part states its machine load; ratios compare runs in the "
        "same process and minutes.", "",
        f"Data (seeded, `bench.portfolio.closes`): {HRP_ASSETS:,} assets × {DAYS:,} business days of closes, a "
        "one-factor random walk with Student-t(4) market and own daily returns (own volatility 1–3 %/day), 10 % of "
        f"the assets listed late, a gap of 1–5 days per 20 assets ({np.isnan(prices).mean() * 100:.1f} % of the "
        "cells NaN). The closes are imported into a private Redis as daily bars for the gRPC runs."]
    for name in PART_NAMES:
        body = bodies.get(name, "Not run yet.")
        lines += ["", f"### {titles[name]}", "", f"<!-- portfolio:{name} -->\n{body}\n<!-- /portfolio:{name} -->"]
    return Section("Portfolio optimisation and risk: vs PyPortfolioOpt, end to end over gRPC, Monte-Carlo VaR",
                   "\n".join(lines))


if __name__ == "__main__":  # print the section without writing docs/benchmarks.md
    print(run().markdown)
