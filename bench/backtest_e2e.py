"""Backtests end to end, timed as a user times them: sweeps and a single run over gRPC + the queue.

The real server and one real worker run in spawned processes against a private redis-server
(``bench.backtest_service.platform_processes``); 100 symbols x 2,520 daily bars (sweeps) and 100
x 1,000 (the single run) are imported first, as ``ImportBars`` stores them (GBM panels of
``bench.backtest.gbm_panels``). Every timed request differs (commission) so the request cache
cannot answer it.

1. Sweeps: sma_crossover grids of 700-1,500 combinations with fast windows from 2, submitted with
   ``SubmitBacktestTask`` and followed with ``WatchBacktest`` to COMPLETED (then the result is
   read): cells / wall seconds. Anchor: vectorbt in this process on the same closes, a subset of
   each grid's combinations in one ``from_signals`` call (signals included), cells/s, as
   ``bench/backtest.py`` measures it. The ratio is the goal (>= 10x).
2. Where a sweep job's time goes: the handler's stages run in this process on the same Redis
   (bar loading, alignment, the sweep's lines / kernel / metrics, the best set's full re-run,
   the report, the JSON the queue stores) and a cProfile of the whole handler.
3. Single run, 100 x 1,000, sma_crossover 10/30: p50 through ``WatchBacktest`` and through the
   usage guide's plain client (``IntegratedBacktest``, then ``GetBacktestStatus`` every 50 ms
   until COMPLETED, then ``GetBacktestResult``), goal <= 50 ms.
"""
from __future__ import annotations

import cProfile
import json
import math
import os
import pstats
import time
import warnings

import numpy as np

from bench import Section, latency_summary

QUICK = os.environ.get("BENCH_QUICK") == "1"
SWEEP_SYMBOLS, SWEEP_BARS = (20, 300) if QUICK else (100, 2520)
SINGLE_SYMBOLS, SINGLE_BARS = (20, 250) if QUICK else (100, 1000)
SINGLE_RUNS = 5 if QUICK else 20
POLL_SECONDS = 0.05
VBT_SUBSET = 30
CAPITAL = 1_000_000.0
COMMISSION = 0.001
FIRST_DAY_NS = 1_262_563_200 * 10**9  # 2010-01-04
DAY_NS = 86_400 * 10**9
TARGET_SPEEDUP = 10.0
TARGET_SINGLE_S = 0.05
SWEEP_STAGE = "sweep (lines, kernel, metrics, ranking)"

GRIDS = {  # name -> (config, what vectorbt's signals are)
    "user: cross, next_open, fast 2-25 x slow 20-200 step 6": (
        {"strategy_type": "sma_crossover", "param_grid": {"fast": list(range(2, 26)),
                                                          "slow": list(range(20, 201, 6))}}, "cross"),
    "level, fill close, fast 2-25 x slow 20-200 step 6": (
        {"strategy_type": "sma_crossover", "entry": "level", "fill": "close",
         "param_grid": {"fast": list(range(2, 26)), "slow": list(range(20, 201, 6))}}, "level"),
    "bench grid: level, fill close, fast 2-54 x slow 20-310 step 10": (
        {"strategy_type": "sma_crossover", "entry": "level", "fill": "close",
         "param_grid": {"fast": list(range(2, 55)), "slow": list(range(20, 320, 10))}}, "level"),
    "trade-heavy: cross, long_short, fast 2-9 x slow 10-100 step 1": (
        {"strategy_type": "sma_crossover", "direction": "long_short",
         "param_grid": {"fast": list(range(2, 10)), "slow": list(range(10, 101))}}, "cross_short"),
}
if QUICK:
    GRIDS = {name: ({**config, "param_grid": {"fast": [2, 3, 5], "slow": [10, 20]}}, kind)
             for name, (config, kind) in list(GRIDS.items())[:2]}
SINGLE_CONFIG = {"strategy_type": "sma_crossover", "fast": 10, "slow": 30, "fill": "close", "entry": "level"}


