"""Remote inference chain (seeds 000/001): Predict answered locally, by a remote inference role,
and by the CPU fallback when the remote is dead, slow or failing; the breaker; vs the echo ceiling.

Real processes, as in production: a private redis-server (EmbeddedRedis, no persistence) holds
the model (MODEL_STORE_URI=redis://); the inference role (``create_inference_server``, the
``main_server.py inference`` role) and main servers (``create_server``) run in spawned processes;
one sequential client (grpc, one channel) sends one-row Predict requests to a main server and
times each call client-side. Scenarios, each on its own main server so the breaker starts closed:

1. local: a main server without ML_GPU_INFERENCE_URL (the in-process path);
2. remote up: ML_GPU_INFERENCE_URL pointing at the inference role (served_by ``remote:…``);
3. the inference role called directly (what the remote hop costs);
4. remote killed: the role's process is killed (SIGKILL), then calls continue: the first ones pay
   the connection failure (refused, one retry) until the breaker opens, then local at once;
5. remote slow: a role with the test hook delaying every Predict past ML_REMOTE_TIMEOUT_SECONDS:
   one timeout + retry per call until the breaker opens;
6. remote failing: a role answering INTERNAL (test hook): immediate fallback;
7. breaker closing: after the cool-down, a restarted role answers again.

Then the throughput ceiling: 64 concurrent clients, one row each, against the main server (local
path), against the chain (main server → remote role) and against a bare grpcio echo server (same
messages, constant answer, no work) in the same run.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import Section, latency_summary, percentile
from bench.predict_load import concurrent_predicts, echo_server_main

QUICK = os.environ.get("BENCH_QUICK") == "1"
N_FEATURES = 8
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
MODEL_ID = "bench-chain-forest"
CALLS = 40 if QUICK else 300
TIMEOUT_S = 1.0  # ML_REMOTE_TIMEOUT_SECONDS for this bench (default 5 s: the same shape, 5x longer)
BREAKER_FAILURES = 3  # ML_REMOTE_BREAKER_FAILURES (the default)
COOLDOWN_S = 3.0  # ML_REMOTE_BREAKER_COOLDOWN_SECONDS (default 30 s)
FAILING_CALLS = 8  # calls timed one by one after the remote dies / slows / fails
CLIENTS = 64
LOAD_SECONDS = 2.0 if QUICK else 8.0


def _settings(redis_port: int, data_dir: str, **overrides):
    from config.settings import load_settings
    values = dict(redis_host="127.0.0.1", redis_port=redis_port, redis_embedded="never",
                  grpc_host="127.0.0.1", grpc_port=0, inference_port=0, prometheus_port=0,
                  data_dir=Path(data_dir), worker_processes=1, compute_device="cpu",
                  ml_inference_device="cpu", model_store_uri="redis://", warm_up_indicators="none")
    return load_settings(**{**values, **overrides})


def _role_main(kind: str, redis_port: int, data_dir: str, overrides: dict, ready, stop) -> None:
    """A spawned process running either the inference role or a main server until ``stop``."""
    import logging
    logging.disable(logging.WARNING)
    settings = _settings(redis_port, data_dir, **overrides)
    if kind == "inference":
        from services.inference_server import create_inference_server
        running = create_inference_server(settings)
    else:
        from services.server import create_server
        running = create_server(settings)
    ready.put(running.port)
    stop.wait()
    running.stop(grace=0)


class Role:
    """One spawned server process; ``kill`` is a SIGKILL (a dead GPU box), ``close`` a clean stop."""

    def __init__(self, ctx, kind: str, redis_port: int, data_dir: Path, **overrides) -> None:
        self.ready, self.stop = ctx.Queue(), ctx.Event()
        self.process = ctx.Process(target=_role_main, args=(kind, redis_port, str(data_dir), overrides,
                                                            self.ready, self.stop), daemon=True)
        self.process.start()
        self.port = self.ready.get(timeout=120)
        self.target = f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=30)

    def close(self) -> None:
        if not self.process.is_alive():  # killed: its Event may be left locked, never touch it
            return
        self.stop.set()
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.kill()


def _train_into_store(redis_port: int, data_dir: Path) -> None:
    from sklearn.datasets import make_classification
    from utils.engine.models import ModelConfig, RandomForestPredictor
    from utils.serving.model_store import open_model_store
    x, y = make_classification(n_samples=5_000, n_features=N_FEATURES, n_informative=5, random_state=0)
    predictor = RandomForestPredictor(ModelConfig("random_forest", tuple(FEATURES), "target",
                                                  task="classification", params={"n_estimators": 100}))
    predictor.fit(x, y)
    open_model_store(_settings(redis_port, str(data_dir))).save(MODEL_ID, predictor)


def _requests(n: int) -> list:
    from api_proto import ml_pb2
    rows = np.random.default_rng(5).normal(size=(n, N_FEATURES))
    return [ml_pb2.PredictRequest(model_id=MODEL_ID, input_data=json.dumps(
        {name: [float(v)] for name, v in zip(FEATURES, row)})) for row in rows]


def _sequential(target: str, requests: list) -> dict:
    """One client, calls back to back: per-call latency and the served_by answers."""
    import grpc
    from api_proto import ml_pb2_grpc
    latencies, served_by = [], []
    with grpc.insecure_channel(target) as channel:
        stub = ml_pb2_grpc.MLServiceStub(channel)
        for request in requests:
            began = time.perf_counter()
            answer = stub.Predict(request, timeout=60)
            latencies.append(time.perf_counter() - began)
            served_by.append(answer.served_by)
    return {"latency": latencies, "served_by": served_by}


def _warm(target: str, requests: list) -> None:
    _sequential(target, requests[:20])


def _load_run(target: str, requests: list) -> dict:
    asyncio.run(concurrent_predicts(target, requests, CLIENTS, 1.0))  # connections, first batches
    result = asyncio.run(concurrent_predicts(target, requests, CLIENTS, LOAD_SECONDS))
    return {**result, "rate": result["n"] / result["seconds"]}


def measure() -> dict:
    from utils.redis_client import EmbeddedRedis
    ctx = mp.get_context("spawn")
    requests = _requests(2048)
    chain = {"ml_remote_timeout_seconds": TIMEOUT_S, "ml_remote_breaker_failures": BREAKER_FAILURES,
             "ml_remote_breaker_cooldown_seconds": COOLDOWN_S}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        redis_server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False).start()
        roles: list[Role] = []

        def role(kind: str, name: str, **overrides) -> Role:
            roles.append(Role(ctx, kind, redis_server.port, Path(tmp) / name, **overrides))
            return roles[-1]
        try:
            _train_into_store(redis_server.port, Path(tmp) / "trainer")
            local = role("server", "local")
            _warm(local.target, requests)
            results["local"] = _sequential(local.target, requests[:CALLS])
            print(f"[bench:inference] local p50 {percentile(results['local']['latency'], 50) * 1e3:.2f} ms", flush=True)

            remote = role("inference", "gpu-box")
            _warm(remote.target, requests)
            results["direct"] = _sequential(remote.target, requests[:CALLS])
            chained = role("server", "chained", ml_gpu_inference_url=remote.target, **chain)
            _warm(chained.target, requests)
            results["remote"] = _sequential(chained.target, requests[:CALLS])
            print(f"[bench:inference] remote p50 {percentile(results['remote']['latency'], 50) * 1e3:.2f} ms", flush=True)

            results["load_local"] = _load_run(local.target, requests)
            results["load_remote"] = _load_run(chained.target, requests)
            results["load_direct"] = _load_run(remote.target, requests)
            ready, stop = ctx.Queue(), ctx.Event()
            echo = ctx.Process(target=echo_server_main, args=(10, ready, stop), daemon=True)
            echo.start()
            try:
                results["load_echo"] = _load_run(f"127.0.0.1:{ready.get(timeout=60)}", requests)
            finally:
                stop.set()
                echo.join(timeout=30)
            print(f"[bench:inference] 64 clients: local {results['load_local']['rate']:,.0f}/s, "
                  f"remote {results['load_remote']['rate']:,.0f}/s, echo {results['load_echo']['rate']:,.0f}/s",
                  flush=True)

            remote.kill()
            results["killed"] = _sequential(chained.target, requests[:FAILING_CALLS])
            results["breaker_open"] = _sequential(chained.target, requests[:CALLS])
            time.sleep(COOLDOWN_S + 0.5)
            revived = role("inference", "gpu-box-2", inference_port=remote.port)
            _warm(revived.target, requests)
            results["closed_again"] = _sequential(chained.target, requests[:FAILING_CALLS])

            slow = role("inference", "slow-box", inference_test_hooks=True,
                        inference_test_delay_seconds=TIMEOUT_S * 3)
            to_slow = role("server", "to-slow", ml_gpu_inference_url=slow.target, **chain)
            _warm(to_slow.target, requests[:1] * 4)  # loads the local fallback model (breaker opens here)
            time.sleep(COOLDOWN_S + 0.5)
            results["slow"] = _sequential(to_slow.target, requests[:FAILING_CALLS])

            failing = role("inference", "failing-box", inference_test_hooks=True, inference_test_error=True)
            to_failing = role("server", "to-failing", ml_gpu_inference_url=failing.target, **chain)
            _warm(to_failing.target, requests[:1] * 4)
            time.sleep(COOLDOWN_S + 0.5)
            results["failing"] = _sequential(to_failing.target, requests[:FAILING_CALLS])
        finally:
            for running in roles:
                running.close()
            redis_server.stop()
    return results


# ------------------------------------------------------------------ report
def _ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _calls(run: dict) -> str:
    return " · ".join(_ms(s) for s in run["latency"])


def _served(run: dict) -> str:
    seen: list[str] = []
    for name in run["served_by"]:
        if name not in seen:
            seen.append(name)
    return "; ".join(f"`{name}`" for name in seen)


def render(results: dict, load: tuple[float, float]) -> str:
    lines = [
        "Command: `make bench` (this section alone: `.venv/bin/python -m bench inference`). Model: a "
        "100-tree `random_forest` (fully grown trees) on 8 features, trained once and saved in the shared "
        "Redis model store (`MODEL_STORE_URI=redis://`); every server loads it from there. "
        f"`ML_REMOTE_TIMEOUT_SECONDS={TIMEOUT_S:g}`, `ML_REMOTE_BREAKER_FAILURES={BREAKER_FAILURES}`, "
        f"`ML_REMOTE_BREAKER_COOLDOWN_SECONDS={COOLDOWN_S:g}` (defaults 5 / 3 / 30: the same shapes with a "
        "5× longer timeout). The inference role runs on the CPU here (no GPU lent), so *remote* measures the "
        "chain's overhead, not a GPU's speed. 1-minute load average at the start / end: "
        f"{load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "### One client, one-row Predict, calls back to back (client-side ms)",
        "",
        "| Path | calls | p50 | p90 | p99 | max | answered by |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    rows = (("local (no ML_GPU_INFERENCE_URL)", "local"),
            ("the inference role called directly", "direct"),
            ("remote up: main server → inference role", "remote"),
            ("breaker open (remote dead, skipped): local at once", "breaker_open"))
    for label, key in rows:
        s = latency_summary(results[key]["latency"])
        lines.append(f"| {label} | {s['n']} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | "
                     f"{s['max']:.2f} | {_served(results[key])} |")
    lines += [
        "",
        "### Failures: each call in order (client-side ms)",
        "",
        "| Remote | calls in order (ms) | answered by |",
        "|---|---|---|",
        f"| killed (SIGKILL) | {_calls(results['killed'])} | {_served(results['killed'])} |",
        f"| back after the cool-down (restarted on the same port) | {_calls(results['closed_again'])} | "
        f"{_served(results['closed_again'])} |",
        f"| slow (test hook: {TIMEOUT_S * 3:g} s per Predict) | {_calls(results['slow'])} | {_served(results['slow'])} |",
        f"| failing (test hook: INTERNAL) | {_calls(results['failing'])} | {_served(results['failing'])} |",
        "",
        "A killed remote refuses the connection at once; the retry then waits for the channel up to the "
        f"timeout, so a call costs about one timeout ({TIMEOUT_S:g} s) until {BREAKER_FAILURES} failures open the "
        "breaker; from then on calls go local without trying (the breaker-open row above). A slow remote "
        "costs a timeout per try until the breaker opens. After the cool-down "
        f"({COOLDOWN_S:g} s) one trial call (one try, no retry) goes to the remote again: answered, it closes the "
        "breaker; failed, it re-opens it for another cool-down. The slow and failing rows start after the "
        "breaker opened once and cooled down (so the fallback model is already loaded: its first load is not "
        "part of the chain's cost), hence their first call is that single trial. The inference role called "
        "directly says `local:cpu`: it computed the answer itself.",
        "",
        f"### Throughput: {CLIENTS} concurrent clients, one row each (~{LOAD_SECONDS:.0f} s each, grpc.aio, one channel)",
        "",
        "| Server | predictions/s | of the echo ceiling | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    echo_rate = results["load_echo"]["rate"]
    for label, key in (("main server, local path", "load_local"),
                       ("main server → inference role (chain)", "load_remote"),
                       ("inference role directly", "load_direct"),
                       ("anchor: bare grpcio echo server (constant answer, no work), 10 threads", "load_echo")):
        run = results[key]
        lines.append(f"| {label} | {run['rate']:,.0f} | {run['rate'] / echo_rate:.0%} | "
                     f"{percentile(run['latency'], 50) * 1e3:.2f} | {percentile(run['latency'], 99) * 1e3:.2f} | "
                     f"{run['errors']} |")
    lines += [
        "",
        "All processes (clients, servers, inference role, redis-server) share the machine's cores, so the "
        "chain's row also pays for the second server's CPU; on two machines the remote's work is off the "
        "main server's cores.",
    ]
    return "\n".join(lines)


def run() -> Section:
    load_before = os.getloadavg()[0]
    results = measure()
    return Section("Remote inference chain: local, remote, fallbacks, breaker",
                   render(results, (load_before, os.getloadavg()[0])))
