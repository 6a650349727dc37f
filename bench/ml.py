"""Predict benchmark: in-process forest inference (scikit-learn vs ONNX Runtime) and gRPC serving.

1. In-process: a 100-tree random forest (default parameters: fully grown trees, n_jobs=-1)
   trained on 20,000 rows x 8 features; batches of 1, 64, 1,024 and 10,000 rows through
   scikit-learn as served without the kernel, ONNX Runtime alone, the compiled kernel alone and
   the served path (``FastForest`` with the kernel). Best of N; agreement with scikit-learn.
2. gRPC: the real server (``create_server``) in a spawned process with a private redis-server;
   64 concurrent clients (grpc.aio, one channel) each sending one-row Predict requests back to
   back for ~10 s, JSON ``input_data`` and typed ``rows``, micro-batching on and off, against a
   bare grpcio echo server with the same messages (run before and after; the better is the anchor).
"""
from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import Section, percentile
from bench.predict_load import concurrent_predicts, echo_server_main

QUICK = os.environ.get("BENCH_QUICK") == "1"  # smoke run with small counts (numbers meaningless)
N_TREES = 100
N_FEATURES = 8
TRAIN_ROWS = 2_000 if QUICK else 20_000
BATCH_SIZES = (1, 64, 1024, 10_000)
CLIENTS = 64
GRPC_SECONDS = 2.0 if QUICK else 10.0
WARM_SECONDS = 1.0 if QUICK else 2.0
TARGET_10K_MS = 10.0
MODEL_ID = "bench-forest"
FEATURES = [f"f{i}" for i in range(N_FEATURES)]


def _best(fn, budget_s: float = 1.0, max_repeats: int = 200) -> float:
    fn()
    best, spent, repeats = math.inf, 0.0, 0
    while repeats < 3 or (spent < budget_s and repeats < max_repeats):
        began = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - began
        best, spent, repeats = min(best, elapsed), spent + elapsed, repeats + 1
    return best


def _forest(task: str):
    from sklearn.datasets import make_classification, make_regression
    from utils.engine.models import ModelConfig, RandomForestPredictor
    if task == "classification":
        x, y = make_classification(n_samples=TRAIN_ROWS, n_features=N_FEATURES, n_informative=5,
                                   random_state=0)
    else:
        x, y = make_regression(n_samples=TRAIN_ROWS, n_features=N_FEATURES, noise=5.0, random_state=0)
    config = ModelConfig("random_forest", tuple(FEATURES), "target", task=task,
                         params={"n_estimators": N_TREES})
    predictor = RandomForestPredictor(config)
    predictor.fit(x, y)
    return predictor


# ------------------------------------------------------------------ 1. in-process
def measure_inprocess(kernel_dir: Path) -> dict:
    from utils.engine.models.compiled_forest import CompiledForest, load_kernel
    from utils.engine.models.onnx_export import PROBABILITIES
    from utils.serving.onnx_forest import FastForest
    kernel = load_kernel(kernel_dir)
    results = {}
    rng = np.random.default_rng(1)
    for task in ("classification", "regression"):
        predictor = _forest(task)
        native = FastForest(predictor, use_onnx=False)  # scikit-learn as served without the kernel
        session = FastForest(predictor).session if task == "classification" else _regression_session(predictor)
        compiled = CompiledForest(predictor.estimator, kernel)
        served = FastForest(predictor, kernel=kernel)  # what Predict runs on the CPU
        output = [PROBABILITIES] if task == "classification" else None
        feed = session.get_inputs()[0].name
        rows = []
        for n in BATCH_SIZES:
            queries = rng.normal(size=(n, N_FEATURES))
            as32 = queries.astype(np.float32)
            timings = {"sklearn": _best(lambda: native.native(queries)),
                       "ort": _best(lambda: session.run(output, {feed: as32})),
                       "compiled": _best(lambda: compiled.mean(queries)),
                       "served": _best(lambda: served.predict(queries))}
            labels, values = served.predict(queries)
            raw = session.run(output, {feed: as32})[0]
            if task == "classification":
                reference = predictor.predict_proba(queries)
                agree = float(np.mean(labels == predictor.predict(queries)))
                error = float(np.max(np.abs(values - reference)))
                ort_error = float(np.max(np.abs(raw - reference)))
            else:
                reference = predictor.predict(queries)
                agree = math.nan
                error = float(np.max(np.abs(labels - reference) / np.maximum(np.abs(reference), 1e-12)))
                ort_error = float(np.max(np.abs(raw.ravel() - reference) / np.maximum(np.abs(reference), 1e-12)))
            rows.append({"n": n, **timings, "agree": agree, "error": error, "ort_error": ort_error})
            print(f"[bench:ml] {task} n={n}: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in timings.items())
                  + f", labels equal {agree:.0%}, err {error:.1e} (ORT {ort_error:.1e})", flush=True)
        results[task] = rows
    return results


