"""Test-side views of the indicator registry: kinds grouped by input, and a kind run directly over
(time x symbols) arrays with explicit first rows (what ``kernels.run_kind`` does for the engine)."""
from __future__ import annotations

import numpy as np

from utils.engine.indicators.kinds import KINDS
from utils.engine.indicators.step_core import INPUT_NAMES, IndicatorKind, drive_panel

CLOSE_KINDS = [kind for kind in KINDS.values() if kind.inputs == ("close",)]
RANGE_KINDS = [kind for kind in KINDS.values() if kind.inputs != ("close",)]  # high/low/volume readers


def max_lookback(names: list[str]) -> int:
    """Bars of history needed before every named feature is non-NaN."""
    from utils.engine.indicators.features import parse_feature
    return max((parse_feature(name).lookback for name in names), default=0)


def output_lookbacks(kind: IndicatorKind, params: tuple) -> tuple[int, ...]:
    """Leading NaN bars of each output (adx's DI legs start before the ADX itself)."""
    if kind.name == "adx":
        period = int(params[0])
        return (2 * period - 1, period, period)
    return (kind.lookback(params),) * kind.n_outputs


def first_valid_rows(kind: IndicatorKind, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Per column, the first row where every input of ``kind`` is non-NaN (TA-Lib's begIdx);
    ``rows`` for a column that never has one."""
    valid = None
    for name in kind.inputs:
        ok = ~np.isnan(np.asarray(inputs[name], dtype=np.float64))
        valid = ok if valid is None else valid & ok
    assert valid is not None
    if valid.ndim == 1:
        valid = valid[:, None]
    rows = valid.shape[0]
    any_valid = valid.any(axis=0)
    return np.where(any_valid, valid.argmax(axis=0), rows).astype(np.int64)


def run_panel(kind: IndicatorKind, state_size, params, open_, high, low, close, volume, new_session,
              first_rows, n_outputs):
    """Every column from a fresh state; rows before ``first_rows[col]`` stay NaN. Returns a
    (rows, cols, n_outputs) view of ``drive_panel``'s (n_outputs, rows, cols) array."""
    inputs = [np.ascontiguousarray(values, dtype=np.float64) for values in (open_, high, low, close, volume)]
    out = drive_panel(kind, int(state_size), np.ascontiguousarray(params, dtype=np.float64), *inputs,
                      np.ascontiguousarray(new_session, dtype=np.bool_),
                      np.ascontiguousarray(first_rows, dtype=np.int64), int(n_outputs))
    return out.transpose(1, 2, 0)


def compute_panel(kind: IndicatorKind, params: tuple, open_=None, high=None, low=None,
                  close=None, volume=None, new_session=None) -> np.ndarray:
    """Run ``kind`` over (time x symbols) arrays (1-D is one column) with ``run_panel``.

    Returns (time, symbols, n_outputs). Inputs the kind does not read may be left out."""
    given = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    for name in kind.inputs:
        if given[name] is None:
            raise ValueError(f"{kind.name} needs the {name!r} input")
    reference = next(np.asarray(given[name]) for name in kind.inputs)
    shape = reference.shape if reference.ndim == 2 else (reference.shape[0], 1)
    arrays = {}
    for name in INPUT_NAMES:
        value = given[name]
        if value is None:
            arrays[name] = np.zeros(shape)
        else:
            arrays[name] = np.ascontiguousarray(np.asarray(value, dtype=np.float64).reshape(shape))
    if new_session is None:
        sessions = np.zeros(shape[0], dtype=np.bool_)
    else:
        sessions = np.ascontiguousarray(np.asarray(new_session, dtype=np.bool_))
    first_rows = first_valid_rows(kind, {name: arrays[name] for name in kind.inputs})
    param_array = np.asarray(params, dtype=np.float64)
    return run_panel(kind, kind.state_size(tuple(params)), param_array,
                     arrays["open"], arrays["high"], arrays["low"], arrays["close"],
                     arrays["volume"], sessions, first_rows, kind.n_outputs)
