"""Apply one message's ticks: validate, update each symbol's state once per chunk, store, publish.

Why chunks: a batched message may carry hundreds of ticks; validating them in one pass and
advancing each symbol's indicator states with one ``update_many`` per feature (instead of one
call per tick and feature), and leaving storage and pub/sub to the write-behind TickWriter, is
what lets a single server process keep up with a feed. Values are the same as
tick-by-tick updates, bit for bit (the same step kernels run in the same order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from utils.data.store import SYMBOL_PATTERN
from utils.data.timeutil import format_time
from utils.realtime.symbol_state import SymbolStates
from utils.realtime.tick_times import tick_time, tick_times
from utils.realtime.tick_writer import PendingTicks, TickWriter


@dataclass
class TickResults:
    """Per tick of one message, in arrival order."""

    symbols: list[str]
    timestamps: list[str]
    prices: np.ndarray
    volumes: np.ndarray
    errors: list[str]
    # Output key -> value per tick (NaN where the tick was rejected); every accepted tick of a
    # message has the same keys: the outputs of the message's feature set.
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def values_of(self, index: int) -> dict[str, float]:
        return {key: float(column[index]) for key, column in self.values.items()}


def tick_errors(symbols: list[str], timestamps: list[str], prices: np.ndarray,
                volumes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Why each tick is rejected ('' if fine) and its time, checked column-wise; ordering is
    checked per symbol later."""
    times, time_ok = tick_times(timestamps)
    price_ok = np.isfinite(prices) & (prices > 0)
    volume_ok = np.isfinite(volumes) & (volumes >= 0)
    symbol_ok = {symbol: bool(SYMBOL_PATTERN.match(symbol or "")) for symbol in set(symbols)}
    errors = [""] * len(symbols)
    if time_ok.all() and price_ok.all() and volume_ok.all() and all(symbol_ok.values()):
        return errors, times
    for index, symbol in enumerate(symbols):
        if not symbol_ok[symbol]:
            errors[index] = f"stock_code {symbol!r} is not a valid symbol"
        elif not price_ok[index]:
            errors[index] = f"price must be finite and > 0, got {prices[index]}"
        elif not volume_ok[index]:
            errors[index] = f"volume must be finite and >= 0, got {volumes[index]}"
        elif not time_ok[index]:
            errors[index] = f"timestamp {timestamps[index]!r} is not ISO-8601"
    return errors, times


def tick_error(symbol: str, timestamp: str, price: float, volume: float) -> tuple[str, int | None]:
    """``tick_errors`` of one tick: (why it is rejected or '', its time)."""
    time_ns = tick_time(timestamp)
    if not SYMBOL_PATTERN.match(symbol or ""):
        return f"stock_code {symbol!r} is not a valid symbol", time_ns
    if not (math.isfinite(price) and price > 0):
        return f"price must be finite and > 0, got {price}", time_ns
    if not (math.isfinite(volume) and volume >= 0):
        return f"volume must be finite and >= 0, got {volume}", time_ns
    if time_ns is None:
        return f"timestamp {timestamp!r} is not ISO-8601", time_ns
    return "", time_ns


def _order_error(symbol: str, timestamp: str, time_ns: int, last: int) -> str:
    kind = "duplicate" if time_ns == last else "out-of-order"
    return f"{kind} timestamp {timestamp} (last accepted for {symbol}: {format_time(last)})"


def process_tick(states: SymbolStates, writer: TickWriter, names: tuple[str, ...], symbol: str, timestamp: str,
                 price: float, volume: float) -> tuple[str, dict[str, float]]:
    """One tick (the one-tick-per-message form): (error or '', indicator values of ``names``).
    Same checks, values and storage as ``process_ticks`` of a one-tick message, without its
    arrays. Raises Backlogged (nothing applied) when the writer's queue is full."""
    writer.check_capacity(1)
    error, time_ns = tick_error(symbol, timestamp, price, volume)
    if error:
        return error, {}
    state = states.get(symbol)
    with state.lock:
        last = state.last_time_ns
        if last is not None and time_ns <= last:
            return _order_error(symbol, timestamp, time_ns, last), {}
        states.ensure_features(state, names)
        values = states.apply_one(state, names, time_ns, price, volume)
        writer.submit_tick((symbol, timestamp, time_ns, price, volume, values))  # under the lock: order per symbol
    return "", values


