"""GPU metrics (utils/gpu/devices.py): the NVML path with a stand-in pynvml module (NVML is a
driver library this host cannot load), the CuPy memory fallback, and 'no GPU' said as such."""
from __future__ import annotations

import types

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from utils.gpu.devices import DeviceReport, DeviceSampler, record_samples
from utils.monitoring import Metrics


class FakeNVMLError(Exception):
    pass


def fake_nvml(devices: list[tuple[int, int, int]], fail_init: bool = False) -> types.SimpleNamespace:
    """A pynvml-shaped module over ``devices`` = [(utilization %, used bytes, total bytes)]."""
    calls = {"init": 0, "shutdown": 0}

    def init() -> None:
        calls["init"] += 1
        if fail_init:
            raise FakeNVMLError("NVML Shared Library Not Found")

    def shutdown() -> None:
        calls["shutdown"] += 1

    def handle(index: int) -> int:
        if not 0 <= index < len(devices):
            raise FakeNVMLError("Invalid Argument")
        return index

    return types.SimpleNamespace(
        NVMLError=FakeNVMLError, calls=calls, nvmlInit=init, nvmlShutdown=shutdown,
        nvmlDeviceGetCount=lambda: len(devices), nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetHandleByUUID=lambda uuid: int(uuid.rsplit("-", 1)[1]),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=devices[h][0], memory=0),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=devices[h][1], total=devices[h][2],
                                                                free=devices[h][2] - devices[h][1]))


def scrape(report: DeviceReport) -> str:
    metrics = Metrics(CollectorRegistry())
    record_samples(metrics, report)
    return generate_latest(metrics.registry).decode()


@pytest.fixture(autouse=True)
def no_visible_devices_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_nvml_samples_every_device_once_initialised():
    nvml = fake_nvml([(37, 2 * 2**30, 80 * 2**30), (5, 2**30, 80 * 2**30)])
    sampler = DeviceSampler(nvml=nvml, cupy=None)
    report = sampler.sample()
    sampler.sample()
    assert report.source == "nvml" and nvml.calls["init"] == 1
    assert [(s.device, s.utilization, s.memory_used, s.memory_total) for s in report.samples] == [
        ("gpu:0", 37.0, 2.0 * 2**30, 80.0 * 2**30), ("gpu:1", 5.0, 1.0 * 2**30, 80.0 * 2**30)]
    sampler.close()
    assert nvml.calls["shutdown"] == 1
    body = scrape(report)
    assert 'gpu_metrics_available{source="nvml"} 1.0' in body
    assert 'gpu_utilization{device="gpu:0",kind="gpu"} 37.0' in body
    assert 'gpu_memory_used_bytes{device="gpu:1"} 1.073741824e+09' in body
    assert 'gpu_memory_total_bytes{device="gpu:0"} 8.589934592e+10' in body


def test_a_gpu_worker_samples_only_its_own_device():
    report = DeviceSampler([1], nvml=fake_nvml([(10, 1, 2), (90, 3, 4)]), cupy=None).sample()
    assert [(s.device, s.utilization) for s in report.samples] == [("gpu:1", 90.0)]


def test_cuda_visible_devices_maps_ordinals_to_nvml_devices(monkeypatch):
    nvml = fake_nvml([(10, 1, 2), (20, 1, 2), (30, 1, 2)])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-fake-0")
    report = DeviceSampler(nvml=nvml, cupy=None).sample()
    assert [(s.device, s.utilization) for s in report.samples] == [("gpu:0", 30.0), ("gpu:1", 10.0)]


def test_no_visible_device_is_none(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = DeviceSampler(nvml=fake_nvml([(10, 1, 2)]), cupy=None).sample()
    assert report.source == "none" and "CUDA_VISIBLE_DEVICES" in report.reason


def test_without_nvml_cupy_gives_memory_but_no_utilisation():
    class Device:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=Device, runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, memGetInfo=lambda: (30, 100))))
    report = DeviceSampler(nvml=fake_nvml([], fail_init=True), cupy=cupy).sample()
    assert report.source == "cupy"
    assert [(s.device, s.utilization, s.memory_used, s.memory_total) for s in report.samples] == [
        ("gpu:0", None, 70.0, 100.0)]
    body = scrape(report)
    assert 'gpu_metrics_available{source="cupy"} 1.0' in body
    assert "gpu_utilization{" not in body and 'gpu_memory_used_bytes{device="gpu:0"} 70.0' in body


def test_no_driver_says_so_instead_of_reporting_zero():
    """The real pynvml raises NVMLError without a driver; the series then say 'no GPU metrics'."""
    nvml = fake_nvml([], fail_init=True)
    sampler = DeviceSampler(nvml=nvml, cupy=None)
    report = sampler.sample()
    sampler.sample()
    assert nvml.calls["init"] == 1  # a failed init is not retried every 5 s
    assert report.source == "none" and not report.available and report.samples == ()
    assert "NVML Shared Library Not Found" in report.reason
    body = scrape(report)
    assert 'gpu_metrics_available{source="none"} 0.0' in body
    assert "gpu_utilization{" not in body and "gpu_memory_used_bytes{" not in body


def test_a_cpu_worker_reports_none_without_touching_nvml():
    nvml = fake_nvml([(50, 1, 2)])
    report = DeviceSampler([], nvml=nvml, cupy=None).sample()
    assert report.source == "none" and "CPU worker" in report.reason and nvml.calls["init"] == 0


def test_the_real_bindings_on_this_host_report_none_or_real_devices():
    """nvidia-ml-py is installed (requirements.txt); here without a driver it reports none."""
    pytest.importorskip("pynvml", reason="nvidia-ml-py is pinned in requirements.txt; install it")
    report = DeviceSampler().sample()
    assert report.source in ("nvml", "cupy", "none")
    if report.source == "none":
        assert report.samples == () and report.reason


def test_the_available_source_replaces_the_previous_one():
    metrics = Metrics(CollectorRegistry())
    record_samples(metrics, DeviceReport("none", reason="x"))
    record_samples(metrics, DeviceReport("nvml", ()))
    body = generate_latest(metrics.registry).decode()
    assert 'gpu_metrics_available{source="nvml"} 1.0' in body
    assert 'gpu_metrics_available{source="none"}' not in body
