"""The one shape every indicator kernel has: an O(1) ``step`` over its own state.

Why: batch features, backtests, panels and live streams must agree exactly. Each indicator is
written once as a step that consumes one bar and updates a small state; the batch kernel is that
same step driven over a series by ``run_series``, so a stream that has seen N ticks holds bit for
bit the values the batch gives on the same N points (no second implementation to drift), and the
state is a plain float64 array that can be snapshotted to Redis.

A state has two parts. Its *scalars* (counts, running sums, ring heads, previous values) are
handed to the step as a tuple and returned updated: the drivers keep that tuple in registers for
a whole series, where a scalar kept in the array would be reloaded and stored on every bar (numba
cannot prove that the state, the inputs and the outputs do not overlap), and counts and ring heads
stay integers instead of round-tripping through float64 on every bar. Its *rings* (windows of past
values) stay in the array, which the step reads and writes in place. ``load`` and ``store`` move
the scalars between the array and the tuple; in the array they keep their slots, as float64.

Convention for an indicator kind (see ``sma_*`` below as the worked example):

    state_size(params: tuple) -> int             Python; length of its state array
    @njit init(state, params)                    reset the state array (start of a series)
    @njit load(state, params) -> scalars         the scalar slots as a typed tuple
    @njit store(state, params, scalars)          write them back into their slots
    @njit step(scalars, state, params, open_, high, low, close, volume, new_session, out) -> scalars
        consume one bar; write its outputs into out[:n_outputs] (NaN during warm-up). Reads and
        writes only the ring slots of ``state`` (its scalar slots are stale during a run: the
        drivers store the scalars back at the end); returns the scalars with the same types.

``params`` is a float64 array of the kind's parameters in declaration order. ``new_session``
is True on the first bar of a new session (VWAP resets there). Steps must use the same
floating-point operations in the same order as TA-Lib's C code where TA-Lib defines the
indicator (parity to 1e-9 is tested; most agree exactly). No fastmath: reassociation would
break the batch/stream identity.

Drivers: ``run_series`` continues a state over a 1-D series (streaming chunks, rebuilds);
``tick_driver`` advances it by one bar (``StreamState.update``); ``drive_panel`` runs every
column of a (time x symbols) panel
from a fresh state, starting each column at its first row where the kind's inputs are all non-NaN
(TA-Lib's convention). All are compiled per kind around its step (see "drivers" below) and do
load, steps, store, with ``params`` turned into a tuple once (values LLVM holds in registers; read
from the array, they would be reloaded and reconverted on every bar, as the stores into the state
might have changed them) and the step's outputs in a scratch array on the driver's stack. Every
column runs as a series, the scalars in registers; a panel splits its columns into one block per
numba thread. (Time-major order, row by row across columns, would walk C-ordered panels
contiguously, but each bar would then belong to another column and the scalars would go through
memory on every bar: measured 2-4x slower.) Outputs are (n_outputs, rows, cols): each output is
one contiguous panel, handed out without copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from llvmlite import ir
from numba import carray, get_num_threads, njit, prange, types
from numba.core import cgutils
from numba.core.errors import RequireLiteralValue
from numba.extending import intrinsic
from numba.np.unsafe.ndarray import to_fixed_tuple

from utils.engine.kernel_cache import cache_on_disk

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
    init: Any  # numba dispatchers, see the convention above
    load: Any
    store: Any
    step: Any
    lookback: Callable[[tuple], int]  # bars of NaN after the first valid input (TA-Lib lookback)
    lookback_formula: str  # the same, for people: "period - 1"
    check: Callable[[tuple], str | None] = field(default=lambda params: None)  # cross-param rules

    @property
    def n_outputs(self) -> int:
        return max(len(self.outputs), 1)


# ------------------------------------------------------------------ drivers
# A driver is compiled per kind by a factory that closes over the kind's functions, so numba
# sees them as globals and inlines them (``inline="always"``) into the bar loop; a step passed as
# a first-class argument is called through its own compiled function on every bar instead. The
# drivers are disk-cached by ``kernel_cache.cache_on_disk`` (numba's own ``cache=True`` cannot
# find a closure over dispatchers again in another process), so each compiles once per kind and
# code version, not once per process. Inlining changes no floating-point operation (no fastmath,
# no contraction: only ``fma`` fuses), so every driver, and a direct call of the step, agree bit
# for bit.
PANEL_MIN_BLOCK = 32  # at least this many columns per block of the parallel panel driver
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


@intrinsic
def _stack_doubles(typingctx, length):
    """A pointer to ``length`` (a constant) float64 slots on the calling function's stack."""
    if not isinstance(length, types.IntegerLiteral):
        raise RequireLiteralValue("length must be a compile-time constant")
    count = length.literal_value

    def codegen(context, builder, sig, args):
        return cgutils.alloca_once(builder, ir.DoubleType(), size=count)

    return types.CPointer(types.float64)(length), codegen


