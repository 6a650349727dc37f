"""GPU_SIMULATOR outside the simulator process fails loudly at resolve time (the main suite runs
without NUMBA_ENABLE_CUDASIM; tests/cudasim covers the simulated backend itself)."""
from __future__ import annotations

import os

import pytest

from utils.engine.backend import BackendUnavailable, resolve_backend

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="main suite only")


@pytest.mark.parametrize("device", ["gpu", "auto"])
def test_simulator_without_cudasim_is_refused(device):
    with pytest.raises(BackendUnavailable, match="NUMBA_ENABLE_CUDASIM=1"):
        resolve_backend(device, simulator=True)


def test_simulator_leaves_cpu_alone():
    backend = resolve_backend("cpu", simulator=True)
    assert not backend.is_gpu and not backend.simulated and backend.label == "cpu"
