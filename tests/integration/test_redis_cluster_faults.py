"""Fault tests on a real 3-master Redis Cluster: the master that holds the queue's ``{gq}`` slot
restarts (AOF on) in the middle of a burst of enqueues, and every accepted job still runs once
with one result (the cluster version of test_reliability.py); a worker process killed mid-job
is restarted by the supervisor and the job completes once (test_processes.py's, on the cluster)."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from tests.conftest import InProcessWorker, wait_until
from tests.integration.test_processes import server_without_worker  # noqa: F401  (fixture)
from tests.integration.test_processes import test_worker_killed_mid_job_is_restarted_and_the_job_completes_once  # noqa: F401,E501
from tests.integration.test_redis_cluster import redis_client, settings_factory  # noqa: F401  (overrides)
from tests.redis_cluster_fixtures import LocalRedisCluster
from utils.queue import keys
from utils.queue.jobs import JobSpec, JobStatus, new_job_id
from utils.queue.streams import JobQueue, QueueConfig
from utils.redis_client import redis_from_settings

BURST = 600


@pytest.fixture
def restartable_cluster(tmp_path):
    cluster = LocalRedisCluster(tmp_path / "cluster", appendonly=True).start()
    yield cluster
    cluster.stop()


def test_restart_of_the_queue_master_during_a_burst_loses_and_duplicates_nothing(restartable_cluster,
                                                                                  settings_factory):
    settings = settings_factory(redis_cluster_nodes=restartable_cluster.nodes_setting)
    queue = JobQueue(redis_from_settings(settings), QueueConfig.from_settings(settings))
    queue.ensure_groups()
    queue_master = queue.redis.get_node_from_key(keys.HISTORY_ALL).port
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
        while index < BURST:
            try:
                accepted.append(queue.enqueue(JobSpec("features", {"n": index}, "normal", 3, {}), job_id))
                index, job_id = index + 1, new_job_id("features")
            except redis.RedisError:  # connection refused, CLUSTERDOWN...: retry with the same id
                refused += 1
                time.sleep(0.01)

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        wait_until(lambda: len(accepted) >= BURST // 3, timeout=60)
        restartable_cluster.restart(queue_master)
        producer.join(timeout=120)
        assert not producer.is_alive() and len(accepted) == BURST and len(set(accepted)) == BURST

        def all_done():
            records = queue.get_many(accepted)
            return all(r is not None and r.status is JobStatus.COMPLETED for r in records)

        wait_until(all_done, timeout=120)
        assert [queue.result(job_id)["job"] for job_id in accepted] == accepted
        assert queue.stats("features")["completed"] == BURST
        assert set(runs) == set(accepted) and max(runs.values()) == 1
        assert refused > 0  # the restart really happened while the burst was being accepted
    finally:
        worker.stop()
