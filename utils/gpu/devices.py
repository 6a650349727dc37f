"""GPU discovery and utilisation sampling. Imports CUDA libraries lazily and tolerates none."""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSample:
    device: str  # "gpu:0" or "cpu"
    kind: str  # "gpu" or "cpu"
    utilization: float  # percent
    memory_used: float | None = None
    memory_total: float | None = None


def _module(name: str):
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def gpu_count() -> int:
    """Visible CUDA devices (0 without CuPy or a driver)."""
    cupy = _module("cupy")
    if cupy is None:
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def sample_devices() -> list[DeviceSample]:
    """One sample per GPU; a single 0 % 'cpu' sample on hosts without one (so the gauge exists)."""
    count = gpu_count()
    if count == 0:
        return [DeviceSample(device="cpu", kind="cpu", utilization=0.0)]
    nvml = _module("pynvml")
    samples = []
    for index in range(count):
        utilization, used, total = 0.0, None, None
        if nvml is not None:
            try:
                nvml.nvmlInit()
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                utilization = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                used, total = float(memory.used), float(memory.total)
            except Exception as exc:
                log.debug("nvml sample failed: %s", exc)
        if total is None:
            try:
                cupy = _module("cupy")
                with cupy.cuda.Device(index):
                    free, total = cupy.cuda.runtime.memGetInfo()
                used = float(total - free)
            except Exception:
                pass
        samples.append(DeviceSample(device=f"gpu:{index}", kind="gpu", utilization=utilization,
                                    memory_used=used, memory_total=float(total) if total else None))
    return samples


def record_samples(metrics, samples: list[DeviceSample]) -> None:
    for sample in samples:
        metrics.gpu_utilization.labels(device=sample.device, kind=sample.kind).set(sample.utilization)
        if sample.memory_used is not None:
            metrics.gpu_memory_used_bytes.labels(device=sample.device).set(sample.memory_used)
        if sample.memory_total is not None:
            metrics.gpu_memory_total_bytes.labels(device=sample.device).set(sample.memory_total)