# ------------------------------------------------------------------ data
def _import(redis_port: int, prefix: str, symbols: int, bars: int, seed: int) -> tuple[list[str], dict]:
    import redis
    from bench.backtest import gbm_panels
    from utils.data.store import BarStore, Bars
    store = BarStore(redis.Redis(port=redis_port))
    panels = gbm_panels(bars, symbols, seed)
    times = FIRST_DAY_NS + np.arange(bars, dtype=np.int64) * DAY_NS
    names = [f"{prefix}{index:03d}.SZ" for index in range(symbols)]
    for column, symbol in enumerate(names):
        store.write(Bars(symbol, times, *(np.ascontiguousarray(panels[field][:, column])
                                          for field in ("open", "high", "low", "close", "volume"))), replace=True)
    return names, panels


def _request(pb, symbols: list[str], config: dict, commission: float):
    return pb.BacktestRequest(stock_codes=symbols, start_time="2010-01-01", end_time="2040-01-01",
                              strategy_config=json.dumps(config), initial_capital=CAPITAL,
                              commission_rate=commission)


def _watch(stub, pb, backtest_id: str) -> None:
    for status in stub.WatchBacktest(pb.BacktestStatusRequest(backtest_id=backtest_id)):
        if status.status in (pb.COMPLETED, pb.FAILED, pb.CANCELLED):
            assert status.status == pb.COMPLETED, status.error_message
            return


def submit_and_watch(stub, pb, symbols: list[str], config: dict, commission: float) -> tuple[float, float, object]:
    """(seconds to COMPLETED, seconds to the result read, result) of SubmitBacktestTask + WatchBacktest."""
    began = time.perf_counter()
    response = stub.SubmitBacktestTask(_request(pb, symbols, config, commission))
    if response.status != pb.COMPLETED:
        _watch(stub, pb, response.backtest_id)
    completed = time.perf_counter() - began
    result = stub.GetBacktestResult(pb.BacktestResultRequest(backtest_id=response.backtest_id))
    return completed, time.perf_counter() - began, result


def guide_client(stub, pb, symbols: list[str], config: dict, commission: float) -> tuple[float, int]:
    """The usage guide's calls, polled: IntegratedBacktest, GetBacktestStatus every POLL_SECONDS
    until COMPLETED, GetBacktestResult: (seconds, status reads)."""
    began = time.perf_counter()
    response = stub.IntegratedBacktest(_request(pb, symbols, config, commission))
    request = pb.BacktestStatusRequest(backtest_id=response.backtest_id)
    reads = 0
    while True:
        status = stub.GetBacktestStatus(request)
        reads += 1
        if status.status == pb.COMPLETED:
            break
        assert status.status not in (pb.FAILED, pb.CANCELLED), status.error_message
        time.sleep(POLL_SECONDS)
    result = stub.GetBacktestResult(pb.BacktestResultRequest(backtest_id=response.backtest_id))
    return time.perf_counter() - began, reads


