"""The job model as a user meets it: end to end over gRPC on a warm server, each beside an anchor
measured in the same run.

The real server and one real worker run in spawned processes against a private redis-server
(``bench.backtest_service.platform_processes``); 100 symbols x 1000 daily bars are imported first
(``bench.backtest_service._import_bars``). Warm-up calls of every RPC precede the timed ones.

1. ``GetBacktestReport`` of a completed 10-symbol backtest: first call (a worker renders the
   tearsheet as a ``report`` job) over ~10 different backtests, and repeat calls (the report job
   exists: answered from its stored result). Anchor: ``tearsheet_html(record, result)`` in this
   process, with the record and result read once from Redis.
2. Panel ``ComputeFeatures`` (20 symbols): a blocking RPC backed by a queued ``features`` job.
   Anchor: the worker's own ``compute_seconds`` in the job's result.
3. ``JobService.GetJob`` / ``ListJobs(page_size=50)`` and ``BacktestService.GetBacktestStatus``,
   sequential calls from one client. Anchor: bare grpcio echo server (``bench.ml._echo_main``).
4. ``WatchJob`` wake-up: time from the worker finishing a backtest (the job's ``finished_at``) to
   the client receiving the COMPLETED update.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from datetime import datetime

from bench import Section, percentile

BACKTEST_SYMBOLS = 10
PANEL_SYMBOLS = 20
FEATURES = ["sma_20", "rsi_14", "macd"]
REPORTS = 10            # different completed backtests (their first GetBacktestReport)
REPORT_REPEATS = 3      # repeat calls per backtest
PANELS = 40
LOOKUP_CALLS = 500      # per RPC, in rounds interleaved with the others
LOOKUP_ROUNDS = 5
HISTORY_JOBS = 250      # jobs in the history when ListJobs is timed (more than one scan chunk of 200)
WATCHES = 10
WATCH_TRIES = 30        # a job that finishes before the watch attaches is not a wake-up sample
CONFIG = {"strategy_type": "sma_crossover", "fast": 10, "slow": 30}


def _ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _p(samples: list[float], q: float = 50) -> float:
    return percentile(samples, q)


def _slow_wakeups(overheads: list[float]) -> int:
    """Calls whose overhead reached the waiters' 100 ms re-read (``WATCH_POLL_SECONDS``): their
    completion announcement did not wake the server."""
    return sum(1 for seconds in overheads if seconds >= 0.09)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class _Client:
    def __init__(self, port: int) -> None:
        import grpc
        from api_proto import (backtest_pb2, backtest_pb2_grpc, jobs_pb2, jobs_pb2_grpc, realtime_pb2,
                               realtime_pb2_grpc)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.bt, self.jobs, self.rt = backtest_pb2, jobs_pb2, realtime_pb2
        self.backtests = backtest_pb2_grpc.BacktestServiceStub(self.channel)
        self.job_service = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.realtime = realtime_pb2_grpc.RealTimeServiceStub(self.channel)
        self._commission = 0.0005

    def submit(self, symbols: list[str]) -> str:
        """A backtest the request cache cannot answer (a commission never asked before)."""
        self._commission += 1e-6
        response = self.backtests.SubmitBacktestTask(self.bt.BacktestRequest(
            stock_codes=symbols, start_time="2020-01-01", end_time="2030-01-01",
            strategy_config=json.dumps(CONFIG), initial_capital=1_000_000, commission_rate=self._commission))
        return response.backtest_id

    def watch(self, job_id: str) -> tuple[float, bool]:
        """Follow the job with WatchJob: (wall time the COMPLETED update arrived, whether an
        earlier non-final update arrived first, i.e. the watch was attached before it finished)."""
        saw_pending = False
        for job in self.job_service.WatchJob(self.jobs.JobRequest(job_id=job_id), timeout=60):
            if job.status == self.jobs.COMPLETED:
                return time.time(), saw_pending
            if job.status in (self.jobs.FAILED, self.jobs.CANCELLED):
                raise RuntimeError(f"{job_id} {self.jobs.JobStatus.Name(job.status)}: {job.error_message}")
            saw_pending = True
        raise RuntimeError(f"WatchJob of {job_id} ended without a final state")

    def report(self, backtest_id: str) -> tuple[float, int]:
        began = time.perf_counter()
        response = self.backtests.GetBacktestReport(self.bt.BacktestReportRequest(backtest_id=backtest_id), timeout=60)
        return time.perf_counter() - began, len(response.html)

    def panel(self, symbols: list[str]) -> tuple[float, str]:
        began = time.perf_counter()
        response = self.realtime.ComputeFeatures(self.rt.FeatureRequest(stock_codes=symbols, feature_types=FEATURES),
                                                 timeout=60)
        elapsed = time.perf_counter() - began
        assert len(response.panel) == len(symbols), response
        return elapsed, response.task_id


def _echo_stub(ready):
    import grpc
    from api_proto import ml_pb2, ml_pb2_grpc
    channel = grpc.insecure_channel(f"127.0.0.1:{ready.get(timeout=60)}")
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = ml_pb2_grpc.MLServiceStub(channel)
    request = ml_pb2.PredictRequest(model_id="echo")
    return channel, lambda: stub.Predict(request, timeout=10)


def _timed(call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return samples


def measure() -> dict:
    import redis
    from bench.backtest_service import _import_bars, platform_processes
    from bench.ml import _echo_main
    from utils.queue.keys import HISTORY_ALL
    from utils.queue.streams import JobQueue
    from utils.tasks.report import tearsheet_html

    out: dict = {"load": [os.getloadavg()[0]]}
    ctx = mp.get_context("spawn")
    with platform_processes("bench-jobs-") as platform:
        symbols = _import_bars(platform.redis_port)
        bt_symbols, panel_symbols = symbols[:BACKTEST_SYMBOLS], symbols[:PANEL_SYMBOLS]
        client = _Client(platform.port)
        queue = JobQueue(redis.Redis(port=platform.redis_port, decode_responses=True))
        echo_ready, echo_stop = ctx.Queue(), ctx.Event()
        echo = ctx.Process(target=_echo_main, args=(echo_ready, echo_stop))
        echo.start()
        try:
            echo_channel, echo_call = _echo_stub(echo_ready)

            # ---- warm-up: numba compilation, connections, listeners, every RPC once or more
            warm_ids = []
            for _ in range(3):
                warm_ids.append(client.submit(bt_symbols))
                client.watch(warm_ids[-1])
            for job_id in warm_ids[:2]:
                client.report(job_id)
                client.report(job_id)
            for _ in range(3):
                client.panel(panel_symbols)
            for _ in range(50):
                client.job_service.GetJob(client.jobs.JobRequest(job_id=warm_ids[0]))
                client.backtests.GetBacktestStatus(client.bt.BacktestStatusRequest(backtest_id=warm_ids[0]))
                client.job_service.ListJobs(client.jobs.ListJobsRequest(page_size=50))
                echo_call()
            print("[bench:jobs] warm", flush=True)

            # ---- 4. WatchJob wake-up (these backtests then serve the report measure)
            wakeups, late, completed = [], 0, []
            for _ in range(WATCH_TRIES):
                if len(wakeups) >= WATCHES:
                    break
                job_id = client.submit(bt_symbols)
                received, attached = client.watch(job_id)
                job = client.job_service.GetJob(client.jobs.JobRequest(job_id=job_id))
                completed.append(job_id)
                if attached:
                    wakeups.append(received - _epoch(job.finished_at))
                else:
                    late += 1
            out["watch"] = {"samples": wakeups, "late": late}
            print(f"[bench:jobs] WatchJob wake-up p50 {_ms(_p(wakeups))} ms ({late} finished before the watch)",
                  flush=True)

            # ---- 1. GetBacktestReport: first call (report job) and repeats (stored result)
            report_ids = completed[:REPORTS]
            tearsheet_html(queue.get(warm_ids[0]), queue.result(warm_ids[0]))  # imports, first-use costs
            first, sizes, inprocess = [], [], []
            for job_id in report_ids:  # anchor and RPC back to back, so load drift hits both alike
                record, result = queue.get(job_id), queue.result(job_id)
                began = time.perf_counter()
                tearsheet_html(record, result)  # one render, as the worker does
                inprocess.append(time.perf_counter() - began)
                seconds, size = client.report(job_id)
                first.append(seconds)
                sizes.append(size)
            repeat = [client.report(job_id)[0] for _ in range(REPORT_REPEATS) for job_id in report_ids]
            trades = len(queue.result(report_ids[-1]).get("trades", []))
            out["report"] = {"first": first, "repeat": repeat, "inprocess": inprocess,
                             "overhead": [a - b for a, b in zip(first, inprocess)],
                             "html_kb": _p([s / 1024 for s in sizes]), "trades": trades}
            print(f"[bench:jobs] report first p50 {_ms(_p(first))} ms, repeat {_ms(_p(repeat))} ms, "
                  f"in-process {_ms(_p(inprocess))} ms", flush=True)

            # ---- 2. panel ComputeFeatures
            e2e, compute = [], []
            for _ in range(PANELS):
                seconds, task_id = client.panel(panel_symbols)
                e2e.append(seconds)
                compute.append(queue.result(task_id)["compute_seconds"])
            out["panel"] = {"e2e": e2e, "compute": compute, "overhead": [a - b for a, b in zip(e2e, compute)]}
            print(f"[bench:jobs] panel p50 {_ms(_p(e2e))} ms, compute {_ms(_p(compute))} ms", flush=True)

            # a history longer than ListJobs' scan chunk, as on a server that has run for a while
            while queue.redis.zcard(HISTORY_ALL) < HISTORY_JOBS:
                client.panel(panel_symbols[:2])
            out["history"] = queue.redis.zcard(HISTORY_ALL)

            # ---- 3. look-ups, interleaved in rounds so load drift hits them alike
            job_id = report_ids[0]
            calls = {
                "GetJob": lambda: client.job_service.GetJob(client.jobs.JobRequest(job_id=job_id)),
                "GetBacktestStatus": lambda: client.backtests.GetBacktestStatus(
                    client.bt.BacktestStatusRequest(backtest_id=job_id)),
                "ListJobs": lambda: client.job_service.ListJobs(client.jobs.ListJobsRequest(page_size=50)),
                "echo": echo_call,
            }
            lookups: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(LOOKUP_ROUNDS):
                for name, call in calls.items():
                    lookups[name] += _timed(call, LOOKUP_CALLS // LOOKUP_ROUNDS)
            out["lookups"] = lookups
            out["listed"] = len(client.job_service.ListJobs(client.jobs.ListJobsRequest(page_size=50)).jobs)
            print("[bench:jobs] look-ups " + ", ".join(f"{n} {_ms(_p(s))} ms" for n, s in lookups.items()),
                  flush=True)
            echo_channel.close()
            client.channel.close()
        finally:
            echo_stop.set()
            echo.join(timeout=30)
            if echo.is_alive():
                echo.terminate()
    out["load"].append(os.getloadavg()[0])
    return out


def render(m: dict) -> str:
    report, panel, lookups, watch = m["report"], m["panel"], m["lookups"], m["watch"]
    first50, repeat50, local50 = _p(report["first"]), _p(report["repeat"]), _p(report["inprocess"])
    e2e50, compute50 = _p(panel["e2e"]), _p(panel["compute"])
    echo50 = _p(lookups["echo"])
    lines = [
        "Command: `.venv/bin/python -m bench jobs`. The real server (`create_server`) and one real worker "
        "run in spawned processes against a private redis-server (`platform_processes` of the backtest "
        "section); 100 symbols × 1000 daily bars are imported first. The client is one synchronous grpcio "
        "channel in the bench process, so client, server, worker and Redis share the machine's cores. "
        "Every RPC is called before timing (numba compilation, connections, the announcement listener). "
        f"1-minute load average at the start / end of this section: {m['load'][0]:.1f} / {m['load'][1]:.1f} "
        f"on {os.cpu_count()} CPUs (above ~{os.cpu_count()}, other processes were competing for the cores "
        "and every number here is inflated).",
        "",
        f"### GetBacktestReport ({BACKTEST_SYMBOLS}-symbol sma_crossover backtests, 1000 days)",
        "",
        "| measure | p50 ms | p90 ms | × in-process render (p50) |",
        "|---|---:|---:|---:|",
        f"| first call: a worker renders the tearsheet as a `report` job ({len(report['first'])} different "
        f"backtests) | {_ms(first50)} | {_ms(_p(report['first'], 90))} | {first50 / local50:.1f} |",
        f"| repeat call: the report job exists, answered from its stored result ({len(report['repeat'])} calls) | "
        f"{_ms(repeat50)} | {_ms(_p(report['repeat'], 90))} | {repeat50 / local50:.1f} |",
        f"| anchor: `tearsheet_html(record, result)` in-process, once per backtest (record and result read "
        f"once from Redis beforehand) | {_ms(local50)} | {_ms(_p(report['inprocess'], 90))} | 1.0 |",
        "",
        f"Queue overhead of a first call: {_ms(_p(report['overhead']))} ms at p50, "
        f"{_ms(_p(report['overhead'], 90))} ms at p90 (first call − in-process render of the same backtest, "
        "timed back to back): the RPC, enqueueing the job, the worker's pick-up, its reading the backtest's record and "
        "result from Redis, storing the HTML as the job's result, the completion announcement waking the "
        "server and the server reading the result back. "
        f"{_slow_wakeups(report['overhead'])} of {len(report['overhead'])} first calls had ≥ 90 ms of overhead "
        "(the mark of a missed completion announcement, answered by the 100 ms re-read; see below). "
        f"The page is ~{report['html_kb']:.0f} KiB; the backtests carry ~{report['trades']:,} trades each "
        "(the page lists up to 500).",
        "",
        f"### Panel ComputeFeatures ({PANEL_SYMBOLS} symbols × 1000 days, `{FEATURES}`)",
        "",
        "| measure | p50 ms | p90 ms |",
        "|---|---:|---:|",
        f"| end to end over gRPC (blocking RPC backed by a queued `features` job), {len(panel['e2e'])} calls | "
        f"{_ms(e2e50)} | {_ms(_p(panel['e2e'], 90))} |",
        f"| anchor: the worker's compute (`compute_seconds` in the job's result: load bars, compute, latest "
        f"values) | {_ms(compute50)} | {_ms(_p(panel['compute'], 90))} |",
        f"| queue + wake-up overhead (end to end − compute, per call) | {_ms(_p(panel['overhead']))} | "
        f"{_ms(_p(panel['overhead'], 90))} |",
        "",
        f"End to end is {e2e50 / compute50:.1f}× the worker's compute at p50. The overhead is the RPC, "
        "validation (each symbol's bars exist), enqueue, the worker's pick-up and start, storing the result, "
        "the completion announcement waking the server, and reading the result back. "
        f"{_slow_wakeups(panel['overhead'])} of {len(panel['overhead'])} calls had ≥ 90 ms of overhead"
        + (": a missed completion announcement answered by the 100 ms re-read (`WATCH_POLL_SECONDS`); "
           "waiters register before reading the job (`JobAnnouncements.listening`), so this should not happen."
           if _slow_wakeups(panel["overhead"]) else " (waiters register for the job's announcements before "
           "reading its state, so a completion between the read and the wait is not missed)."),
        "",
        "### Job look-ups (sequential unary calls from one client)",
        "",
        "| RPC | calls | p50 ms | p90 ms | × echo (p50) |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {
        "GetJob": "`JobService.GetJob` (a completed backtest)",
        "GetBacktestStatus": "`BacktestService.GetBacktestStatus` (same id, same code path)",
        "ListJobs": f"`JobService.ListJobs(page_size=50)` (returns {m['listed']} jobs; {m['history']} in the history)",
        "echo": "anchor: bare grpcio echo server (`bench.ml`'s constant-answer Predict, 10 threads)",
    }
    for name, label in labels.items():
        samples = lookups[name]
        lines.append(f"| {label} | {len(samples)} | {_ms(_p(samples))} | {_ms(_p(samples, 90))} | "
                     f"{_p(samples) / echo50:.1f} |")
    lines += [
        "",
        f"Calls of the four RPCs alternate in {LOOKUP_ROUNDS} rounds of {LOOKUP_CALLS // LOOKUP_ROUNDS} each, "
        "so load drift hits them alike. GetJob is one Redis `HGETALL`; ListJobs reads ids from the "
        "history in chunks of 200 (`history_page`'s `scan_chunk`) and all their records in one pipeline, "
        "so a page of 50 decodes up to 200 records.",
        "",
        f"### WatchJob wake-up ({BACKTEST_SYMBOLS}-symbol backtests)",
        "",
        "| measure | p50 ms | p90 ms | max ms |",
        "|---|---:|---:|---:|",
        f"| worker finished (the job's `finished_at`, via GetJob) → client receives the COMPLETED update, "
        f"{len(watch['samples'])} jobs ({_slow_wakeups(watch['samples'])} ≥ 90 ms) | {_ms(_p(watch['samples']))} | "
        f"{_ms(_p(watch['samples'], 90))} | {_ms(max(watch['samples']))} |",
        "",
        "Each backtest is submitted with `SubmitBacktestTask` and followed at once with `WatchJob`; only jobs "
        "whose watch saw a non-final update first are counted (the watch was waiting when the job finished"
        + (f"; {watch['late']} finished before it attached and were skipped" if watch["late"] else "")
        + "). `finished_at` is the worker's clock just before its finish script runs; the server, the worker "
        "and the client share the machine's clock. The path: the finish script's PUBLISH, the server's one "
        "pub/sub listener, the waiting stream's re-read of the record, the gRPC stream message (without an "
        f"announcement the watch re-reads every {100} ms).",
    ]
    return "\n".join(lines)


def run() -> Section:
    return Section("Job model: reports, panel features, look-ups, WatchJob (end to end over gRPC)", render(measure()))