def _regression_session(predictor):
    import onnxruntime as ort
    from skl2onnx import to_onnx
    model = to_onnx(predictor.estimator, np.zeros((1, N_FEATURES), dtype=np.float32))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------ 2. gRPC
def _server_main(redis_port: int, data_dir: str, overrides: dict, ready, stop) -> None:
    import logging
    logging.disable(logging.WARNING)
    from config.settings import load_settings
    from services.server import create_server
    settings = load_settings(redis_host="127.0.0.1", redis_port=redis_port, redis_embedded="never",
                             grpc_host="127.0.0.1", grpc_port=0, prometheus_port=0,
                             data_dir=Path(data_dir), worker_processes=1, compute_device="cpu",
                             warm_up_indicators="none", **overrides)
    running = create_server(settings)
    ready.put(running.port)
    stop.wait()
    calls = running.registry.get_sample_value("ml_predict_batch_rows_count",
                                              {"model_type": "random_forest", "device": "cpu"}) or 0.0
    rows = running.registry.get_sample_value("ml_predict_batch_rows_sum",
                                             {"model_type": "random_forest", "device": "cpu"}) or 0.0
    ready.put((calls, rows))
    running.stop(grace=0)


def json_requests(queries: np.ndarray) -> list:
    from api_proto import ml_pb2
    return [ml_pb2.PredictRequest(model_id=MODEL_ID, input_data=json.dumps(
        {name: [float(v)] for name, v in zip(FEATURES, row)})) for row in queries]


def typed_requests(queries: np.ndarray) -> list:
    from api_proto import ml_pb2
    return [ml_pb2.PredictRequest(model_id=MODEL_ID, feature_names=FEATURES,
                                  rows=[ml_pb2.FeatureRow(values=row.tolist())]) for row in queries]


async def _load(port: int, requests: list, seconds: float) -> dict:
    return await concurrent_predicts(f"127.0.0.1:{port}", requests, CLIENTS, seconds)


def _grpc_run(ctx, redis_port: int, data_dir: Path, overrides: dict, requests: list) -> dict:
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_server_main, args=(redis_port, str(data_dir), overrides, ready, stop))
    server.start()
    try:
        port = ready.get(timeout=120)
        asyncio.run(_load(port, requests, WARM_SECONDS))  # model load + kernel + connections
        result = asyncio.run(_load(port, requests, GRPC_SECONDS))
        stop.set()
        result["calls"], result["rows"] = ready.get(timeout=60)
    finally:
        stop.set()
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
    return result


GRPC_RUNS = (  # (label, input, settings)
    ("JSON input_data, batching on (defaults), 256 RPC threads (default GRPC_MAX_WORKERS)", "json", {}),
    ("typed rows, batching on (defaults), 256 RPC threads", "typed", {}),
    ("JSON input_data, batching off (PREDICT_MAX_BATCH_ROWS=0), 256 RPC threads", "json",
     {"predict_max_batch_rows": 0}),
    ("typed rows, batching off, 256 RPC threads", "typed", {"predict_max_batch_rows": 0}),
    ("JSON input_data, batching on, 10 RPC threads (the guide's GRPC_MAX_WORKERS)", "json", {"grpc_max_workers": 10}),
)


def measure_echo(requests: list, threads: int = 10) -> dict:
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=echo_server_main, args=(threads, ready, stop))
    server.start()
    try:
        port = ready.get(timeout=60)
        asyncio.run(_load(port, requests, WARM_SECONDS))
        result = asyncio.run(_load(port, requests, GRPC_SECONDS))
        result["calls"] = result["rows"] = 0.0
        result["label"] = "anchor: bare grpcio echo server (same messages, constant answer, no work), 10 threads"
    finally:
        stop.set()
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
    return result


