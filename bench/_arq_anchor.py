"""The arq anchor for bench/queue.py, run by the *anchor* interpreter (bench/.venv, see
bench/requirements.txt): arq pins redis<6 while the platform pins redis 8, so it cannot live in
the project venv. Standalone on purpose (no project imports).

Usage: python bench/_arq_anchor.py '<json config>'   -> prints one JSON line of raw results.
The procedure mirrors bench/queue.py step for step; the parent computes the statistics.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import sys
import time

from arq import Worker, create_pool
from arq.connections import RedisSettings
from arq.worker import func

PAYLOAD = {"symbols": ["AAPL"], "features": ["sma_20", "rsi_14"]}


# ------------------------------------------------------------------ worker process
def _worker_main(port: int, poll_delay: float, max_jobs: int, stop, done, out) -> None:
    import logging
    logging.disable(logging.CRITICAL)
    handoff: list[float] = []

    async def noop(ctx, t_enqueued, payload):
        handoff.append(time.time() - t_enqueued)
        return {}

    async def after_job_end(ctx):
        with done.get_lock():
            done.value += 1

    async def amain() -> None:
        worker = Worker(functions=[func(noop, name="noop")], redis_settings=RedisSettings(port=port),
                        max_jobs=max_jobs, poll_delay=poll_delay, handle_signals=False,
                        after_job_end=after_job_end)
        task = asyncio.ensure_future(worker.main())
        worker.main_task = task
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await worker.close()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(amain())
    out.put(handoff)


def _producer_main(port: int, n: int, barrier, out) -> None:
    async def amain() -> float:
        pool = await create_pool(RedisSettings(port=port))
        await pool.ping()
        barrier.wait()
        for _ in range(n):
            await pool.enqueue_job("noop", time.time(), PAYLOAD)
        end = time.time()
        await pool.aclose()
        return end
    out.put(asyncio.run(amain()))


# ------------------------------------------------------------------ helpers
async def _wait_count(done, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while done.value < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"arq worker finished {done.value} of {target} jobs in {timeout}s")
        await asyncio.sleep(0.001)


async def _enqueue_sequential(pool, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        await pool.enqueue_job("noop", time.time(), PAYLOAD)
    return time.perf_counter() - began


async def main(cfg: dict) -> dict:
    ctx = mp.get_context("spawn")
    port = cfg["port"]
    pool = await create_pool(RedisSettings(port=port))
    results: dict = {}
    import hiredis
    import redis
    from arq.version import VERSION
    results["versions"] = {"arq": VERSION, "redis_py": redis.__version__, "hiredis": hiredis.__version__}

    # 1a. sequential enqueue from one client
    await pool.flushall()
    await _enqueue_sequential(pool, cfg["warmup"])
    await pool.flushall()
    seconds = await _enqueue_sequential(pool, cfg["enqueue_n"])
    results["enqueue_seq"] = {"n": cfg["enqueue_n"], "seconds": seconds}

    # 1c. concurrent producer processes
    results["enqueue_procs"] = []
    for procs in cfg["producers"]:
        await pool.flushall()
        barrier, out = ctx.Barrier(procs + 1), ctx.Queue()
        children = [ctx.Process(target=_producer_main, args=(port, cfg["per_producer"], barrier, out))
                    for _ in range(procs)]
        for child in children:
            child.start()
        barrier.wait()
        began = time.time()
        ends = [out.get(timeout=120) for _ in children]
        for child in children:
            child.join()
        results["enqueue_procs"].append({"procs": procs, "n": procs * cfg["per_producer"],
                                         "seconds": max(ends) - began})

    # 2. hand-off latency and burst throughput through one worker, per poll_delay
    results["runs"] = []
    for run in cfg["runs"]:
        await pool.flushall()
        stop, done, out = ctx.Event(), ctx.Value("q", 0), ctx.Queue()
        worker = ctx.Process(target=_worker_main,
                             args=(port, run["poll_delay"], cfg["max_jobs"], stop, done, out))
        worker.start()
        try:
            warm = cfg["warmup_jobs"]
            for _ in range(warm):
                await pool.enqueue_job("noop", time.time(), PAYLOAD)
            await _wait_count(done, warm, 60)
            await asyncio.sleep(0.2)
            handoff_n = run["handoff_n"]
            for _ in range(handoff_n):
                await pool.enqueue_job("noop", time.time(), PAYLOAD)
                await asyncio.sleep(run["spacing_s"])
            await _wait_count(done, warm + handoff_n, 60)
            burst_n = run["burst_n"]
            began = time.perf_counter()
            for _ in range(burst_n):
                await pool.enqueue_job("noop", time.time(), PAYLOAD)
            enqueued = time.perf_counter() - began
            await _wait_count(done, warm + handoff_n + burst_n, 300)
            total = time.perf_counter() - began
        finally:
            stop.set()
        samples = out.get(timeout=60)
        worker.join(timeout=30)
        results["runs"].append({"poll_delay": run["poll_delay"], "spacing_s": run["spacing_s"],
                                "handoff": samples[warm:warm + handoff_n],
                                "burst": {"n": burst_n, "seconds": total, "enqueue_seconds": enqueued}})
    await pool.flushall()
    await pool.aclose()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
