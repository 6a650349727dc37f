"""Streaming indicator state: the batch steps, advanced one tick (or one chunk) at a time.

``StreamState.create(names)`` holds, per feature of a ``FeaturePlan``, its kind, its parameters
and its float64 state. ``update`` feeds one bar (one call of the kind's compiled ``tick_driver``:
load, step, store; well under 2 us per indicator) and ``update_many`` a chunk (one ``run_series`` per feature). The
values after N bars equal ``compute_features`` over the same N bars bit for bit: the same step
does the same floating-point operations whichever driver runs it, and, like ``kernels.run_kind``, a
feature's state only starts at its first bar where all of its kind's inputs are non-NaN.

``to_bytes``/``from_bytes`` snapshot the states as raw float64 (little-endian) after a small JSON
header; never pickle.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from utils.engine.indicators.features import FeaturePlan, FeatureSpec, MissingInputError
from utils.engine.indicators.step_core import INPUT_NAMES, run_series, series_driver, tick_driver

__all__ = ["FeaturePlan", "MissingInputError", "StreamState"]

MAGIC = b"IDXS"  # indicator stream state
FORMAT_VERSION = 1


@dataclass
class _Feature:
    spec: FeatureSpec
    params: np.ndarray
    state: np.ndarray
    out: np.ndarray  # the step's per-bar outputs
    input_rows: tuple[int, ...]  # positions of the kind's inputs in INPUT_NAMES
    started: bool = False

    def __post_init__(self) -> None:
        self.tick = tick_driver(self.spec.kind)  # hot-path shortcuts for ``update``
        self.series = None  # its series driver, looked up on first use by ``update_ticks``
        self.output_keys = self.spec.output_keys

    def begin(self, inputs: tuple[float, ...]) -> bool:
        """Whether the state runs on this bar: from the first with all of its inputs non-NaN."""
        if not self.started:
            self.started = not any(math.isnan(inputs[row]) for row in self.input_rows)
        return self.started


class StreamState:
    """Indicator states of one stream (one symbol): feed bars in time order."""

    def __init__(self, plan: FeaturePlan) -> None:
        self.plan = plan
        self.ticks_seen = 0
        self._features = []
        for spec in plan.specs:
            params = spec.params_array()
            state = np.zeros(spec.kind.state_size(spec.params))
            spec.kind.init(state, params)
            self._features.append(_Feature(spec, params, state, np.full(spec.kind.n_outputs, np.nan),
                                           tuple(INPUT_NAMES.index(name) for name in spec.inputs)))
        self._needed = tuple(INPUT_NAMES.index(name) for name in plan.inputs)

    @classmethod
    def create(cls, names: Iterable[str]) -> "StreamState":
        return cls(FeaturePlan.from_names(names))

    @property
    def output_keys(self) -> tuple[str, ...]:
        return self.plan.output_keys

    def _check_given(self, given: tuple[Any, ...]) -> None:
        """``MissingInputError`` if an input some feature reads was not given."""
        for row in self._needed:
            if given[row] is None:
                self.plan.check_inputs(name for name, value in zip(INPUT_NAMES, given) if value is not None)

    # ------------------------------------------------------------------ updates
    def update(self, open: float | None = None, high: float | None = None, low: float | None = None,
               close: float | None = None, volume: float | None = None,
               new_session: bool = False) -> dict[str, float]:
        """Feed one bar; the features' values on it (NaN during warm-up). Inputs no feature reads
        may be left out; a needed one left out raises ``MissingInputError``."""
        given = (open, high, low, close, volume)
        if None in given:
            self._check_given(given)
        nan = math.nan  # spelled out: a generator here would double the per-tick cost
        inputs = (nan if open is None else float(open), nan if high is None else float(high),
                  nan if low is None else float(low), nan if close is None else float(close),
                  nan if volume is None else float(volume))
        open_, high_, low_, close_, volume_ = inputs
        new_session = bool(new_session)
        values: dict[str, float] = {}
        for feature in self._features:
            if feature.started or feature.begin(inputs):
                feature.tick(feature.state, feature.params, open_, high_, low_, close_, volume_,
                             new_session, feature.out)
            values.update(zip(feature.output_keys, feature.out.tolist()))
        self.ticks_seen += 1
        return values

    def update_tick(self, price: float, volume: float, new_session: bool) -> None:
        """``update`` of one tick (``price`` as open, high, low and close; floats) without building
        the values: the streaming server's hot path reads them from ``outputs`` instead. Same
        drivers in the same order as ``update``, so the same values bit for bit."""
        inputs = (price, price, price, price, volume)
        for feature in self._features:
            if feature.started or feature.begin(inputs):
                feature.tick(feature.state, feature.params, price, price, price, price, volume, new_session,
                             feature.out)
        self.ticks_seen += 1

    def update_ticks(self, price: np.ndarray, volume: np.ndarray, new_session: np.ndarray) -> dict[str, np.ndarray]:
        """``update_many`` of ticks (``price`` as open, high, low and close; contiguous float64
        arrays and a bool array of one length), without its argument checks: the streaming
        server's path for a chunk of one symbol's ticks. Same drivers, same values."""
        rows = price.shape[0]
        values: dict[str, np.ndarray] = {}
        for feature in self._features:
            out = np.full((rows, feature.out.shape[0]), np.nan)
            begin = 0
            if not feature.started:
                inputs = (price, price, price, price, volume)
                valid = np.ones(rows, dtype=np.bool_)
                for row in feature.input_rows:
                    valid &= ~np.isnan(inputs[row])
                begin = int(np.argmax(valid)) if valid.any() else rows
                feature.started = begin < rows
            if begin < rows:
                if feature.series is None:
                    feature.series = series_driver(feature.spec.kind, feature.out.shape[0])
                tail = price[begin:]
                feature.series(feature.state, feature.params, tail, tail, tail, tail, volume[begin:],
                               new_session[begin:], out[begin:])
                feature.out[:] = out[-1]
            for k, key in enumerate(feature.output_keys):
                values[key] = out[:, k].copy()
        self.ticks_seen += rows
        return values

    def outputs(self) -> list[tuple[tuple[str, ...], np.ndarray]]:
        """(output keys, the array holding their latest values) per feature; the arrays are
        updated in place by every update, so a caller may keep this list."""
        return [(feature.output_keys, feature.out) for feature in self._features]

    def update_many(self, open: Any = None, high: Any = None, low: Any = None, close: Any = None,
                    volume: Any = None, new_session: Any = None) -> dict[str, np.ndarray]:
        """Feed a chunk of bars (1-D arrays of one length); each feature's values on every bar."""
        given = (open, high, low, close, volume)
        self._check_given(given)
        arrays = [None if values is None else np.ascontiguousarray(values, dtype=np.float64) for values in given]
        present = [values for values in arrays if values is not None]
        rows = present[0].shape[0] if present else 0
        if any(values.ndim != 1 or values.shape[0] != rows for values in present):
            raise ValueError("update_many takes 1-D arrays of one length")
        stand_in = present[0] if present else np.empty(0)
        arrays = [stand_in if values is None else values for values in arrays]
        sessions = (np.zeros(rows, dtype=np.bool_) if new_session is None
                    else np.ascontiguousarray(new_session, dtype=np.bool_))
        if sessions.shape != (rows,):
            raise ValueError("new_session must have one entry per bar")
        values: dict[str, np.ndarray] = {}
        for feature in self._features:
            out = np.full((rows, feature.out.shape[0]), np.nan)
            begin = 0
            if not feature.started:
                valid = np.ones(rows, dtype=np.bool_)
                for row in feature.input_rows:
                    valid &= ~np.isnan(arrays[row])
                begin = int(np.argmax(valid)) if valid.any() else rows
                feature.started = begin < rows
            if begin < rows:
                run_series(feature.spec.kind, feature.state, feature.params,
                           *(values[begin:] for values in arrays), sessions[begin:], out[begin:])
                feature.out[:] = out[-1]
            for k, key in enumerate(feature.spec.output_keys):
                values[key] = np.ascontiguousarray(out[:, k])
        self.ticks_seen += rows
        return values

    # ---------------------------------------------------------------- snapshots
    def to_bytes(self) -> bytes:
        """Header (magic, JSON length, JSON: features, ticks seen, started flags, state sizes,
        last outputs sizes) then every state and last-output array as little-endian float64."""
        header = json.dumps({
            "version": FORMAT_VERSION,
            "features": [feature.spec.name for feature in self._features],
            "ticks_seen": self.ticks_seen,
            "started": [feature.started for feature in self._features],
            "state_sizes": [int(feature.state.shape[0]) for feature in self._features],
        }, separators=(",", ":")).encode()
        body = [array.astype("<f8").tobytes() for feature in self._features for array in (feature.state, feature.out)]
        return b"".join([MAGIC, struct.pack("<I", len(header)), header, *body])

    @classmethod
    def from_bytes(cls, names: Iterable[str], data: bytes) -> "StreamState":
        """Rebuild a state of ``names`` from ``to_bytes``; ``ValueError`` if it does not fit them."""
        restored = cls.create(names)
        data = bytes(data)
        if len(data) < 8 or data[:4] != MAGIC:
            raise ValueError("not an indicator stream snapshot")
        (header_length,) = struct.unpack("<I", data[4:8])
        try:
            header = json.loads(data[8:8 + header_length])
        except ValueError:
            raise ValueError("stream snapshot header is not valid JSON") from None
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(f"stream snapshot version {header.get('version')!r} is not {FORMAT_VERSION}")
        expected = [feature.spec.name for feature in restored._features]
        sizes = [int(feature.state.shape[0]) for feature in restored._features]
        if header.get("features") != expected or header.get("state_sizes") != sizes:
            raise ValueError(f"stream snapshot holds {header.get('features')}, not {expected}")
        body = np.frombuffer(data, dtype="<f8", offset=8 + header_length)
        needed = sum(feature.state.shape[0] + feature.out.shape[0] for feature in restored._features)
        if body.shape[0] != needed:
            raise ValueError(f"stream snapshot has {body.shape[0]} values, expected {needed}")
        at = 0
        for feature, started in zip(restored._features, header["started"]):
            for array in (feature.state, feature.out):
                array[:] = body[at:at + array.shape[0]]
                at += array.shape[0]
            feature.started = bool(started)
        restored.ticks_seen = int(header["ticks_seen"])
        return restored
