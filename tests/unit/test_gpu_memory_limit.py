"""GPU_MEMORY_FRACTION for CuPy's pool and numba.cuda (utils/gpu/memory.py). CuPy and a GPU are not
here: a stand-in for CuPy's pool checks the limit and that numba's EMM plugin (numba's real
HostOnlyCUDAMemoryManager and MemoryPointer) takes and returns its blocks from that pool. The real
run is in scripts/device_check.sh on a lent GPU."""
from __future__ import annotations

import ctypes
import gc
import types

import pytest

from utils.gpu.memory import MemoryLimit, limit_gpu_memory

numba_cuda = pytest.importorskip("numba.cuda")
if not hasattr(numba_cuda, "HostOnlyCUDAMemoryManager"):
    pytest.skip("numba.cuda's EMM classes are absent under NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)


class StandInPool:
    """CuPy's default memory pool, reduced to what the plugin uses: alloc within a limit."""

    def __init__(self, total: int) -> None:
        self.total, self.limit, self.in_use, self.next_address = total, total, {}, 0x7F0000000000

    def set_limit(self, size: int) -> None:
        self.limit = size

    def alloc(self, size: int):
        if sum(self.in_use.values()) + size > self.limit:
            raise type("OutOfMemoryError", (Exception,), {})(f"Out of memory allocating {size} bytes")
        address, self.next_address = self.next_address, self.next_address + size
        self.in_use[address] = size
        pool = self

        class Block:
            ptr = address

            def __del__(self) -> None:
                pool.in_use.pop(address, None)
        return Block()


def stand_in_cupy(pool: StandInPool) -> types.SimpleNamespace:
    device = types.SimpleNamespace(mem_info=(pool.total, pool.total))
    return types.SimpleNamespace(
        get_default_memory_pool=lambda: pool,
        cuda=types.SimpleNamespace(alloc=pool.alloc, Device=lambda index: device,
                                   runtime=types.SimpleNamespace(memGetInfo=lambda: (pool.total - sum(pool.in_use.values()), pool.total))))


def test_the_limit_covers_cupy_and_numba_allocations():
    pool = StandInPool(1000)
    chosen = []
    numba_stand_in = types.SimpleNamespace(HostOnlyCUDAMemoryManager=numba_cuda.HostOnlyCUDAMemoryManager,
                                           MemoryPointer=numba_cuda.MemoryPointer, MemoryInfo=numba_cuda.MemoryInfo,
                                           set_memory_manager=chosen.append, cudadrv=numba_cuda.cudadrv)
    limit = limit_gpu_memory(0, 0.8, cupy=stand_in_cupy(pool), numba_cuda=numba_stand_in)
    assert limit == MemoryLimit(800, "cupy-pool") and pool.limit == 800
    (manager_class,) = chosen
    manager = manager_class(context=None)
    manager.initialize()
    first = manager.memalloc(500)
    assert sum(pool.in_use.values()) == 500 and first.size == 500
    assert int(ctypes.c_uint64(first.device_ctypes_pointer.value).value) in pool.in_use
    with pytest.raises(Exception) as raised:
        manager.memalloc(400)  # 900 > the 800-byte limit: CuPy's OutOfMemoryError, as on a real GPU
    assert type(raised.value).__name__ == "OutOfMemoryError"
    first.free()  # numba frees an array: the block goes back to the pool
    gc.collect()
    assert pool.in_use == {}
    assert manager.memalloc(700).size == 700
    assert manager.get_memory_info().total == 1000
    assert manager.interface_version == 1


def test_cuda_simulator_is_left_alone(monkeypatch):
    from numba import config
    monkeypatch.setattr(config, "ENABLE_CUDASIM", 1)
    assert limit_gpu_memory(0, 0.5, cupy=object(), numba_cuda=object()) == MemoryLimit(0, "simulator")
