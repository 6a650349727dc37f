"""The backtest's CUDA kernels (the sleeve kernel and the three sweep kernels, ``simulate_sleeve``
and ``crossover_target`` compiled as device functions) compile to PTX with libNVVM, no GPU needed:
real CUDA code, not only simulator-valid Python. With ``target.compile_ptx`` there is no fused
multiply-add and no approximate or flush-to-zero arithmetic, so they round like the CPU kernels.
Skipped, with the reason, where libNVVM cannot be loaded."""
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

CC = (7, 5)


def _assert_ieee(ptx: str, name: str) -> None:
    assert re.search(rf"\.entry\s+\S*{name}", ptx), name
    assert "fma.rn" not in ptx, f"{name}: contracted multiply-add"
    assert "div.approx" not in ptx and "sqrt.approx" not in ptx and ".ftz" not in ptx, name


@needs_nvvm
def test_sleeve_kernel_compiles_to_ptx():
    from utils.engine.cuda.sleeve_kernels import SLEEVE_PANEL_SIGNATURE, sleeve_panel_source

    ptx = target.compile_ptx(sleeve_panel_source(), SLEEVE_PANEL_SIGNATURE, cc=CC)
    _assert_ieee(ptx, "sleeve_panel")
    assert "div.rn.f64" in ptx  # entry sizing divides: IEEE-rounded


@needs_nvvm
def test_sweep_kernels_compile_to_ptx():
    from utils.engine.cuda.sweep_kernels import kernel_sources

    for (source, signature), name in zip(kernel_sources(), ("sweep_sleeves", "sweep_curves", "sweep_trades")):
        _assert_ieee(target.compile_ptx(source, signature, cc=CC), name)
