"""Per-symbol streaming indicator state, shared by every stream of this server process.

Each (symbol, feature) has an O(1) state from the indicator engine; a tick updates it in place,
so after N ticks the values equal the batch result over those N ticks bit for bit. States are
snapshotted to Redis (raw float64 bytes, never pickle) about once a second and on shutdown; a
process that meets a symbol for the first time loads the snapshot when it matches the stored
tick series, and otherwise rebuilds the state by replaying the stored ticks (capped at
TICK_STREAM_MAXLEN, so recursive indicators then start from the oldest retained tick).

Ticks of one symbol must reach one server process (route by symbol when scaling out).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from utils.data.timeutil import NS_PER_DAY
from utils.data.store import BarStore
from utils.engine.indicators.features import session_starts
from utils.engine.indicators.streaming import StreamState
from utils.data import keys

log = logging.getLogger(__name__)

LAST_TIME_FIELD = b"_last_time"


@dataclass
class SymbolState:
    symbol: str
    last_time_ns: int | None = None
    features: dict[str, StreamState] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    dirty: bool = False
    # feature names of a stream -> (output keys, latest values array) of each: kept while the
    # symbol's feature states stay the same objects, so a tick reads its values without lookups.
    outputs: dict[tuple[str, ...], list[tuple[tuple[str, ...], np.ndarray]]] = field(default_factory=dict)


class SymbolStates:
    def __init__(self, store: BarStore, flush_pending: Callable[[], object] = lambda: None) -> None:
        self.store = store
        # Writes this process's accepted-but-unstored ticks (the TickWriter), before a replay.
        self.flush_pending = flush_pending
        self.redis = store.redis  # decode_responses=False: snapshots are bytes
        self._symbols: dict[str, SymbolState] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- access
    def get(self, symbol: str) -> SymbolState:
        with self._lock:
            state = self._symbols.get(symbol)
            if state is None:
                state = self._symbols[symbol] = SymbolState(symbol)
                self._restore_time(state)
            return state

    def ensure_features(self, state: SymbolState, names: Iterable[str]) -> None:
        """Give the symbol a state for each feature (snapshot, else replay of stored ticks).
        Call with ``state.lock`` held."""
        missing = [name for name in names if name not in state.features]
        if not missing:
            return
        snapshot = self.redis.hgetall(keys.stream_state(state.symbol))
        snapshot_time = snapshot.get(LAST_TIME_FIELD)
        consistent = snapshot_time is not None and int(snapshot_time) == (state.last_time_ns or -1)
        replay = None
        for name in missing:
            raw = snapshot.get(name.encode()) if consistent else None
            if raw is not None:
                state.features[name] = StreamState.from_bytes([name], raw)
                continue
            if replay is None:
                self.flush_pending()
                replay = self.store.read_ticks(state.symbol)
            feature = StreamState.create([name])
            if len(replay):
                feature.update_many(replay.open, replay.high, replay.low, replay.close, replay.volume,
                                    session_starts(replay.time))
            state.features[name] = feature
            state.dirty = True
        state.outputs.clear()

    def apply_many(self, state: SymbolState, names: list[str], time_ns: np.ndarray, price: np.ndarray,
                   volume: np.ndarray) -> dict[str, np.ndarray]:
        """Advance every tracked feature of the symbol over accepted ticks (in time order); the
        values of ``names``, one per tick. Call with ``state.lock`` held."""
        days = time_ns // NS_PER_DAY
        previous_day = -1 if state.last_time_ns is None else state.last_time_ns // NS_PER_DAY
        new_session = days != np.concatenate([[previous_day], days[:-1]])
        values: dict[str, np.ndarray] = {}
        single = price.shape[0] == 1  # the per-tick call is far cheaper than a 1-row update_many
        for name, feature in state.features.items():
            if single:
                result = {key: np.array([value]) for key, value in feature.update(
                    price[0], price[0], price[0], price[0], volume[0], bool(new_session[0])).items()}
            else:
                result = feature.update_ticks(price, volume, new_session)
            if name in names:
                values.update(result)
        state.last_time_ns = int(time_ns[-1])
        state.dirty = True
        return values

    def apply_one(self, state: SymbolState, names: tuple[str, ...], time_ns: int, price: float,
                  volume: float) -> dict[str, float]:
        """``apply_many`` of a single tick without arrays (the same drivers in the same order, so
        the same values): the one-tick-per-message path. Call with ``state.lock`` held, after
        ``ensure_features(state, names)``."""
        new_session = time_ns // NS_PER_DAY != (-1 if state.last_time_ns is None else state.last_time_ns // NS_PER_DAY)
        for feature in state.features.values():
            feature.update_tick(price, volume, new_session)
        state.last_time_ns = time_ns
        state.dirty = True
        outputs = state.outputs.get(names)
        if outputs is None:
            outputs = state.outputs[names] = [pair for name in names for pair in state.features[name].outputs()]
        values: dict[str, float] = {}
        for output_keys, latest in outputs:
            values.update(zip(output_keys, latest.tolist()))
        return values

    # -------------------------------------------------------------- snapshots
    def flush(self) -> int:
        """Write dirty symbols' states to Redis; returns how many were written."""
        with self._lock:
            symbols = list(self._symbols.values())
        written = 0
        for state in symbols:
            with state.lock:
                if not state.dirty or state.last_time_ns is None:
                    continue
                mapping = {name.encode(): feature.to_bytes() for name, feature in state.features.items()}
                mapping[LAST_TIME_FIELD] = str(state.last_time_ns).encode()
                state.dirty = False
            self.redis.hset(keys.stream_state(state.symbol), mapping=mapping)
            written += 1
        return written

    # ---------------------------------------------------------------- helpers
    def _restore_time(self, state: SymbolState) -> None:
        """The last stored tick's time, so ordering checks survive a restart."""
        state.last_time_ns = self.store.last_tick_time(state.symbol)
