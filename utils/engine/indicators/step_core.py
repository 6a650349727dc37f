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
``run_panel`` runs every column of a (time x symbols) panel from a fresh state, starting each
column at its first row where the kind's inputs are all non-NaN (TA-Lib's convention).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from llvmlite import ir
from numba import njit, types
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


# The drivers are not disk-cached: numba cannot reuse a cache entry keyed on a dispatcher argument
# (each process's step is a new type, so entries only pile up, and re-saving an index that holds a
# vanished dispatcher raises ReferenceError). They compile once per kind and process (~1 s).
@njit
def run_series(step, state, params, open_, high, low, close, volume, new_session, out):
    """Advance ``state`` over a 1-D series, writing each bar's outputs into out[row, :]."""
    scratch = np.empty(out.shape[1])
    for row in range(close.shape[0]):
        step(state, params, open_[row], high[row], low[row], close[row], volume[row],
             new_session[row], scratch)
        for k in range(out.shape[1]):
            out[row, k] = scratch[k]


@njit
def run_panel(step, init, state_size, params, open_, high, low, close, volume, new_session,
              first_rows, n_outputs):
    """Every column from a fresh state; rows before ``first_rows[col]`` stay NaN."""
    rows, cols = close.shape
    out = np.full((rows, cols, n_outputs), np.nan)
    state = np.empty(state_size)
    scratch = np.empty(n_outputs)
    for col in range(cols):
        init(state, params)
        for row in range(first_rows[col], rows):
            step(state, params, open_[row, col], high[row, col], low[row, col], close[row, col],
                 volume[row, col], new_session[row], scratch)
            for k in range(n_outputs):
                out[row, col, k] = scratch[k]
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


# ------------------------------------------------------------------ worked example: SMA
def sma_state_size(params: tuple) -> int:
    return 3 + int(params[0])  # count, running total, ring head, ring of the last `period` closes


@njit(cache=True, inline="always")
def sma_init(state, params):
    state[:] = 0.0


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def sma_step(state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib TA_INT_SMA: add the new close, divide, then subtract the oldest of the window."""
    ready, value = sma_push(state, 0, int(params[0]), close)
    out[0] = value
