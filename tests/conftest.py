"""Fixtures: a real redis-server on a free port and the real gRPC server on port 0."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest

from config.settings import load_settings
from utils.redis_client import EmbeddedRedis, make_redis

# tests/cudasim runs in its own pytest process with NUMBA_ENABLE_CUDASIM=1 (see its conftest);
# the main run leaves it out (the simulator must be on before numba is imported)
collect_ignore = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ["cudasim"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    client = make_redis("127.0.0.1", redis_server.port)
    client.flushall()
    yield client
    client.close()


def settings_builder(tmp_path, **connection) -> Callable[..., object]:
    """Test settings (short leases, CPU, no warm-ups, free ports) on the Redis ``connection`` names;
    the returned function takes overrides."""
    def build(**overrides):
        values = dict(redis_embedded="never", grpc_host="127.0.0.1", grpc_port=0, prometheus_port=0,
                      data_dir=tmp_path / "data", job_lease_seconds=2.0, job_retry_backoff_seconds=0.05,
                      shutdown_grace_seconds=5.0, worker_processes=1, compute_device="cpu",
                      warm_up_indicators="none", worker_warm_up_seconds=0)
        return load_settings(**{**values, **connection, **overrides})
    return build


@pytest.fixture
def settings_factory(redis_server, tmp_path) -> Callable[..., object]:
    return settings_builder(tmp_path, redis_host="127.0.0.1", redis_port=redis_server.port)


@pytest.fixture
def settings(settings_factory, redis_client):
    return settings_factory()


class InProcessWorker:
    """The real Worker loop in a thread of the test process (fast to start)."""

    def __init__(self, settings, handlers=None, device_label: str = "cpu") -> None:
        """``device_label``: what the worker registers (``gpu...`` for handlers on a GPU backend:
        requests for ``device: "gpu"`` are refused while no such worker is registered)."""
        from utils.engine.backend import cpu_backend
        from utils.gpu.scheduler import Scheduler
        from utils.monitoring import Metrics
        from utils.queue.streams import JobQueue, QueueConfig
        from utils.queue.worker import Worker, WorkerConfig
        from utils.redis_client import redis_from_settings
        from utils.tasks.runtime import build_handlers
        from prometheus_client import CollectorRegistry
        self.queue = JobQueue(redis_from_settings(settings), QueueConfig.from_settings(settings))
        types = settings.worker_types()  # WORKER_TASK_TYPES, as utils/tasks/runtime.py does
        self.worker = Worker(self.queue, handlers or build_handlers(settings, cpu_backend(), types),
                             Scheduler(settings.concurrency_caps(types) if handlers is None else settings.concurrency_caps()),
                             WorkerConfig(worker_id=f"test-worker-{id(self)}", block_ms=200,
                                          heartbeat_seconds=0.2, shutdown_grace_seconds=2.0,
                                          device_label=device_label),
                             Metrics(CollectorRegistry()))
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop_event,), daemon=True)

    def start(self) -> "InProcessWorker":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)


@pytest.fixture
def platform(settings):
    """The gRPC server (port 0) with sample data loaded, plus one in-process worker."""
    from services.server import create_server
    from utils.data.sample import ensure_sample_data
    from utils.data.store import bar_store_from_settings
    from utils.redis_client import redis_from_settings
    ensure_sample_data(bar_store_from_settings(redis_from_settings(settings, decode=False), settings))
    running = create_server(settings)
    worker = InProcessWorker(settings).start()
    running.worker = worker
    running.settings = settings
    yield running
    worker.stop()
    running.stop(grace=0)


@pytest.fixture
def channel(platform):
    channel = grpc.insecure_channel(f"127.0.0.1:{platform.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    yield channel
    channel.close()


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


PROJECT_ROOT = Path(__file__).resolve().parent.parent


from tests.redis_cluster_fixtures import redis_cluster  # noqa: E402,F401  (a 3-master cluster, on demand)