@njit(error_model="numpy", inline="always")
def stack_scratch(length):
    """A float64 array of ``length`` (a constant) on the driver's stack, for the outputs of one
    step: no heap allocation and no reference count, so the per-bar calls into the step do no
    atomic increments, and LLVM keeps its slots in registers. Valid until the driver returns."""
    return carray(_stack_doubles(length), (length,))


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


def _make_series_driver(kind_functions, n_params, n_outputs):
    step, load, store = kind_functions

    @njit(error_model="numpy")
    def series(state_owned, params_array, open_, high, low, close, volume, new_session, out):
        params = to_fixed_tuple(params_array, n_params)
        scratch = stack_scratch(n_outputs)
        state = unowned(state_owned)
        scalars = load(state, params)
        for row in range(np.uint64(close.shape[0])):  # unsigned: no wraparound code
            scalars = step(scalars, state, params, open_[row], high[row], low[row], close[row], volume[row],
                           new_session[row], scratch)
            for k in range(n_outputs):
                out[row, k] = scratch[k]
        store(state, params, scalars)

    return cache_on_disk(series)


def _make_tick_driver(kind_functions, n_params):
    step, load, store = kind_functions

    @njit(error_model="numpy")
    def tick(state, params_array, open_, high, low, close, volume, new_session, out):
        params = to_fixed_tuple(params_array, n_params)
        scalars = step(load(state, params), state, params, open_, high, low, close, volume, new_session, out)
        store(state, params, scalars)

    return cache_on_disk(tick)


def _make_panel_drivers(kind_functions, init, n_params, n_outputs):
    step, load, store = kind_functions

    @njit(error_model="numpy")
    def columns(states_owned, params_array, open_, high, low, close, volume, new_session, first_rows, out):
        """Column by column, the scalars in registers; ``out`` is (n_outputs, rows, cols),
        ``states_owned`` (cols, state size)."""
        _, rows, cols = out.shape
        params = to_fixed_tuple(params_array, n_params)
        states = unowned(states_owned)
        scratch = stack_scratch(n_outputs)
        for col in range(cols):
            state = states[col]
            init(state, params_array)
            first = max(min(first_rows[col], rows), 0)  # never negative: lets LLVM drop the index wraparound
            for row in range(first):
                for k in range(n_outputs):
                    out[k, row, col] = np.nan
            scalars = load(state, params)
            for row in range(np.uint64(first), np.uint64(rows)):  # unsigned: no wraparound code
                scalars = step(scalars, state, params, open_[row, col], high[row, col], low[row, col],
                               close[row, col], volume[row, col], new_session[row], scratch)
                for k in range(n_outputs):
                    out[k, row, col] = scratch[k]
            store(state, params, scalars)

    @njit(error_model="numpy", parallel=True)
    def panel(states_owned, params, open_, high, low, close, volume, new_session, first_rows, out, block):
        """Blocks of ``block`` columns in parallel, each run by ``columns`` (the blocks' columns
        are independent, so the result does not depend on the blocking)."""
        _, rows, cols = out.shape
        n_blocks = (cols + block - 1) // block
        for index in prange(n_blocks):
            start = index * block
            stop = min(start + block, cols)
            columns(states_owned[start:stop], params, open_[:, start:stop], high[:, start:stop],
                    low[:, start:stop], close[:, start:stop], volume[:, start:stop], new_session,
                    first_rows[start:stop], out[:, :, start:stop])

    return cache_on_disk(columns), cache_on_disk(panel)


_DRIVERS: dict[tuple, Any] = {}


def _compiled(kind: IndicatorKind, role: str, n_outputs: int):
    """The ``role`` driver compiled around ``kind``'s functions (once per kind, role and process)."""
    key = (kind.step, kind.load, kind.store, kind.init, role, n_outputs)
    found = _DRIVERS.get(key)
    if found is None:
        functions = (kind.step, kind.load, kind.store)
        n_params = len(kind.params)
        if role == "series":
            found = _make_series_driver(functions, n_params, n_outputs)
        elif role == "tick":
            found = _make_tick_driver(functions, n_params)
        else:
            found = _make_panel_drivers(functions, kind.init, n_params, n_outputs)
        _DRIVERS[key] = found
    return found


def series_driver(kind: IndicatorKind, n_outputs: int):
    """``run_series`` compiled around ``kind``'s step."""
    return _compiled(kind, "series", n_outputs)


def tick_driver(kind: IndicatorKind):
    """``tick(state, params, open_, high, low, close, volume, new_session, out)``: one bar,
    load, step and store (what ``StreamState.update`` calls)."""
    return _compiled(kind, "tick", kind.n_outputs)