# ------------------------------------------------------------------ vectorbt anchor
def vectorbt_rate(panels: dict, config: dict, kind: str) -> dict:
    """vectorbt's cells/s on an evenly spaced subset of the grid's combinations, signals included."""
    import pandas as pd
    import vectorbt as vbt
    from utils.engine.backtest import validate_strategy_config
    warnings.filterwarnings("ignore", module="vectorbt")
    combinations = validate_strategy_config(config).combinations()
    step = max(1, len(combinations) // VBT_SUBSET)
    subset = [c.param_values for c in combinations[::step]][:VBT_SUBSET]
    bars, symbols = panels["close"].shape
    index = pd.date_range("2010-01-04", periods=bars, freq="B")
    close = pd.DataFrame(panels["close"], index=index)
    keys = [f"{p['fast']}/{p['slow']}" for p in subset]
    group = np.repeat(np.arange(len(subset)), symbols)

    def run() -> np.ndarray:
        windows = sorted({p[name] for p in subset for name in ("fast", "slow")})
        ma = vbt.MA.run(close, windows).ma.to_numpy().reshape(bars, len(windows), symbols)
        at = {window: i for i, window in enumerate(windows)}
        fast = np.concatenate([ma[:, at[p["fast"]]] for p in subset], axis=1)
        slow = np.concatenate([ma[:, at[p["slow"]]] for p in subset], axis=1)
        if kind == "level":
            entries, exits = fast > slow, fast <= slow
        else:
            before_fast, before_slow = np.roll(fast, 1, axis=0), np.roll(slow, 1, axis=0)
            entries = (before_fast < before_slow) & (fast > slow)
            exits = (before_fast > before_slow) & (fast < slow)
            entries[0] = exits[0] = False
        prices = pd.DataFrame(np.tile(panels["close"], (1, len(subset))), index=index,
                              columns=pd.MultiIndex.from_arrays([np.repeat(keys, symbols),
                                                                 np.tile(np.arange(symbols), len(subset))]))
        kwargs = {"short_entries": exits, "short_exits": entries} if kind == "cross_short" else {}
        portfolio = vbt.Portfolio.from_signals(prices, entries, exits if not kwargs else None, **kwargs,
                                               init_cash=CAPITAL / symbols, fees=COMMISSION, freq="1D",
                                               group_by=group)
        return portfolio.sharpe_ratio().to_numpy()

    small = {"close": panels["close"][:300, :4]}
    vbt.Portfolio.from_signals(pd.DataFrame(small["close"]), np.ones((300, 4), bool), np.zeros((300, 4), bool),
                               init_cash=1.0, freq="1D", group_by=True).sharpe_ratio()  # compile
    run()
    began = time.perf_counter()
    run()
    seconds = time.perf_counter() - began
    cells = len(subset) * symbols * bars
    return {"combinations": len(subset), "cells": cells, "seconds": seconds, "rate": cells / seconds}


# ------------------------------------------------------------------ where a job's time goes
def job_stages(redis_port: int, symbols: list[str], config: dict, repeats: int = 1) -> dict:
    """The backtest handler's stages, timed one by one in this process on the bench's Redis (best of
    ``repeats``), the server's decoding of the stored result, and for a grid a cProfile of the sweep
    (top functions by own time)."""
    import redis
    from utils.data.store import BarStore
    from utils.engine.backtest import validate_strategy_config
    from utils.engine.backtest.runner import align_bars, report_of, simulate_spec
    from utils.engine.backtest.sweep import best_spec, sweep_panels
    from utils.engine.backend import cpu_backend
    from utils.tasks.backtest import SMALL_JOB_CELLS, backtest_result, job_cells, kernel_threads
    from utils.tasks.bar_cache import StoredBarsCache
    store = BarStore(redis.Redis(port=redis_port))
    spec = validate_strategy_config(config)
    start_ns, end_ns = FIRST_DAY_NS - 5 * DAY_NS, FIRST_DAY_NS + 20_000 * DAY_NS
    stages: dict[str, float] = {}

    def timed(name, fn):
        best, value = math.inf, None
        for _ in range(repeats if name != SWEEP_STAGE else 1):
            began = time.perf_counter()
            value = fn()
            best = min(best, time.perf_counter() - began)
        stages[name] = best
        return value

    began = time.perf_counter()
    store.read_many(symbols, None, end_ns)
    cold_load = time.perf_counter() - began
    cache = StoredBarsCache(store, 2**30)
    cache.read_many(symbols, end_ns)
    stored = timed("load bars (worker's bar cache: one version read)", lambda: cache.read_many(symbols, end_ns))
    bars = {symbol: stored[symbol].columns() for symbol in symbols}
    with kernel_threads(1 if job_cells(spec, bars) < SMALL_JOB_CELLS else None):  # as the handler does
        aligned = timed("align on the calendar", lambda: align_bars(spec, bars, start_ns, end_ns))
        best, search, result = spec, {}, None
        if spec.param_grid:
            result = timed(SWEEP_STAGE, lambda: sweep_panels(spec, aligned.panels, aligned.start_index, CAPITAL,
                                                             COMMISSION))
            best, search = best_spec(spec, result), {"sweep": {"rows": result.table}}
        output = timed("signals + simulation (simulate_spec)" + (" of the best set" if result else ""),
                       lambda: simulate_spec(best, aligned, CAPITAL, COMMISSION))
        report = timed("report (trade records, per-symbol summary)", lambda: report_of(best, aligned, output, CAPITAL))
        shaped = timed("result dict", lambda: backtest_result(report, best, cpu_backend(), 0.0))
        text, chunks = timed("JSON the queue stores (result_parts.split: head + trade chunks)",
                             lambda: stored_form({**shaped, **search}))
    timed("server: decode the stored result (json.loads, every chunk)",
          lambda: [json.loads(part) for part in (text, *chunks)])
    top = []
    if result is not None:
        profile = cProfile.Profile()
        profile.enable()
        sweep_panels(spec, aligned.panels, aligned.start_index, CAPITAL, COMMISSION)
        profile.disable()
        top = sorted(((values[2], f"{path.rsplit('/', 1)[-1]}:{function}")
                      for (path, _, function), values in pstats.Stats(profile).stats.items()), reverse=True)[:8]
    return {"stages": stages, "trades": len(report.trades), "json_bytes": len(text) + sum(map(len, chunks)), "cold_load": cold_load,
            "combinations": result.combinations if result else 1, "top": top}


def stored_form(result: dict) -> tuple[str, list[str]]:
    """The JSON the queue stores for ``result``: its head and its chunks (utils/queue/result_parts.py)."""
    from utils.queue import result_parts
    head, parts = result_parts.split(result)
    return result_parts.dumps(head), [chunk for chunks in parts.values() for chunk in chunks]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def platform_cpu(platform) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in (("server", platform.server_pid),
                                                      ("worker", platform.worker_pid),
                                                      ("redis", platform.redis_pid))}


