"""Load: 100 concurrent backtest clients and 50 concurrent market-data streams for 60 s.

The real server (``create_server``) and one real worker (``run_worker_process``) run in spawned
processes against a private redis-server. Each backtest client loops: SubmitBacktestTask (2
symbols, a year of sample data, a commission unique to the request so the request cache cannot
answer) -> WatchBacktest until done -> GetBacktestResult. Each stream sends one tick every 100 ms
(10 ticks/s per stream, 500 ticks/s in all) of its own symbol with the default indicators and
reads every response. Reported: errors, calls done, p50/p99 latencies, and the server's and the
worker's resident memory sampled every second (to show it stays bounded).
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bench import Section
from bench.backtest_service import platform_processes

DURATION = float(__import__("os").environ.get("BENCH_LOAD_SECONDS", "60"))
BACKTEST_CLIENTS = 100
STREAMS = 50
TICK_INTERVAL = 0.1


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _backtest_client(stub, pb, index: int, stop: threading.Event, out: dict) -> None:
    from utils.data.sample import SAMPLE_SYMBOLS
    symbols = list(SAMPLE_SYMBOLS)[:2]
    calls = 0
    while not stop.is_set():
        calls += 1
        started = time.perf_counter()
        try:
            response = stub.SubmitBacktestTask(pb.BacktestRequest(
                stock_codes=symbols, start_time="2024-01-01", end_time="2024-12-31",
                strategy_config=json.dumps({"strategy_type": "sma_crossover", "fast": 5 + index % 10, "slow": 40,
                                            "entry": "level"}),
                initial_capital=1_000_000, commission_rate=1e-4 + (index * 100_000 + calls) * 1e-12), timeout=60)
            submitted = time.perf_counter()
            for status in stub.WatchBacktest(pb.BacktestStatusRequest(backtest_id=response.backtest_id), timeout=120):
                if status.status in (pb.COMPLETED, pb.FAILED, pb.CANCELLED):
                    if status.status != pb.COMPLETED:
                        raise RuntimeError(status.error_message or "not completed")
                    break
            stub.GetBacktestResult(pb.BacktestResultRequest(backtest_id=response.backtest_id), timeout=60)
            out["submit"].append(submitted - started)
            out["e2e"].append(time.perf_counter() - started)
        except Exception as exc:  # counted, reported
            out["errors"].append(f"backtest: {exc}")


def _stream_client(stub, pb, index: int, stop: threading.Event, out: dict) -> None:
    symbol = f"LOAD{index:02d}.SZ"
    start = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
    rng = np.random.default_rng(index)
    sent: dict[int, float] = {}

    def requests():
        number, price = 0, 50.0
        while not stop.is_set():
            number += 1
            price *= float(np.exp(rng.normal(0, 0.001)))
            sent[number] = time.perf_counter()
            stamp = (start + timedelta(milliseconds=number * 100)).isoformat()
            yield pb.StreamDataRequest(stock_code=symbol, price=round(price, 4), volume=100.0, timestamp=stamp)
            time.sleep(TICK_INTERVAL)

    try:
        for response in stub.StreamMarketData(requests(), timeout=DURATION + 60):
            out["tick"].append(time.perf_counter() - sent.get(response.sequence, time.perf_counter()))
            if response.error:
                out["errors"].append(f"stream: {response.error}")
    except Exception as exc:
        out["errors"].append(f"stream: {exc}")


def measure() -> dict:
    import grpc
    import redis
    from api_proto import backtest_pb2, backtest_pb2_grpc, realtime_pb2, realtime_pb2_grpc
    from utils.data.sample import ensure_sample_data
    from utils.data.store import BarStore
    out = {"submit": [], "e2e": [], "tick": [], "errors": []}
    rss = {"server": [], "worker": []}
    with platform_processes("bench-load-") as platform:
        ensure_sample_data(BarStore(redis.Redis(port=platform.redis_port)))
        options = [("grpc.max_concurrent_streams", 1000)]
        channel = grpc.insecure_channel(f"127.0.0.1:{platform.port}", options=options)
        grpc.channel_ready_future(channel).result(timeout=30)
        backtests = backtest_pb2_grpc.BacktestServiceStub(channel)
        streams = realtime_pb2_grpc.RealTimeServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{platform.port}", options=options))
        warm = {"submit": [], "e2e": [], "errors": []}
        _run_for(lambda s: _backtest_client(backtests, backtest_pb2, 999, s, warm), 1, 5.0)  # compile
        stop = threading.Event()
        threads = [threading.Thread(target=_backtest_client, args=(backtests, backtest_pb2, i, stop, out))
                   for i in range(BACKTEST_CLIENTS)]
        threads += [threading.Thread(target=_stream_client, args=(streams, realtime_pb2, i, stop, out))
                    for i in range(STREAMS)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        while time.perf_counter() - began < DURATION:
            rss["server"].append(_rss_mib(platform.server_pid))
            rss["worker"].append(_rss_mib(platform.worker_pid))
            time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        elapsed = time.perf_counter() - began
    return {"out": out, "rss": rss, "elapsed": elapsed}


def _run_for(target, count: int, seconds: float) -> None:
    stop = threading.Event()
    threads = [threading.Thread(target=target, args=(stop,)) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)


def _p(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1e3:.1f}" if values else "n/a"


def render(result: dict) -> str:
    out, rss, elapsed = result["out"], result["rss"], result["elapsed"]
    errors = out["errors"]
    lines = [
        "Command: `make bench` (this section alone: `.venv/bin/python -m bench load`). "
        f"{BACKTEST_CLIENTS} backtest clients and {STREAMS} market-data streams at once for "
        f"{DURATION:.0f} s against one server process and one worker process (plus redis-server and this "
        "client process) on the machine in the header. " + (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "",
        "| measure | count | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| SubmitBacktestTask RPC | {len(out['submit']):,} | {_p(out['submit'], 50)} | {_p(out['submit'], 99)} |",
        f"| backtest end to end (submit → done → result) | {len(out['e2e']):,} | {_p(out['e2e'], 50)} | "
        f"{_p(out['e2e'], 99)} |",
        f"| stream tick → its response | {len(out['tick']):,} | {_p(out['tick'], 50)} | {_p(out['tick'], 99)} |",
        "",
        f"Errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else "") + f". Wall time {elapsed:.0f} s; "
        f"backtests completed {len(out['e2e']) / elapsed:.1f}/s; ticks answered {len(out['tick']) / elapsed:,.0f}/s.",
        "",
        "| process | RSS at start MiB | max MiB | at end MiB |",
        "|---|---:|---:|---:|",
    ]
    for name, samples in rss.items():
        finite = [s for s in samples if s == s]
        if finite:
            lines.append(f"| {name} | {finite[0]:.0f} | {max(finite):.0f} | {finite[-1]:.0f} |")
    lines += ["", "The backtests queue behind the worker's cap (max_concurrent_backtests), so their end-to-end "
              "time is mostly queueing: 100 clients wait on one worker on a 2-core machine."]
    return "\n".join(lines)


def run() -> Section:
    print("[bench:load] 60 s of mixed load ...", flush=True)
    return Section("Load", render(measure()))
