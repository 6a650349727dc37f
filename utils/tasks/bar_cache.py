"""A worker's recently read bars, by symbol and data version, for the backtests it runs.

A backtest reads every symbol's whole stored history (100 symbols x 1,000 daily bars is ~5 MB out
of Redis and its decoding); users run many strategies over the same universe. A hit costs one
pipelined read of the symbols' versions: bars are used only while the version they were read at
is still the stored one (every write bumps it), so a re-import is seen by the next backtest.
Least recently used symbols go first once ``max_bytes`` is reached; 0 turns the cache off.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from utils.data.store import Bars, BarStore


def _nbytes(bars: Bars) -> int:
    return sum(column.nbytes for column in (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume))


class StoredBarsCache:
    def __init__(self, store: BarStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Bars] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def read_many(self, symbols: list[str], end_ns: int | None = None) -> dict[str, Bars]:
        """``BarStore.read_many(symbols, None, end_ns)`` (SymbolNotFound included), the symbols whose
        stored version is unchanged from memory."""
        if self.max_bytes <= 0:
            return self.store.read_many(symbols, None, end_ns)
        versions = self.store.versions(symbols)
        found: dict[str, Bars] = {}
        with self._lock:
            for symbol, version in zip(symbols, versions):
                cached = self._entries.get(symbol)
                if cached is not None and version is not None and cached.version == version:
                    self._entries.move_to_end(symbol)
                    found[symbol] = cached
        missing = [symbol for symbol in symbols if symbol not in found]
        if missing:
            fresh = self.store.read_many(missing)
            with self._lock:
                for symbol in missing:
                    self._put(fresh[symbol])
            found.update(fresh)
        with self._lock:
            self.hits += len(symbols) - len(missing)
            self.misses += len(missing)
        return {symbol: found[symbol].between(None, end_ns) for symbol in symbols}

    def _put(self, bars: Bars) -> None:
        size = _nbytes(bars)
        old = self._entries.pop(bars.symbol, None)
        if old is not None:
            self._bytes -= _nbytes(old)
        if size > self.max_bytes:
            return
        self._entries[bars.symbol] = bars
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= _nbytes(evicted)
