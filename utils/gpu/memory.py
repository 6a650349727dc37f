"""GPU_MEMORY_FRACTION for every allocator a worker uses: CuPy's pool and numba.cuda.

CuPy's default memory pool takes a hard limit (``MemoryPool.set_limit``; ``utils.engine.backend``
sets it when it resolves a GPU backend). numba.cuda's own allocator has no limit at all: it calls
``cuMemAlloc`` until the device is full. numba's External Memory Management (EMM) plugin interface
(``numba.cuda.set_memory_manager``) lets another library serve its allocations, so
``CupyPoolMemoryManager`` below hands numba device memory from CuPy's pool: one pool, one limit,
covering both the CuPy array code and the numba.cuda kernels' device arrays (and blocks freed by one
are reused by the other). An allocation past the limit raises CuPy's ``OutOfMemoryError``, which
the worker's OOM policy (``utils.gpu.oom``) handles.

``limit_gpu_memory`` is called once by a worker at start, on a real GPU only (not under numba's
CUDA simulator), before any numba.cuda allocation: the plugin must be in place before numba creates
its CUDA context. Host (pinned/mapped) memory stays with numba (``HostOnlyCUDAMemoryManager``).
"""
from __future__ import annotations

import ctypes
import importlib
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryLimit:
    """What ``limit_gpu_memory`` did: the pool limit in bytes (0: none) and numba's allocator."""

    limit_bytes: int
    numba_allocator: str  # "cupy-pool", "numba-default" (numba.cuda absent) or "simulator"


def cupy_pool_memory_manager(cupy: Any, numba_cuda: Any) -> type:
    """An EMM plugin class for ``numba_cuda.set_memory_manager`` that serves numba's device
    allocations from CuPy's default memory pool (built here so numba.cuda is imported only when
    a worker asks for it)."""

    class CupyPoolMemoryManager(numba_cuda.HostOnlyCUDAMemoryManager):
        """numba device memory from CuPy's pool (and so within its ``set_limit``)."""

        def initialize(self) -> None:
            super().initialize()
            self._allocations: dict[int, Any] = {}

        def memalloc(self, size: int) -> Any:
            memory = cupy.cuda.alloc(size)  # cupy.cuda.MemoryPointer from the default pool
            address = int(memory.ptr)
            self._allocations[address] = memory
            allocations = self._allocations

            def release() -> None:  # returns the block to CuPy's pool
                allocations.pop(address, None)
            return numba_cuda.MemoryPointer(self.context, _device_pointer(numba_cuda, address), size,
                                            finalizer=release)

        def get_memory_info(self) -> Any:
            free, total = cupy.cuda.runtime.memGetInfo()
            return numba_cuda.MemoryInfo(free=free, total=total)

        def get_ipc_handle(self, memory: Any) -> Any:
            raise NotImplementedError("CUDA IPC of numba arrays is not supported with the CuPy-pool allocator")

        @property
        def interface_version(self) -> int:
            return 1

    return CupyPoolMemoryManager


def _device_pointer(numba_cuda: Any, address: int) -> Any:
    """The pointer object numba's MemoryPointer expects: a ``CUdeviceptr`` with the NVIDIA
    cuda-python binding, a ctypes integer with numba's own ctypes binding."""
    driver = getattr(getattr(numba_cuda, "cudadrv", None), "driver", None)
    # numba-cuda releases without the ctypes binding drop USE_NV_BINDING and keep ``binding``
    if driver is not None and getattr(driver, "USE_NV_BINDING", hasattr(driver, "binding")):
        return driver.binding.CUdeviceptr(address)
    return ctypes.c_uint64(address)


def _simulated() -> bool:
    try:
        from numba import config
        return bool(config.ENABLE_CUDASIM)
    except Exception:
        return False


def limit_gpu_memory(device_id: int, fraction: float | None, cupy: Any = None, numba_cuda: Any = None) -> MemoryLimit:
    """Cap CuPy's default pool at ``fraction`` of device ``device_id``'s memory and route
    numba.cuda device allocations through that pool (see the module docstring). ``cupy`` and
    ``numba_cuda`` default to the installed modules."""
    if _simulated():  # numba's CUDA simulator: host memory, nothing to limit
        return MemoryLimit(0, "simulator")
    cupy = cupy if cupy is not None else importlib.import_module("cupy")
    if numba_cuda is None:
        try:
            numba_cuda = importlib.import_module("numba.cuda")
        except Exception:  # numba without its CUDA target: only CuPy allocates on the device
            numba_cuda = None
    limit = 0
    if fraction is not None and 0 < fraction < 1:
        total = int(cupy.cuda.Device(device_id).mem_info[1])
        limit = int(total * fraction)
        cupy.get_default_memory_pool().set_limit(size=limit)
    if numba_cuda is None:
        return MemoryLimit(limit, "numba-default")
    numba_cuda.set_memory_manager(cupy_pool_memory_manager(cupy, numba_cuda))
    log.info("GPU %d: CuPy pool limit %s bytes; numba.cuda allocates from the CuPy pool", device_id,
             limit or "no")
    return MemoryLimit(limit, "cupy-pool")


def free_cached_gpu_memory() -> None:
    """Return cached blocks of the GPU libraries this process has loaded (after an out-of-memory,
    before retrying with smaller shards). Touches only libraries already imported."""
    import sys
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            cupy.get_default_memory_pool().free_all_blocks()
        except Exception as exc:
            log.debug("cupy free_all_blocks: %s", exc)
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        except Exception as exc:
            log.debug("torch empty_cache: %s", exc)
