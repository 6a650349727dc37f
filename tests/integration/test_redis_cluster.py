"""The queue, the job API and the guide's client against a real 3-master Redis Cluster.

The queue and guide tests are the single-node ones, collected here again with ``redis_client``
and ``settings_factory`` overridden so that every client is redis-py's RedisCluster
(REDIS_CLUSTER_NODES set). A multi-key script or MULTI/EXEC whose keys span slots fails there
with CROSSSLOT, so these runs are the check that the key layout holds."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from config.settings import InvalidSettings, load_settings
from tests.conftest import settings_builder
from utils import task_types
from utils.queue import keys
from utils.data import keys as data_keys
from utils.queue.jobs import new_job_id
from utils.realtime.flush_script import FlushCall
from utils.redis_client import redis_from_settings

# The single-node suites, run again here on the cluster (pytest collects imported tests).
from tests.integration.test_queue import queue  # noqa: F401  (fixture)
from tests.integration.test_queue import (  # noqa: F401
    test_cancel_pending_job_is_never_run, test_cancel_running_job_stops_it_before_it_finishes,
    test_enqueue_is_idempotent_per_job_id, test_failures_retry_with_backoff_then_succeed,
    test_higher_priority_runs_first, test_job_of_a_dead_consumer_is_reclaimed_after_its_lease,
    test_job_runs_once_and_stores_result, test_late_duplicate_finish_does_not_overwrite_the_result,
    test_permanent_error_fails_without_retry, test_repeated_failure_goes_to_dead_letter,
    test_shutdown_returns_running_job_to_the_queue)
from tests.integration.test_api_jobs import jobs  # noqa: F401  (fixture)
from tests.integration.test_api_jobs import (  # noqa: F401
    test_cancel_a_pending_job_and_page_through_history, test_cluster_status_lists_workers_queues_and_dead_letters,
    test_every_service_id_has_one_lifecycle, test_watch_of_an_unknown_job_is_not_found)
from tests.integration.test_guide_client import test_guide_client_runs_unchanged  # noqa: F401
from tests.integration.test_api_jobs import test_training_progress_detail_is_shown  # noqa: F401
from tests.integration.test_api_realtime import market, stub  # noqa: F401  (fixtures)
from tests.integration.test_api_realtime import (  # noqa: F401
    test_batched_form_mixes_symbols_in_order, test_compute_features_match_talib_and_cache_by_version,
    test_subscriber_receives_other_clients_ticks_of_its_symbols)
from tests.integration.test_stream_fast_path import store  # noqa: F401  (fixture)
from tests.integration.test_stream_fast_path import (  # noqa: F401
    test_bars_from_one_tick_messages_equal_bars_from_a_batch, test_write_behind_stores_every_accepted_tick_in_order_on_stop)
from tests.integration.test_api_factor_sets import stubs  # noqa: F401  (fixture)
from tests.integration.test_api_factor_sets import test_compute_stores_the_panels_and_analyze_reads_them  # noqa: F401


@pytest.fixture
def redis_client(redis_cluster):
    redis_cluster.flushall()
    client = redis_from_settings(load_settings(redis_cluster_nodes=redis_cluster.nodes_setting))
    yield client
    client.close()


@pytest.fixture
def settings_factory(redis_cluster, tmp_path) -> Callable[..., object]:
    return settings_builder(tmp_path, redis_cluster_nodes=redis_cluster.nodes_setting)


def test_the_factory_gives_a_cluster_client_spanning_three_masters(redis_client):
    assert isinstance(redis_client, RedisCluster)
    assert len(redis_client.get_primaries()) == 3


def queue_keys_of(task_type: str, job_id: str) -> list[str]:
    """Every key a queue script or transaction may name together for one job."""
    return [keys.job(job_id), keys.result(job_id), *(keys.stream(task_type, p) for p in keys.PRIORITIES),
            keys.dead_letter(task_type), keys.DELAYED, keys.history(task_type), keys.HISTORY_ALL,
            keys.stats(task_type)]


def test_every_queue_script_names_keys_of_one_slot():
    slots = {key_slot(key.encode()) for t in task_types.names()
             for key in queue_keys_of(t, new_job_id(t))}
    assert len(slots) == 1


def test_a_tick_flush_calls_the_script_once_per_symbol_slot():
    call = FlushCall(maxlen=100, intervals=("1s", "1m"))
    one = np.array([1], dtype=np.int64)
    for symbol in ("AAA", "BBB.SZ", "600000.SH"):
        call.add(symbol, one, np.array([10.0]), np.array([5.0]), ["payload"], {"1m": [(0, 1, 2, 0.5, 1.5, 5)]})
    per_symbol = call.per_symbol()
    assert [k for keys_, _ in per_symbol for k in keys_] == call.keys
    assert sum(len(args) - 2 for _, args in per_symbol) == len(call.args) - 2
    for symbol_keys, args in per_symbol:
        assert len({key_slot(key.encode()) for key in symbol_keys}) == 1 and args[:2] == [100, 2]


def test_factor_sets_and_the_model_registry_are_one_slot_each():
    assert key_slot(data_keys.factor_set("s1").encode()) == key_slot(data_keys.factor_set_values("s1", 3).encode())
    assert key_slot(data_keys.model("m-1").encode()) == key_slot(data_keys.MODELS.encode())


def test_cluster_nodes_setting_is_parsed_and_bad_entries_are_named():
    from utils.redis_client import parse_cluster_nodes
    assert parse_cluster_nodes("10.0.0.1:7000, redis-2:7001") == [("10.0.0.1", 7000), ("redis-2", 7001)]
    for bad in ("10.0.0.1", "10.0.0.1:0", "host:port", "a:7000,,b:7001"):
        with pytest.raises(InvalidSettings, match="REDIS_CLUSTER_NODES"):
            load_settings(redis_cluster_nodes=bad)
    assert load_settings(redis_cluster_nodes="127.0.0.1:7000").redis_configured  # never an embedded server
