"""Aligned bar panels of factor jobs on a real Redis: only the asked columns are read, the union
calendar and NaN holes match a pandas outer join, and the worker's cache serves a panel only while
every symbol's data version is the one it was built from."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from utils.data.store import Bars, BarStore, SymbolNotFound
from utils.redis_client import make_redis
from utils.tasks.factor_panels import AlignedBarsCache, aligned_bars

DAY = 86_400 * 10**9


def write(store: BarStore, symbol: str, days: list[int], scale: float = 1.0) -> None:
    time = np.array(days, dtype=np.int64) * DAY
    close = (np.arange(len(days), dtype=np.float64) + 10.0) * scale
    store.write(Bars(symbol, time, close, close + 1, close - 1, close, close * 100), replace=True, source="test")


@pytest.fixture
def store(redis_server, redis_client) -> BarStore:  # redis_client: a flushed server
    store = BarStore(make_redis("127.0.0.1", redis_server.port, decode=False))
    write(store, "A", [1, 2, 3, 5, 6, 8, 9])
    write(store, "B", [2, 3, 4, 5, 7, 8, 9, 10])
    return store


def test_union_calendar_with_holes_and_extra_rows(store):
    aligned = aligned_bars(store, ["A", "B"], 2 * DAY, 7 * DAY, 2, ("close",))
    assert set(aligned.panels) == {"close"}  # only the asked column is read
    frame = pd.DataFrame({s: pd.Series(store.read(s, 2 * DAY).close, index=store.read(s, 2 * DAY).time)
                          for s in ("A", "B")}).sort_index()
    assert aligned.factor_rows == int((frame.index <= 7 * DAY).sum()) == 6
    expected = frame.iloc[:aligned.factor_rows + 2]
    assert np.array_equal(aligned.times, expected.index.to_numpy())
    np.testing.assert_array_equal(aligned.close, expected.to_numpy())  # NaN where a symbol has no bar
    with pytest.raises(ValueError, match="unknown bar column 'vwap'"):
        aligned_bars(store, ["A"], 0, 9 * DAY, 0, ("vwap",))
    with pytest.raises(SymbolNotFound):
        aligned_bars(store, ["A", "NOPE"], 0, 9 * DAY, 0, ("close",))


def test_cache_hits_until_a_symbol_changes(store):
    cache = AlignedBarsCache(2**20)
    first = cache.load(store, ["A", "B"], 0, 9 * DAY, 1, ("close",))
    again = cache.load(store, ["A", "B"], 0, 9 * DAY, 1, ("close",))
    assert again is first and (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(ValueError):
        first.close[0, 0] = 1.0  # shared between jobs: read-only
    write(store, "B", [2, 3, 4, 5, 7, 8, 9, 10], scale=2.0)  # a re-import bumps B's version
    fresh = cache.load(store, ["A", "B"], 0, 9 * DAY, 1, ("close",))
    assert fresh is not first and cache.misses == 2
    np.testing.assert_array_equal(fresh.close, aligned_bars(store, ["A", "B"], 0, 9 * DAY, 1, ("close",)).close)
    assert cache.load(store, ["A", "B"], 0, 9 * DAY, 2, ("close",)) is not fresh  # another shape, another entry


def test_cache_is_bounded_least_recently_used_out(store):
    one = aligned_bars(store, ["A", "B"], 0, 9 * DAY, 0, ("close",)).nbytes
    cache = AlignedBarsCache(2 * one + one // 2)  # room for two such panels
    a = cache.load(store, ["A", "B"], 0, 9 * DAY, 0, ("close",))
    b = cache.load(store, ["B", "A"], 0, 9 * DAY, 0, ("close",))
    assert cache.load(store, ["A", "B"], 0, 9 * DAY, 0, ("close",)) is a  # A,B now most recent
    cache.load(store, ["A", "B"], 0, 9 * DAY, 0, ("high",))  # evicts B,A
    assert cache.load(store, ["A", "B"], 0, 9 * DAY, 0, ("close",)) is a
    assert cache.load(store, ["B", "A"], 0, 9 * DAY, 0, ("close",)) is not b
    assert AlignedBarsCache(1).load(store, ["A"], 0, 9 * DAY, 0, ("close",)).close.shape == (7, 1)  # too big: not kept
