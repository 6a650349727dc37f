"""Pieces of the parquet bar store that need no Redis: the range cache and interval names."""
from __future__ import annotations

import numpy as np
import pytest

from utils.data.parquet_store import RangeCache, catalogue_key, validate_interval
from utils.data.store import Bars, InvalidBars


def rows(count: int) -> Bars:
    values = np.ones(count)
    return Bars("A", np.arange(count, dtype=np.int64), values, values, values, values, values)


def test_range_cache_is_bounded_and_least_recently_used_goes_first():
    cache = RangeCache(max_bytes=48 * 250)
    cache.put(("1d", "A", 1, None, None), rows(100))
    cache.put(("1d", "B", 1, None, None), rows(100))
    assert cache.get(("1d", "A", 1, None, None)) is not None  # A is now the most recent
    cache.put(("1d", "C", 1, None, None), rows(100))  # over the budget: B goes
    assert cache.get(("1d", "B", 1, None, None)) is None
    assert cache.get(("1d", "A", 1, None, None)) is not None and cache.bytes <= cache.max_bytes
    cache.put(("1d", "BIG", 1, None, None), rows(1000))  # larger than the whole cache: not kept
    assert cache.get(("1d", "BIG", 1, None, None)) is None
    assert RangeCache(0).get(("x",)) is None


def test_intervals_and_catalogue_keys():
    assert [validate_interval(v) for v in ("1d", "1m", "5m", "15m", "1h", "30s")] == ["1d", "1m", "5m", "15m", "1h", "30s"]
    for bad in ("", "0m", "1w", "m1", "1d/../x"):
        with pytest.raises(InvalidBars, match="interval"):
            validate_interval(bad)
    assert catalogue_key("AAA") == "md:catalogue:AAA" and catalogue_key("AAA", "1m") == "md:catalogue:AAA:1m"
