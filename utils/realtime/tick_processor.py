"""Apply one message's ticks: validate, update each symbol's state once per chunk, store, publish.

Why chunks: a batched message may carry hundreds of ticks; validating them in one pass and
advancing each symbol's indicator states with one ``update_many`` per feature (instead of one
call per tick and feature), and leaving storage and pub/sub to the write-behind TickWriter, is
what lets a single server process keep up with a feed. Values are the same as
tick-by-tick updates, bit for bit (the same step kernels run in the same order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from utils.data.store import SYMBOL_PATTERN
from utils.data.timeutil import format_time, parse_times
from utils.realtime.symbol_state import SymbolStates
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
    times, time_ok = parse_times(timestamps)
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
    for index, symbol in enumerate(symbols):
        if not results.errors[index]:
            chunks.setdefault(symbol, []).append(index)
    for symbol, indices in chunks.items():
        accepted = _apply_chunk(states, names, symbol, indices, times, results)
        if accepted.size:
            writer.submit(PendingTicks(symbol, [timestamps[i] for i in accepted.tolist()], times[accepted],
                                       results.prices[accepted], results.volumes[accepted],
                                       {key: column[accepted] for key, column in results.values.items()}))
    return results


def _apply_chunk(states: SymbolStates, names: list[str], symbol: str, indices: list[int],
                 times: np.ndarray, results: TickResults) -> np.ndarray:
    """Check order against the symbol's last time, then advance its states over the accepted."""
    state = states.get(symbol)
    with state.lock:
        last = state.last_time_ns
        accepted = []
        for index in indices:
            if last is not None and times[index] <= last:
                kind = "duplicate" if times[index] == last else "out-of-order"
                results.errors[index] = (f"{kind} timestamp {results.timestamps[index]} (last accepted for "
                                         f"{symbol}: {format_time(last)})")
                continue
            accepted.append(index)
            last = int(times[index])
        rows = np.asarray(accepted, dtype=np.int64)
        if not accepted:
            return rows
        states.ensure_features(state, names)
        values = states.apply_many(state, names, times[rows], results.prices[rows], results.volumes[rows])
    for key, column in values.items():
        results.values.setdefault(key, np.full(len(results.symbols), np.nan))[rows] = column
    return rows
