"""Scale: a minute-bar universe imported through ImportBarsStream into the Parquet store, an SMA
sweep over it sharded across 1 and then 2 worker processes, and the backtest read path from the
store vs from Redis.

Everything runs as the user runs it: a private redis-server, the real gRPC server and real
``run_worker_process`` workers in spawned processes, a gRPC client in this process. Sizes are
environment variables (defaults = the issue's full size; verify with small ones first):

    SCALE_SYMBOLS=1000 SCALE_DAYS=252 SCALE_BARS_PER_DAY=375   the minute-bar universe (~94.5M bars)
    SCALE_SHARD_SYMBOLS=50                                      SHARD_SYMBOLS of the sweep
    SCALE_READ_SYMBOLS=100 SCALE_READ_DAYS=2520 SCALE_READ_RUNS=20   the read-path part (daily bars)
    SCALE_DIR=<temp dir>                                        where the store is written (removed after)

1. Import: per symbol a deterministic random walk (seeded by the symbol's index) generated and
   streamed in chunks of ``SCALE_CHUNK_BARS`` (never the whole set in memory, here or in the
   server, which writes one symbol at a time; the messages are encoded with numpy, byte-identical
   to the protobuf objects' serialisation): bars/s over the whole stream, and the store's size on
   disk. Full size, extrapolated from 9.45M bars on a busy 2-CPU VM: ~10 min import, ~15 min in
   all; disk ~4.5 GB (47 bytes/bar), removed afterwards.
2. Sweep: ``sma_crossover`` fast {5, 10} x slow {50, 100} over every symbol and bar, submitted with
   ``SubmitBacktestTask`` (a sweep, then the best set's full backtest, both as symbol shards),
   first with 1 worker process, then with 2 (fresh processes each time, each with
   ``NUMBA_NUM_THREADS=1`` and one shard slot, so a worker is one core; ``WORKER_TASK_TYPES=
   backtest,backtest_shard``, as a dedicated backtest machine runs them). Timed: the sweep round
   (submit until the job's progress passes the sweep's share, 0.8) -> cells/s (combinations x
   symbols x bars / s); and submit -> COMPLETED. Peak RSS per worker: VmHWM of each worker process
   (reset through /proc/<pid>/clear_refs after its warm-up), against the dataset's in-memory size
   (bars x 5 fields x 8 bytes). The workers' bar caches are off (BACKTEST_BAR_CACHE_MB=0,
   BAR_CACHE_MB=64) so the peak is the shard's.
3. Read path: ``SCALE_READ_SYMBOLS`` x ``SCALE_READ_DAYS`` daily bars, one sma_crossover backtest
   over gRPC (submit -> WatchBacktest COMPLETED -> GetBacktestResult) on a warm server and worker
   (kernels compiled on other symbols first), BAR_STORE=parquet and then BAR_STORE=redis: the cold
   first read of those symbols, then the p50 of warm runs (hot caches; each request has another
   commission so the request cache cannot answer it).
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from bench import Section, percentile


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


SYMBOLS = _env("SCALE_SYMBOLS", 1000)
DAYS = _env("SCALE_DAYS", 252)
BARS_PER_DAY = _env("SCALE_BARS_PER_DAY", 375)
SHARD_SYMBOLS = _env("SCALE_SHARD_SYMBOLS", 50)
CHUNK_BARS = _env("SCALE_CHUNK_BARS", 20_000)
READ_SYMBOLS = _env("SCALE_READ_SYMBOLS", 100)
READ_DAYS = _env("SCALE_READ_DAYS", 2520)
READ_RUNS = _env("SCALE_READ_RUNS", 20)
GRID = {"strategy_type": "sma_crossover", "param_grid": {"fast": [5, 10], "slow": [50, 100]}}
SINGLE = {"strategy_type": "sma_crossover", "fast": 10, "slow": 30, "fill": "close", "entry": "level"}
SWEEP_SHARE = 0.8  # the sharded parent's progress once its sweep round is done (utils/tasks/backtest.py)
FIRST_DAY = np.datetime64("2024-01-02")
DAILY_FIRST_DAY = np.datetime64("2010-01-04")
FIELDS_BYTES = 5 * 8
TARGET_SPEEDUP = 1.7
TARGET_RSS_SHARE = 0.25


# ------------------------------------------------------------------ processes
def _settings(redis_port: int, data_dir: str, **overrides):
    from config.settings import load_settings
    base = dict(redis_host="127.0.0.1", redis_port=redis_port, redis_embedded="never", grpc_host="127.0.0.1",
                grpc_port=0, prometheus_port=0, data_dir=Path(data_dir), worker_processes=1, compute_device="cpu",
                warm_up_indicators="none", log_level="WARNING", worker_warm_up_seconds=0, sample_data=False,
                bar_store="parquet", market_data_uri=str(Path(data_dir) / "market"),
                max_symbols_per_request=max(SYMBOLS, READ_SYMBOLS, 500))  # one request over the universe
    return load_settings(**{**base, **overrides})


def _server_main(redis_port: int, data_dir: str, overrides: dict, ready, stop) -> None:
    import logging
    logging.disable(logging.WARNING)
    from services.server import create_server
    running = create_server(_settings(redis_port, data_dir, **overrides))
    ready.put(running.port)
    stop.wait()
    running.stop(grace=0)


def _worker_main(redis_port: int, data_dir: str, overrides: dict, threads: int) -> None:
    if threads:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)  # before numba is imported
    import logging
    logging.disable(logging.WARNING)
    from utils.tasks.runtime import run_worker_process
    run_worker_process(_settings(redis_port, data_dir, **overrides))


class Platform:
    """A private redis-server, then servers and workers started and stopped at will."""

    def __init__(self, root: Path) -> None:
        from utils.redis_client import EmbeddedRedis
        self.root = root
        self.ctx = mp.get_context("spawn")
        self.redis = EmbeddedRedis(root / "redis", appendonly=False).start()
        self.processes: list = []

    def server(self, overrides: dict) -> tuple[int, object, object]:
        ready, stop = self.ctx.Queue(), self.ctx.Event()
        process = self.ctx.Process(target=_server_main, args=(self.redis.port, str(self.root), overrides, ready, stop))
        process.start()
        self.processes.append((process, stop))
        return ready.get(timeout=180), process, stop

    def worker(self, overrides: dict, threads: int = 0):
        process = self.ctx.Process(target=_worker_main, args=(self.redis.port, str(self.root), overrides, threads))
        process.start()
        self.processes.append((process, None))
        return process

    @staticmethod
    def stop(process, stop_event=None) -> None:
        if stop_event is not None:
            stop_event.set()
        else:
            process.terminate()
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
            process.join(timeout=10)

    def close(self) -> None:
        for process, stop_event in self.processes:
            if process.is_alive():
                self.stop(process, stop_event)
        self.redis.stop()


@contextlib.contextmanager
def platform() -> Iterator[Platform]:
    base = os.environ.get("SCALE_DIR") or None
    root = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=base))
    running = None
    try:
        running = Platform(root)
        yield running
    finally:
        if running is not None:
            running.close()
        shutil.rmtree(root, ignore_errors=True)


def _stubs(port: int):
    import grpc
    from api_proto import backtest_pb2_grpc, market_data_pb2_grpc
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 256 << 20),
                                                                  ("grpc.max_send_message_length", 256 << 20)])
    grpc.channel_ready_future(channel).result(timeout=60)
    return channel, market_data_pb2_grpc.MarketDataServiceStub(channel), backtest_pb2_grpc.BacktestServiceStub(channel)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> bool:
    """Peak RSS := current RSS (``echo 5 > /proc/<pid>/clear_refs``); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _tree_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


