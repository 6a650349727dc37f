"""Ticks -> OHLCV time bars (1s, 1m, 5m, 1d, ...), incrementally and vectorised per batch.

A bar is keyed by the start of its bucket (``time // width * width``, UTC). ``add`` returns
every bar the batch touched — finished ones and the still-open last one — so the caller can
upsert them; the open bar is kept here and continued by the next batch. No Redis here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INTERVAL_NS = {"1s": 10**9, "5s": 5 * 10**9, "1m": 60 * 10**9, "5m": 300 * 10**9, "15m": 900 * 10**9,
               "1h": 3600 * 10**9, "1d": 86_400 * 10**9}


def parse_intervals(text: str) -> tuple[str, ...]:
    """'1m,5m,1d' -> ('1m', '5m', '1d'); raises ValueError naming a bad interval."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in INTERVAL_NS]
    if unknown:
        raise ValueError(f"unknown bar interval(s) {unknown}; valid: {', '.join(INTERVAL_NS)}")
    return names


@dataclass
class Bar:
    start_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def as_array(self) -> np.ndarray:
        return np.array([self.open, self.high, self.low, self.close, self.volume], dtype=np.float64)

    @classmethod
    def from_array(cls, start_ns: int, values: np.ndarray) -> "Bar":
        return cls(start_ns, *(float(v) for v in values[:5]))


SMALL_BATCH = 8  # ticks up to which ``add`` runs in plain Python


class BarAggregator:
    def __init__(self, intervals: tuple[str, ...]) -> None:
        self.intervals = intervals
        self._open: dict[tuple[str, str], Bar] = {}

    def knows(self, symbol: str, interval: str) -> bool:
        return (symbol, interval) in self._open

    def resume(self, symbol: str, interval: str, bar: Bar) -> None:
        """Continue a bar stored before this process started (same bucket)."""
        self._open[(symbol, interval)] = bar

    def add(self, symbol: str, time_ns: np.ndarray, price: np.ndarray, volume: np.ndarray,
            staged: dict[tuple[str, str], Bar]) -> dict[str, list[Bar]]:
        """Fold ticks (time order) into each interval's bars; the bars touched, per interval.
        New open bars go to ``staged`` (read before the committed ones) until ``commit``, so a
        write that fails and is retried never counts its ticks twice."""
        if len(price) <= SMALL_BATCH:
            return self._add_few(symbol, time_ns.tolist(), price.tolist(), volume.tolist(), staged)
        touched: dict[str, list[Bar]] = {}
        for interval in self.intervals:
            width = INTERVAL_NS[interval]
            buckets = time_ns // width * width
            starts = np.flatnonzero(np.concatenate([[True], buckets[1:] != buckets[:-1]]))
            bars = [Bar(int(buckets[s]), float(price[s]), float(h), float(lo), float(price[e - 1]), float(v))
                    for s, e, h, lo, v in zip(starts, np.append(starts[1:], len(price)),
                                              np.maximum.reduceat(price, starts), np.minimum.reduceat(price, starts),
                                              np.add.reduceat(volume, starts))]
            current = staged.get((symbol, interval)) or self._open.get((symbol, interval))
            if current is not None and current.start_ns == bars[0].start_ns:
                first = bars[0]
                bars[0] = Bar(current.start_ns, current.open, max(current.high, first.high),
                              min(current.low, first.low), first.close, current.volume + first.volume)
            staged[(symbol, interval)] = bars[-1]
            touched[interval] = bars
        return touched

    def _add_few(self, symbol: str, times: list[int], prices: list[float], volumes: list[float],
                 staged: dict[tuple[str, str], Bar]) -> dict[str, list[Bar]]:
        """``add`` of a few ticks in plain Python: the array version's dozen NumPy calls per
        interval cost more than the ticks (a flush of an interleaved feed holds one or two ticks
        per symbol). Volumes add up tick by tick."""
        touched: dict[str, list[Bar]] = {}
        for interval in self.intervals:
            width = INTERVAL_NS[interval]
            current = staged.get((symbol, interval)) or self._open.get((symbol, interval))
            bars: list[Bar] = []
            for time_ns, price, volume in zip(times, prices, volumes):
                start = time_ns // width * width
                if bars and bars[-1].start_ns == start:
                    bar = bars[-1]
                    bar.high, bar.low, bar.close, bar.volume = (max(bar.high, price), min(bar.low, price), price,
                                                                bar.volume + volume)
                elif not bars and current is not None and current.start_ns == start:
                    bars.append(Bar(start, current.open, max(current.high, price), min(current.low, price), price,
                                    current.volume + volume))
                else:
                    bars.append(Bar(start, price, price, price, price, volume))
            staged[(symbol, interval)] = bars[-1]
            touched[interval] = bars
        return touched

    def commit(self, staged: dict[tuple[str, str], Bar]) -> None:
        self._open.update(staged)