def panel_drivers(kind: IndicatorKind, n_outputs: int):
    """``(columns, panel)`` drivers compiled around ``kind``'s step."""
    return _compiled(kind, "panel", n_outputs)


def run_series(kind: IndicatorKind, state, params, open_, high, low, close, volume, new_session, out):
    """Advance ``state`` over a 1-D series, writing each bar's outputs into out[row, :]."""
    series_driver(kind, out.shape[1])(state, params, open_, high, low, close, volume, new_session, out)


def drive_panel(kind: IndicatorKind, state_size, params, open_, high, low, close, volume, new_session,
                first_rows, n_outputs) -> np.ndarray:
    """Every column of C-ordered (time x symbols) inputs from a fresh state; rows before
    ``first_rows[col]`` are NaN. Returns (n_outputs, rows, cols): each output a contiguous panel."""
    rows, cols = close.shape
    out = np.empty((n_outputs, rows, cols))
    states = np.empty((cols, state_size))  # owned here: the drivers view it without a reference
    columns, panel = panel_drivers(kind, n_outputs)
    if cols <= SERIAL_COLUMNS:
        columns(states, params, open_, high, low, close, volume, new_session, first_rows, out)
    else:
        # one block per thread: neighbouring columns share cache lines, so a thread keeps its own
        block = max(PANEL_MIN_BLOCK, -(-cols // get_num_threads()))
        panel(states, params, open_, high, low, close, volume, new_session, first_rows, out, block)
    return out


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


@njit(error_model="numpy", cache=True, inline="always")
def ring_index(i):
    """``i`` (never negative) as an unsigned index: numba then emits no negative-index wraparound
    (a compare and a conditional move per access, most of the cost of a cheap step)."""
    return np.uint64(i)


@intrinsic
def pick(typingctx, condition, if_true, if_false):
    """``if_true if condition else if_false`` as one LLVM ``select`` marked ``!unpredictable``,
    so the backend keeps it a conditional move: for a data-dependent condition (a new high of a
    random walk) a branch would be mispredicted often. Both values are computed; no arithmetic
    changes, only how the choice is made."""
    if not isinstance(condition, types.Boolean) or if_true != if_false:
        return None

    def codegen(context, builder, sig, args):
        flag = context.cast(builder, args[0], sig.args[0], types.boolean)
        chosen = builder.select(flag, args[1], args[2])
        chosen.set_metadata("unpredictable", builder.module.add_metadata([]))
        return chosen

    return if_true(condition, if_true, if_false), codegen


# ------------------------------------------------------------------ worked example: SMA
def sma_state_size(params: tuple) -> int:
    return 3 + int(params[0])  # count, running total, ring head, ring of the last `period` closes


@njit(error_model="numpy", cache=True, inline="always")
def sma_init(state, params):
    state[:] = 0.0


@njit(error_model="numpy", cache=True, inline="always")
def sma_slots(state, at):
    """The SMA scalars kept at state[at:at+3]: (count, running total, ring head)."""
    return int(state[at]), state[at + 1], int(state[at + 2])


@njit(error_model="numpy", cache=True, inline="always")
def sma_put(state, at, sma):
    count, total, head = sma
    state[at] = count
    state[at + 1] = total
    state[at + 2] = head


@njit(error_model="numpy", cache=True, inline="always")
def sma_push(sma, state, ring, period, x):
    """TA_INT_SMA as a step: ``sma`` = (count, total, head) scalars, the ring of the last
    ``period`` values at state[ring:ring+period].

    Returns (sma, ready, value): the running total gains the new value, is divided by the
    period, then loses the oldest value of the window (same order as the C loop)."""
    count, total, head = sma
    next_head = head + 1
    if next_head == period:
        next_head = 0
    total = total + x
    state[ring_index(ring + head)] = x
    ready = count + 1 >= period
    value = np.nan
    if ready:
        value = total / period
        total -= state[ring_index(ring + next_head)]  # the oldest value of the window
        count = period  # saturate: only "at least period" matters from here on
    else:
        count = count + 1
    return (count, total, next_head), ready, value


@njit(error_model="numpy", cache=True, inline="always")
def sma_load(state, params):
    return sma_slots(state, 0)


@njit(error_model="numpy", cache=True, inline="always")
def sma_store(state, params, scalars):
    sma_put(state, 0, scalars)


@njit(error_model="numpy", cache=True, inline="always")
def sma_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib TA_INT_SMA: add the new close, divide, then subtract the oldest of the window."""
    scalars, ready, value = sma_push(scalars, state, 3, int(params[0]), close)
    out[0] = value
    return scalars
