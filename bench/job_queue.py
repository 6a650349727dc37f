"""Job queue benchmark: the Redis Streams queue (utils/queue) against the arq anchor.

Everything runs against one private redis-server (EmbeddedRedis on a free port, no AOF) that
this module starts and stops; the shared Redis on 6379 is never touched.

1. Enqueue throughput: sequential ``JobQueue.enqueue`` from one client (one MULTI/EXEC round
   trip each), then N producer processes enqueuing at once.
2. Hand-off latency: the real ``Worker`` loop in a spawned process, idle (blocked in
   XREADGROUP); jobs enqueued one at a time ~2 ms apart; enqueue -> handler start, as the
   worker's own metrics hook ``job_started(task_type, handoff_seconds)`` reports it.
   Then a burst of jobs enqueued back to back, timed until every one is COMPLETED.
3. The same steps for arq (bench/_arq_anchor.py, run by the anchor interpreter bench/.venv).
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import Section, latency_summary

ROOT = Path(__file__).resolve().parent.parent
ANCHOR_PYTHON = Path(os.environ.get("BENCH_ANCHOR_PYTHON", ROOT / "bench" / ".venv" / "bin" / "python"))
ANCHOR_SCRIPT = ROOT / "bench" / "_arq_anchor.py"

QUICK = os.environ.get("BENCH_QUICK") == "1"  # a smoke run with small counts (numbers meaningless)
ENQUEUE_N = 1_000 if QUICK else 10_000
PRODUCERS = (2, 4)
BATCHES = (10, 100)
PER_PRODUCER = 500 if QUICK else 5_000
HANDOFF_N = 200 if QUICK else 2_000
SPACING_S = 0.002
BURST_N = 1_000 if QUICK else 10_000
# arq at its default poll_delay 0.5 s starts at most queue_read_limit = 100 jobs per poll
# (~200 jobs/s): jobs 2 ms apart (500/s) would pile up and measure queueing, so its hand-off
# run spaces them 10 ms apart (100/s), and its burst is smaller (10k would take ~50 s).
ARQ_DEFAULT_POLL_HANDOFF_N = 100 if QUICK else 300
ARQ_DEFAULT_POLL_SPACING_S = 0.010
ARQ_DEFAULT_POLL_BURST_N = 500 if QUICK else 2_000
FEATURES_CAP = 8
WARMUP = 200
WARMUP_JOBS = 50
TARGET_ENQUEUE = 10_000.0
TARGET_HANDOFF_P50_MS = 1.0

PAYLOAD = {"symbols": ["AAPL"], "features": ["sma_20", "rsi_14"]}


def _spec():
    from utils.queue.jobs import JobSpec
    return JobSpec("features", PAYLOAD, "normal", 3, {})


def _new_queue(port: int):
    from utils.queue.streams import JobQueue, QueueConfig
    from utils.redis_client import make_redis
    queue = JobQueue(make_redis("127.0.0.1", port), QueueConfig())
    queue.ensure_groups()
    return queue


# ------------------------------------------------------------- child processes (spawn)
def _producer_main(port: int, n: int, barrier, out) -> None:
    queue = _new_queue(port)
    spec = _spec()
    queue.redis.ping()
    barrier.wait()
    for _ in range(n):
        queue.enqueue(spec)
    out.put(time.time())


class _BenchMetrics:
    """The worker's metrics hook, collecting hand-off samples and counting completions."""

    def __init__(self, done, failed) -> None:
        self.handoff: list[float] = []
        self.done, self.failed = done, failed

    def job_started(self, task_type: str, handoff_seconds: float) -> None:
        self.handoff.append(handoff_seconds)

    def job_finished(self, task_type: str, outcome: str, seconds: float) -> None:
        counter = self.done if outcome == "completed" else self.failed
        with counter.get_lock():
            counter.value += 1


