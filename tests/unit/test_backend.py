"""The backend switch: auto falls back quietly, an explicit gpu request fails loudly."""
from __future__ import annotations

import numpy as np
import pytest

from utils.engine.backend import BackendUnavailable, resolve_backend
from utils.gpu.devices import gpu_count

needs_no_gpu = pytest.mark.skipif(gpu_count() > 0, reason="this host has a GPU")


@needs_no_gpu
def test_auto_falls_back_to_numpy_without_a_gpu():
    backend = resolve_backend("auto")
    assert backend.name == "cpu" and backend.xp is np and backend.label == "cpu"
    assert isinstance(backend.to_numpy(backend.asarray([1, 2])), np.ndarray)


@needs_no_gpu
def test_explicit_gpu_without_one_fails_loudly():
    with pytest.raises(BackendUnavailable, match="GPU"):
        resolve_backend("gpu")


def test_cpu_is_always_available_and_bad_names_are_rejected():
    assert resolve_backend("cpu").xp is np
    with pytest.raises(ValueError, match="auto, cpu, gpu"):
        resolve_backend("tpu")


@needs_no_gpu
def test_main_server_refuses_compute_device_gpu_without_a_gpu(tmp_path):
    import os
    import subprocess
    import sys
    from tests.conftest import PROJECT_ROOT
    env = {**os.environ, "COMPUTE_DEVICE": "gpu", "REDIS_EMBEDDED": "never", "REDIS_PORT": "1",
           "PROMETHEUS_PORT": "0", "DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "main_server.py", "worker"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "COMPUTE_DEVICE=auto" in done.stderr
