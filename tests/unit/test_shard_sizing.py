"""Symbols per shard from SHARD_SYMBOLS and SHARD_MEMORY_MB (utils/tasks/shard_sizing.py),
checked against the closed form max(1, min(SHARD_SYMBOLS, budget // (rows x fields x 8)))."""
from __future__ import annotations

from utils.data.store import SymbolInfo
from utils.tasks.shard_sizing import BAR_FIELDS, bytes_per_symbol, rows_in_range, shard_size

DAY = 86_400 * 10**9
MIB = 2**20


def info(rows: int, first: int, last: int) -> SymbolInfo:
    return SymbolInfo("X", rows, first, last, 1, False, "import")


def test_rows_in_range_scales_the_span_the_range_covers():
    assert rows_in_range(1001, 0, 1000 * DAY, None, None) == 1001
    assert rows_in_range(1001, 0, 1000 * DAY, None, 500 * DAY) == 502  # ceil(1001 x 0.5) + 1, never fewer
    assert rows_in_range(1001, 0, 1000 * DAY, 250 * DAY, 500 * DAY) == 252
    assert rows_in_range(1001, 0, 1000 * DAY, 2000 * DAY, None) == 0  # range after the data
    assert rows_in_range(1, 5 * DAY, 5 * DAY, None, None) == 1 and rows_in_range(0, None, None, None, None) == 0


def test_bytes_per_symbol_is_the_largest_symbol_times_fields_times_8():
    infos = [info(100, 0, 99 * DAY), None, info(2520, 0, 2519 * DAY)]
    assert bytes_per_symbol(infos, None, None) == 2520 * BAR_FIELDS * 8 == 120_960
    assert bytes_per_symbol(infos, None, None, fields=2) == 2520 * 2 * 8
    assert bytes_per_symbol([None], None, None) == 0


def test_shard_size_is_the_smaller_of_the_count_and_the_budget_and_at_least_one():
    minute_year = 98_280 * BAR_FIELDS * 8  # 1 year of minute bars (252 x 390), 4.7 MB per symbol
    assert shard_size(200, 512 * MIB, minute_year) == 512 * MIB // minute_year == 113
    assert shard_size(50, 512 * MIB, minute_year) == 50  # SHARD_SYMBOLS is the cap
    assert shard_size(200, 512 * MIB, 2520 * 48) == 200  # daily bars: the budget holds thousands
    assert shard_size(200, 1 * MIB, 10 * MIB) == 1  # one symbol above the budget: one per shard
    assert shard_size(200, 512 * MIB, 0) == 200  # nothing catalogued: the count alone
    assert shard_size(0, 512 * MIB, minute_year) == 0  # SHARD_SYMBOLS=0: never shard