def _worker_main(port: int, caps: dict[str, int], stop, done, failed, out) -> None:
    import logging
    logging.disable(logging.WARNING)
    from utils.gpu.scheduler import Scheduler
    from utils.queue.worker import Worker, WorkerConfig
    metrics = _BenchMetrics(done, failed)
    # Production defaults (block_ms 1000, heartbeat 0.5 s) as utils/tasks/runtime.py uses them.
    worker = Worker(_new_queue(port), {"features": lambda ctx: {}}, Scheduler(caps),
                    WorkerConfig(worker_id=f"bench-worker-{os.getpid()}"), metrics)
    worker.run(stop)
    out.put(metrics.handoff)


# ------------------------------------------------------------------ measurements
def _wait_count(counter, target: int, timeout: float, failed=None) -> None:
    deadline = time.monotonic() + timeout
    while counter.value < target:
        if failed is not None and failed.value:
            raise RuntimeError(f"{failed.value} bench jobs did not complete")
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker finished {counter.value} of {target} jobs in {timeout}s")
        time.sleep(0.001)


def _ping_rtt(port: int) -> dict[str, float]:
    queue = _new_queue(port)
    samples = []
    for _ in range(2000):
        began = time.perf_counter()
        queue.redis.ping()
        samples.append(time.perf_counter() - began)
    return latency_summary(samples)