# ------------------------------------------------------------------ data
def minute_times(days: int, bars_per_day: int) -> np.ndarray:
    """Business days from 2024-01-02, ``bars_per_day`` one-minute bars from 09:30 each (int64 ns)."""
    business = np.busday_offset(FIRST_DAY, np.arange(days), roll="forward").astype("datetime64[ns]")
    minutes = (np.timedelta64(9 * 60 + 30, "m") + np.arange(bars_per_day) * np.timedelta64(1, "m")).astype(
        "timedelta64[ns]")
    return (business[:, None] + minutes[None, :]).ravel().astype(np.int64)


def walk_chunks(index: int, count: int, chunk: int) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """Symbol ``index``'s bars (a random walk seeded by the index), ``chunk`` bars at a time."""
    rng = np.random.default_rng(10_000 + index)
    last = 20.0 + index % 50
    for first in range(0, count, chunk):
        size = min(chunk, count - first)
        close = last * np.exp(np.cumsum(rng.normal(0.0, 0.001, size)))
        open_ = np.concatenate([[last], close[:-1]])
        spread = np.abs(rng.normal(0.0, 0.0005, size))
        last = float(close[-1])
        yield slice(first, first + size), {"open": open_, "high": np.maximum(open_, close) * (1 + spread),
                                           "low": np.minimum(open_, close) * (1 - spread), "close": close,
                                           "volume": rng.integers(100, 10_000, size).astype(np.float64)}


