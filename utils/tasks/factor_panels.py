"""Stored bars of a factor job's symbols on one calendar, and a worker's cache of them.

The panels: the stored bars of the request's symbols aligned on the union of their dates (NaN
where a symbol has no bar on a date, never forward-filled). The factor dates are every date of
that calendar inside [start, end]; the panels go on for up to ``extra_rows`` more stored dates so
the last factor dates have forward returns.

A research loop analyses factor after factor on one universe: reading and aligning 3,000 symbols'
bars costs about as much as the analysis itself, so a worker keeps recent aligned panels
(``AlignedBarsCache``, bounded in bytes, least recently used out first). An entry is used only
while every symbol's data version is the one it was built from (one pipelined HGET per symbol,
``BarStore.versions``), so an import never leaves a stale panel behind. Cached panels are
read-only: jobs share them.

The ``sentiment`` column (``utils.data.sentiment``: the latest stored score at or before each date,
0 before the first; NaN where the symbol has no bar) is read fresh for every job, never cached:
scores arrive without a data version.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from utils.data import sentiment as stored_sentiment
from utils.data.store import COLUMNS, BarStore


@dataclass(frozen=True)
class AlignedBars:
    """The request's symbols on one calendar: the union of their stored dates from ``start``."""

    times: np.ndarray  # (T,) int64 ns, increasing
    factor_rows: int  # rows 0..factor_rows-1 are the factor dates (inside [start, end])
    panels: dict[str, np.ndarray]  # column name -> (T, N) float64, NaN where a symbol has no bar

    @property
    def close(self) -> np.ndarray:
        return self.panels["close"]

    @property
    def nbytes(self) -> int:
        return self.times.nbytes + sum(panel.nbytes for panel in self.panels.values())


def _aligned(store: BarStore, symbols: list[str], start_ns: int, end_ns: int, extra_rows: int,
             columns: tuple[str, ...]) -> tuple[AlignedBars, tuple[int, ...]]:
    """(the aligned panels, the symbols' versions they were built from)."""
    prices = tuple(name for name in columns if name != stored_sentiment.COLUMN)
    stored = store.read_columns_many(symbols, prices, start_ns)
    union = np.unique(np.concatenate([bars.time for bars in stored.values()] + [np.empty(0, np.int64)]))
    factor_rows = int(np.searchsorted(union, end_ns, side="right"))
    times = union[:min(union.size, factor_rows + extra_rows)]
    panels = _place([(stored[symbol].time, stored[symbol].values) for symbol in symbols], times, prices)
    if stored_sentiment.COLUMN in columns:
        sentiment = stored_sentiment.sentiment_panel(store.redis, symbols, times)
        panels[stored_sentiment.COLUMN] = np.where(np.isnan(panels[prices[0]]), np.nan, sentiment)
    versions = tuple(stored[symbol].version for symbol in symbols)
    return AlignedBars(times, factor_rows, panels), versions


def _place(stored: list[tuple[np.ndarray, dict[str, np.ndarray]]], times: np.ndarray,
           prices: tuple[str, ...]) -> dict[str, np.ndarray]:
    """(T, N) panels of ``prices`` on ``times``: column j holds symbol j's (time, values) bars
    up to ``times[-1]``, NaN where it has no bar."""
    last = times[-1] if times.size else np.iinfo(np.int64).min
    panels = {name: np.full((times.size, len(stored)), np.nan) for name in prices}
    for column, (bar_times, values) in enumerate(stored):
        inside = int(np.searchsorted(bar_times, last, side="right"))
        rows = np.searchsorted(times, bar_times[:inside])
        for name in prices:
            panels[name][rows, column] = values[name][:inside]
    return panels


def window_bars(store: BarStore, symbols: list[str], from_ns: int, to_ns: int, factor_end_ns: int,
                columns: tuple[str, ...]) -> AlignedBars:
    """Stored ``columns`` (no sentiment) of ``symbols`` between ``from_ns`` and ``to_ns`` only, on
    the union of their dates there; the factor rows are those at or before ``factor_end_ns``.
    A date shard's read: its rows, never the rest of the history. Raises SymbolNotFound."""
    stored = store.read_many(symbols, from_ns, to_ns)
    union = np.unique(np.concatenate([bars.time for bars in stored.values()] + [np.empty(0, np.int64)]))
    panels = _place([(stored[symbol].time, {name: getattr(stored[symbol], name) for name in columns})
                     for symbol in symbols], union, columns)
    return AlignedBars(union, int(np.searchsorted(union, factor_end_ns, side="right")), panels)


def aligned_bars(store: BarStore, symbols: list[str], start_ns: int, end_ns: int, extra_rows: int,
                 columns: tuple[str, ...] = COLUMNS) -> AlignedBars:
    """Stored ``columns`` of ``symbols`` on the union of their dates in [start, end], plus up to
    ``extra_rows`` later dates of that union (for forward returns). Raises SymbolNotFound."""
    return _aligned(store, symbols, start_ns, end_ns, extra_rows, tuple(columns))[0]


class AlignedBarsCache:
    """Recently aligned panels, at most ``max_bytes`` of them, valid while the data versions hold."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[tuple[int, ...], AlignedBars]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def load(self, store: BarStore, symbols: list[str], start_ns: int, end_ns: int, extra_rows: int,
             columns: tuple[str, ...] = COLUMNS) -> AlignedBars:
        """``aligned_bars``, from the cache when the symbols' versions are those it was built from."""
        if stored_sentiment.COLUMN in columns:  # no version to check it against: read it fresh
            return aligned_bars(store, symbols, start_ns, end_ns, extra_rows, columns)
        key = (tuple(symbols), start_ns, end_ns, extra_rows, tuple(sorted(columns)))
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and tuple(store.versions(symbols)) == entry[0]:
            with self._lock:
                self.hits += 1
                if key in self._entries:
                    self._entries.move_to_end(key)
            return entry[1]
        aligned, versions = _aligned(store, symbols, start_ns, end_ns, extra_rows, key[-1])
        for panel in aligned.panels.values():
            panel.flags.writeable = False
        aligned.times.flags.writeable = False
        with self._lock:
            self.misses += 1
            self._put(key, versions, aligned)
        return aligned

    def _put(self, key: tuple, versions: tuple[int, ...], aligned: AlignedBars) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1].nbytes
        if aligned.nbytes > self.max_bytes:
            return
        self._entries[key] = (versions, aligned)
        self._bytes += aligned.nbytes
        while self._bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