def measure_grpc() -> list[dict]:
    from utils.engine.models import ModelStore
    from utils.redis_client import EmbeddedRedis
    predictor = _forest("classification")
    queries = np.random.default_rng(5).normal(size=(2048, N_FEATURES))
    inputs = {"json": json_requests(queries), "typed": typed_requests(queries)}
    ctx = mp.get_context("spawn")
    results = []
    echo = measure_echo(inputs["json"])  # the anchor first and last: the ceiling, measured twice
    print(f"[bench:ml] gRPC echo anchor: {echo['n'] / echo['seconds']:,.0f} calls/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ml-") as tmp:
        data_dir = Path(tmp) / "data"
        ModelStore(data_dir / "models").save(MODEL_ID, predictor)
        redis_server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False).start()
        try:
            for label, kind, overrides in GRPC_RUNS:
                result = _grpc_run(ctx, redis_server.port, data_dir, overrides, inputs[kind])
                result["label"] = label
                print(f"[bench:ml] gRPC {label}: {result['n'] / result['seconds']:,.0f} predictions/s, "
                      f"p50 {percentile(result['latency'], 50) * 1e3:.2f} ms, "
                      f"p99 {percentile(result['latency'], 99) * 1e3:.2f} ms, "
                      f"{result['rows'] / max(result['calls'], 1):.1f} rows/call", flush=True)
                results.append(result)
        finally:
            redis_server.stop()
    again = measure_echo(inputs["json"])
    print(f"[bench:ml] gRPC echo anchor (again): {again['n'] / again['seconds']:,.0f} calls/s", flush=True)
    # The anchor is the better of its two runs (before and after the real servers), so the
    # ratio is not flattered by a slow anchor run.
    best = max((echo, again), key=lambda run: run["n"] / run["seconds"])
    results.append(best)
    return results


# ------------------------------------------------------------------ report
def _ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _rate(run: dict) -> float:
    return run["n"] / run["seconds"]


PROFILE_SUMMARY = (
    "Profile (py-spy `record --gil` on the server process for 8 s of the 64-client run, 2 CPUs shared "
    "with other work at load ~5-7; shares of the samples in which a server thread held the GIL). "
    "Before this change (JSON input; batching thread, device-pool thread, interceptors rebuilding their "
    "handlers per call): Predict's own code 27 %, thread hand-offs around it ~35 % (Condition wait/notify "
    "self time 22 %, Future.result 9 %, pool submit 4 %), the interceptors' per-call handler building ~6 %, "
    "the rest grpcio's sync server. After (typed rows; the request that finds the model idle calls it in "
    "its own thread, followers woken by a bare lock, forest fast path inline, interceptor handlers and "
    "metric children built once): MLServicer.Predict 33 % inclusive, of which the batcher 13 % (waking "
    "followers, the leader's linger), row conversion 5 %, the compiled kernel call 3 %, validation, model "
    "look-up and response the rest; interceptors ~1 %; grpcio's own server machinery ~60 % (its polling "
    "thread, handing each call to its thread pool, per-call condition variables), which the echo anchor "
    "pays too. What separates Predict from the echo is that third: the next step would be the grpc.aio "
    "server for the serving RPCs (no pool hand-off per call), which services/server.py owns."
)


