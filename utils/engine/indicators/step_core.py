"""The one shape every indicator kernel has: an O(1) ``step`` over its own state.

Why: batch features, backtests, panels and live streams must agree exactly. Each indicator is
written once as a step that consumes one bar and updates a small float64 state; the batch
kernel is that same step driven over a series by ``run_series``, so a stream that has seen N
ticks holds bit-for-bit the values the batch gives on the same N points (no second
implementation to drift), and the state is a plain array that can be snapshotted to Redis.

Convention for an indicator kind (see ``sma_*`` below as the worked example):

    state_size(params: tuple) -> int            Python; length of its state slice
    @njit init(state, params)                    reset the state (start of a series)
    @njit step(state, params, open_, high, low, close, volume, new_session, out)
        consume one bar; write its outputs into out[:n_outputs] (NaN during warm-up)

``params`` is a float64 array of the kind's parameters in declaration order. ``new_session``
is True on the first bar of a new session (VWAP resets there). Steps must use the same
floating-point operations in the same order as TA-Lib's C code where TA-Lib defines the
indicator (parity to 1e-9 is tested; most agree exactly). No fastmath: reassociation would
break the batch/stream identity.

Drivers: ``run_series`` continues a state over a 1-D series (streaming chunks, rebuilds);
``drive_panel`` (and ``run_panel``, its (time, symbols, outputs) view) runs every column of a
(time x symbols) panel from a fresh state, starting each column at its first row where the kind's
inputs are all non-NaN (TA-Lib's convention). Both are compiled per kind around its step (see
"drivers" below). A panel runs time-major (row by row over a block of columns, so C-ordered inputs
and outputs are walked contiguously and the columns' independent recurrences overlap in the CPU)
with one block per numba thread; a series or a panel of a few columns runs column by column.
Outputs are (n_outputs, rows, cols): each output is one contiguous panel, handed out without copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from llvmlite import ir
from numba import carray, get_num_threads, njit, prange, types
from numba.extending import intrinsic

INPUT_NAMES = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    is_integer: bool = True
    low: float = 1
    high: float = 10_000


@dataclass(frozen=True)
class IndicatorKind:
    """Everything the registry, the drivers and ListFeatures need to know about one kind."""

    name: str  # base feature name, e.g. "sma"
    description: str
    params: tuple[Param, ...]
    outputs: tuple[str, ...]  # output key stems; () means one output named like the feature
    inputs: tuple[str, ...]  # which of INPUT_NAMES it reads (its warm-up starts when all are valid)
    state_size: Callable[[tuple], int]
    init: Any  # numba dispatcher
    step: Any  # numba dispatcher
    lookback: Callable[[tuple], int]  # bars of NaN after the first valid input (TA-Lib lookback)
    lookback_formula: str  # the same, for people: "period - 1"
    check: Callable[[tuple], str | None] = field(default=lambda params: None)  # cross-param rules

    @property
    def n_outputs(self) -> int:
        return max(len(self.outputs), 1)


# ------------------------------------------------------------------ drivers
# A driver is compiled per kind by a factory that closes over the kind's step and init, so numba
# sees them as globals and inlines them (``inline="always"``) into the bar loop; a step passed as
# a first-class argument is called through its own compiled function on every bar instead. The
# drivers are not disk-cached (numba cannot cache closures over dispatchers); each compiles once
# per kind and process. Inlining changes no floating-point operation (no fastmath, no
# contraction: only ``fma`` fuses), so every driver, and a direct call of the step, agree bit for
# bit.
PANEL_MIN_BLOCK = 32  # at least this many columns per block of the time-major panel driver
SERIAL_COLUMNS = 8  # up to this many columns run column by column on the calling thread


@intrinsic
def _data_pointer(typingctx, array):
    """The data pointer of a C-contiguous array (to view it with ``carray``)."""
    if not isinstance(array, types.Array) or array.layout != "C":
        return None

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data

    return types.CPointer(array.dtype)(array), codegen


@njit(error_model="numpy", inline="always")
def unowned(array):
    """A view of C-contiguous ``array`` that carries no reference count (``carray`` over its
    data): the views a step takes of it (``state[:n]``, a panel's ``states[col]``) then cost no
    atomic increments. Only for arrays the caller keeps alive (arguments): numba frees a local
    array after its last use, which would leave this view dangling."""
    return carray(_data_pointer(array), array.shape)


@njit(error_model="numpy", cache=True)
def first_valid_rows_of(reads, open_, high, low, close, volume):
    """Per column, the first row where every input flagged in ``reads`` (INPUT_NAMES order) is
    non-NaN; ``rows`` if there is none. Scans down each column and stops at its first valid row."""
    rows, cols = close.shape
    first = np.empty(cols, dtype=np.int64)
    for col in range(cols):
        row = 0
        while row < rows:
            if not ((reads[0] and np.isnan(open_[row, col])) or (reads[1] and np.isnan(high[row, col]))
                    or (reads[2] and np.isnan(low[row, col])) or (reads[3] and np.isnan(close[row, col]))
                    or (reads[4] and np.isnan(volume[row, col]))):
                break
            row += 1
        first[col] = row
    return first


def _make_series_driver(step, n_outputs):
    @njit(error_model="numpy")
    def series(state_owned, params, open_, high, low, close, volume, new_session, out):
        scratch = np.empty(n_outputs)
        state = unowned(state_owned)
        for row in range(close.shape[0]):
            step(state, params, open_[row], high[row], low[row], close[row], volume[row],
                 new_session[row], scratch)
            for k in range(n_outputs):
                out[row, k] = scratch[k]

    return series


def _make_panel_drivers(step, init, n_outputs):
    @njit(error_model="numpy")
    def columns(states_owned, params, open_, high, low, close, volume, new_session, first_rows, out):
        """Column by column; ``out`` is (n_outputs, rows, cols), ``states_owned`` (cols, state size)."""
        _, rows, cols = out.shape
        states = unowned(states_owned)
        scratch = np.empty(n_outputs)
        for col in range(cols):
            state = states[col]
            init(state, params)
            first = min(first_rows[col], rows)
            for row in range(first):
                for k in range(n_outputs):
                    out[k, row, col] = np.nan
            for row in range(first, rows):
                step(state, params, open_[row, col], high[row, col], low[row, col], close[row, col],
                     volume[row, col], new_session[row], scratch)
                for k in range(n_outputs):
                    out[k, row, col] = scratch[k]

    @njit(error_model="numpy", parallel=True)
    def panel(states_owned, params, open_, high, low, close, volume, new_session, first_rows, out, block):
        """Blocks of ``block`` columns in parallel; within a block, row by row (time-major), so
        the inputs and outputs are walked along their contiguous axis. Each column has its own
        state and sees its bars in time order, so the result does not depend on the blocking."""
        _, rows, cols = out.shape
        states = unowned(states_owned)  # (cols, state size), owned (kept alive) by the caller
        n_blocks = (cols + block - 1) // block
        for index in prange(n_blocks):
            start = index * block
            stop = min(start + block, cols)
            scratch = np.empty(n_outputs)
            for col in range(start, stop):
                init(states[col], params)
            for row in range(rows):
                session = new_session[row]
                for col in range(start, stop):
                    if row < first_rows[col]:
                        for k in range(n_outputs):
                            out[k, row, col] = np.nan
                        continue
                    step(states[col], params, open_[row, col], high[row, col], low[row, col],
                         close[row, col], volume[row, col], session, scratch)
                    for k in range(n_outputs):
                        out[k, row, col] = scratch[k]

    return columns, panel


_SERIES_DRIVERS: dict[tuple[Any, int], Any] = {}
_PANEL_DRIVERS: dict[tuple[Any, Any, int], tuple[Any, Any]] = {}


def series_driver(step, n_outputs: int):
    """``run_series`` compiled around ``step`` (once per step, output count and process)."""
    key = (step, n_outputs)
    found = _SERIES_DRIVERS.get(key)
    if found is None:
        found = _SERIES_DRIVERS[key] = _make_series_driver(step, n_outputs)
    return found


def panel_drivers(step, init, n_outputs: int):
    """``(columns, panel)`` drivers compiled around ``step`` and ``init`` (once per kind)."""
    key = (step, init, n_outputs)
    found = _PANEL_DRIVERS.get(key)
    if found is None:
        found = _PANEL_DRIVERS[key] = _make_panel_drivers(step, init, n_outputs)
    return found


def run_series(step, state, params, open_, high, low, close, volume, new_session, out):
    """Advance ``state`` over a 1-D series, writing each bar's outputs into out[row, :]."""
    series_driver(step, out.shape[1])(state, params, open_, high, low, close, volume, new_session, out)


def drive_panel(step, init, state_size, params, open_, high, low, close, volume, new_session,
                first_rows, n_outputs) -> np.ndarray:
    """Every column of C-ordered (time x symbols) inputs from a fresh state; rows before
    ``first_rows[col]`` are NaN. Returns (n_outputs, rows, cols): each output a contiguous panel."""
    rows, cols = close.shape
    out = np.empty((n_outputs, rows, cols))
    states = np.empty((cols, state_size))  # owned here: the drivers view it without a reference
    columns, panel = panel_drivers(step, init, n_outputs)
    if cols <= SERIAL_COLUMNS:
        columns(states, params, open_, high, low, close, volume, new_session, first_rows, out)
    else:
        # one block per thread: measured faster than narrower blocks (fewer passes over the rows)
        block = max(PANEL_MIN_BLOCK, -(-cols // get_num_threads()))
        panel(states, params, open_, high, low, close, volume, new_session, first_rows, out, block)
    return out


def run_panel(step, init, state_size, params, open_, high, low, close, volume, new_session,
              first_rows, n_outputs):
    """Every column from a fresh state; rows before ``first_rows[col]`` stay NaN. Returns a
    (rows, cols, n_outputs) view of ``drive_panel``'s (n_outputs, rows, cols) array."""
    inputs = [np.ascontiguousarray(values, dtype=np.float64) for values in (open_, high, low, close, volume)]
    out = drive_panel(step, init, int(state_size), np.ascontiguousarray(params, dtype=np.float64), *inputs,
                      np.ascontiguousarray(new_session, dtype=np.bool_),
                      np.ascontiguousarray(first_rows, dtype=np.int64), int(n_outputs))
    return out.transpose(1, 2, 0)


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (llvm.fma.f64). The TA-Lib build the parity tests run against
    is compiled with floating-point contraction, so its ``((x - prev) * k) + prev`` and similar
    multiply-adds are fused; a step that mirrors one uses this to agree bit for bit."""
    if not all(isinstance(arg, types.Float) for arg in (a, b, c)):
        return None
    signature = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, sig, args):
        args = [context.cast(builder, arg, arg_type, types.float64) for arg, arg_type in zip(args, sig.args)]
        double = ir.DoubleType()
        function = builder.module.declare_intrinsic("llvm.fma", [double],
                                                    ir.FunctionType(double, [double] * 3))
        return builder.call(function, args)

    return signature, codegen


# ------------------------------------------------------------------ worked example: SMA
def sma_state_size(params: tuple) -> int:
    return 3 + int(params[0])  # count, running total, ring head, ring of the last `period` closes


@njit(error_model="numpy", cache=True, inline="always")
def sma_init(state, params):
    state[:] = 0.0


@njit(error_model="numpy", cache=True, inline="always")
def sma_push(state, base, period, x):
    """TA_INT_SMA as a step over state[base:base+3+period] = count, total, head, ring.

    Returns (ready, value): the running total gains the new value, is divided by the period,
    then loses the oldest value of the window (same order as the C loop)."""
    count = int(state[base])
    head = int(state[base + 2])
    next_head = head + 1
    if next_head == period:
        next_head = 0
    total = state[base + 1] + x
    state[base + 3 + head] = x
    ready = count + 1 >= period
    value = np.nan
    if ready:
        value = total / period
        total -= state[base + 3 + next_head]  # the oldest value of the window
        state[base] = period  # saturate: only "at least period" matters from here on
    else:
        state[base] = count + 1
    state[base + 1] = total
    state[base + 2] = next_head
    return ready, value


@njit(error_model="numpy", cache=True, inline="always")
def sma_step(state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib TA_INT_SMA: add the new close, divide, then subtract the oldest of the window."""
    ready, value = sma_push(state, 0, int(params[0]), close)
    out[0] = value