BAR_TAGS = (0x11, 0x19, 0x21, 0x29, 0x31)  # Bar.open..volume: fields 2-6, wire type 1 (64-bit)


def encode_bars(labels: np.ndarray, columns: dict[str, np.ndarray]) -> bytes:
    """``repeated Bar bars = 2`` of an ImportBarsRequest in protobuf wire format, built with numpy
    (the same bytes a client's ``pb.Bar(...)`` objects serialise to, without a Python object per
    bar: the client would otherwise be the bottleneck). ``labels``: fixed-width ASCII times."""
    count, width = labels.size, labels.dtype.itemsize
    bar_size = 2 + width + 5 * 9
    assert bar_size < 128  # one-byte lengths
    out = np.empty((count, 2 + bar_size), dtype=np.uint8)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = 0x12, bar_size, 0x0A, width
    out[:, 4:4 + width] = labels.view(np.uint8).reshape(count, width)
    offset = 4 + width
    for tag, name in zip(BAR_TAGS, ("open", "high", "low", "close", "volume")):
        out[:, offset] = tag
        out[:, offset + 1:offset + 9] = np.ascontiguousarray(columns[name], dtype="<f8").view(np.uint8).reshape(count, 8)
        offset += 9
    return out.tobytes()


def import_requests(names: list[str], times: np.ndarray, chunk: int) -> Iterator[bytes]:
    """Serialised ImportBarsRequest chunks, symbol after symbol (the first chunk replaces)."""
    labels = np.datetime_as_string(times.astype("datetime64[ns]"), unit="s")
    labels = labels.astype(f"S{max(len(label) for label in labels[:1].tolist() + labels[-1:].tolist())}")
    for index, symbol in enumerate(names):
        name = symbol.encode()
        for rows, columns in walk_chunks(index, times.size, chunk):
            replace = b"\x18\x01" if rows.start == 0 else b""
            yield bytes([0x0A, len(name)]) + name + encode_bars(labels[rows], columns) + replace


def import_universe(channel, names: list[str], times: np.ndarray) -> dict:
    from api_proto import market_data_pb2 as pb
    stream = channel.stream_unary("/gpu_api.market_data.MarketDataService/ImportBarsStream",
                                  request_serializer=None, response_deserializer=pb.ImportBarsStreamResponse.FromString)
    began = time.perf_counter()
    response = stream(import_requests(names, times, CHUNK_BARS))
    seconds = time.perf_counter() - began
    assert response.bars_received == len(names) * times.size, response.bars_received
    return {"bars": int(response.bars_received), "seconds": seconds, "rate": response.bars_received / seconds}


def write_daily(store, names: list[str], days: int, seed: int) -> None:
    from utils.data.store import Bars
    rng = np.random.default_rng(seed)
    times = np.busday_offset(DAILY_FIRST_DAY, np.arange(days), roll="forward").astype("datetime64[ns]").astype(np.int64)
    for symbol in names:
        close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, days)))
        open_ = close * np.exp(rng.normal(0, 0.004, days))
        store.write(Bars(symbol, times, open_, np.maximum(open_, close) * 1.01, np.minimum(open_, close) * 0.99,
                         close, np.full(days, 1e6)), replace=True)


# ------------------------------------------------------------------ jobs over gRPC
def _request(pb, names: list[str], config: dict, start: str, end: str, commission: float = 0.0005):
    return pb.BacktestRequest(stock_codes=names, start_time=start, end_time=end, strategy_config=json.dumps(config),
                              initial_capital=1_000_000.0, commission_rate=commission)


