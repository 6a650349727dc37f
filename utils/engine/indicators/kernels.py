"""Batch indicator kernels: an indicator kind's step driven over a series or a panel.

There is one implementation per indicator, its step (in its family's module under ``kinds/``);
``run_kind`` drives it with ``step_core.drive_panel`` over every column of a (time x symbols) panel,
each column starting at its first row where all the kind's inputs are non-NaN (TA-Lib's Python
wrapper does the same), so the next ``lookback`` rows are NaN. The steps run on the host in numba:
with a GPU array module (cupy) the inputs are copied to host memory and the outputs copied back;
these recurrences are sequential along time and the copies are cheap next to them. On a GPU
backend (``compute_features(..., on_device=True)``) the same steps run instead as CUDA panel
kernels on device panels (``device_panels``, ``run_kind_on_gpu``; ``utils/engine/cuda``), and
nothing is copied to the host.

The functions ``sma/ema/rsi/macd/bollinger(xp, close, ...)`` are thin wrappers for callers that
want one indicator over a close series or panel (strategies); they return ``xp`` arrays of the
caller's shape, in float64.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from utils.engine.indicators.layout import as_panel, restore_shape, to_host
from utils.engine.indicators.step_core import INPUT_NAMES, IndicatorKind, drive_panel, first_valid_rows_of
from utils.engine.indicators.kinds import KINDS

log = logging.getLogger(__name__)


def host_panels(xp: Any, series: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """``({input: contiguous float64 host panel}, was_series)``; every input must share one shape."""
    panels: dict[str, np.ndarray] = {}
    shapes = set()
    was_series = False
    for name, values in series.items():
        panel, was_series = as_panel(xp, values)
        panels[name] = np.ascontiguousarray(to_host(xp, panel), dtype=np.float64)
        shapes.add(panels[name].shape)
    if len(shapes) > 1:
        raise ValueError(f"bar inputs must share one shape, got {sorted(shapes)}")
    return panels, was_series


def run_kind(kind: IndicatorKind, params: tuple, panels: Mapping[str, np.ndarray],
             new_session: np.ndarray | None = None) -> np.ndarray:
    """Outputs of ``kind`` over host panels (C-contiguous float64, as ``host_panels`` gives),
    shaped (time, symbols, outputs): a view of one (outputs, time, symbols) array, so each output
    ``result[:, :, k]`` is itself a contiguous panel. ``panels`` must hold every input the kind
    reads (the others are never touched)."""
    stand_in = panels[kind.inputs[0]]
    rows = stand_in.shape[0]
    if new_session is None:
        new_session = np.zeros(rows, dtype=np.bool_)
    inputs = [panels[name] if name in kind.inputs else stand_in for name in INPUT_NAMES]
    reads = np.array([name in kind.inputs for name in INPUT_NAMES], dtype=np.bool_)
    first_rows = first_valid_rows_of(reads, *inputs)
    out = drive_panel(kind, kind.state_size(params), np.asarray(params, dtype=np.float64),
                      *inputs, np.ascontiguousarray(new_session, dtype=np.bool_), first_rows, kind.n_outputs)
    return out.transpose(1, 2, 0)


def to_caller(xp: Any, result: np.ndarray, was_series: bool) -> tuple[Any, ...]:
    """One ``xp`` array per output, in the caller's shape (no copy for numpy when ``result``
    comes from ``run_kind``: its outputs are contiguous already)."""
    return tuple(restore_shape(xp.asarray(np.ascontiguousarray(result[:, :, k])), was_series)
                 for k in range(result.shape[2]))


def use_device_kernels(xp: Any, on_device: bool | None = None) -> bool:
    """Whether to run the CUDA panel kernels: asked for (``on_device``; by default whenever
    ``xp`` is a GPU array module) and compilable here. A GPU host without libNVVM runs the
    host steps instead (as before the kernels existed), saying so once in the log."""
    wanted = (xp is not np) if on_device is None else on_device
    if not wanted:
        return False
    from utils.engine.cuda.target import kernels_unavailable

    reason = kernels_unavailable()
    if reason is not None:
        if not _WARNED:
            _WARNED.append(reason)
            log.warning("CUDA indicator kernels unavailable (%s); indicator steps run on the host", reason)
        return False
    return True


_WARNED: list = []


def device_panels(xp: Any, series: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``({input: float64 device panel}, was_series)`` for the CUDA kernels: ``xp`` arrays stay
    where they are (CuPy on the device; NumPy under the CUDA simulator, whose device is host
    memory); every input must share one shape."""
    from utils.engine.cuda.target import to_device

    panels: dict[str, Any] = {}
    was_series = False
    for name, values in series.items():
        panel, was_series = as_panel(xp, values)
        panels[name] = to_device(panel, np.float64)
    shapes = {tuple(panel.shape) for panel in panels.values()}
    if len(shapes) > 1:
        raise ValueError(f"bar inputs must share one shape, got {sorted(shapes)}")
    return panels, was_series


