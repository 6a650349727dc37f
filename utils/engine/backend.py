"""The one place that decides which array library the engine computes with.

``resolve_backend("auto")`` returns CuPy on a visible CUDA device and NumPy otherwise, quietly;
``resolve_backend("gpu")`` without a usable GPU raises ``BackendUnavailable`` so an explicit
request never silently runs on the CPU. Kernels receive ``Backend.xp`` and never import CuPy or
NumPy choice logic themselves (vectorbt repeats resolve-and-branch per function; we do it once).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

VALID_DEVICES = ("auto", "cpu", "gpu")


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend (``gpu``) cannot be used on this host."""


@dataclass(frozen=True)
class Backend:
    """The array module to compute with and where it runs."""

    name: str  # "cpu" or "gpu"
    xp: ModuleType  # numpy or cupy
    device_id: int = 0
    # Optional accelerators found at resolve time (cudf, cuml, torch); None when absent.
    extras: dict[str, ModuleType | None] = field(default_factory=dict, compare=False)

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def asarray(self, values: Any, dtype: Any = np.float64) -> Any:
        """Move host data onto this backend's device."""
        return self.xp.asarray(values, dtype=dtype)

    def to_numpy(self, values: Any) -> np.ndarray:
        """Bring a result back to host memory as a NumPy array."""
        if self.is_gpu and hasattr(values, "get"):
            return values.get()
        return np.asarray(values)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.device_id}" if self.is_gpu else "cpu"


def _optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None


def _gpu_backend(device_id: int, memory_fraction: float | None) -> Backend:
    cupy = _optional_module("cupy")
    if cupy is None:
        raise BackendUnavailable("GPU backend requested but CuPy is not installed "
                                 "(pip install -r requirements-gpu.txt)")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver / no device
        raise BackendUnavailable(f"GPU backend requested but no CUDA device is usable: {exc}") from exc
    if device_id < 0 or device_id >= count:
        raise BackendUnavailable(f"GPU_DEVICE_ID={device_id} but only {count} CUDA device(s) are visible")
    cupy.cuda.Device(device_id).use()
    if memory_fraction is not None and 0 < memory_fraction < 1:
        total = cupy.cuda.Device(device_id).mem_info[1]
        cupy.get_default_memory_pool().set_limit(size=int(total * memory_fraction))
    extras = {name: _optional_module(name) for name in ("torch", "cudf", "cuml")}
    return Backend(name="gpu", xp=cupy, device_id=device_id, extras=extras)


def cpu_backend() -> Backend:
    return Backend(name="cpu", xp=np, device_id=0, extras={})


def resolve_backend(device: str = "auto", device_id: int = 0,
                    memory_fraction: float | None = None) -> Backend:
    """Pick the backend once, at the boundary (worker start-up or a job's device request)."""
    device = (device or "auto").lower()
    if device not in VALID_DEVICES:
        raise ValueError(f"device must be one of {', '.join(VALID_DEVICES)}, got {device!r}")
    if device == "cpu":
        return cpu_backend()
    try:
        return _gpu_backend(device_id, memory_fraction)
    except BackendUnavailable:
        if device == "gpu":
            raise
        return cpu_backend()