def render(inprocess: dict, grpc_runs: list[dict], load: tuple[float, float]) -> str:
    import onnxruntime
    import sklearn
    from utils.engine.models.compiled_forest import CFLAGS
    echo = _rate(grpc_runs[-1])
    lines = [
        "Command: `make bench` (this section alone: `.venv/bin/python -m bench ml`). "
        f"Model: a {N_TREES}-tree `random_forest` (default parameters: fully grown trees, n_jobs=-1) "
        f"trained on {TRAIN_ROWS:,} rows × {N_FEATURES} features (`make_classification` / "
        f"`make_regression`). scikit-learn {sklearn.__version__}, onnxruntime {onnxruntime.__version__} "
        f"(CPU provider, 1 thread), compiled kernel `utils/engine/models/forest_kernel.c` (cc {' '.join(CFLAGS)}). "
        f"1-minute load average at the start / end of this section: {load[0]:.1f} / {load[1]:.1f} on "
        f"{os.cpu_count()} CPUs (above ~2, other processes were competing for the cores and every number "
        "here is inflated).",
        "",
        f"### gRPC Predict: {CLIENTS} concurrent clients, one row per request (~{GRPC_SECONDS:.0f} s each)",
        "",
        "| Server | predictions/s | of the echo ceiling | ≥ 70 %? | p50 ms | p99 ms | rows per model call | errors |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for run in grpc_runs:
        anchor = run["label"].startswith("anchor")
        share = _rate(run) / echo
        verdict = "—" if anchor else ("yes" if share >= 0.70 else "no")
        lines.append(f"| {run['label']} | {_rate(run):,.0f} | {share:.0%} | {verdict} | "
                     f"{_ms(percentile(run['latency'], 50))} | {_ms(percentile(run['latency'], 99))} | "
                     f"{run['rows'] / max(run['calls'], 1):.1f} | {run['errors']} |")
    lines += [
        "",
        "The real server (`create_server`) runs in a spawned process against a private redis-server; "
        f"the clients are {CLIENTS} asyncio tasks on one grpc.aio channel in the bench process, each "
        "sending its next request when the previous answer arrives, so clients, server and Redis share "
        "the machine's cores. *JSON input_data* sends `{\"f0\": [x], ...}`; *typed rows* sends "
        "`rows=[FeatureRow(values=[...])]` with `feature_names`. The echo anchor (a bare grpcio server "
        "with the same messages and thread pool, answering a constant) is run before and after the real "
        "servers and the better run is the ceiling. Latency is client-side per request. Rows per model "
        "call = rows predicted / model calls (`ml_predict_batch_rows` histogram). A warm-up run (model "
        "load, kernel, connections) precedes each measured run. The 10-thread run shows the guide's "
        "GRPC_MAX_WORKERS=10: more clients than 4 × threads are refused (RESOURCE_EXHAUSTED).",
        "",
        PROFILE_SUMMARY,
        "",
        "### In-process: one call on a batch (ms, best of N, lower is better)",
        "",
        "| Task | rows | scikit-learn as served | ONNX Runtime | compiled kernel | served path | "
        "scikit-learn ÷ compiled | ≤ 10 ms at 10k? | labels equal | max error served vs scikit-learn | "
        "max error ORT |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for task, rows in inprocess.items():
        for row in rows:
            ten_k = ("yes" if row["served"] * 1e3 <= TARGET_10K_MS else "no") if row["n"] == 10_000 else "—"
            kind = "prob., abs." if task == "classification" else "relative"
            agree = f"{row['agree']:.0%}" if task == "classification" else "—"
            lines.append(f"| {task} | {row['n']:,} | {_ms(row['sklearn'])} | {_ms(row['ort'])} | "
                         f"{_ms(row['compiled'])} | {_ms(row['served'])} | {row['sklearn'] / row['compiled']:.1f}× | "
                         f"{ten_k} | {agree} | {row['error']:.1e} ({kind}) | {row['ort_error']:.1e} |")
    lines += [
        "",
        "Columns: *scikit-learn as served* is `FastForest.native` (one `predict_proba` pass, labels = its "
        "argmax, one thread below 4,096 rows, n_jobs=-1 above); *ONNX Runtime* is the bare session "
        "(float32 input, 1 thread); *compiled kernel* is `CompiledForest.mean` (the forest's trees "
        "flattened into arrays, one C kernel compiled once per machine, 12 rows walked together, rows "
        "split over the cores from 2,048 rows); *served path* is what Predict runs on the CPU "
        "(`FastForest` with the kernel: labels and probabilities from the kernel; without a C compiler it "
        "falls back to ONNX Runtime for classifier batches ≤ 2,048 rows and scikit-learn otherwise).",
        "",
        "Agreement: the kernel compares the same float32 inputs as scikit-learn against thresholds rounded "
        "down to float32 (the same answer for every float32), so every row reaches the same leaves; "
        "leaf values are summed in float64 in tree order. Classifier labels are identical to "
        "scikit-learn's; with fully grown trees (pure leaves) the probabilities are identical too (vote "
        "counts / trees), otherwise within 1e-12 (summation order) and rows within 1e-9 of a tie are "
        "re-predicted by scikit-learn. Regression values are within 1e-12 relative "
        "(tests/unit/test_compiled_forest.py). ORT computes in float32 (its error column).",
        "",
        "Not used: treelite 4.8.1 + tl2cgen 1.0.0 (PyPI) compile each tree into C if/else code; for this "
        "forest (156k nodes) gcc took ~6 minutes per model on this machine (loaded) and the compiled "
        "predictor was no faster than scikit-learn at 10,000 rows (deep trees mispredict a branch per "
        "level), so one generic kernel over tree *data* replaced it: no per-model compile, nothing "
        "generated from a model or a request.",
    ]
    return "\n".join(lines)


def run() -> Section:
    load_before = os.getloadavg()[0]
    print("[bench:ml] in-process ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ml-kernel-") as kernel_dir:
        inprocess = measure_inprocess(Path(kernel_dir))
    print("[bench:ml] gRPC ...", flush=True)
    grpc_runs = measure_grpc()
    return Section("ML Predict serving", render(inprocess, grpc_runs, (load_before, os.getloadavg()[0])))
