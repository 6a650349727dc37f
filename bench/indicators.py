"""Indicator benchmark: the numba indicator engine against TA-Lib, streaming state, and gRPC.

1. Batch: one 1M-bar OHLCV series, per indicator, ``compute_features`` vs the TA-Lib function
   (best of 3 each; numba compiled beforehand by a warm-up on small data).
2. Panel: 2520 x 1000 (time x symbols) close panel, five indicators together, vs TA-Lib looping
   over the 1000 columns.
3. Streaming: ``StreamState.update`` per tick (1 and 5 features) and ``update_many`` in chunks.
4. gRPC: the real server (``create_server``) in a spawned process against a private
   redis-server (EmbeddedRedis on a free port; never 6379); StreamMarketData with the default
   features, one tick per message and 200 ticks per message.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import platform
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bench import Section, percentile

QUICK = os.environ.get("BENCH_QUICK") == "1"  # smoke run with small counts (numbers meaningless)
N_BARS = 100_000 if QUICK else 1_000_000
PANEL_T, PANEL_N = (252, 100) if QUICK else (2520, 1000)
STREAM_TICKS = 20_000 if QUICK else 100_000
CHUNK = 100
GRPC_SINGLE_N = 1_000 if QUICK else 5_000
GRPC_LOCKSTEP_N = 200 if QUICK else 1_000
GRPC_BATCH, GRPC_BATCH_MSGS = 200, (20 if QUICK else 100)
REPEATS = 3

TARGET_BATCH_RATIO = 1.5
TARGET_PANEL_MS = 50.0
TARGET_TICK_US_PER_IND = 2.0
TARGET_GRPC_SINGLE = 10_000.0
TARGET_GRPC_BATCH = 200_000.0

PANEL_FEATURES = ["sma_20", "ema_12", "rsi", "macd", "bollinger"]
STREAM_DEFAULT5 = ["sma_5", "sma_20", "ema_12", "rsi", "macd"]
START = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


# ------------------------------------------------------------------ data
def _ohlcv(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    spread = np.abs(rng.normal(0, 0.001, n)) * close
    high = close + spread
    low = close - spread
    open_ = np.concatenate([[close[0]], close[:-1]])
    volume = rng.integers(100, 10_000, n).astype(np.float64)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _best(fn, repeats: int = REPEATS) -> float:
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


# ------------------------------------------------------------------ 1. batch
def _talib_cases(b: dict[str, np.ndarray]):
    import talib
    h, l, c, v = b["high"], b["low"], b["close"], b["volume"]
    return [
        ("sma_20", "SMA(20)", lambda: talib.SMA(c, 20)),
        ("ema_12", "EMA(12)", lambda: talib.EMA(c, 12)),
        ("wma_20", "WMA(20)", lambda: talib.WMA(c, 20)),
        ("dema_20", "DEMA(20)", lambda: talib.DEMA(c, 20)),
        ("tema_20", "TEMA(20)", lambda: talib.TEMA(c, 20)),
        ("rsi_14", "RSI(14)", lambda: talib.RSI(c, 14)),
        ("macd", "MACD(12,26,9)", lambda: talib.MACD(c, 12, 26, 9)),
        ("bollinger", "BBANDS(20,2,2)", lambda: talib.BBANDS(c, 20, 2.0, 2.0, 0)),
        ("roc_10", "ROC(10)", lambda: talib.ROC(c, 10)),
        ("mom_10", "MOM(10)", lambda: talib.MOM(c, 10)),
        ("atr_14", "ATR(14)", lambda: talib.ATR(h, l, c, 14)),
        ("natr_14", "NATR(14)", lambda: talib.NATR(h, l, c, 14)),
        ("stoch", "STOCH(14,3,0,3,0)", lambda: talib.STOCH(h, l, c, 14, 3, 0, 3, 0)),
        ("willr_14", "WILLR(14)", lambda: talib.WILLR(h, l, c, 14)),
        ("cci_20", "CCI(20)", lambda: talib.CCI(h, l, c, 20)),
        ("adx_14", "ADX+PLUS_DI+MINUS_DI(14)",
         lambda: (talib.ADX(h, l, c, 14), talib.PLUS_DI(h, l, c, 14), talib.MINUS_DI(h, l, c, 14))),
        ("obv", "OBV", lambda: talib.OBV(c, v)),
        ("mfi_14", "MFI(14)", lambda: talib.MFI(h, l, c, v, 14)),
    ]


def measure_batch() -> dict:
    from utils.engine.indicators.features import compute_features
    bars = _ohlcv(N_BARS)
    cases = _talib_cases(bars)
    small = _ohlcv(500, seed=1)
    began = time.perf_counter()
    compute_features(np, [name for name, _, _ in cases] + ["sma_5"], small)  # compile every step
    compile_s = time.perf_counter() - began
    rows = []
    for name, label, talib_fn in cases:
        talib_fn()
        ours = _best(lambda: compute_features(np, [name], bars))
        theirs = _best(talib_fn)
        rows.append({"name": name, "talib": label, "ours": ours, "theirs": theirs})
        print(f"[bench:indicators] batch {name}: ours {ours * 1e3:.1f} ms, talib {theirs * 1e3:.1f} ms",
              flush=True)
    return {"compile_s": compile_s, "rows": rows}


# ------------------------------------------------------------------ 2. panel
def measure_panel() -> dict:
    import talib
    from utils.engine.indicators.features import compute_features
    rng = np.random.default_rng(11)
    panel = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (PANEL_T, PANEL_N)), axis=0))
    compute_features(np, PANEL_FEATURES, panel[:50, :4])
    ours = _best(lambda: compute_features(np, PANEL_FEATURES, panel))
    per_feature = {name: _best(lambda: compute_features(np, [name], panel)) for name in PANEL_FEATURES}
    columns = np.ascontiguousarray(panel.T)  # one contiguous row per symbol (done outside the timing)

    def talib_loop():
        for col in columns:
            talib.SMA(col, 20)
            talib.EMA(col, 12)
            talib.RSI(col, 14)
            talib.MACD(col, 12, 26, 9)
            talib.BBANDS(col, 20, 2.0, 2.0, 0)
    talib_loop()
    theirs = _best(talib_loop)
    return {"ours": ours, "theirs": theirs, "per_feature": per_feature}


# ------------------------------------------------------------------ 3. streaming
def measure_streaming() -> dict:
    from utils.engine.indicators.streaming import StreamState
    b = _ohlcv(STREAM_TICKS, seed=5)
    close = b["close"].tolist()
    res = {}
    for label, names in (("1 feature (sma_20)", ["sma_20"]), ("5 features", STREAM_DEFAULT5)):
        warm = StreamState.create(names)
        for price in close[:2000]:
            warm.update(close=price)
        best = math.inf
        for _ in range(REPEATS):
            state = StreamState.create(names)
            update = state.update
            began = time.perf_counter()
            for price in close:
                update(close=price)
            best = min(best, time.perf_counter() - began)
        per_tick = best / len(close) * 1e6
        closes = b["close"]
        warm.update_many(close=closes[:CHUNK])
        best_many = math.inf
        for _ in range(REPEATS):
            state = StreamState.create(names)
            began = time.perf_counter()
            for at in range(0, len(closes), CHUNK):
                state.update_many(close=closes[at:at + CHUNK])
            best_many = min(best_many, time.perf_counter() - began)
        res[label] = {"n_ind": len(names), "per_tick_us": per_tick,
                      "many_per_tick_us": best_many / len(closes) * 1e6}
    # where update's time goes (5 features), for the report
    import cProfile
    import pstats
    import io
    state = StreamState.create(STREAM_DEFAULT5)
    prof = cProfile.Profile()
    prof.enable()
    for price in close[:20_000]:
        state.update(close=price)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(6)
    res["profile"] = out.getvalue()
    return res


# ------------------------------------------------------------------ 4. gRPC
def _server_main(redis_port: int, data_dir: str, ready, stop) -> None:
    import logging
    logging.disable(logging.WARNING)
    from config.settings import load_settings
    from services.server import create_server
    settings = load_settings(redis_host="127.0.0.1", redis_port=redis_port, redis_embedded="never",
                             grpc_host="127.0.0.1", grpc_port=0, prometheus_port=0,
                             data_dir=Path(data_dir), worker_processes=1, compute_device="cpu",
                             warm_up_indicators="none")  # the bench warms up with its own streams
    running = create_server(settings)
    ready.put(running.port)
    stop.wait()
    running.stop(grace=0)


def _echo_main(ready, stop) -> None:
    """The transport's ceiling: a bare grpcio server whose StreamMarketData echoes each message
    (no validation, no indicators, no Redis), same thread pool as ours."""
    from concurrent.futures import ThreadPoolExecutor
    import grpc
    from api_proto import realtime_pb2, realtime_pb2_grpc

    class Echo(realtime_pb2_grpc.RealTimeServiceServicer):
        def StreamMarketData(self, request_iterator, context):
            for sequence, message in enumerate(request_iterator, start=1):
                yield realtime_pb2.StreamDataResponse(stock_code=message.stock_code, sequence=sequence,
                                                      processed_data={"price": message.price})

    server = grpc.server(ThreadPoolExecutor(max_workers=10))
    realtime_pb2_grpc.add_RealTimeServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ready.put(port)
    stop.wait()
    server.stop(0)


def _echo_ceiling(ctx, prices: list[float]) -> dict:
    import grpc
    from api_proto import realtime_pb2_grpc
    ready, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=_echo_main, args=(ready, stop))
    process.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{ready.get(timeout=60)}") as channel:
            stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
            _stream_single(stub, "WARM", prices[:500], lockstep=False)
            return _stream_single(stub, "ECHO", prices[:GRPC_SINGLE_N], lockstep=False)
    finally:
        stop.set()
        process.join(timeout=10)


def _timestamps(n: int, offset_s: int = 0) -> list[str]:
    return [(START + timedelta(seconds=offset_s, microseconds=i * 1000)).isoformat() for i in range(n)]


def _stream_single(stub, symbol: str, prices: list[float], lockstep: bool) -> dict:
    from api_proto import realtime_pb2
    stamps = _timestamps(len(prices))
    sent = [0.0] * len(prices)
    got = threading.Semaphore(0)

    def requests():
        for i, (price, stamp) in enumerate(zip(prices, stamps)):
            if lockstep and i:
                got.acquire()
            sent[i] = time.perf_counter()
            yield realtime_pb2.StreamDataRequest(stock_code=symbol, price=price, volume=100.0, timestamp=stamp)

    latency, errors = [], 0
    began = time.perf_counter()
    for response in stub.StreamMarketData(requests(), timeout=300):
        now = time.perf_counter()
        latency.append(now - sent[response.sequence - 1])
        errors += bool(response.error)
        if lockstep:
            got.release()
    total = time.perf_counter() - began
    return {"n": len(prices), "seconds": total, "latency": latency, "errors": errors}


def _stream_batched(stub, symbol: str, prices: list[float], per_msg: int, columnar: bool = False) -> dict:
    from api_proto import realtime_pb2
    stamps = _timestamps(len(prices))
    messages = []
    for at in range(0, len(prices), per_msg):
        messages.append(realtime_pb2.StreamDataRequest(columnar_response=columnar, ticks=[
            realtime_pb2.Tick(stock_code=symbol, price=p, volume=100.0, timestamp=s)
            for p, s in zip(prices[at:at + per_msg], stamps[at:at + per_msg])]))
    sent = [0.0] * len(messages)

    def requests():
        for i, message in enumerate(messages):
            sent[i] = time.perf_counter()
            yield message

    latency, errors = [], 0
    began = time.perf_counter()
    for response in stub.StreamMarketData(requests(), timeout=300):
        if columnar:  # one response per message
            errors += sum(bool(e) for e in response.batch.errors)
            latency.append(time.perf_counter() - sent[response.batch.sequences[-1] // per_msg - 1])
            continue
        errors += bool(response.error)
        if response.sequence % per_msg == 0:  # last tick of a message
            latency.append(time.perf_counter() - sent[response.sequence // per_msg - 1])
    total = time.perf_counter() - began
    return {"n": len(prices), "seconds": total, "latency": latency, "errors": errors,
            "messages": len(messages)}


def measure_grpc() -> dict:
    import grpc
    from api_proto import realtime_pb2_grpc
    from utils.redis_client import EmbeddedRedis
    rng = np.random.default_rng(3)
    prices = np.round(50 * np.exp(np.cumsum(rng.normal(0, 0.002, 30_000))), 4).tolist()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-ind-") as tmp:
        redis_server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False).start()
        ready, stop = ctx.Queue(), ctx.Event()
        server = ctx.Process(target=_server_main, args=(redis_server.port, str(Path(tmp) / "data"), ready, stop))
        server.start()
        try:
            port = ready.get(timeout=120)
            print(f"[bench:indicators] gRPC server on port {port}, redis on {redis_server.port}", flush=True)
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
            _stream_single(stub, "WARM1", prices[:500], lockstep=False)  # compile + connection warm-up
            _stream_batched(stub, "WARM2", prices[:2000], GRPC_BATCH)
            res = {
                "single": _stream_single(stub, "SINGLE", prices[:GRPC_SINGLE_N], lockstep=False),
                "lockstep": _stream_single(stub, "LOCK", prices[:GRPC_LOCKSTEP_N], lockstep=True),
                "echo": _echo_ceiling(ctx, prices),
                "batched": _stream_batched(stub, "BATCH", prices[:GRPC_BATCH * GRPC_BATCH_MSGS], GRPC_BATCH),
                "columnar": _stream_batched(stub, "COLUMNAR", prices[:GRPC_BATCH * GRPC_BATCH_MSGS], GRPC_BATCH,
                                            columnar=True),
            }
            channel.close()
        finally:
            stop.set()
            server.join(timeout=30)
            if server.is_alive():
                server.terminate()
            redis_server.stop()
    return res


# ------------------------------------------------------------------ report
def _ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _lat(samples: list[float]) -> tuple[str, str]:
    return _ms(percentile(samples, 50)), _ms(percentile(samples, 99))


def render(batch: dict, panel: dict, streaming: dict, grpc_res: dict) -> str:
    import numba
    import talib
    lines = [
        "Command: `make bench` (this section alone: `.venv/bin/python -m bench indicators`). "
        f"Anchor: TA-Lib {talib.__version__} (C library via the `talib` wrapper), run in the same "
        f"process right after ours. Ours: numba {numba.__version__} steps on the CPU, numpy "
        f"{np.__version__}. Machine: the one in the header ({os.cpu_count()} CPUs, "
        f"{platform.machine()}). A series runs on one thread; a panel's columns are split across the "
        "cores (numba `prange`), while TA-Lib is single-threaded.",
        "",
        f"### Batch: one {N_BARS:,}-bar series, per indicator (ms, lower is better)",
        "",
        "| Indicator | TA-Lib function | ours ms | TA-Lib ms | ours/TA-Lib | ≤ 1.5×? |",
        "|---|---|---:|---:|---:|---|",
    ]
    misses = []
    for row in batch["rows"]:
        ratio = row["ours"] / row["theirs"]
        ok = ratio <= TARGET_BATCH_RATIO
        if not ok:
            misses.append(f"{row['name']} {ratio:.2f}×")
        lines.append(f"| `{row['name']}` | `{row['talib']}` | {_ms(row['ours'])} | {_ms(row['theirs'])} | "
                     f"{ratio:.2f}× | {'yes' if ok else 'no'} |")
    lines += [
        "",
        f"Ours: `compute_features(np, [name], bars)` with `bars` a mapping of open/high/low/close/volume "
        "float64 arrays (random walk), so it includes the plan parsing and the first-valid-row scan "
        "(outputs are written in place, no copies). Best of 3 for both. Numba compilation is excluded: "
        f"a warm-up call over all 18 indicators on 500 bars took {batch['compile_s']:.1f} s first "
        "(the drivers are compiled per indicator in each process and are not cached on disk). `adx_14` is compared with TA-Lib ADX + "
        "PLUS_DI + MINUS_DI (three calls) since ours produces the three together; `stoch` with "
        "STOCH(14, 3, SMA, 3, SMA). "
        + (f"Misses (> {TARGET_BATCH_RATIO}×): {', '.join(misses)}." if misses else
           f"All within {TARGET_BATCH_RATIO}× of TA-Lib."),
        "",
        f"### Panel: {PANEL_T:,} × {PANEL_N:,} (time × symbols), {', '.join(PANEL_FEATURES)} together",
        "",
        "| Engine | ms (best of 3) | ours/TA-Lib | ≤ 50 ms? |",
        "|---|---:|---:|---|",
        f"| ours: one `compute_features(np, names, panel)` call (CPU) | {_ms(panel['ours'])} | "
        f"{panel['ours'] / panel['theirs']:.2f}× | {'yes' if panel['ours'] * 1e3 <= TARGET_PANEL_MS else 'no'} |",
        f"| TA-Lib: SMA, EMA, RSI, MACD, BBANDS per column, looping over {PANEL_N:,} columns | "
        f"{_ms(panel['theirs'])} | — | — |",
        "",
        "Ours per feature alone on the same panel: "
        + ", ".join(f"`{k}` {_ms(v)} ms" for k, v in panel["per_feature"].items())
        + ". TA-Lib gets each symbol as a contiguous row (the panel is transposed once, outside the "
        "timing), its best case, on one thread; ours uses both cores; "
        f"{PANEL_T * PANEL_N / 1e6:.2f}M bars × 5 indicators (9 outputs).",
        "",
        "### Streaming: `StreamState` per tick (µs, lower is better)",
        "",
        "| Features | `update` µs/tick | µs/tick/indicator | ≤ 2 µs/indicator? | `update_many` (chunks of 100) µs/tick |",
        "|---|---:|---:|---|---:|",
    ]
    for label, r in streaming.items():
        if label == "profile":
            continue
        per_ind = r["per_tick_us"] / r["n_ind"]
        names = "sma_20" if r["n_ind"] == 1 else ", ".join(STREAM_DEFAULT5)
        lines.append(f"| {r['n_ind']}: {names} | {r['per_tick_us']:.2f} | {per_ind:.2f} | "
                     f"{'yes' if per_ind <= TARGET_TICK_US_PER_IND else 'no'} | {r['many_per_tick_us']:.2f} |")
    lines += [
        "",
        f"{STREAM_TICKS:,} close-only ticks (`update(close=price)`, returning the dict of values), "
        "best of 3, after a warm-up. No anchor: TA-Lib has no streaming API (its abstract/stream "
        "functions recompute over the lookback window).",
        "",
        "### gRPC: `StreamMarketData` with the default features (sma_5, sma_20, ema_12, rsi)",
        "",
        "| Mode | ticks | ticks/s | target | met? | latency p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for key, label, target in (
            ("single", "1 tick/message, client sends without waiting", TARGET_GRPC_SINGLE),
            ("lockstep", "1 tick/message, one in flight (next sent after the response)", None),
            ("echo", "anchor: bare grpcio echo server, 1 tick/message, no work (transport ceiling)", None),
            ("batched", f"{GRPC_BATCH} ticks/message, {GRPC_BATCH_MSGS} messages, a response per tick",
             TARGET_GRPC_BATCH),
            ("columnar", f"{GRPC_BATCH} ticks/message, {GRPC_BATCH_MSGS} messages, `columnar_response` "
             "(one response per message)", TARGET_GRPC_BATCH)):
        r = grpc_res[key]
        rate = r["n"] / r["seconds"]
        p50, p99 = _lat(r["latency"])
        lines.append(f"| {label} | {r['n']:,} | {rate:,.0f} | "
                     f"{f'≥ {target:,.0f}' if target else '—'} | "
                     f"{('yes' if rate >= target else 'no') if target else '—'} | {p50} | {p99} | {r['errors']} |")
    lines += [
        "",
        "The real server (`create_server`, its default thread pool) runs in a spawned process "
        "against a private redis-server (no AOF) on localhost; one client (grpcio, one channel) in "
        "the bench process, so client, server and redis-server share the machine's cores. Each tick "
        "updates the symbol's streaming state (one `update_many` per feature per message and symbol), "
        "and each message's accepted ticks are stored as one packed XADD and one PUBLISH per symbol. Latency is per message: from when the request generator "
        "yields it to when its response arrives (batched: the response of its last tick), matched "
        "by `sequence`. In the send-without-waiting run the latency includes queueing behind the "
        "messages already in flight; the one-in-flight run shows the unloaded round trip. "
        "Warm-up streams (500 single ticks, 2,000 batched) run first on other symbols.",
    ]
    return "\n".join(lines)


def run() -> Section:
    print("[bench:indicators] batch ...", flush=True)
    batch = measure_batch()
    print("[bench:indicators] panel ...", flush=True)
    panel = measure_panel()
    print("[bench:indicators] streaming ...", flush=True)
    streaming = measure_streaming()
    print(streaming["profile"], flush=True)
    print("[bench:indicators] gRPC ...", flush=True)
    grpc_res = measure_grpc()
    return Section("Indicators", render(batch, panel, streaming, grpc_res))