def run_backtest(stub, request) -> tuple[float, float, object]:
    """(seconds until progress passed SWEEP_SHARE, seconds to COMPLETED, result)."""
    from api_proto import backtest_pb2 as pb
    began = time.perf_counter()
    response = stub.SubmitBacktestTask(request)
    swept = None
    if response.status != pb.COMPLETED:
        for status in stub.WatchBacktest(pb.BacktestStatusRequest(backtest_id=response.backtest_id)):
            if swept is None and status.progress >= SWEEP_SHARE:
                swept = time.perf_counter() - began
            if status.status in (pb.COMPLETED, pb.FAILED, pb.CANCELLED):
                assert status.status == pb.COMPLETED, status.error_message
                break
    completed = time.perf_counter() - began
    result = stub.GetBacktestResult(pb.BacktestResultRequest(backtest_id=response.backtest_id))
    return (swept if swept is not None else completed), completed, result


def page_latency(stub, result, runs: int = 5) -> dict[str, float]:
    """Best-of-``runs`` milliseconds of GetBacktestResult pages of 1,000 trades (the default page) at
    the start, the middle and the end of a finished backtest's trades."""
    from api_proto import backtest_pb2 as pb
    total = int(result.total_trades)
    found = {}
    for name, offset in (("first", 0), ("middle", total // 2), ("last", max(total - 1000, 0))):
        best = float("inf")
        for _ in range(runs):
            began = time.perf_counter()
            page = stub.GetBacktestResult(pb.BacktestResultRequest(backtest_id=result.backtest_id,
                                                                   page_token=str(offset) if offset else ""))
            best = min(best, time.perf_counter() - began)
        assert page.total_trades == total and len(page.trades) == min(1000, total - offset)
        found[name] = best * 1000
    return found


def sweep_with(running: Platform, stub, names: list[str], workers: int, overrides: dict, span: tuple[str, str]) -> dict:
    from api_proto import backtest_pb2 as pb
    began = time.perf_counter()
    processes = [running.worker(overrides, threads=1) for _ in range(workers)]
    try:
        # warm-up: kernels compiled in every worker (a sharded sweep over the first day, a shard each)
        warm_names = names[:SHARD_SYMBOLS * workers * 2]
        run_backtest(stub, _request(pb, warm_names, GRID, span[0], span[0] + "T23:59:59", 0.0004 + workers * 1e-6))
        reset = all(reset_peak(process.pid) for process in processes)
        before = [peak_rss_mib(process.pid) for process in processes]
        # each run its own commission: the request cache must not answer the second
        swept, completed, result = run_backtest(stub, _request(pb, names, GRID, *span, 0.0005 + workers * 1e-6))
        peaks = [peak_rss_mib(process.pid) for process in processes]
        pages = page_latency(stub, result)
    finally:
        for process in processes:
            running.stop(process)
    return {"workers": workers, "sweep_seconds": swept, "completed_seconds": completed, "peaks_mib": peaks,
            "before_mib": before, "reset": reset, "trades": int(result.total_trades), "pages_ms": pages,
            "wall": time.perf_counter() - began}


def read_path(running: Platform, store_name: str, names: list[str]) -> dict:
    """Cold first read and warm p50 of one backtest over ``names`` with BAR_STORE=``store_name``."""
    from api_proto import backtest_pb2 as pb
    from utils.data.store import bar_store_from_settings
    from utils.redis_client import redis_from_settings
    began = time.perf_counter()
    overrides = {"bar_store": store_name}
    settings = _settings(running.redis.port, str(running.root), **overrides)
    store = bar_store_from_settings(redis_from_settings(settings, decode=False), settings)
    warm_names = [f"W{store_name[:1].upper()}{index}.SZ" for index in range(2)]
    write_daily(store, warm_names, READ_DAYS, 3)
    write_daily(store, names, READ_DAYS, 5)
    port, server, stop = running.server(overrides)
    worker = running.worker(overrides)
    channel, _, stub = _stubs(port)
    try:
        end = "2040-01-01"
        for run in range(2):  # compile the kernels on other symbols
            run_backtest(stub, _request(pb, warm_names, SINGLE, "2010-01-01", end, 0.0003 + run * 1e-6))
        cold = run_backtest(stub, _request(pb, names, SINGLE, "2010-01-01", end, 0.0006))[1]
        warm = [run_backtest(stub, _request(pb, names, SINGLE, "2010-01-01", end, 0.001 + run * 1e-6))[1]
                for run in range(READ_RUNS)]
    finally:
        channel.close()
        running.stop(worker)
        running.stop(server, stop)
    return {"store": store_name, "cold": cold, "wall": time.perf_counter() - began, "warm_p50": percentile(warm, 50), "warm_p90": percentile(warm, 90)}


# ------------------------------------------------------------------ the section
def measure() -> dict:
    times = minute_times(DAYS, BARS_PER_DAY)
    names = [f"M{index:04d}.SZ" for index in range(SYMBOLS)]
    days = times[[0, -1]].astype("datetime64[ns]").astype("datetime64[D]")
    span = (str(days[0]), str(days[1]) + "T23:59:59")
    sweep_overrides = {"shard_symbols": SHARD_SYMBOLS, "max_concurrent_backtest_shards": 1,
                       "backtest_bar_cache_mb": 0, "bar_cache_mb": 64,
                       "worker_task_types": "backtest,backtest_shard"}  # backtest workers: no ML stack
    with platform() as running:
        port, server, stop = running.server(sweep_overrides)
        channel, market, stub = _stubs(port)
        imported = import_universe(channel, names, times)
        imported["store_bytes"] = _tree_bytes(running.root / "market")
        runs = [sweep_with(running, stub, names, workers, sweep_overrides, span) for workers in (1, 2)]
        channel.close()
        running.stop(server, stop)
        reads = [read_path(running, store, [f"D{store[:1].upper()}{index:03d}.SZ" for index in range(READ_SYMBOLS)])
                 for store in ("parquet", "redis")]
    combinations = len(GRID["param_grid"]["fast"]) * len(GRID["param_grid"]["slow"])
    sweeps = ", ".join(f"{run['wall']:.1f}" for run in runs)
    read_walls = ", ".join(f"{read['wall']:.1f}" for read in reads)
    print(f"[scale] phases (s): import {imported['seconds']:.1f}, sweeps {sweeps}, read paths {read_walls}", flush=True)
    return {"imported": imported, "runs": runs, "reads": reads, "bars": SYMBOLS * times.size,
            "cells": combinations * SYMBOLS * times.size, "combinations": combinations}


def render(result: dict) -> list[str]:
    imported, runs, reads = result["imported"], result["runs"], result["reads"]
    dataset_mib = result["bars"] * FIELDS_BYTES / 2**20
    shard_mib = SHARD_SYMBOLS * DAYS * BARS_PER_DAY * FIELDS_BYTES / 2**20
    one, two = runs
    speedup = one["sweep_seconds"] / two["sweep_seconds"]
    worst_peak = max(max(run["peaks_mib"]) for run in runs)
    lines = [
        f"Universe: {SYMBOLS:,} symbols x {DAYS} days x {BARS_PER_DAY} one-minute bars = {result['bars']:,} bars "
        f"(in memory: bars x 5 fields x 8 bytes = {dataset_mib:,.0f} MiB). Sizes: SCALE_SYMBOLS, SCALE_DAYS, "
        f"SCALE_BARS_PER_DAY, SCALE_SHARD_SYMBOLS, SCALE_READ_SYMBOLS, SCALE_READ_DAYS (`bench/scale.py`).",
        "",
        "### Import through ImportBarsStream into the Parquet store",
        "",
        "| bars | seconds | bars/s | store on disk |",
        "|---:|---:|---:|---:|",
        f"| {imported['bars']:,} | {imported['seconds']:.1f} | {imported['rate']:,.0f} | "
        f"{imported['store_bytes'] / 2**20:,.1f} MiB ({imported['store_bytes'] / imported['bars']:.1f} bytes/bar) |",
        "",
        "One client stream, chunks of "
        f"{CHUNK_BARS:,} bars, symbol after symbol: the client encodes the messages with numpy (the same bytes "
        "as `ImportBarsRequest(...).SerializeToString()`, without a Python object per bar), the server parses "
        "and validates every bar and writes one Parquet file per symbol (its per-bar parsing is the limit); "
        "client, server and redis-server share the machine's cores.",
        "",
        f"### SMA sweep, symbol shards of {SHARD_SYMBOLS} over 1 and 2 worker processes",
        "",
        f"sma_crossover fast {GRID['param_grid']['fast']} x slow {GRID['param_grid']['slow']} = "
        f"{result['combinations']} combinations; cells = combinations x symbols x bars = {result['cells']:,}.",
        "",
        "| workers | sweep round s | cells/s | submit → COMPLETED s (sweep + best set's backtest) | "
        "RSS before the run (MiB) | peak RSS (MiB) | peak - before (MiB) | peak / dataset |",
        "|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for run in runs:
        def listed(values):
            return ", ".join(f"{value:,.0f}" for value in values)
        lines.append(f"| {run['workers']} | {run['sweep_seconds']:.2f} | {result['cells'] / run['sweep_seconds']:,.3g} | "
                     f"{run['completed_seconds']:.2f} | {listed(run['before_mib'])} | {listed(run['peaks_mib'])} | "
                     f"{listed(np.subtract(run['peaks_mib'], run['before_mib']))} | "
                     f"{max(run['peaks_mib']) / dataset_mib:.1%} |")
    lines += [
        "",
        f"Speed-up with 2 workers: **{speedup:.2f}x** (goal ≥ {TARGET_SPEEDUP}x: "
        f"{'yes' if speedup >= TARGET_SPEEDUP else 'no'}). Peak RSS per worker: at most {worst_peak:,.0f} MiB = "
        f"{worst_peak / dataset_mib:.1%} of the dataset's in-memory size (goal < {TARGET_RSS_SHARE:.0%}: "
        f"{'yes' if worst_peak < TARGET_RSS_SHARE * dataset_mib else 'no'}), of which "
        f"{max(max(run['before_mib']) for run in runs):,.0f} MiB at most is the worker's RSS before the run "
        f"(code, compiled kernels); one shard's bars are {shard_mib:,.0f} MiB in memory, and a shard's peak "
        "holds them, their aligned panels and the kernel's lines; the worker that runs the parent also holds "
        "the final backtest's trades of every symbol. Each worker is a separate `run_worker_process` process with "
        "NUMBA_NUM_THREADS=1 and MAX_CONCURRENT_BACKTEST_SHARDS=1 (one core each) and "
        "WORKER_TASK_TYPES=backtest,backtest_shard (a dedicated backtest worker, without the ML stack), fresh for each row and "
        "warmed by a small sharded sweep first; its VmHWM was reset after the warm-up"
        f"{'' if all(run['reset'] for run in runs) else ' (reset not permitted here: the peak includes the warm-up)'}. "
        "The sweep round is timed from submission until the parent's progress passes 0.8 (its sweep "
        "share); the job then runs the best set's full backtest as shards too "
        f"({runs[-1]['trades']:,} trades). Bar caches off for this part (BACKTEST_BAR_CACHE_MB=0, BAR_CACHE_MB=64).",
        "",
        f"Paging that result's {runs[-1]['trades']:,} trades over gRPC (GetBacktestResult, 1,000 trades per page, "
        "best of 5; the result's trades are stored in RESULT_CHUNK_ROWS chunks, so a page reads the one or two "
        "it covers): " + ", ".join(f"{name} page {ms:,.1f} ms" for name, ms in runs[-1]["pages_ms"].items()) + ".",
        "",
        f"### Backtest read path: {READ_SYMBOLS} symbols x {READ_DAYS} daily bars, store vs Redis",
        "",
        "| BAR_STORE | cold first read: submit → result (ms) | warm p50 (ms) | warm p90 (ms) |",
        "|---|---:|---:|---:|",
    ]
    for read in reads:
        lines.append(f"| {read['store']} | {read['cold'] * 1e3:.1f} | {read['warm_p50'] * 1e3:.1f} | "
                     f"{read['warm_p90'] * 1e3:.1f} |")
    parquet, redis_read = reads
    lines += [
        "",
        f"One sma_crossover 10/30 backtest end to end over gRPC (SubmitBacktestTask → WatchBacktest → "
        f"GetBacktestResult) on a warm server and worker (kernels compiled on two other symbols first); "
        f"cold = the first backtest that reads these symbols, warm = p50 of the next {READ_RUNS} (each with "
        f"another commission, so the request cache cannot answer; the worker's bar caches can). Parquet warm "
        f"p50 / Redis warm p50 = {parquet['warm_p50'] / redis_read['warm_p50']:.2f} (goal: no slower, ≤ 1); "
        f"the cold Parquet read costs {1e3 * (parquet['cold'] - parquet['warm_p50']):.0f} ms over a warm run.",
    ]
    return lines


def run() -> Section:
    return Section("Scale: minute bars in the Parquet store, sharded sweeps, read path", "\n".join(render(measure())))
