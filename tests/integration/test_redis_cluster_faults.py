"""Fault tests on a real 3-master Redis Cluster: the master that holds the queue's ``{gq}`` slot
restarts (AOF on) in the middle of a burst of enqueues, and every accepted job still runs once
with one result (the cluster version of test_reliability.py); a worker process killed mid-job
is restarted by the supervisor and the job completes once (test_processes.py's, on the cluster)."""
from __future__ import annotations

import pytest
import redis

from tests.burst import assert_burst_survives_a_restart
from tests.integration.test_processes import server_without_worker  # noqa: F401  (fixture)
from tests.integration.test_processes import test_worker_killed_mid_job_is_restarted_and_the_job_completes_once  # noqa: F401,E501
from tests.integration.test_redis_cluster import redis_client, settings_factory  # noqa: F401  (overrides)
from tests.redis_cluster_fixtures import LocalRedisCluster
from utils.queue import keys
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
    assert_burst_survives_a_restart(queue, settings, lambda: restartable_cluster.restart(queue_master), BURST,
                                    (redis.RedisError,))  # connection refused, CLUSTERDOWN...: retried