def run_kind_on_gpu(kind: IndicatorKind, params: tuple, panels: Mapping[str, Any],
                    new_session: np.ndarray | None = None) -> Any:
    """``run_kind`` as the kind's CUDA panel kernel over ``device_panels``: a device array
    (outputs, time, symbols), bit-identical to ``run_kind``'s (``tests/cudasim``)."""
    from utils.engine.cuda.indicator_kernels import run_kind_on_device

    return run_kind_on_device(kind, params, panels, new_session)


def device_to_caller(xp: Any, result: Any, was_series: bool) -> tuple[Any, ...]:
    """One ``xp`` array per output of a device result (outputs, time, symbols): CuPy views the
    device memory without a copy; NumPy (the simulator) gets host copies."""
    if xp is np:
        from utils.engine.cuda.target import to_host as device_to_host

        host = device_to_host(result)
        return tuple(restore_shape(host[k], was_series) for k in range(host.shape[0]))
    whole = xp.asarray(result)
    return tuple(restore_shape(whole[k], was_series) for k in range(whole.shape[0]))


def _close_kind(xp: Any, name: str, params: tuple, close: Any) -> tuple[Any, ...]:
    if use_device_kernels(xp):
        panels, was_series = device_panels(xp, {"close": close})
        return device_to_caller(xp, run_kind_on_gpu(KINDS[name], params, panels), was_series)
    panels, was_series = host_panels(xp, {"close": close})
    return to_caller(xp, run_kind(KINDS[name], params, panels), was_series)


def _check_period(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def sma(xp: Any, close: Any, period: int) -> Any:
    """Simple moving average (TA-Lib SMA)."""
    return _close_kind(xp, "sma", (_check_period("period", period),), close)[0]


def ema(xp: Any, close: Any, period: int) -> Any:
    """Exponential moving average, k = 2/(period+1), seeded with the SMA of the first ``period``."""
    return _close_kind(xp, "ema", (_check_period("period", period),), close)[0]


def rsi(xp: Any, close: Any, period: int = 14) -> Any:
    """Relative strength index with Wilder smoothing and TA-Lib's seeding (lookback = period)."""
    return _close_kind(xp, "rsi", (_check_period("period", period),), close)[0]


def macd(xp: Any, close: Any, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[Any, Any, Any]:
    """TA-Lib MACD: returns ``(macd, signal, hist)``, all NaN for ``slow - 1 + signal - 1`` rows."""
    params = (_check_period("fast", fast), _check_period("slow", slow), _check_period("signal", signal))
    if params[0] >= params[1]:
        raise ValueError(f"fast must be smaller than slow, got fast={fast}, slow={slow}")
    return _close_kind(xp, "macd", params, close)


def bollinger(xp: Any, close: Any, period: int = 20, nbdev_up: float = 2.0,
              nbdev_dn: float = 2.0) -> tuple[Any, Any, Any]:
    """TA-Lib BBANDS (SMA middle band, population std): returns ``(upper, middle, lower)``.

    The step takes one ``nbdev``; unequal up/down widths run it a second time for the lower band.
    """
    period = _check_period("period", period)
    upper, middle, lower = _close_kind(xp, "bollinger", (period, float(nbdev_up)), close)
    if nbdev_dn != nbdev_up:
        lower = _close_kind(xp, "bollinger", (period, float(nbdev_dn)), close)[2]
    return upper, middle, lower
