"""The Redis hot cache of bar ranges (utils/data/hot_cache.py) on a real Redis: shared between
stores (processes), keyed on versions, and never above its byte budget."""
from __future__ import annotations

import numpy as np
import pytest

from tests.integration.test_parquet_store import DAY_NS, T0, bars
from utils.data.hot_cache import BUCKET_SECONDS, ROW_BYTES, HotRangeCache
from utils.data.parquet_store import ParquetBarStore
from utils.redis_client import make_redis


def raw_client(redis_server):
    return make_redis("127.0.0.1", redis_server.port, decode=False)


def hot_store(redis_server, root, max_bytes=2**20) -> ParquetBarStore:
    client = raw_client(redis_server)
    return ParquetBarStore(client, str(root), hot=HotRangeCache(client, max_bytes, 600, max_bytes))


def test_a_range_read_by_one_process_is_served_to_another_from_redis(redis_server, redis_client, tmp_path):
    first, second = hot_store(redis_server, tmp_path), hot_store(redis_server, tmp_path)
    first.write(bars("HOT", 300), replace=True)
    start, end = T0 + 10 * DAY_NS, T0 + 109 * DAY_NS
    read = first.read("HOT", start, end)
    assert len(read) == 100 and redis_client.strlen(f"md:hot:HOT:1d:1:{start}:{end}") == 100 * ROW_BYTES == 4800
    (tmp_path / "interval=1d" / "symbol=HOT" / "part-000000000001.parquet").unlink()  # only Redis has it now
    shared = second.read("HOT", start, end)
    for name in ("time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(shared, name), getattr(read, name))
    assert shared.version == 1
    first.write(bars("HOT", 5, price=12.0), replace=True)  # version 2: the old entry no longer matches
    assert second.read("HOT").close.tolist() == [12.0] * 5


def test_the_budget_is_never_exceeded_and_frees_up_after_the_ttl(redis_server, redis_client):
    now = [1_000_000.0 * BUCKET_SECONDS]
    entry = bars("B0", 100)  # 4,800 bytes
    cache = HotRangeCache(raw_client(redis_server), max_bytes=3 * 4800 + 100, ttl_seconds=120,
                          max_entry_bytes=10_000, clock=lambda: now[0])
    stored = [cache.put(bars(f"B{i}", 100), "1d", None, None) for i in range(5)]
    assert stored == [True, True, True, False, False]
    live = sum(redis_client.strlen(key) for key in redis_client.scan_iter("md:hot:*"))
    assert live == 3 * 4800 <= cache.max_bytes
    assert not cache.put(bars("BIG", 300), "1d", None, None)  # 14,400 bytes: above the entry limit
    now[0] += 120 + 2 * BUCKET_SECONDS  # past every window minute the first puts counted in
    assert cache.put(entry, "1d", T0, None)
    assert cache.get("B0", "1d", 0, T0, None).close.tolist() == entry.close.tolist()
    assert cache.get("B0", "1d", 1, T0, None) is None  # another version: never served


def test_zero_megabytes_turns_it_off(redis_server, redis_client):
    cache = HotRangeCache(raw_client(redis_server), 0, 600, 2**20)
    assert not cache.put(bars("OFF", 10), "1d", None, None) and cache.get("OFF", "1d", 0, None, None) is None
    assert not list(redis_client.scan_iter("md:hot*"))


@pytest.mark.parametrize("mb", [1, 64])
def test_settings_build_the_store_with_its_hot_cache(settings_factory, redis_client, mb):
    from utils.data.store import bar_store_from_settings
    from utils.redis_client import redis_from_settings
    settings = settings_factory(hot_cache_mb=mb, hot_cache_entry_mb=1, hot_cache_ttl_seconds=30)
    store = bar_store_from_settings(redis_from_settings(settings, decode=False), settings)
    assert (store.hot.max_bytes, store.hot.max_entry_bytes, store.hot.ttl) == (mb * 2**20, 2**20, 30)


def test_puts_and_gets_on_a_redis_cluster(redis_cluster):
    from config.settings import load_settings
    from utils.redis_client import redis_from_settings
    client = redis_from_settings(load_settings(redis_cluster_nodes=redis_cluster.nodes_setting), decode=False)
    cache = HotRangeCache(client, 2**20, 600, 2**20)
    for index in range(6):  # keys in several slots, counters in others
        assert cache.put(bars(f"CL{index}", 50), "1d", None, None)
    assert cache.get("CL4", "1d", 0, None, None).close.tolist() == [10.0] * 50


def test_read_many_takes_the_shared_ranges_in_one_round_trip(redis_server, redis_client, tmp_path):
    first, second = hot_store(redis_server, tmp_path), hot_store(redis_server, tmp_path)
    names = [f"RM{index}" for index in range(6)]
    for index, name in enumerate(names):
        first.write(bars(name, 50 + index, price=10.0 + index), replace=True)
    read = first.read_many(names, T0 + DAY_NS, None)
    for path in tmp_path.glob("interval=1d/symbol=RM*/part-*.parquet"):
        path.unlink()  # only Redis has them now
    shared = second.read_many(names, T0 + DAY_NS, None)
    assert [len(shared[n]) for n in names] == [49 + i for i in range(6)]
    assert all(np.array_equal(shared[n].close, read[n].close) and shared[n].version == 1 for n in names)
