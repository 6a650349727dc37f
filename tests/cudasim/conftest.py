"""Fixtures for the CUDA-simulator suite (``NUMBA_ENABLE_CUDASIM=1``, its own pytest process).

numba reads ``NUMBA_ENABLE_CUDASIM`` once, at import, so this suite runs in a separate pytest
invocation with the variable set (``make test`` does; ``tests/conftest.py`` leaves the directory
out of the main run, where the simulator would make ``numba.cuda`` report a device). The kernels
run as Python here: keep inputs small.
"""
from __future__ import annotations

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":  # `pytest tests/cudasim` without it: say how to run it
    raise pytest.UsageError("tests/cudasim needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported: "
                            "NUMBA_ENABLE_CUDASIM=1 .venv/bin/python -m pytest -q tests/cudasim")


@pytest.fixture
def simulated_gpu_backend():
    """The backend a worker with ``GPU_SIMULATOR=1`` resolves for ``COMPUTE_DEVICE=gpu``."""
    from utils.engine.backend import resolve_backend

    return resolve_backend("gpu", simulator=True)


@pytest.fixture
def simulated_gpu_settings(settings_factory, redis_client):
    """Test settings of a platform whose workers compute on the simulated GPU (GPU_SIMULATOR=1)."""
    return settings_factory(compute_device="auto", gpu_simulator=True)


@pytest.fixture
def simulated_gpu_platform(simulated_gpu_settings):
    """The gRPC server (port 0) and one in-process worker whose backend is the simulated GPU
    (resolved from the settings as ``run_worker_process`` does), on a real Redis."""
    from services.server import create_server
    from tests.conftest import InProcessWorker
    from utils.engine.backend import resolve_backend
    from utils.tasks.runtime import build_handlers

    settings = simulated_gpu_settings
    backend = resolve_backend(settings.compute_device, settings.gpu_device_id, simulator=settings.gpu_simulator)
    assert backend.is_gpu and backend.simulated
    running = create_server(settings)
    worker = InProcessWorker(settings, build_handlers(settings, backend)).start()
    running.worker, running.settings, running.backend = worker, settings, backend
    yield running
    worker.stop()
    running.stop(grace=0)


@pytest.fixture
def simulated_gpu_channel(simulated_gpu_platform):
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{simulated_gpu_platform.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    yield channel
    channel.close()
