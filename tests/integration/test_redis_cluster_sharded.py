"""The sharded-job suite (parent backtests and sweeps fanned out as child jobs) against the real
3-master Redis Cluster: the same tests, with the cluster's ``redis_client`` and
``settings_factory`` (REDIS_CLUSTER_NODES set) in place of the single server's."""
from __future__ import annotations

from tests.integration.test_redis_cluster import redis_client, settings_factory  # noqa: F401  (overrides)
from tests.integration.test_sharded_jobs import *  # noqa: F401,F403  (its fixtures and tests)
