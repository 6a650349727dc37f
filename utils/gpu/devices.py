"""GPU discovery and device metrics. Imports CUDA libraries lazily and tolerates none.

A ``DeviceSampler`` reads utilisation and memory per device from NVML (nvidia-ml-py's ``pynvml``),
falls back to CuPy's ``memGetInfo`` (memory only: CuPy cannot tell utilisation) when NVML is missing
but CuPy works, and otherwise says that no GPU metrics exist (``source="none"``) instead of
inventing a zero for a fake device. The NVML and CuPy modules are parameters, so the NVML path is
tested with a stand-in module on hosts without a driver.

Device labels are CUDA ordinals (``gpu:0``), the numbering the backend and ``GPU_DEVICE_ID`` use;
under ``CUDA_VISIBLE_DEVICES`` the matching NVML device is found by index or UUID.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Sequence

log = logging.getLogger(__name__)

_LOAD = object()  # "import the real module when first needed"


@dataclass(frozen=True)
class DeviceSample:
    device: str  # "gpu:0" (the CUDA ordinal)
    utilization: float | None  # percent; None when the source cannot tell (CuPy)
    memory_used: float | None = None  # bytes
    memory_total: float | None = None  # bytes


@dataclass(frozen=True)
class DeviceReport:
    """One sampling round: where the numbers came from ("nvml", "cupy" or "none") and why none."""

    source: str
    samples: tuple[DeviceSample, ...] = ()
    reason: str = ""  # set when source == "none"

    @property
    def available(self) -> bool:
        return self.source != "none"


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a CUDA library that fails to load
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


def _visible_devices() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES entries (indices or UUIDs), None when unset."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


class DeviceSampler:
    """Samples ``device_ids`` (CUDA ordinals; None = every visible device, [] = none: a CPU
    worker). ``nvml``/``cupy``: the modules to use (default: import pynvml/cupy on first use;
    None: treat as absent)."""

    def __init__(self, device_ids: Sequence[int] | None = None, nvml: Any = _LOAD, cupy: Any = _LOAD) -> None:
        self.device_ids = None if device_ids is None else list(device_ids)
        self._nvml, self._cupy = nvml, cupy
        self._nvml_ready = False
        self._nvml_failure = ""
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- modules
    def _nvml_module(self) -> Any:
        if self._nvml is _LOAD:
            self._nvml = _module("pynvml")
        return self._nvml

    def _cupy_module(self) -> Any:
        if self._cupy is _LOAD:
            self._cupy = _module("cupy")
        return self._cupy

    def _init_nvml(self) -> Any:
        """The NVML module once ``nvmlInit`` succeeded; None (reason kept) when it cannot."""
        nvml = self._nvml_module()
        if nvml is None:
            self._nvml_failure = "nvidia-ml-py (pynvml) is not installed"
            return None
        if not self._nvml_ready and not self._nvml_failure:
            try:
                nvml.nvmlInit()
                self._nvml_ready = True
            except Exception as exc:  # NVMLError: no driver / library on this host
                self._nvml_failure = f"NVML unavailable: {exc}"
                log.info("GPU metrics: %s", self._nvml_failure)
        return nvml if self._nvml_ready else None

    # ---------------------------------------------------------------- sampling
    def sample(self) -> DeviceReport:
        with self._lock:
            if self.device_ids == []:
                return DeviceReport("none", reason="CPU worker (no GPU device assigned)")
            nvml = self._init_nvml()
            if nvml is not None:
                try:
                    samples = tuple(self._nvml_samples(nvml))
                    if not samples:
                        return DeviceReport("none", reason="no visible GPU (CUDA_VISIBLE_DEVICES)")
                    return DeviceReport("nvml", samples)
                except Exception as exc:  # a device lost mid-run: say so, try CuPy
                    log.warning("NVML sampling failed: %s", exc)
            report = self._cupy_report()
            if report is not None:
                return report
            reason = self._nvml_failure or "NVML sampling failed"
            return DeviceReport("none", reason=f"{reason}; CuPy sees no CUDA device")

    def _ids(self, count: int) -> list[int]:
        return list(range(count)) if self.device_ids is None else self.device_ids

    def _nvml_handle(self, nvml: Any, ordinal: int) -> Any:
        visible = _visible_devices()
        if visible is None:
            return nvml.nvmlDeviceGetHandleByIndex(ordinal)
        entry = visible[ordinal]
        if entry.isdigit():
            return nvml.nvmlDeviceGetHandleByIndex(int(entry))
        return nvml.nvmlDeviceGetHandleByUUID(entry)

    def _nvml_samples(self, nvml: Any) -> list[DeviceSample]:
        visible = _visible_devices()
        count = len(visible) if visible is not None else int(nvml.nvmlDeviceGetCount())
        samples = []
        for ordinal in self._ids(count):
            handle = self._nvml_handle(nvml, ordinal)
            utilization = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            samples.append(DeviceSample(f"gpu:{ordinal}", utilization, float(memory.used), float(memory.total)))
        return samples

    def _cupy_report(self) -> DeviceReport | None:
        cupy = self._cupy_module()
        if cupy is None:
            return None
        try:
            count = int(cupy.cuda.runtime.getDeviceCount())
            samples = []
            for ordinal in self._ids(count):
                with cupy.cuda.Device(ordinal):
                    free, total = cupy.cuda.runtime.memGetInfo()
                samples.append(DeviceSample(f"gpu:{ordinal}", None, float(total - free), float(total)))
        except Exception as exc:  # no driver / no device
            log.debug("CuPy memGetInfo failed: %s", exc)
            return None
        return DeviceReport("cupy", tuple(samples)) if samples else None

    def close(self) -> None:
        with self._lock:
            if self._nvml_ready:
                try:
                    self._nvml.nvmlShutdown()
                except Exception:
                    pass
                self._nvml_ready = False


def sample_devices(device_ids: Sequence[int] | None = None) -> DeviceReport:
    """One round over ``device_ids`` (see ``DeviceSampler``), NVML initialised and shut down."""
    sampler = DeviceSampler(device_ids)
    try:
        return sampler.sample()
    finally:
        sampler.close()


def record_samples(metrics: Any, report: DeviceReport) -> None:
    """Set the GPU gauges from one report: ``gpu_metrics_available{source}`` (1 from NVML or CuPy,
    ``source="none"`` 0 when there is no GPU or no way to read it) and the per-device series.
    Without a GPU no ``gpu_utilization`` series exists at all (never a zero for a fake device)."""
    metrics.gpu_metrics_available.clear()
    metrics.gpu_metrics_available.labels(source=report.source).set(1 if report.available else 0)
    for sample in report.samples:
        if sample.utilization is not None:
            metrics.gpu_utilization.labels(device=sample.device, kind="gpu").set(sample.utilization)
        if sample.memory_used is not None:
            metrics.gpu_memory_used_bytes.labels(device=sample.device).set(sample.memory_used)
        if sample.memory_total is not None:
            metrics.gpu_memory_total_bytes.labels(device=sample.device).set(sample.memory_total)
