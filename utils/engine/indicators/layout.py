"""Shape and NaN bookkeeping shared by the indicator kernels and the backtest.

Kernels accept a 1-D series or a 2-D panel (time x symbols) and compute along axis 0. They work
on a 2-D view internally and hand back the caller's shape. TA-Lib's Python wrapper skips leading
NaNs (it starts each series at its first non-NaN value), so every kernel needs the per-column
first valid row; interior NaNs are left in place and reach the steps.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def as_panel(xp: Any, values: Any) -> tuple[Any, bool]:
    """Return ``(panel, was_series)``: a float64 2-D view and whether the input was 1-D."""
    values = xp.asarray(values, dtype=xp.float64)
    if values.ndim == 1:
        return values[:, None], True
    if values.ndim != 2:
        raise ValueError(f"expected a 1-D series or a 2-D (time x symbols) panel, got {values.ndim}-D")
    return values, False


def restore_shape(panel: Any, was_series: bool) -> Any:
    return panel[:, 0] if was_series else panel


def to_host(xp: Any, values: Any) -> np.ndarray:
    """Bring a device array to host memory for the (numba, host-only) indicator steps."""
    if xp is np:
        return values
    return xp.asnumpy(values)
