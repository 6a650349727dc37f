"""GPU_SIMULATOR: ``gpu`` and ``auto`` resolve to numba's CUDA simulator as one GPU."""
from __future__ import annotations

import numpy as np

from utils.engine.backend import resolve_backend


def test_simulated_gpu_backend(simulated_gpu_backend):
    backend = simulated_gpu_backend
    assert backend.is_gpu and backend.simulated and backend.xp is np
    assert backend.label == "gpu:0 (simulated)"
    assert backend.for_request("gpu").simulated and not backend.for_request("cpu").is_gpu
    assert resolve_backend("auto", device_id=1, simulator=True).label == "gpu:1 (simulated)"
    assert not resolve_backend("cpu", simulator=True).is_gpu
