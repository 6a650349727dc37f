"""A worker process: resolve its device, build the task handlers, run the worker loop.

Started with the ``spawn`` method by main_server (one per GPU, or one CPU worker), so nothing
here relies on state inherited from the parent.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from utils.compile_cache import is_warm, mark_warm, use_compile_cache_dir
from utils.engine.backend import Backend, resolve_backend
from utils.gpu.devices import DeviceSampler, gpu_count, record_samples
from utils.gpu.memory import limit_gpu_memory
from utils.gpu.oom import guard_gpu_handlers
from utils.gpu.scheduler import Scheduler
from utils.logging_setup import configure_logging
from utils.monitoring import Metrics, periodic, serve_metrics
from utils.queue.streams import JobQueue, QueueConfig
from utils.queue.worker import PermanentJobError, Worker, WorkerConfig
from utils.redis_client import redis_from_settings
from utils.task_types import TASK_TYPES, TaskType, declaration_problems, load_handler_factory
from utils.tasks.resources import WorkerResources

log = logging.getLogger(__name__)


def worker_count(settings: Any) -> int:
    """WORKER_PROCESSES, or one per visible GPU, or one CPU worker."""
    if settings.worker_processes:
        return settings.worker_processes
    if settings.compute_device == "cpu":
        return 1
    return max(gpu_count() - settings.gpu_device_id, 1) if gpu_count() else 1


EXIT_BAD_REGISTRY = 2  # the supervisor does not restart a worker that exits with this


def registry_problems(settings: Any, task_types: tuple[TaskType, ...] = TASK_TYPES) -> list[str]:
    """Why a worker must not start with this registry: a half-declared task type (no cap, no
    handler...) would leave its jobs PENDING forever. Empty when every type is whole."""
    problems = declaration_problems(task_types)
    for name, cap in settings.concurrency_caps(task_types).items():
        if not isinstance(cap, int) or cap < 1:
            problems.append(f"task type {name!r}: no cap configured (got {cap!r})")
    return problems


def exit_on_bad_registry(settings: Any, task_types: tuple[TaskType, ...] = TASK_TYPES) -> None:
    problems = registry_problems(settings, task_types)
    if problems:
        log.error("refusing to start a worker: the task-type registry (utils/task_types.py) is "
                  "incomplete:\n  %s", "\n  ".join(problems))
        sys.exit(EXIT_BAD_REGISTRY)


def build_handlers(settings: Any, backend: Backend, task_types: tuple[TaskType, ...] = TASK_TYPES) -> dict:
    """One handler per registered task type, from its declared factory."""
    resources = WorkerResources(settings, backend)
    handlers = {t.name: load_handler_factory(t)(resources.for_task(t)) for t in task_types}
    # GPU-capable types: a CUDA out-of-memory retries with smaller shards, then the CPU (utils/gpu/oom.py)
    return guard_gpu_handlers(handlers, task_types, permanent_error=PermanentJobError)


def run_worker_process(settings: Any, index: int = 0) -> None:
    """Process entry point: runs until SIGTERM/SIGINT, then drains."""
    configure_logging(settings.log_level, settings.log_format)
    use_compile_cache_dir(settings.compile_cache_path)  # before the handlers import the kernels
    exit_on_bad_registry(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    device_id = settings.gpu_device_id + index
    backend = resolve_backend(settings.compute_device, device_id, settings.gpu_memory_fraction,
                              simulator=settings.gpu_simulator)
    real_gpu = backend.is_gpu and not backend.simulated
    if real_gpu:  # one pool limit for CuPy and numba.cuda (not under the CUDA simulator)
        log.info("GPU memory: %s", limit_gpu_memory(device_id, settings.gpu_memory_fraction))
    worker_id = f"{socket.gethostname()}-{os.getpid()}-w{index}"
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    if settings.prometheus_port:
        port = serve_metrics(registry, settings.metrics_host, settings.prometheus_port + 1 + index)
        log.info("worker %s metrics on :%d", worker_id, port)
    # this worker's own device (a CPU worker reports gpu_metrics_available{source="none"} 0)
    sampler = DeviceSampler([device_id] if real_gpu else [])
    periodic(5.0, lambda: record_samples(metrics, sampler.sample()), stop, "device-sampler")
    queue = JobQueue(redis_from_settings(settings, decode=True), QueueConfig.from_settings(settings))
    types = settings.worker_types()  # WORKER_TASK_TYPES: what this worker builds, warms and reads
    if len(types) < len(TASK_TYPES):
        log.info("worker %s takes %s only (WORKER_TASK_TYPES)", worker_id, ", ".join(t.name for t in types))
    worker = Worker(queue, build_handlers(settings, backend, types), Scheduler(settings.concurrency_caps(types)),
                    WorkerConfig(worker_id=worker_id, device_label=backend.label,
                                 heartbeat_seconds=min(settings.job_lease_seconds / 3, 0.5),
                                 shutdown_grace_seconds=settings.shutdown_grace_seconds), metrics)
    # the default kinds are in worker_warm_up's features step
    covered = settings.warm_up_indicators == "default" and settings.worker_warm_up_seconds > 0
    if settings.warm_up_indicators != "none" and not covered:  # the kinds the built-in strategies use
        from utils.engine.indicators.warmup import warm_up_in_background
        warm_up_in_background(None if settings.warm_up_indicators == "all" else ["sma_20", "ema_12", "rsi", "bollinger"])
    warm = worker_warm_up(settings, backend, types) if settings.worker_warm_up_seconds > 0 else None
    if warm is not None and not is_warm(settings.compile_cache_path):
        # First start with this cache: compiling everything takes minutes, so take jobs meanwhile
        # (each compiles what it needs, sharing what the warm-up has done). Restarts then load.
        log.info("kernel cache %s not warmed yet: warming up in the background", settings.compile_cache_path)
        threading.Thread(target=warm, args=(stop,), name="warm-up", daemon=True).start()
        warm = None
    worker.run(stop, warm_up=warm)


def worker_warm_up(settings: Any, backend: Backend, task_types: tuple[TaskType, ...] = TASK_TYPES):
    """The worker's warm-up hook: every task type's code once on tiny inputs, within
    WORKER_WARM_UP_SECONDS (``utils.tasks.warmup``); a complete run marks the kernel cache warm."""
    def run(stop: threading.Event) -> Any:
        from utils.tasks.warmup import warm_up
        resources = WorkerResources(settings, backend)
        backends = {t.name: resources.for_task(t).backend for t in task_types}
        report = warm_up(settings, backends, settings.worker_warm_up_seconds, stop)
        if report.complete:
            mark_warm(settings.compile_cache_path)
        return report
    return run
