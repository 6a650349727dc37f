"""The burst-through-a-restart scenario shared by the single-node and the cluster reliability
tests: a producer thread enqueues ``burst`` jobs (retrying a refused enqueue with the same id,
which the enqueue script makes idempotent) while Redis restarts; every accepted job must then run
exactly once with one stored result."""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

from tests.conftest import InProcessWorker, wait_until
from utils.queue.jobs import JobSpec, JobStatus, new_job_id
from utils.queue.streams import JobQueue


def assert_burst_survives_a_restart(queue: JobQueue, settings, restart: Callable[[], None], burst: int,
                                    retryable: tuple[type[BaseException], ...]) -> None:
    runs: Counter[str] = Counter()
    runs_lock = threading.Lock()

    def handler(context):
        with runs_lock:
            runs[context.job_id] += 1
        return {"job": context.job_id}

    worker = InProcessWorker(settings, handlers={"features": handler}).start()
    accepted: list[str] = []
    refused = 0

    def produce():
        nonlocal refused
        index, job_id = 0, new_job_id("features")
        while index < burst:
            try:
                accepted.append(queue.enqueue(JobSpec("features", {"n": index}, "normal", 3, {}), job_id))
                index, job_id = index + 1, new_job_id("features")
            except retryable:  # not acknowledged (maybe stored, maybe not): retry with the same id
                refused += 1
                time.sleep(0.01)

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        wait_until(lambda: len(accepted) >= burst // 3, timeout=60)
        restart()
        producer.join(timeout=120)
        assert not producer.is_alive() and len(accepted) == burst and len(set(accepted)) == burst

        def all_done():
            records = queue.get_many(accepted)
            return all(r is not None and r.status is JobStatus.COMPLETED for r in records)

        wait_until(all_done, timeout=120)
        assert [queue.result(job_id)["job"] for job_id in accepted] == accepted  # one stored result each
        assert queue.stats("features")["completed"] == burst
        # A job may run twice only if Redis lost its acknowledgement; a clean restart loses nothing.
        assert set(runs) == set(accepted) and max(runs.values()) == 1
        assert refused > 0  # the restart really happened while the burst was being accepted
    finally:
        worker.stop()
