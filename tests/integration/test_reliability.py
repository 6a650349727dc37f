"""Reliability with real processes: Redis restarted (AOF everysec) in the middle of a burst.

(Worker SIGKILL mid-job and Redis outage live in test_processes.py; dead-lettering after the
attempts run out in test_queue.py.)
"""
from __future__ import annotations

import time

import redis

from tests.burst import assert_burst_survives_a_restart
from utils.queue.streams import JobQueue, QueueConfig
from utils.redis_client import EmbeddedRedis, make_redis

BURST = 1000


def test_redis_restart_during_a_burst_loses_and_duplicates_nothing(tmp_path, settings_factory):
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()  # AOF, appendfsync everysec
    restarted: list[EmbeddedRedis] = []
    settings = settings_factory(redis_port=server.port)
    queue = JobQueue(make_redis("127.0.0.1", server.port), QueueConfig.from_settings(settings))
    queue.ensure_groups()

    def restart():
        server.stop()  # SHUTDOWN writes the AOF, then the same port comes back
        time.sleep(1.0)
        restarted.append(EmbeddedRedis(tmp_path / "redis", port=server.port, appendonly=True).start())

    try:
        assert_burst_survives_a_restart(queue, settings, restart, BURST, (redis.ConnectionError, redis.TimeoutError))
    finally:
        for running in restarted:
            running.stop()
        server.stop()
