"""How many symbols one shard holds: at most SHARD_SYMBOLS, and no more than one worker's
memory budget for a shard's bars (SHARD_MEMORY_MB) allows.

A shard's bars are its symbols' rows in the job's time range times the fields read (``time``
and the price/volume columns), 8 bytes each. The rows come from the catalogue (rows, first and
last time per symbol; nothing is read from the files), scaled to the part of the symbol's span
the range covers, and the largest symbol counts for all, so any shard of the job fits:

    symbols per shard = max(1, min(SHARD_SYMBOLS, budget // (rows in range x fields x 8)))

A job whose symbols each need more than the budget runs one symbol per shard. SHARD_SYMBOLS = 0
still means never shard.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

BYTES_PER_VALUE = 8
BAR_FIELDS = 6  # time, open, high, low, close, volume: what a backtest shard reads


def rows_in_range(rows: int, first: int | None, last: int | None, start_ns: int | None, end_ns: int | None) -> int:
    """Rows of a symbol with ``rows`` bars spread over [first, last] that fall in [start, end]
    (evenly spaced assumed; rounded up)."""
    if rows <= 0 or first is None or last is None:
        return 0
    lo = first if start_ns is None else max(first, start_ns)
    hi = last if end_ns is None else min(last, end_ns)
    if hi < lo:
        return 0
    if last == first:
        return rows
    return min(rows, math.ceil(rows * (hi - lo) / (last - first)) + 1)


def bytes_per_symbol(infos: Iterable[Any], start_ns: int | None, end_ns: int | None,
                     fields: int = BAR_FIELDS) -> int:
    """The largest symbol's bytes in the range (``infos``: SymbolInfo or None per symbol)."""
    worst = max((rows_in_range(i.rows, i.first_time, i.last_time, start_ns, end_ns) for i in infos if i is not None),
                default=0)
    return worst * fields * BYTES_PER_VALUE


def shard_size(shard_symbols: int, memory_bytes: int, symbol_bytes: int) -> int:
    """Symbols per shard (0 when SHARD_SYMBOLS is 0: never shard)."""
    if shard_symbols <= 0:
        return 0
    if symbol_bytes <= 0:
        return shard_symbols
    return max(1, min(shard_symbols, memory_bytes // symbol_bytes))


def shard_size_for(store: Any, symbols: list[str], start_ns: int | None, end_ns: int | None, settings: Any,
                   fields: int = BAR_FIELDS) -> int:
    """``shard_size`` from the settings and the symbols' catalogue entries in the bar store."""
    if settings.shard_symbols <= 0:
        return 0
    if not hasattr(store, "info_many"):  # a store without a catalogue (the warm-up's synthetic bars)
        return settings.shard_symbols
    symbol_bytes = bytes_per_symbol(store.info_many(symbols).values(), start_ns, end_ns, fields)
    return shard_size(settings.shard_symbols, settings.shard_memory_mb * 2**20, symbol_bytes)
