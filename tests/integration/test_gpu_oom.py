"""The GPU out-of-memory policy (utils/gpu/oom.py) on a real Redis and the real worker loop: a
task whose first attempts raise an exception class named like CuPy's ``OutOfMemoryError`` is
retried with smaller shards, then on the CPU when its device was ``auto``, and fails with
RESOURCE_EXHAUSTED text (not retried) when its device was ``gpu``."""
from __future__ import annotations

import pytest

from tests.conftest import InProcessWorker, wait_until
from utils.engine.backend import cpu_backend
from utils.gpu.oom import guard_gpu_handlers, is_cuda_oom
from utils.queue.jobs import JobSpec, JobStatus
from utils.queue.worker import PermanentJobError
from utils.task_types import TASK_TYPES
from utils.tasks.runtime import build_handlers


class OutOfMemoryError(Exception):
    """Named like cupy.cuda.memory.OutOfMemoryError (CuPy is not installed here)."""


class CudaAPIError(Exception):
    """Shaped like numba.cuda.cudadrv.driver.CudaAPIError."""

    def __init__(self, code: int, msg: str) -> None:
        self.code = code
        super().__init__(code, msg)


def oom_task(fits_at_scale: float | None, calls: list[tuple[str, float]]):
    """A GPU-capable task that needs shards of at most ``fits_at_scale`` to fit on the 'GPU'
    (None: never fits); on the CPU it always runs. Each call's (device, shard_scale) is recorded."""
    def handle(context) -> dict:
        device = context.payload.get("device", "auto")
        calls.append((device, context.shard_scale))
        if device != "cpu" and (fits_at_scale is None or context.shard_scale > fits_at_scale):
            raise OutOfMemoryError(f"Out of memory allocating 1,073,741,824 bytes (scale {context.shard_scale})")
        chunk = max(1, int(100 * context.shard_scale))  # e.g. symbols per chunk
        return {"device": "cpu" if device == "cpu" else "gpu:0", "chunk": chunk, "value": 42}
    return handle


def run_job(settings, handler, device: str, max_attempts: int = 3):
    handlers = guard_gpu_handlers({"features": handler}, TASK_TYPES, permanent_error=PermanentJobError)
    worker = InProcessWorker(settings, handlers=handlers).start()
    try:
        job_id = worker.queue.enqueue(JobSpec("features", {"device": device}, max_attempts=max_attempts))
        record = wait_until(lambda: (r := worker.queue.get(job_id)) is not None and r.status.is_terminal and r)
        return record, worker.queue.result(job_id)
    finally:
        worker.stop()


def test_oom_retries_with_smaller_shards(settings):
    calls: list[tuple[str, float]] = []
    record, result = run_job(settings, oom_task(0.5, calls), "auto")
    assert record.status == JobStatus.COMPLETED and record.attempts == 1
    assert calls == [("auto", 1.0), ("auto", 0.5)]
    assert result == {"device": "gpu:0", "chunk": 50, "value": 42, "shard_scale": 0.5, "oom_retries": 1}


def test_oom_at_every_shard_size_falls_back_to_the_cpu_for_auto(settings):
    calls: list[tuple[str, float]] = []
    record, result = run_job(settings, oom_task(None, calls), "auto")
    assert record.status == JobStatus.COMPLETED and record.attempts == 1
    assert calls == [("auto", 1.0), ("auto", 0.5), ("auto", 0.25), ("cpu", 1.0)]
    assert result == {"device": "cpu", "chunk": 100, "value": 42, "fallback": "gpu out of memory", "oom_retries": 3}


def test_oom_never_moves_a_gpu_request_to_the_cpu(settings):
    calls: list[tuple[str, float]] = []
    record, result = run_job(settings, oom_task(None, calls), "gpu")
    assert record.status == JobStatus.FAILED and record.attempts == 1  # not retried: it cannot fit
    assert calls == [("gpu", 1.0), ("gpu", 0.5), ("gpu", 0.25)]
    assert record.error.startswith("RESOURCE_EXHAUSTED: GPU out of memory")
    assert "device 'auto'" in record.error and "GPU_MEMORY_FRACTION" in record.error
    assert result is None


def test_other_errors_keep_the_ordinary_retry(settings):
    calls: list[tuple[str, float]] = []

    def flaky(context) -> dict:
        calls.append((context.payload["device"], context.shard_scale))
        if len(calls) == 1:
            raise ValueError("a transient fault")
        return {"device": "gpu:0"}
    record, result = run_job(settings, flaky, "auto")
    assert record.status == JobStatus.COMPLETED and record.attempts == 2
    assert calls == [("auto", 1.0), ("auto", 1.0)] and result == {"device": "gpu:0"}


def test_the_worker_guards_every_gpu_capable_task_type(settings):
    handlers = build_handlers(settings, cpu_backend())
    for task_type in TASK_TYPES:
        assert hasattr(handlers[task_type.name], "__wrapped__") == task_type.gpu, task_type.name


@pytest.mark.parametrize("exc, expected", [
    (OutOfMemoryError("Out of memory allocating 512 bytes"), True),
    (CudaAPIError(2, "Call to cuMemAlloc results in CUDA_ERROR_OUT_OF_MEMORY"), True),
    (CudaAPIError(700, "CUDA_ERROR_ILLEGAL_ADDRESS"), False),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),  # torch before OutOfMemoryError
    (MemoryError("std::bad_alloc: out_of_memory: CUDA error at: rmm/mr/device/cuda_memory_resource.hpp"), True),
    (MemoryError("host allocation failed"), False),
    (ValueError("bad input"), False),
])
def test_out_of_memory_is_recognised_by_name_without_the_libraries(exc, expected):
    assert is_cuda_oom(exc) is expected
    try:
        try:
            raise exc
        except Exception as inner:
            raise RuntimeError("while computing the sweep") from inner
    except RuntimeError as outer:
        assert is_cuda_oom(outer) is expected  # found through the cause chain


def test_feature_panels_in_smaller_chunks_give_the_same_values(settings):
    """The features handler's answer to shard_scale: each calendar's panel in column chunks."""
    from utils.data.sample import SAMPLE_SYMBOLS, ensure_sample_data
    from utils.data.store import bar_store_from_settings
    from utils.redis_client import redis_from_settings
    from utils.tasks.features import panel_features
    from utils.tasks.resources import WorkerResources
    ensure_sample_data(bar_store_from_settings(redis_from_settings(settings, decode=False), settings))
    resources = WorkerResources(settings, cpu_backend())
    payload = {"symbols": list(SAMPLE_SYMBOLS), "features": ["rsi", "macd", "sma_20", "bollinger"], "device": "auto"}
    whole = panel_features(resources, payload, lambda *args: None)
    for scale in (0.5, 0.25):
        chunked = panel_features(resources, payload, lambda *args: None, shard_scale=scale)
        assert chunked["features"] == whole["features"] and chunked["timestamps"] == whole["timestamps"]
    assert set(whole["features"]) == set(SAMPLE_SYMBOLS)
