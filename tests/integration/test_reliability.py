"""Reliability with real processes: Redis restarted (AOF everysec) in the middle of a burst.

(Worker SIGKILL mid-job and Redis outage live in test_processes.py; dead-lettering after the
attempts run out in test_queue.py.)
"""
from __future__ import annotations

import threading
import time
from collections import Counter

import redis

from tests.conftest import InProcessWorker, wait_until
from utils.queue import keys
from utils.queue.jobs import JobSpec, JobStatus, new_job_id
from utils.queue.streams import JobQueue, QueueConfig
from utils.redis_client import EmbeddedRedis, make_redis

BURST = 1000


def test_redis_restart_during_a_burst_loses_and_duplicates_nothing(tmp_path, settings_factory):
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()  # AOF, appendfsync everysec
    restarted = None
    settings = settings_factory(redis_port=server.port)
    queue = JobQueue(make_redis("127.0.0.1", server.port), QueueConfig.from_settings(settings))
    queue.ensure_groups()
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
        index = 0
        job_id = new_job_id("features")
        while index < BURST:
            try:
                accepted.append(queue.enqueue(JobSpec("features", {"n": index}, "normal", 3, {}), job_id))
                index += 1
                job_id = new_job_id("features")
            except (redis.ConnectionError, redis.TimeoutError):
                # Not acknowledged (maybe stored, maybe not): the producer retries with the same
                # id, which the enqueue script makes idempotent.
                refused += 1
                time.sleep(0.01)

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        wait_until(lambda: len(accepted) >= BURST // 3, timeout=60)
        server.stop()  # a restart: SHUTDOWN writes the AOF, then the same port comes back
        time.sleep(1.0)
        restarted = EmbeddedRedis(tmp_path / "redis", port=server.port, appendonly=True).start()
        producer.join(timeout=120)
        assert not producer.is_alive() and len(accepted) == BURST and len(set(accepted)) == BURST

        def all_done():
            pipe = queue.redis.pipeline(transaction=False)
            for job_id in accepted:
                pipe.hget(keys.job(job_id), "status")
            return all(status == JobStatus.COMPLETED.value for status in pipe.execute())

        wait_until(all_done, timeout=120)
        results = [queue.result(job_id) for job_id in accepted]
        assert [result["job"] for result in results] == accepted  # one stored result each
        assert queue.stats("features")["completed"] == BURST
        # A job may run twice only if Redis lost its acknowledgement; a clean restart loses nothing.
        assert set(runs) == set(accepted) and max(runs.values()) == 1
        assert refused > 0  # the restart really happened while the burst was being accepted
    finally:
        worker.stop()
        if restarted:
            restarted.stop()
        server.stop()
