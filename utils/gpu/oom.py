"""What a GPU-capable job does when the device runs out of memory (the one place for the policy).

A CUDA out-of-memory during a job's handler (CuPy ``OutOfMemoryError``, numba ``CudaAPIError``
with ``CUDA_ERROR_OUT_OF_MEMORY``, ``torch.cuda.OutOfMemoryError``, RMM/cuDF's ``MemoryError``
naming CUDA) is recognised by type name and message, so no GPU library is imported to check it:

1. the handler runs again with smaller shards: ``context.shard_scale`` 0.5, then 0.25 (handlers
   that cut work into chunks multiply their chunk by it: fewer symbols or combinations resident
   on the device at once), after returning cached pool blocks;
2. still out of memory: with ``device: "auto"`` the job runs on the CPU (its payload's device
   becomes ``cpu``: handlers that pick their backend with ``WorkerResources.backend_for`` or pass
   the device to the model honour it) and the result records ``device`` (the handler's label,
   ``cpu`` when it gives none) and ``fallback: "gpu out of memory"``;
   with ``device: "gpu"`` it never moves: the job fails at once (not retried) with an error that
   starts ``RESOURCE_EXHAUSTED`` and says what to change.

``guard_gpu_handlers`` applies this to every task type whose registry entry may use the GPU
(``TaskType.gpu``); the worker process builds its handlers through it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from utils.gpu.memory import free_cached_gpu_memory

log = logging.getLogger(__name__)

CUDA_OOM_CODE = 2  # CUresult CUDA_ERROR_OUT_OF_MEMORY (numba's CudaAPIError.code)
FALLBACK_REASON = "gpu out of memory"


@dataclass(frozen=True)
class OomPolicy:
    shard_scales: tuple[float, ...] = (1.0, 0.5, 0.25)  # the first try, then smaller shards


def is_cuda_oom(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a CUDA out-of-memory."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name, text = type(exc).__name__, str(exc)
        if name == "OutOfMemoryError":  # cupy.cuda.memory.OutOfMemoryError, torch.cuda.OutOfMemoryError
            return True
        if name == "CudaAPIError" and (getattr(exc, "code", None) == CUDA_OOM_CODE
                                       or "CUDA_ERROR_OUT_OF_MEMORY" in text):
            return True
        if name in ("CUDARuntimeError", "CUDADriverError") and ("cudaErrorMemoryAllocation" in text
                                                                or "CUDA_ERROR_OUT_OF_MEMORY" in text):
            return True  # CuPy's runtime/driver errors
        if isinstance(exc, (MemoryError, RuntimeError)) and ("CUDA out of memory" in text
                                                             or "out_of_memory" in text and "CUDA" in text):
            return True  # torch before OutOfMemoryError; RMM's std::bad_alloc: out_of_memory: CUDA error
        exc = exc.__cause__ or exc.__context__
    return False


class GpuOutOfMemory(Exception):
    """A ``device: "gpu"`` job that ran out of GPU memory at every shard size (not retried)."""


def run_with_oom_policy(handler: Callable[[Any], dict], context: Any, policy: OomPolicy = OomPolicy(),
                        permanent_error: type[Exception] = GpuOutOfMemory) -> dict:
    """Run ``handler(context)`` under the policy in the module docstring. ``context`` is a
    ``utils.queue.worker.JobContext`` (``shard_scale``, ``on_device``); ``permanent_error`` is
    the exception class the worker does not retry."""
    requested = str(context.payload.get("device") or "auto").lower()
    failure: BaseException | None = None
    for tries, scale in enumerate(policy.shard_scales):
        context.shard_scale = scale
        try:
            result = handler(context)
        except Exception as exc:
            if requested == "cpu" or not is_cuda_oom(exc):
                raise
            failure = exc
            log.warning("job %s: GPU out of memory at shard scale %g (%s: %s)", context.job_id, scale,
                        type(exc).__name__, exc)
            free_cached_gpu_memory()
            continue
        if tries:
            result = {**result, "shard_scale": scale, "oom_retries": tries}
        return result
    smallest = policy.shard_scales[-1]
    if requested == "gpu":
        raise permanent_error(
            f"RESOURCE_EXHAUSTED: GPU out of memory even with shards at {smallest:g} of their size "
            f"({type(failure).__name__}: {failure}); submit fewer symbols or parameter combinations, raise "
            f"GPU_MEMORY_FRACTION, or use device 'auto' to let the job fall back to the CPU") from None
    log.warning("job %s: GPU out of memory at every shard size; running it on the CPU", context.job_id)
    cpu_context = context.on_device("cpu")
    cpu_context.shard_scale = 1.0
    result = handler(cpu_context)
    # the handler's own device label when it gives one (it says where the work really ran)
    return {"device": "cpu", **result, "fallback": FALLBACK_REASON, "oom_retries": len(policy.shard_scales)}


def guard_gpu_handler(handler: Callable[[Any], dict], policy: OomPolicy = OomPolicy(),
                      permanent_error: type[Exception] = GpuOutOfMemory) -> Callable[[Any], dict]:
    def guarded(context: Any) -> dict:
        return run_with_oom_policy(handler, context, policy, permanent_error)
    guarded.__wrapped__ = handler  # type: ignore[attr-defined]
    return guarded


def guard_gpu_handlers(handlers: dict[str, Callable[[Any], dict]], task_types: Any,
                       policy: OomPolicy = OomPolicy(), permanent_error: type[Exception] = GpuOutOfMemory
                       ) -> dict[str, Callable[[Any], dict]]:
    """``handlers`` with the OOM policy around each type whose registry entry has ``gpu=True``."""
    gpu_types = {t.name for t in task_types if t.gpu}
    return {name: guard_gpu_handler(handler, policy, permanent_error) if name in gpu_types else handler
            for name, handler in handlers.items()}
