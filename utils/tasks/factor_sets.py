"""Factor set jobs (task type ``factor_set``): ComputeFactors evaluates many expressions on the
stored bars (the union calendar of the symbols inside [start, end], NaN where a symbol has no bar,
as ``utils/tasks/factor.py`` aligns them) and CombineFactors builds a walk-forward composite of a
stored set's factors (``utils.engine.factors.combine``). Both store their panels as a new factor
set under the job's id (``utils/data/factor_sets.py``), kept for the job's result TTL."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from utils.data import factor_sets
from utils.data.sentiment import COLUMN as SENTIMENT
from utils.data.store import COLUMNS, BarStore, SymbolNotFound
from utils.data.timeutil import format_time
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks.factor import _numbers, bar_columns, expression_factors
from utils.tasks.factor_panels import AlignedBars, aligned_bars
from utils.tasks.resources import WorkerResources


def expression_columns(expressions: list[str]) -> tuple[str, ...]:
    """The stored columns, plus ``sentiment`` when an expression reads it."""
    return COLUMNS + (SENTIMENT,) * any(SENTIMENT in bar_columns(expression) for expression in expressions)


def load_aligned(store: BarStore, symbols: list[str], start_ns: int, end_ns: int, extra_rows: int,
                 columns: tuple[str, ...] = COLUMNS) -> AlignedBars:
    try:
        aligned = aligned_bars(store, symbols, start_ns, end_ns, extra_rows, columns)
    except SymbolNotFound as exc:
        raise PermanentJobError(str(exc)) from None
    if aligned.factor_rows == 0:
        raise PermanentJobError("no stored bars of the symbols between start_time and end_time")
    return aligned


def stored_set(store: BarStore, set_id: str, names: list[str], extra_rows: int
               ) -> tuple[dict[str, Any], AlignedBars, np.ndarray]:
    """(meta, the set's symbols' bars on its calendar plus ``extra_rows`` later dates, the named
    factors (K, T, N) on that calendar with NaN rows after the set's last date)."""
    meta = factor_sets.read_meta(store.redis, set_id)
    stored = None if meta is None else factor_sets.read_factors(store.redis, set_id, meta, names)
    if stored is None:
        raise PermanentJobError(f"factor set {set_id} has expired or was removed; compute it again")
    times = np.asarray(meta["times_ns"], dtype=np.int64)
    aligned = load_aligned(store, meta["symbols"], int(times[0]), int(times[-1]), extra_rows)
    if not np.array_equal(aligned.times[:aligned.factor_rows], times):
        raise PermanentJobError(f"the stored bars of factor set {set_id}'s symbols changed since it was computed "
                                f"(its dates are no longer their calendar); compute it again")
    factors = np.full((len(names),) + aligned.close.shape, np.nan)
    factors[:, :aligned.factor_rows] = stored
    return meta, aligned, factors


def compute_set(store: BarStore, set_id: str, payload: dict[str, Any], ttl: int, progress) -> dict[str, Any]:
    names, expressions = payload["names"], payload["expressions"]
    aligned = load_aligned(store, payload["symbols"], payload["start_ns"], payload["end_ns"], 0,
                           expression_columns(expressions))
    progress(0.2, {"stage": "evaluating", "factors": len(names)})
    factors = expression_factors(dict(zip(names, expressions)), aligned)
    progress(0.8, {"stage": "storing", "factors": len(names)})
    meta = factor_sets.write_factor_set(store.redis, set_id, names, aligned.times, payload["symbols"],
                                        [factors[name] for name in names], ttl, expressions=expressions)
    return set_document(set_id, meta)


def combine_set(store: BarStore, set_id: str, payload: dict[str, Any], ttl: int, progress) -> dict[str, Any]:
    from utils.engine.factors.combine import combine_factors
    source, names, period = payload["source"], payload["names"], int(payload["period"])
    meta, aligned, factors = stored_set(store, source, names, 0)
    progress(0.3, {"stage": "combining", "factors": len(names)})
    try:
        combination = combine_factors(factors, aligned.close, period, int(payload["window"]), payload["method"])
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    progress(0.8, {"stage": "storing"})
    last = combination.weights[-1]
    stored = factor_sets.write_factor_set(
        store.redis, set_id, ["composite"], aligned.times, meta["symbols"], [combination.composite], ttl,
        expressions=[""], source_factor_set_id=source, method=payload["method"], weight_names=names,
        last_weights=_numbers(last), window=int(payload["window"]), period=period)
    return set_document(set_id, stored)


def set_document(set_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The job's result: the set's description (its panels are in Redis, not in the result)."""
    times = meta["times_ns"]
    return {"factor_set_id": set_id, "names": meta["names"], "times_count": len(times),
            "first_time": format_time(times[0]) if times else "", "last_time": format_time(times[-1]) if times else "",
            "symbols": meta["symbols"], "expressions": meta.get("expressions", []),
            **{key: meta[key] for key in ("source_factor_set_id", "method", "weight_names", "last_weights")
               if key in meta}}


def make_factor_set_handler(resources: WorkerResources):
    def handle(context: JobContext) -> dict[str, Any]:
        started = time.perf_counter()
        run = combine_set if context.payload.get("mode") == "combine" else compute_set
        ttl = resources.queue.result_ttl("factor_set")
        result = run(resources.bar_store, context.job_id, context.payload, ttl, context.progress)
        result.update(device="cpu", compute_seconds=time.perf_counter() - started)
        context.progress(1.0)
        return result
    return handle
