"""The worker's bar cache for backtests: unchanged symbols come from memory, a re-imported symbol is
read again (its version changed), unknown symbols fail as the store does, and memory is bounded."""
from __future__ import annotations

import numpy as np
import pytest
import redis

from utils.data.store import Bars, BarStore, SymbolNotFound
from utils.tasks.bar_cache import StoredBarsCache

DAY_NS = 86_400 * 10**9


def bars(symbol, level, count=40):
    times = (19_000 + np.arange(count, dtype=np.int64)) * DAY_NS
    close = np.full(count, float(level))
    return Bars(symbol, times, close, close * 1.01, close * 0.99, close, np.ones(count))


@pytest.fixture
def store(redis_server, redis_client):
    return BarStore(redis.Redis(port=redis_server.port))


def test_unchanged_symbols_are_served_from_memory_and_a_reimport_is_seen(store):
    for symbol in ("AAA.SZ", "BBB.SZ"):
        store.write(bars(symbol, 10.0), replace=True)
    cache = StoredBarsCache(store, 2**20)
    end_ns = (19_000 + 29) * DAY_NS
    first = cache.read_many(["AAA.SZ", "BBB.SZ"], end_ns)
    again = cache.read_many(["AAA.SZ", "BBB.SZ"], end_ns)
    assert (cache.misses, cache.hits) == (2, 2)
    assert len(again["AAA.SZ"]) == 30 and again["AAA.SZ"].close[0] == 10.0
    for symbol in first:
        for field in ("time", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(again[symbol], field), getattr(first[symbol], field))
    store.write(bars("BBB.SZ", 20.0), replace=True)  # a re-import bumps the version
    fresh = cache.read_many(["AAA.SZ", "BBB.SZ"], None)
    assert fresh["BBB.SZ"].close[0] == 20.0 and len(fresh["BBB.SZ"]) == 40
    assert (cache.misses, cache.hits) == (3, 3)
    with pytest.raises(SymbolNotFound):
        cache.read_many(["AAA.SZ", "NOPE.SZ"], None)


def test_memory_is_bounded_and_zero_turns_it_off(store):
    for index in range(4):
        store.write(bars(f"S{index}.SZ", 1.0 + index), replace=True)
    symbols = [f"S{index}.SZ" for index in range(4)]
    one = 40 * 8 * 6
    cache = StoredBarsCache(store, 2 * one)  # room for two symbols
    cache.read_many(symbols)
    cache.read_many(symbols[2:])
    assert cache.hits == 2  # the last two read stayed
    cache.read_many(symbols[:1])
    assert cache.hits == 2 and cache._bytes <= 2 * one
    off = StoredBarsCache(store, 0)
    assert off.read_many(symbols[:2])["S1.SZ"].close[0] == 2.0 and off.hits == off.misses == 0
