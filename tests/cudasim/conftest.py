"""Fixtures for the CUDA-simulator suite (``NUMBA_ENABLE_CUDASIM=1``, its own pytest process).

numba reads ``NUMBA_ENABLE_CUDASIM`` once, at import, so this suite runs in a separate pytest
invocation with the variable set (``make test`` does; ``tests/conftest.py`` leaves the directory
out of the main run, where the simulator would make ``numba.cuda`` report a device). The kernels
run as Python here: keep inputs small.
"""
from __future__ import annotations

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":  # pragma: no cover - guarded by tests/conftest.py
    raise pytest.UsageError("tests/cudasim needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported: "
                            "NUMBA_ENABLE_CUDASIM=1 .venv/bin/python -m pytest -q tests/cudasim")


@pytest.fixture
def simulated_gpu_backend():
    """The backend a worker with ``GPU_SIMULATOR=1`` resolves for ``COMPUTE_DEVICE=gpu``."""
    from utils.engine.backend import resolve_backend

    return resolve_backend("gpu", simulator=True)
