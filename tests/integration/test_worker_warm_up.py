"""A worker warms up before it takes jobs and then takes them; a worker process keeps its
compiled kernels in the configured cache directory (DATA_DIR/numba-cache)."""
from __future__ import annotations

import threading
import time
from datetime import datetime

import grpc
import pytest

from api_proto import jobs_pb2, jobs_pb2_grpc, realtime_pb2, realtime_pb2_grpc
from tests.conftest import InProcessWorker, wait_until
from utils.compile_cache import cached_kernel_files, is_warm

PANEL = realtime_pb2.FeatureRequest(stock_codes=["000001.SZ", "600000.SH"], feature_types=["sma_20", "rsi"])


@pytest.fixture
def server(settings):
    from services.server import create_server
    from utils.data.sample import ensure_sample_data
    from utils.data.store import BarStore
    from utils.redis_client import redis_from_settings
    ensure_sample_data(BarStore(redis_from_settings(settings, decode=False)))
    running = create_server(settings)
    yield running
    running.stop(grace=0)


def started_at(channel, job_id: str) -> float:
    job = jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.JobRequest(job_id=job_id))
    return datetime.fromisoformat(job.started_at.replace("Z", "+00:00")).timestamp()


def test_the_worker_warms_up_before_it_takes_jobs_and_then_takes_them(settings_factory, redis_client):
    from services.server import create_server
    from utils.data.sample import ensure_sample_data
    from utils.data.store import BarStore
    from utils.engine.backend import cpu_backend
    from utils.redis_client import redis_from_settings
    from utils.tasks.runtime import worker_warm_up
    settings = settings_factory(worker_warm_up_seconds=600)
    ensure_sample_data(BarStore(redis_from_settings(settings, decode=False)))
    running = create_server(settings)
    warmed = []

    def warm_up(stop):
        report = worker_warm_up(settings, cpu_backend())(stop)
        warmed.append((time.time(), report))
        return report

    worker = InProcessWorker(settings)
    worker.thread = threading.Thread(target=worker.worker.run, args=(worker.stop_event, warm_up), daemon=True)
    worker.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            response = realtime_pb2_grpc.RealTimeServiceStub(channel).ComputeFeatures(PANEL, timeout=600)
            assert set(response.panel) == {"000001.SZ", "600000.SH"}
            finished, report = warmed[0]
            assert report.complete and not report.failed, report
            assert started_at(channel, response.task_id) >= finished - 0.01  # taken after the warm-up
        assert is_warm(settings.compile_cache_path)  # a restart will warm up before taking jobs
    finally:
        worker.stop()
        running.stop(grace=0)


def test_a_worker_process_keeps_its_kernels_in_the_cache_directory(settings, server):
    from utils.supervisor import WorkerSupervisor
    from utils.tasks.runtime import run_worker_process
    cache = settings.compile_cache_path
    assert cached_kernel_files(cache) == 0
    supervisor = WorkerSupervisor(run_worker_process, settings, 1).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            response = realtime_pb2_grpc.RealTimeServiceStub(channel).ComputeFeatures(PANEL, timeout=600)
            assert set(response.panel) == {"000001.SZ", "600000.SH"}
        wait_until(lambda: cached_kernel_files(cache) > 0, timeout=30)  # the drivers it compiled
        assert any(path.name.startswith("step_core") for path in cache.rglob("*.nbi"))
    finally:
        supervisor.stop(timeout=10)
