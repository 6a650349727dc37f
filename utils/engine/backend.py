"""The one place that decides which array library the engine computes with.

``resolve_backend("auto")`` returns CuPy on a visible CUDA device and NumPy otherwise, quietly;
``resolve_backend("gpu")`` without a usable GPU raises ``BackendUnavailable`` so an explicit
request never silently runs on the CPU. Kernels receive ``Backend.xp`` and never import CuPy or
NumPy choice logic themselves (vectorbt repeats resolve-and-branch per function; we do it once).

Model code asks the worker's ``Backend`` where to run (``torch_device``, ``lightgbm_device``,
``cuml``) instead of probing CUDA itself: a CPU backend never touches CUDA, even when torch or
LightGBM could see a GPU (``COMPUTE_DEVICE=cpu`` means the CPU).
"""
from __future__ import annotations

import importlib
import functools
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
    # Whether torch can run on this GPU, found once at resolve time (False on a CPU backend).
    torch_cuda: bool = False
    # numba's CUDA simulator standing in for a GPU (GPU_SIMULATOR=1, tests only): ``xp`` is NumPy
    # (the simulator's device arrays are host memory) and the CUDA kernels run as Python.
    simulated: bool = False

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    @property
    def gpu_ordinal(self) -> int | None:
        """The CUDA device index this backend computes on; None on the CPU."""
        return self.device_id if self.is_gpu else None

    def uses_gpu(self, requested: str, what: str) -> bool:
        """Whether work asking for ``requested`` runs on this backend's GPU: ``cpu`` never, ``auto``
        when the backend is a GPU, ``gpu`` always (a CPU backend raises ``BackendUnavailable``)."""
        requested = (requested or "auto").lower()
        if requested == "cpu":
            return False
        if requested == "gpu" and not self.is_gpu:
            raise BackendUnavailable(f"device 'gpu' requested for {what} but the worker has no GPU backend "
                                     f"(COMPUTE_DEVICE=cpu or no usable GPU); use device 'auto' or 'cpu'")
        return self.is_gpu

    def for_request(self, requested: str, what: str = "this job") -> "Backend":
        """The backend one job runs on, from its request's ``device`` (see ``uses_gpu``)."""
        return self if self.uses_gpu(requested, what) else cpu_backend()

    def torch_device(self, requested: str = "auto", what: str = "a torch model") -> Any:
        """The ``torch.device`` for ``what``: this GPU when torch can use it, else the CPU
        (``auto`` quietly; ``gpu`` raises)."""
        import torch
        if not self.uses_gpu(requested, what):
            return torch.device("cpu")
        if not self.torch_cuda:
            if (requested or "auto").lower() == "gpu":
                raise BackendUnavailable(f"device 'gpu' requested for {what} but torch sees no CUDA device "
                                         f"(CPU-only torch build or no driver); use device 'auto' or 'cpu'")
            return torch.device("cpu")
        return torch.device("cuda", self.device_id)

    def lightgbm_device(self, requested: str, what: str = "gradient_boosting") -> tuple[dict[str, Any], str]:
        """(LightGBM device params, device label). ``auto`` stays on the CPU: LightGBM's pip build has
        no CUDA learner and its OpenCL one seldom beats the CPU learner; ``gpu`` never falls back."""
        if (requested or "auto").lower() != "gpu" or not self.uses_gpu(requested, what):
            return {}, "cpu"
        for device_type in _LIGHTGBM_GPU_TYPES:
            if _lightgbm_runs_on(device_type, self.device_id):
                return {"device_type": device_type, "gpu_device_id": self.device_id}, self.label
        raise BackendUnavailable(f"device 'gpu' requested for {what} but this LightGBM build can use "
                                 "neither CUDA nor an OpenCL GPU; use device 'auto' or 'cpu'")

    def cuml(self, requested: str, what: str = "random_forest") -> ModuleType | None:
        """cuML when this GPU backend has it and the request allows the GPU; None for the CPU path
        (``gpu`` without cuML raises: an explicit request never silently runs on the CPU)."""
        if not self.uses_gpu(requested, what):
            return None
        module = self.extras.get("cuml")
        if module is None and (requested or "auto").lower() == "gpu":
            raise BackendUnavailable(f"device 'gpu' requested for {what} but cuML is not available; "
                                     "use device 'auto' or 'cpu'")
        return module

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
        if not self.is_gpu:
            return "cpu"
        return f"{self.name}:{self.device_id} (simulated)" if self.simulated else f"{self.name}:{self.device_id}"


_LIGHTGBM_GPU_TYPES = ("cuda", "gpu")  # LightGBM's CUDA learner, then its OpenCL one


@functools.lru_cache(maxsize=None)
def _lightgbm_runs_on(device_type: str, device_id: int) -> bool:
    """Whether this LightGBM build can train on ``device_type`` (a tiny probe fit, once)."""
    import lightgbm as lgb
    rows = np.random.default_rng(0).random((64, 2))
    try:
        lgb.train({"device_type": device_type, "gpu_device_id": device_id, "verbosity": -1,
                   "min_data_in_leaf": 1}, lgb.Dataset(rows, rows[:, 0]), num_boost_round=1)
    except lgb.basic.LightGBMError:
        return False
    return True


def _torch_sees(torch: ModuleType | None, device_id: int) -> bool:
    try:
        return torch is not None and torch.cuda.is_available() and torch.cuda.device_count() > device_id
    except Exception:  # a torch build whose CUDA runtime fails to initialise
        return False


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
    return Backend(name="gpu", xp=cupy, device_id=device_id, extras=extras,
                   torch_cuda=_torch_sees(extras["torch"], device_id))


def _simulated_gpu_backend(device_id: int) -> Backend:
    """numba's CUDA simulator as GPU ``device_id`` (GPU_SIMULATOR=1; tests only)."""
    import os

    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
        raise BackendUnavailable("GPU_SIMULATOR=1 needs NUMBA_ENABLE_CUDASIM=1 in the environment before "
                                 "numba is imported (e.g. NUMBA_ENABLE_CUDASIM=1 GPU_SIMULATOR=1 ...); "
                                 "unset GPU_SIMULATOR outside the simulator tests")
    from numba.core import config

    if not config.ENABLE_CUDASIM:
        raise BackendUnavailable("GPU_SIMULATOR=1 but numba was imported before NUMBA_ENABLE_CUDASIM=1 was "
                                 "set; set it in the environment of the process")
    return Backend(name="gpu", xp=np, device_id=device_id, extras={}, simulated=True)


def cpu_backend() -> Backend:
    return Backend(name="cpu", xp=np, device_id=0, extras={})


def resolve_backend(device: str = "auto", device_id: int = 0,
                    memory_fraction: float | None = None, simulator: bool = False) -> Backend:
    """Pick the backend once, at the boundary (worker start-up or a job's device request).

    ``simulator`` (``GPU_SIMULATOR``, tests only): ``gpu`` and ``auto`` resolve to numba's CUDA
    simulator as one GPU (``Backend.simulated``), so every ``is_gpu`` branch runs its device
    path; it requires ``NUMBA_ENABLE_CUDASIM=1`` and raises ``BackendUnavailable`` without it."""
    device = (device or "auto").lower()
    if device not in VALID_DEVICES:
        raise ValueError(f"device must be one of {', '.join(VALID_DEVICES)}, got {device!r}")
    if device == "cpu":
        return cpu_backend()
    if simulator:
        return _simulated_gpu_backend(device_id)
    try:
        return _gpu_backend(device_id, memory_fraction)
    except BackendUnavailable:
        if device == "gpu":
            raise
        return cpu_backend()
