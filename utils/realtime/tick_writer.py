"""Write-behind persistence of accepted ticks: stored and published within milliseconds,
off the response path.

Why: on this kind of host a Redis round trip costs ~200 µs, so writing each message's ticks
before answering caps a stream at a few thousand messages per second. One writer thread per
server drains a bounded queue every ``flush_seconds`` (TICK_FLUSH_MS; sooner when it fills),
grouping the flush by symbol: one packed XADD, one set of bar upserts and one PUBLISH per run of
a feature set, per symbol, in one Redis script call (flush_script.py). Order per symbol is preserved (one writer, entries
of a symbol kept in submission order); the one-tick path hands over plain tuples and the arrays
are built here, once per flush. If Redis is unreachable the writer keeps the ticks and retries; when
the backlog reaches ``max_pending`` ticks, ``submit`` raises ``Backlogged`` and the stream is
answered RESOURCE_EXHAUSTED instead of growing memory without bound. A crash loses at most the
last flush interval of ticks (TICK_FLUSH_MS, 10 ms by default); a stream that ends normally,
server shutdown and readers of stored history flush first. The symbol's state is then rebuilt
from what was stored (see symbol_state.py).
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import redis

from utils.data.store import BarStore
from utils.data import keys
from utils.realtime.bar_aggregator import INTERVAL_NS, Bar, BarAggregator
from utils.realtime.flush_script import FlushCall, FlushScript

log = logging.getLogger(__name__)

SUBSCRIBER_CHECK_SECONDS = 1.0
SUBSCRIBER_TTL_SECONDS = 10  # a subscriber refreshes its presence key well within this


class Backlogged(Exception):
    """Too many ticks are waiting to be written (Redis slow or down)."""


@dataclass
class PendingTicks:
    symbol: str
    timestamps: list[str]
    time_ns: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    indicators: dict[str, np.ndarray]


# One accepted single tick, as the stream's hot path hands it over (no arrays built per tick):
# (symbol, timestamp as sent, time ns, price, volume, indicator values after it).
SingleTick = tuple[str, str, int, float, float, dict[str, float]]


def _single_run(symbol: str, ticks: list[SingleTick], with_indicators: bool) -> PendingTicks:
    """Consecutive single ticks of one symbol with one feature set, as one batch (indicator
    columns only ``with_indicators``: they are built for publishing alone)."""
    keys_ = ticks[0][5].keys() if with_indicators else ()
    return PendingTicks(symbol, [t[1] for t in ticks], np.fromiter((t[2] for t in ticks), np.int64, len(ticks)),
                        np.fromiter((t[3] for t in ticks), np.float64, len(ticks)),
                        np.fromiter((t[4] for t in ticks), np.float64, len(ticks)),
                        {k: np.fromiter((t[5][k] for t in ticks), np.float64, len(ticks)) for k in keys_})


def by_symbol(entries: list[PendingTicks | SingleTick],
              followed: Callable[[set[str]], set[str]] = set) -> dict[str, list[PendingTicks]]:
    """Group what was submitted by symbol, each symbol's entries in submission order, runs of
    single ticks with one feature set folded into one batch (with indicator columns for the
    ``followed`` symbols). Order across symbols is not kept (nothing promises it); order within
    a symbol is."""
    grouped: dict[str, list[PendingTicks | list[SingleTick]]] = {}
    for entry in entries:
        if isinstance(entry, PendingTicks):
            grouped.setdefault(entry.symbol, []).append(entry)
            continue
        runs = grouped.setdefault(entry[0], [])
        last = runs[-1] if runs else None
        if isinstance(last, list) and last[-1][5].keys() == entry[5].keys():
            last.append(entry)
        else:
            runs.append([entry])
    published = followed(set(grouped))
    return {symbol: [_single_run(symbol, run, symbol in published) if isinstance(run, list) else run
                     for run in runs] for symbol, runs in grouped.items()}


def concatenate(batches: list[PendingTicks]) -> PendingTicks:
    """One symbol's batches end to end (indicator columns kept only where every batch has them)."""
    if len(batches) == 1:
        return batches[0]
    shared = set(batches[0].indicators).intersection(*(b.indicators for b in batches[1:]))
    return PendingTicks(batches[0].symbol, [stamp for batch in batches for stamp in batch.timestamps],
                        np.concatenate([b.time_ns for b in batches]), np.concatenate([b.price for b in batches]),
                        np.concatenate([b.volume for b in batches]),
                        {k: np.concatenate([b.indicators[k] for b in batches]) for k in batches[0].indicators
                         if k in shared})


def merge(batches: list[PendingTicks]) -> list[PendingTicks]:
    """Join consecutive batches of the same symbol and feature set (order kept): one pub/sub
    message per run."""
    runs: list[list[PendingTicks]] = []
    for batch in batches:
        last = runs[-1][-1] if runs else None
        if last and last.symbol == batch.symbol and last.indicators.keys() == batch.indicators.keys():
            runs[-1].append(batch)
        else:
            runs.append([batch])
    return [concatenate(run) for run in runs]


def live_message(batch: PendingTicks) -> str:
    """The pub/sub payload: columnar, finite indicator values only (None elsewhere)."""
    return json.dumps({"timestamp": batch.timestamps, "price": batch.price.tolist(),
                       "volume": batch.volume.tolist(),
                       "indicators": {k: [v if math.isfinite(v) else None for v in column.tolist()]
                                      for k, column in batch.indicators.items()}})


