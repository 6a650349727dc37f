"""Stored factor sets (FactorService.ComputeFactors / CombineFactors): one meta hash and one raw
float64 string per factor (``keys.factor_set``, ``keys.factor_set_values``), all with the result
TTL of the job that wrote them. The factor set's id is that job's id."""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from utils.data import keys


def write_factor_set(redis, set_id: str, names: Sequence[str], times_ns: np.ndarray, symbols: Sequence[str],
                     panels: Sequence[np.ndarray], ttl: int, **info: Any) -> dict[str, Any]:
    """Store the (T, N) panels and their meta (names, times, symbols, plus ``info``); returns the meta."""
    meta = {"names": list(names), "times_ns": [int(t) for t in times_ns], "symbols": list(symbols), **info}
    shape = (len(meta["times_ns"]), len(meta["symbols"]))
    with redis.pipeline(transaction=True) as pipe:
        for index, panel in enumerate(panels):
            panel = np.asarray(panel, dtype="<f8")
            if panel.shape != shape:
                raise ValueError(f"factor {names[index]!r} is {panel.shape}, expected {shape}")
            pipe.set(keys.factor_set_values(set_id, index), panel.tobytes(), ex=ttl)
        pipe.hset(keys.factor_set(set_id), "meta", json.dumps(meta))
        pipe.expire(keys.factor_set(set_id), ttl)
        pipe.execute()
    return meta


def read_meta(redis, set_id: str) -> dict[str, Any] | None:
    raw = redis.hget(keys.factor_set(set_id), "meta")
    return None if raw is None else json.loads(raw)


def read_factors(redis, set_id: str, meta: dict[str, Any], names: Sequence[str]) -> np.ndarray | None:
    """(K, T, N) of the named factors; None when any of them has expired."""
    shape = (len(meta["times_ns"]), len(meta["symbols"]))
    indices = [meta["names"].index(name) for name in names]
    raws = redis.mget([keys.factor_set_values(set_id, index) for index in indices]) if indices else []
    if any(raw is None for raw in raws):
        return None
    return np.stack([np.frombuffer(raw, dtype="<f8").reshape(shape) for raw in raws]) if raws \
        else np.empty((0,) + shape)


def align_panel(panel: np.ndarray, set_times: np.ndarray, set_symbols: Sequence[str], times_ns: np.ndarray,
                symbols: Sequence[str]) -> np.ndarray:
    """A (T, N) panel on ``set_times`` x ``set_symbols`` placed on another calendar and symbol order:
    (len(times_ns), len(symbols)), the panel's value where the bar time and the symbol match, NaN
    elsewhere (a date or a symbol the panel lacks). Nothing is filled forward."""
    set_times = np.asarray(set_times, dtype=np.int64)
    times_ns = np.asarray(times_ns, dtype=np.int64)
    out = np.full((times_ns.size, len(symbols)), np.nan)
    if set_times.size == 0 or times_ns.size == 0:
        return out
    rows = np.searchsorted(set_times, times_ns)
    clipped = np.minimum(rows, set_times.size - 1)
    matched = (rows < set_times.size) & (set_times[clipped] == times_ns)
    position = {symbol: index for index, symbol in enumerate(set_symbols)}
    for column, symbol in enumerate(symbols):
        if symbol in position:
            out[matched, column] = panel[clipped[matched], position[symbol]]
    return out


def aligned_factor(redis, set_id: str, name: str, symbols: Sequence[str], times_ns: np.ndarray) -> np.ndarray | None:
    """One stored factor on another calendar and symbol order (``align_panel``). None when the set
    (or that factor) has expired. KeyError for an unknown name."""
    meta = read_meta(redis, set_id)
    if meta is None:
        return None
    if name not in meta["names"]:
        raise KeyError(name)
    stored = read_factors(redis, set_id, meta, [name])
    if stored is None:
        return None
    return align_panel(stored[0], meta["times_ns"], meta["symbols"], times_ns, symbols)
