"""The WebSocket gateway suites (job pushes from pub/sub, live market data, alerts) against the
real 3-master Redis Cluster: the same tests, with the cluster's ``redis_client`` and
``settings_factory`` (REDIS_CLUSTER_NODES set), so the gateway's asyncio client is RedisCluster."""
from __future__ import annotations

from tests.integration.test_redis_cluster import redis_client, settings_factory  # noqa: F401  (overrides)
from tests.integration.test_gateway import *  # noqa: F401,F403  (its fixtures and tests)
from tests.integration.test_gateway_alerts import *  # noqa: F401,F403