class TickWriter:
    def __init__(self, store: BarStore, client: redis.Redis, maxlen: int, max_pending: int = 200_000,
                 flush_seconds: float = 0.002, aggregator: BarAggregator | None = None) -> None:
        self.store = store
        self.aggregator = aggregator
        self.redis = client
        self.maxlen = maxlen
        self.max_pending = max_pending
        self.flush_seconds = flush_seconds
        self._pending: list[PendingTicks | SingleTick] = []
        self._pending_ticks = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._stop = threading.Event()
        # symbol -> (has subscribers, when checked): live updates are built and published only
        # for followed symbols; presence is re-checked at most every SUBSCRIBER_CHECK_SECONDS.
        self._subscribed: dict[str, tuple[bool, float]] = {}
        self._script = FlushScript(client)
        self._thread = threading.Thread(target=self._run, name="tick-writer", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Accepted ticks not yet written (pending plus in flight)."""
        return self._pending_ticks

    def note_subscribers(self, symbols: list[str]) -> None:
        """A subscriber in this process: publish for these symbols from now on."""
        now = time.monotonic()
        for symbol in symbols:
            self._subscribed[symbol] = (True, now)

    def _followed(self, symbols: set[str]) -> set[str]:
        now = time.monotonic()
        stale = [s for s in symbols if now - self._subscribed.get(s, (False, -1e9))[1] > SUBSCRIBER_CHECK_SECONDS]
        if stale:
            pipe = self.redis.pipeline(transaction=False)
            for symbol in stale:
                pipe.exists(keys.subscribed(symbol))
            for symbol, present in zip(stale, pipe.execute()):
                self._subscribed[symbol] = (bool(present), now)
        return {s for s in symbols if self._subscribed[s][0]}

    def check_capacity(self, ticks: int) -> None:
        """Raise Backlogged when ``ticks`` more would pass the bound (call before applying them)."""
        if self._pending_ticks + ticks > self.max_pending:
            raise Backlogged(f"{self._pending_ticks} ticks are waiting to be stored (is Redis slow or "
                             f"down?); slow down and retry")

    def submit(self, batch: PendingTicks) -> None:
        with self._lock:
            self._pending.append(batch)
            self._pending_ticks += len(batch.timestamps)
        if self._pending_ticks >= 5_000:
            self._wake.set()

    def submit_tick(self, tick: SingleTick) -> None:
        """One accepted tick (the one-tick-per-message path): a tuple appended, arrays built by
        the writer thread once per flush."""
        with self._lock:
            self._pending.append(tick)
            self._pending_ticks += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
                self._wake.set()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        if not self.flush(timeout):
            log.warning("stopping with %d ticks not yet stored", self._pending_ticks)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            with self._lock:
                batches, self._pending = self._pending, []
                self._in_flight = self._pending_ticks
            if not batches:
                continue
            try:
                self._write(by_symbol(batches, self._followed))
                failures = 0
                with self._idle:
                    self._pending_ticks -= self._in_flight
                    self._in_flight = 0
                    self._idle.notify_all()
            except redis.RedisError as exc:
                failures += 1
                log.warning("could not store %d tick batches (%s); retrying", len(batches), exc)
                with self._idle:
                    self._pending = batches + self._pending  # keep order; retry them first
                    self._in_flight = 0
                self._stop.wait(min(0.05 * 2 ** failures, 2.0))

    def _write(self, grouped: dict[str, list[PendingTicks]]) -> None:
        """One script call per flush (FlushScript): per symbol one packed XADD of all its ticks,
        its bar upserts, and one PUBLISH per run of one feature set (only for followed symbols)."""
        followed = self._followed(set(grouped))  # as by_symbol saw it (checked at most once a second)
        call = FlushCall(self.maxlen, self.aggregator.intervals if self.aggregator else ())
        staged: dict = {}
        for symbol, batches in grouped.items():
            ticks = concatenate(batches)
            payloads = [live_message(run) for run in merge(batches)] if symbol in followed else []
            bars = self._aggregate(ticks, staged) if self.aggregator else {}
            call.add(symbol, ticks.time_ns, ticks.price, ticks.volume, payloads, bars)
        self._script.run(call)
        if self.aggregator:
            self.aggregator.commit(staged)

    def _aggregate(self, batch: PendingTicks, staged: dict) -> dict[str, list[tuple]]:
        """The bars ``batch`` touched, per interval, as (start, open, high, low, close, volume)."""
        for interval in self.aggregator.intervals:
            if not self.aggregator.knows(batch.symbol, interval) and (batch.symbol, interval) not in staged:
                width = INTERVAL_NS[interval]
                start = int(batch.time_ns[0]) // width * width
                stored = self.store.interval_bar(batch.symbol, interval, start)  # a bar begun before a restart
                if stored is not None:
                    self.aggregator.resume(batch.symbol, interval, Bar.from_array(start, stored))
        touched = self.aggregator.add(batch.symbol, batch.time_ns, batch.price, batch.volume, staged)
        return {interval: [(bar.start_ns, bar.open, bar.high, bar.low, bar.close, bar.volume) for bar in bars]
                for interval, bars in touched.items()}