# ------------------------------------------------------------------ run
def measure() -> dict:
    import grpc
    from api_proto import backtest_pb2 as pb, backtest_pb2_grpc
    from bench.backtest_service import platform_processes
    from utils.engine.backtest import validate_strategy_config
    out: dict = {"grids": [], "load": os.getloadavg()}
    with platform_processes("bench-bt-e2e-") as platform:
        sweep_symbols, sweep_panels = _import(platform.redis_port, "W", SWEEP_SYMBOLS, SWEEP_BARS, 20260302)
        single_symbols, _ = _import(platform.redis_port, "S", SINGLE_SYMBOLS, SINGLE_BARS, 20260301)
        channel = grpc.insecure_channel(f"127.0.0.1:{platform.port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)
        commission = COMMISSION
        for name, (config, kind) in GRIDS.items():  # warm-up: every kernel's compilation, once
            small = {**config, "param_grid": {"fast": [2, 3], "slow": [10, 20]}}
            submit_and_watch(stub, pb, sweep_symbols[:3], small, commission)
        for warm in range(3):
            submit_and_watch(stub, pb, single_symbols, SINGLE_CONFIG, 0.0005 + warm * 1e-7)
        for name, (config, kind) in GRIDS.items():
            commission += 1e-7
            print(f"[bench:backtest_e2e] sweep {name} ...", flush=True)
            completed, with_result, result = submit_and_watch(stub, pb, sweep_symbols, config, commission)
            combinations = len(validate_strategy_config(config).combinations())
            cells = combinations * SWEEP_SYMBOLS * SWEEP_BARS
            anchor = vectorbt_rate(sweep_panels, config, kind)
            out["grids"].append({"name": name, "combinations": combinations, "cells": cells, "seconds": completed,
                                 "with_result": with_result, "compute": result.compute_seconds,
                                 "trades": result.total_trades, "rate": cells / completed, "vbt": anchor})
            print(f"[bench:backtest_e2e]   {completed:.2f} s, {cells / completed:.3g} cells/s; vectorbt "
                  f"{anchor['rate']:.3g} cells/s -> {cells / completed / anchor['rate']:.1f}x", flush=True)
        print("[bench:backtest_e2e] single run ...", flush=True)
        watched, polled = [], []
        cpu_before, client_before = platform_cpu(platform), time.process_time()
        for run in range(SINGLE_RUNS):
            watched.append(submit_and_watch(stub, pb, single_symbols, SINGLE_CONFIG, 0.001 + run * 1e-7)[1])
        cpu_after, client_after = platform_cpu(platform), time.process_time()
        cpu = {name: (cpu_after[name] - cpu_before[name]) / SINGLE_RUNS for name in cpu_after}
        cpu["client"] = (client_after - client_before) / SINGLE_RUNS
        reads = []
        for run in range(SINGLE_RUNS):
            seconds, count = guide_client(stub, pb, single_symbols, SINGLE_CONFIG, 0.002 + run * 1e-7)
            polled.append(seconds)
            reads.append(count)
        last = submit_and_watch(stub, pb, single_symbols, SINGLE_CONFIG, 0.003)[2]
        out["single"] = {"watch": latency_summary(watched), "poll": latency_summary(polled),
                         "compute": last.compute_seconds, "trades": last.total_trades, "cpu": cpu,
                         "status_reads": float(np.mean(reads))}
        channel.close()
        print("[bench:backtest_e2e] stages of the user's sweep job, in process ...", flush=True)
        first_name, (first_config, _) = next(iter(GRIDS.items()))
        out["stages"] = {"grid": first_name, **job_stages(platform.redis_port, sweep_symbols, first_config)}
        out["single_stages"] = job_stages(platform.redis_port, single_symbols, SINGLE_CONFIG, repeats=5)
    out["load_after"] = os.getloadavg()
    return out


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _stage_table(stages: dict, milliseconds: bool = False) -> list[str]:
    total = sum(stages["stages"].values())
    scale, unit = (1e3, "ms") if milliseconds else (1.0, "s")
    rows = [f"| stage | {unit} | share |", "|---|---:|---:|"]
    rows += [f"| {name} | {seconds * scale:.3g} | {seconds / total * 100:.0f} % |"
             for name, seconds in stages["stages"].items()]
    return rows + [f"| total | {total * scale:.3g} | 100 % |"]


def render(res: dict) -> str:
    import numba
    import vectorbt as vbt
    lines = [
        "Command: `.venv/bin/python -m bench backtest_e2e`. Server + one worker (spawned processes, "
        f"{numba.get_num_threads()} numba threads) + private redis-server + this client on the machine in the "
        f"header. Load average (1, 5, 15 min) at the start: {', '.join(f'{v:.2f}' for v in res['load'])}; at "
        f"the end: {', '.join(f'{v:.2f}' for v in res['load_after'])}. Anchor: vectorbt {vbt.__version__} in "
        "this process, same closes, same run.",
        "",
        f"### Sweeps over gRPC: submit → COMPLETED, {SWEEP_SYMBOLS} symbols × {SWEEP_BARS:,} days",
        "",
        "| grid (sma_crossover) | combinations | cells | submit → COMPLETED s | + result read s | worker compute s "
        "| ours cells/s | vectorbt cells/s (subset) | ours / vectorbt | ≥ 10×? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for grid in res["grids"]:
        ratio = grid["rate"] / grid["vbt"]["rate"]
        lines.append(f"| {grid['name']} | {grid['combinations']:,} | {grid['cells']:.3g} | {grid['seconds']:.2f} | "
                     f"{grid['with_result']:.2f} | {grid['compute']:.2f} | {grid['rate']:.3g} | "
                     f"{grid['vbt']['rate']:.3g} ({grid['vbt']['combinations']} comb., "
                     f"{grid['vbt']['seconds']:.2f} s) | **{ratio:.1f}×** | {_yes(ratio >= TARGET_SPEEDUP)} |")
    lines += [
        "",
        "Ours: the whole job as a user waits for it (SubmitBacktestTask, WatchBacktest until COMPLETED): queue "
        "hand-off, bar loading, alignment, the sweep, the best combination's full backtest (equity curve, "
        "trades), the result JSON stored in Redis. vectorbt: `vbt.MA.run` over the subset's windows, entries / "
        "exits from the MAs (level: fast > slow; cross: the crossings, as backtesting.py's crossover; "
        "long_short: short entries on the downward crossing), one `from_signals` over the tiled closes grouped "
        "per combination, Sharpe per combination; best of one run after a warm-up, in this process, without "
        "any queue or RPC. vectorbt keeps no trade-per-trade JSON and runs no best-set report, so the ratio "
        "charges ours for more work.",
        "",
    ]
    stages = res["stages"]
    lines += [f"### Where a sweep job's time goes ({stages['grid']}, {stages['combinations']} combinations, "
              "in process)", ""]
    lines += _stage_table(stages)
    lines += [
        "",
        f"The best set's report carries {stages['trades']:,} trades ({stages['json_bytes'] / 1024:,.0f} KiB of "
        "JSON with the ranked table). cProfile of the sweep alone (own time, top functions): "
        + "; ".join(f"{name} {seconds:.3f} s" for seconds, name in stages["top"]) + ".",
        "",
    ]
    single = res["single"]
    watch, poll = single["watch"], single["poll"]
    lines += [
        f"### Single run over gRPC: sma_crossover 10/30, {SINGLE_SYMBOLS} symbols × {SINGLE_BARS:,} days",
        "",
        "| client | n | p50 ms | p90 ms | max ms | ≤ 50 ms (p50)? |",
        "|---|---:|---:|---:|---:|---|",
        f"| SubmitBacktestTask → WatchBacktest COMPLETED → GetBacktestResult | {watch['n']} | {watch['p50']:.1f} | "
        f"{watch['p90']:.1f} | {watch['max']:.1f} | {_yes(watch['p50'] <= TARGET_SINGLE_S * 1e3)} |",
        f"| the guide's calls: IntegratedBacktest → GetBacktestStatus (every {POLL_SECONDS * 1e3:.0f} ms until "
        f"COMPLETED) → GetBacktestResult | {poll['n']} | {poll['p50']:.1f} | {poll['p90']:.1f} | "
        f"{poll['max']:.1f} | {_yes(poll['p50'] <= TARGET_SINGLE_S * 1e3)} |",
        "",
        f"The guide's client read the status {single['status_reads']:.2f} times per run on average: "
        "IntegratedBacktest answers once the job has finished when that takes at most "
        "`BACKTEST_SUBMIT_WAIT_SECONDS` (1 s by default), so the first read finds it COMPLETED and no "
        "poll interval is slept.",
        "",
        "Where one such job's time goes (in process, best of 5 each):",
        "",
        *_stage_table(res["single_stages"], milliseconds=True),
        "",
        f"The first job on these symbols reads their bars out of Redis instead: "
        f"{res['single_stages']['cold_load'] * 1e3:.1f} ms here (later jobs check the versions and use the "
        "worker's copy, `BACKTEST_BAR_CACHE_MB`). Jobs below 2e6 cells run their kernels on one numba thread. "
        f"Worker compute of one such job over gRPC: {single['compute'] * 1e3:.1f} ms; the result holds "
        f"{single['trades']:,} trades (first page of 1,000 in the response) and the equity curve. CPU time per "
        "WatchBacktest run, summed over every thread of each process (`/proc/<pid>/stat`; independent of "
        "the other jobs on the machine, unlike the wall times above): "
        + ", ".join(f"{name} {seconds * 1e3:.1f} ms" for name, seconds in single["cpu"].items())
        + f" — {sum(single['cpu'].values()) * 1e3:.1f} ms in all, the wall time to expect on an idle "
        "machine when nothing overlaps (numba's worker threads spin a little after parallel loops, "
        "which counts here but not on the wall clock).",
    ]
    return "\n".join(lines)


def run() -> Section:
    return Section("Backtests end to end (gRPC + queue)", render(measure()))
