"""Indicator panel kernels on the GPU: each kind's step, compiled for CUDA, one thread per column.

``panel_kernel(kind, n_outputs)`` builds, once per kind, a CUDA kernel from the kind's own
``init``/``load``/``step``/``store`` (``target.device_function`` of the same ``@njit`` sources the
host drivers inline, see ``step_core``). Each thread owns one column (symbol) and walks it over
time exactly like ``step_core.drive_panel``'s column driver: fresh state (``init``), rows before
the column's first valid row (all of the kind's inputs non-NaN; found by the thread itself) NaN,
then ``load``, one ``step`` per bar, ``store``. A bar's outputs are written by the step straight
into the output panel ``out[:, row, col]`` (adjacent threads, adjacent addresses: coalesced).

State lives in a device scratch array ``(state_size, cols)``; a thread's state is its column
``states[:, col]``, so ring reads and writes of neighbouring threads are coalesced too. Its
scalars stay in registers, as on the host. ``params`` is a float64 device array (the host
drivers hand the steps a tuple; both index the same values). The host drivers' intrinsics
(``stack_scratch``, ``unowned``, ``to_fixed_tuple``) are not used here.

``run_kind_on_device(kind, params, device_panels, new_session)`` mirrors ``kernels.run_kind``:
inputs (anything with ``__cuda_array_interface__``, or NumPy under the simulator) stay on the
device, and the result is a device array (n_outputs, rows, cols) that never went through the
host. Bit-identical to ``run_kind`` (see ``target`` on floating point; ``tests/cudasim``).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from numba import cuda

from utils.engine.cuda.target import compile_kernel, device_empty, device_function, launch_config, to_device
from utils.engine.indicators.step_core import INPUT_NAMES, IndicatorKind

# states, params, open, high, low, close, volume, new_session, out
PANEL_SIGNATURE = ("void(float64[:, ::1], float64[::1], float64[:, :], float64[:, :], float64[:, :], "
                   "float64[:, :], float64[:, :], boolean[::1], float64[:, :, ::1])")

_KERNELS: dict[tuple, Any] = {}


def panel_function(kind: IndicatorKind, n_outputs: int):
    """The Python function of ``kind``'s panel kernel, calling its steps' device functions (what
    ``panel_kernel`` compiles, and ``target.compile_ptx`` turns into PTX without a GPU)."""
    init, load, store, step = (device_function(f) for f in (kind.init, kind.load, kind.store, kind.step))
    reads_open, reads_high, reads_low, reads_close, reads_volume = (name in kind.inputs for name in INPUT_NAMES)

    def panel(states, params, open_, high, low, close, volume, new_session, out):
        col = cuda.grid(1)
        rows = out.shape[1]
        if col >= out.shape[2]:
            return
        first = 0
        while first < rows and ((reads_open and math.isnan(open_[first, col]))
                                or (reads_high and math.isnan(high[first, col]))
                                or (reads_low and math.isnan(low[first, col]))
                                or (reads_close and math.isnan(close[first, col]))
                                or (reads_volume and math.isnan(volume[first, col]))):
            for k in range(n_outputs):
                out[k, first, col] = np.nan
            first += 1
        state = states[:, col]
        init(state, params)
        scalars = load(state, params)
        for row in range(first, rows):
            scalars = step(scalars, state, params, open_[row, col], high[row, col], low[row, col],
                           close[row, col], volume[row, col], new_session[row], out[:, row, col])
        store(state, params, scalars)

    panel.__qualname__ = panel.__name__ = f"{kind.name}_panel"
    return panel


def panel_kernel(kind: IndicatorKind, n_outputs: int | None = None):
    """The CUDA panel kernel of ``kind`` (compiled once per kind and process)."""
    n_outputs = kind.n_outputs if n_outputs is None else n_outputs
    key = (kind.step, kind.load, kind.store, kind.init, kind.inputs, n_outputs)
    found = _KERNELS.get(key)
    if found is None:
        found = _KERNELS[key] = compile_kernel(panel_function(kind, n_outputs), PANEL_SIGNATURE)
    return found


def run_kind_on_device(kind: IndicatorKind, params: tuple, device_panels: Mapping[str, Any],
                       new_session: Any = None) -> Any:
    """Outputs of ``kind`` over (time x symbols) float64 panels on the device, as a device array
    (n_outputs, rows, cols), like ``drive_panel``'s. ``device_panels`` must hold every input the
    kind reads; ``new_session`` is a bool per row (None: no session starts)."""
    stand_in = to_device(device_panels[kind.inputs[0]], np.float64)
    rows, cols = stand_in.shape
    inputs = [to_device(device_panels[name], np.float64) if name in kind.inputs and name != kind.inputs[0]
              else stand_in for name in INPUT_NAMES]
    if new_session is None:
        new_session = np.zeros(rows, dtype=np.bool_)
    sessions = to_device(new_session, np.bool_)
    if sessions.shape != (rows,):
        raise ValueError(f"new_session must have one entry per row ({rows}), got shape {sessions.shape}")
    out = device_empty((kind.n_outputs, rows, cols))
    states = device_empty((max(kind.state_size(params), 1), cols))
    blocks, threads = launch_config(cols)
    panel_kernel(kind)[blocks, threads](states, to_device(np.asarray(params, dtype=np.float64)), *inputs,
                                        sessions, out)
    return out