def _enqueue_sequential(queue, n: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) for n sequential enqueues."""
    spec = _spec()
    cpu, began = time.process_time(), time.perf_counter()
    for _ in range(n):
        queue.enqueue(spec)
    return time.perf_counter() - began, time.process_time() - cpu


def _enqueue_batched(queue, n: int, batch: int) -> float:
    """Wall seconds for n jobs sent as ``enqueue_many`` batches (one MULTI/EXEC round trip each)."""
    specs = [_spec()] * batch
    began = time.perf_counter()
    for _ in range(n // batch):
        queue.enqueue_many(specs)
    return time.perf_counter() - began


def _enqueue_processes(ctx, port: int, procs: int, per: int) -> float:
    barrier, out = ctx.Barrier(procs + 1), ctx.Queue()
    children = [ctx.Process(target=_producer_main, args=(port, per, barrier, out)) for _ in range(procs)]
    for child in children:
        child.start()
    barrier.wait()
    began = time.time()
    ends = [out.get(timeout=120) for _ in children]
    for child in children:
        child.join()
    return max(ends) - began


def measure_ours(port: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = _new_queue(port)
    res: dict = {"ping": _ping_rtt(port)}

    queue.redis.flushall()
    queue.ensure_groups()
    _enqueue_sequential(queue, WARMUP)
    queue.redis.flushall()
    queue.ensure_groups()
    seconds, cpu = _enqueue_sequential(queue, ENQUEUE_N)
    res["enqueue_seq"] = {"n": ENQUEUE_N, "seconds": seconds, "client_cpu": cpu}
    res["enqueue_batched"] = []
    for batch in BATCHES:
        queue.redis.flushall()
        queue.ensure_groups()
        res["enqueue_batched"].append({"batch": batch, "n": ENQUEUE_N,
                                       "seconds": _enqueue_batched(queue, ENQUEUE_N, batch)})

    res["enqueue_procs"] = []
    for procs in PRODUCERS:
        queue.redis.flushall()
        queue.ensure_groups()
        seconds = _enqueue_processes(ctx, port, procs, PER_PRODUCER)
        res["enqueue_procs"].append({"procs": procs, "n": procs * PER_PRODUCER, "seconds": seconds})

    queue.redis.flushall()
    queue.ensure_groups()
    stop, done, failed, out = ctx.Event(), ctx.Value("q", 0), ctx.Value("q", 0), ctx.Queue()
    worker = ctx.Process(target=_worker_main,
                         args=(port, {"features": FEATURES_CAP}, stop, done, failed, out))
    worker.start()
    spec = _spec()
    try:
        for _ in range(WARMUP_JOBS):
            queue.enqueue(spec)
        _wait_count(done, WARMUP_JOBS, 60, failed)
        time.sleep(0.2)
        for _ in range(HANDOFF_N):
            queue.enqueue(spec)
            time.sleep(SPACING_S)
        _wait_count(done, WARMUP_JOBS + HANDOFF_N, 60, failed)
        began = time.perf_counter()
        for _ in range(BURST_N):
            queue.enqueue(spec)
        enqueued = time.perf_counter() - began
        _wait_count(done, WARMUP_JOBS + HANDOFF_N + BURST_N, 300, failed)
        total = time.perf_counter() - began
        stats = queue.stats("features")
    finally:
        stop.set()
    samples = out.get(timeout=60)
    worker.join(timeout=30)
    res["handoff"] = samples[WARMUP_JOBS:WARMUP_JOBS + HANDOFF_N]
    res["burst"] = {"n": BURST_N, "seconds": total, "enqueue_seconds": enqueued,
                    "handoff": samples[WARMUP_JOBS + HANDOFF_N:]}
    res["stats"] = stats
    queue.redis.flushall()
    return res


def measure_arq(port: int) -> tuple[dict | None, str]:
    """Run the anchor; (None, why) when its interpreter or arq is missing or it fails."""
    install = (f"`python3 -m venv bench/.venv && bench/.venv/bin/pip install -r bench/requirements.txt` "
               "(a separate venv: arq needs redis-py < 6, the platform pins redis 8)")
    if not ANCHOR_PYTHON.exists():
        return None, f"anchor skipped: no anchor interpreter at {ANCHOR_PYTHON}; install it with {install}"
    probe = subprocess.run([str(ANCHOR_PYTHON), "-c", "import arq"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None, f"anchor skipped: arq is not installed in {ANCHOR_PYTHON}; install it with {install}"
    cfg = {"port": port, "warmup": WARMUP, "enqueue_n": ENQUEUE_N, "producers": list(PRODUCERS),
           "per_producer": PER_PRODUCER, "warmup_jobs": WARMUP_JOBS, "max_jobs": FEATURES_CAP,
           "runs": [{"poll_delay": 0.5, "handoff_n": ARQ_DEFAULT_POLL_HANDOFF_N,
                     "spacing_s": ARQ_DEFAULT_POLL_SPACING_S, "burst_n": ARQ_DEFAULT_POLL_BURST_N},
                    {"poll_delay": 0.001, "handoff_n": HANDOFF_N, "spacing_s": SPACING_S,
                     "burst_n": BURST_N}]}
    proc = subprocess.run([str(ANCHOR_PYTHON), str(ANCHOR_SCRIPT), json.dumps(cfg)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"anchor failed (exit {proc.returncode}): {last}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


# ------------------------------------------------------------------ report
def _rate(entry: dict) -> float:
    return entry["n"] / entry["seconds"]


def _fmt_rate(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or not theirs or math.isnan(ours) or math.isnan(theirs):
        return "n/a"
    value = ours / theirs
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.3f}×"


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def render(ours: dict, arq: dict | None, note: str) -> str:
    lines: list[str] = []
    arq_version = f"arq {arq['versions']['arq']}" if arq else "arq"
    lines += [
        "Command: `make bench` (this section alone: `.venv/bin/python -m bench queue`). "
        "Anchor: " + (f"{arq_version} (redis-py {arq['versions']['redis_py']} + hiredis "
                      f"{arq['versions']['hiredis']}, from bench/requirements.txt in bench/.venv)"
                      if arq else "arq — " + note) + ".",
        "",
        "Both queues run against the same private redis-server (no AOF, no RDB) on localhost, "
        "one after the other in the same run. Payload: a small JSON dict; handler: a no-op "
        "returning `{}` (both store that result). Target from the issue: enqueue ≥ "
        f"{TARGET_ENQUEUE:,.0f} jobs/s, hand-off p50 ≤ {TARGET_HANDOFF_P50_MS:g} ms. "
        f"Reference: a redis-py `PING` round trip from this process takes p50 "
        f"{_ms(ours['ping']['p50'] * 1e3)} µs (p99 {_ms(ours['ping']['p99'] * 1e3)} µs).",
        "",
        "### Enqueue throughput (jobs/s, higher is better)",
        "",
        "| Producer | ours: `JobQueue.enqueue` | arq: `enqueue_job` | ours/arq | ≥ 10k/s? |",
        "|---|---:|---:|---:|---|",
    ]
    rows = [("1 client, sequential", ours["enqueue_seq"], arq["enqueue_seq"] if arq else None)]
    for index, entry in enumerate(ours["enqueue_procs"]):
        theirs = arq["enqueue_procs"][index] if arq else None
        rows.append((f"{entry['procs']} processes at once (total)", entry, theirs))
    for entry in ours.get("enqueue_batched", []):
        rows.append((f"1 client, `enqueue_many` batches of {entry['batch']} (arq has no batch API)", entry, None))
    for label, mine, theirs in rows:
        ours_rate = _rate(mine)
        arq_rate = _rate(theirs) if theirs else None
        lines.append(f"| {label} | {_fmt_rate(ours_rate)} | {_fmt_rate(arq_rate)} | "
                     f"{_ratio(ours_rate, arq_rate)} | {'yes' if ours_rate >= TARGET_ENQUEUE else 'no'} |")
    lines += [
        "",
        f"Sequential: {ENQUEUE_N:,} jobs after {WARMUP} warm-up jobs. Processes: "
        f"{PER_PRODUCER:,} jobs each, spawned, released together by a barrier, timed to the last one "
        "done. Sequential ours: "
        f"{ours['enqueue_seq']['seconds'] / ours['enqueue_seq']['n'] * 1e6:.0f} µs wall per enqueue, of "
        f"which {ours['enqueue_seq']['client_cpu'] / ours['enqueue_seq']['n'] * 1e6:.0f} µs is Python "
        "CPU in the producer. A single-job enqueue is one loopback round trip, and on this VM even a "
        "raw-socket PING manages only ~5,000 round trips/s (~200 µs each: syscalls are expensive "
        "here), so ≥ 10k/s one job at a time is out of reach on this machine; batching several "
        "jobs per round trip (`enqueue_many`) is how a producer gets past it. Extra producer "
        "processes only compete for the same 2 cores. Ours is one MULTI/EXEC pipeline (HSET job, "
        "XADD, ZADD history, HINCRBY stats) per job or per batch; "
        "arq's is WATCH + EXISTS + MULTI/EXEC (PSETEX job, ZADD queue), i.e. 3 round trips.",
        "",
        "### Hand-off latency (enqueue → handler start, ms, lower is better)",
        "",
        "| Queue | worker | n | p50 | p90 | p99 | max | p50 ours/arq |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ours_h = latency_summary(ours["handoff"])
    lines.append(f"| ours (Redis Streams, blocking XREADGROUP) | `Worker`, features cap {FEATURES_CAP} | "
                 f"{ours_h['n']} | {_ms(ours_h['p50'])} | {_ms(ours_h['p90'])} | {_ms(ours_h['p99'])} | "
                 f"{_ms(ours_h['max'])} | — |")
    arq_runs = arq["runs"] if arq else []
    for run in arq_runs:
        h = latency_summary(run["handoff"])
        label = "default" if run["poll_delay"] == 0.5 else "non-default"
        if run["spacing_s"] != SPACING_S:
            label += f", jobs {run['spacing_s'] * 1e3:g} ms apart"
        lines.append(f"| arq, poll_delay {run['poll_delay']:g} s ({label}) | arq `Worker`, max_jobs "
                     f"{FEATURES_CAP} | {h['n']} | {_ms(h['p50'])} | {_ms(h['p90'])} | {_ms(h['p99'])} | "
                     f"{_ms(h['max'])} | {_ratio(ours_h['p50'], h['p50'])} |")
    if not arq_runs:
        lines.append(f"| arq | — | — | — | — | — | — | n/a ({note}) |")
    meets = "meets" if ours_h["p50"] <= TARGET_HANDOFF_P50_MS else "misses"
    lines += [
        "",
        f"One worker in its own process (multiprocessing *spawn*), idle and blocked waiting; jobs "
        f"enqueued one at a time, {SPACING_S * 1e3:g} ms apart (sleep after each enqueue returns), "
        f"after {WARMUP_JOBS} warm-up jobs. Ours: the value the `Worker` passes to its metrics hook "
        "`job_started` (wall clock at handler start − the job record's `enqueued_at`), so it includes "
        "XREADGROUP wake-up, the START Lua script, the HGETALL of the record and the thread-pool hop. "
        "arq: `time.time()` at function entry − `time.time()` passed as the job's argument just "
        f"before `enqueue_job`. arq at its default poll_delay gets {ARQ_DEFAULT_POLL_HANDOFF_N} jobs "
        f"{ARQ_DEFAULT_POLL_SPACING_S * 1e3:g} ms apart: at 2 ms spacing (500 jobs/s) it falls behind "
        "(≤ 100 jobs per 0.5 s poll) and the number becomes queueing time; its hand-off is then "
        "~uniform over one poll interval (expect p50 ≈ 250 ms). At poll_delay 1 ms arq busy-polls "
        "(ZRANGEBYSCORE + heartbeat every ms), burning a core of this 2-core machine. "
        f"Ours {meets} the ≤ {TARGET_HANDOFF_P50_MS:g} ms p50 target.",
        "",
        "### End-to-end throughput through one worker (no-op handler, jobs/s, higher is better)",
        "",
        "| Queue | jobs | enqueue done after (s) | all completed after (s) | jobs/s | ours/arq |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ours_b = ours["burst"]
    ours_rate = _rate(ours_b)
    lines.append(f"| ours, features cap {FEATURES_CAP} | {ours_b['n']:,} | {ours_b['enqueue_seconds']:.2f} | "
                 f"{ours_b['seconds']:.2f} | {_fmt_rate(ours_rate)} | — |")
    for run in arq_runs:
        b = run["burst"]
        lines.append(f"| arq, max_jobs {FEATURES_CAP}, poll_delay {run['poll_delay']:g} s | {b['n']:,} | "
                     f"{b['enqueue_seconds']:.2f} | {b['seconds']:.2f} | {_fmt_rate(_rate(b))} | "
                     f"{_ratio(ours_rate, _rate(b))} |")
    burst_h = latency_summary(ours_b["handoff"])
    lines += [
        "",
        "A burst enqueued back to back by one client while the (already running, idle) worker "
        "consumes; timed from the first enqueue until the worker reported the last job finished "
        "(ours: after FINISH stored the result and acked; arq: its `after_job_end` hook, after the "
        "result is recorded). Producer, worker and redis-server share the machine's cores. "
        f"arq at its default poll_delay gets {ARQ_DEFAULT_POLL_BURST_N:,} jobs (it takes at most "
        "`queue_read_limit` = 100 ids per poll, ~200 jobs/s, so 10k would take ~50 s); its jobs/s is "
        f"still comparable. Ours under the burst: hand-off p50 {_ms(burst_h['p50'])} ms, p99 "
        f"{_ms(burst_h['p99'])} ms (queueing included).",
    ]
    if note and arq is None:
        lines += ["", f"**Note:** {note}."]
    return "\n".join(lines)


def run() -> Section:
    """Start a private redis-server, measure ours then the anchor, render the section."""
    from utils.redis_client import EmbeddedRedis
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = EmbeddedRedis(Path(tmp), appendonly=False).start()
        try:
            print(f"[bench:queue] private redis-server on port {server.port}", flush=True)
            ours = measure_ours(server.port)
            print("[bench:queue] ours done; running the arq anchor", flush=True)
            arq, note = measure_arq(server.port)
            if arq is None:
                print(f"[bench:queue] {note}", file=sys.stderr, flush=True)
        finally:
            server.stop()
    return Section("Job queue", render(ours, arq, note))