def process_ticks(states: SymbolStates, writer: TickWriter, names: list[str], symbols: list[str],
                  timestamps: list[str], prices: list[float], volumes: list[float]) -> TickResults:
    """Validate and apply one message's ticks; hand the accepted ones to the writer.
    Raises Backlogged (nothing applied) when the writer's queue is full."""
    count = len(symbols)
    writer.check_capacity(count)
    results = TickResults(symbols, timestamps, np.asarray(prices, dtype=np.float64),
                          np.asarray(volumes, dtype=np.float64), [""] * count)
    results.errors, times = tick_errors(symbols, timestamps, results.prices, results.volumes)
    chunks: dict[str, list[int]] = {}
    if count and len(set(symbols)) == 1 and not any(results.errors):  # one symbol's feed: one chunk
        chunks[symbols[0]] = list(range(count))
    for index, symbol in enumerate(symbols if not chunks else ()):
        if not results.errors[index]:
            chunks.setdefault(symbol, []).append(index)
    for symbol, indices in chunks.items():
        if len(indices) == 1:  # an interleaved feed: most symbols have one tick per message
            _apply_single(states, writer, tuple(names), symbol, indices[0], times, results)
            continue
        accepted = _apply_chunk(states, names, symbol, indices, times, results)
        if accepted.size:
            stamps = list(timestamps) if accepted.size == count else [timestamps[i] for i in accepted.tolist()]
            writer.submit(PendingTicks(symbol, stamps, times[accepted],
                                       results.prices[accepted], results.volumes[accepted],
                                       {key: column[accepted] for key, column in results.values.items()}))
    return results


def _apply_single(states: SymbolStates, writer: TickWriter, names: tuple[str, ...], symbol: str, index: int,
                  times: np.ndarray, results: TickResults) -> None:
    """``_apply_chunk`` of a one-tick chunk, on ``process_tick``'s array-free path."""
    time_ns, stamp = int(times[index]), results.timestamps[index]
    price, volume = float(results.prices[index]), float(results.volumes[index])
    state = states.get(symbol)
    with state.lock:
        last = state.last_time_ns
        if last is not None and time_ns <= last:
            results.errors[index] = _order_error(symbol, stamp, time_ns, last)
            return
        states.ensure_features(state, names)
        values = states.apply_one(state, names, time_ns, price, volume)
        writer.submit_tick((symbol, stamp, time_ns, price, volume, values))
    for key, value in values.items():
        column = results.values.get(key)
        if column is None:
            column = results.values[key] = np.full(len(results.symbols), np.nan)
        column[index] = value


def _apply_chunk(states: SymbolStates, names: list[str], symbol: str, indices: list[int],
                 times: np.ndarray, results: TickResults) -> np.ndarray:
    """Check order against the symbol's last time, then advance its states over the accepted."""
    state = states.get(symbol)
    with state.lock:
        last = state.last_time_ns
        rows = np.asarray(indices, dtype=np.int64)
        chunk_times = times[rows]
        if not ((last is None or chunk_times[0] > last) and bool(np.all(chunk_times[1:] > chunk_times[:-1]))):
            accepted = []  # some tick is not after the one before it: check one by one
            for index in indices:
                if last is not None and times[index] <= last:
                    results.errors[index] = _order_error(symbol, results.timestamps[index], int(times[index]), last)
                    continue
                accepted.append(index)
                last = int(times[index])
            rows = np.asarray(accepted, dtype=np.int64)
        if not rows.size:
            return rows
        states.ensure_features(state, names)
        values = states.apply_many(state, names, times[rows], results.prices[rows], results.volumes[rows])
    for key, column in values.items():
        results.values.setdefault(key, np.full(len(results.symbols), np.nan))[rows] = column
    return rows
