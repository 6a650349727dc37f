"""Every indicator panel kernel compiles to PTX with libNVVM (no GPU needed): the kernels are
real CUDA code, not only simulator-valid Python. Also: ``target.compile_ptx`` turns NVVM's FMA
contraction off (numba's own ``compile_ptx`` leaves it on), and division and square root are the
IEEE-rounded instructions, so the GPU kernels round like the CPU kernels. Skipped, with the
reason, where libNVVM cannot be loaded."""
from __future__ import annotations

import os
import re

import pytest

from utils.engine.cuda import target

pytestmark = [
    pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="needs the real CUDA target"),
]
_NO_NVVM = None if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else target.nvvm_available()
needs_nvvm = pytest.mark.skipif(_NO_NVVM is not None, reason=f"libNVVM not loadable: {_NO_NVVM}")

CC = (7, 5)  # the oldest target CUDA 12 and 13 both compile for


def _multiply_add(a, b, c, out):
    out[0] = a[0] * b[0] + c[0]


MULTIPLY_ADD = "void(float64[::1], float64[::1], float64[::1], float64[::1])"


@needs_nvvm
def test_contraction_is_off():
    from numba import cuda

    ours = target.compile_ptx(_multiply_add, MULTIPLY_ADD, cc=CC)
    numbas, _ = cuda.compile_ptx(_multiply_add, MULTIPLY_ADD, cc=CC)
    assert "fma.rn.f64" in numbas  # what we turn off
    assert "fma.rn.f64" not in ours and "mul.rn.f64" in ours and "add.rn.f64" in ours


@needs_nvvm
def test_every_indicator_panel_kernel_compiles_to_ptx():
    from utils.engine.cuda.indicator_kernels import PANEL_SIGNATURE, panel_function
    from utils.engine.indicators.kinds import KINDS

    for name, kind in KINDS.items():
        ptx = target.compile_ptx(panel_function(kind, kind.n_outputs), PANEL_SIGNATURE, cc=CC)
        assert re.search(rf"\.entry\s+\S*{name}_panel", ptx), name
        assert "div.approx" not in ptx and "sqrt.approx" not in ptx and ".ftz" not in ptx, name
        if name in ("bollinger", "volatility", "zscore"):
            assert "sqrt.rn.f64" in ptx, name
