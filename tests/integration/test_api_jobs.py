"""JobService over real gRPC + Redis + worker: one lifecycle API for the ids every service returns."""
from __future__ import annotations

import json

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from api_proto import (backtest_pb2, backtest_pb2_grpc, jobs_pb2, jobs_pb2_grpc, ml_pb2, ml_pb2_grpc,
                       realtime_pb2, realtime_pb2_grpc)
from tests.integration.test_api_backtest import request as backtest_request
from tests.integration.test_api_ml import train_request
from utils.queue.jobs import JobSpec

FINAL = (jobs_pb2.COMPLETED, jobs_pb2.FAILED, jobs_pb2.CANCELLED)


@pytest.fixture
def jobs(channel):
    return jobs_pb2_grpc.JobServiceStub(channel)


def watch_to_end(jobs, job_id):
    updates = list(jobs.WatchJob(jobs_pb2.JobRequest(job_id=job_id), timeout=120))
    assert updates and updates[-1].status in FINAL
    return updates


def test_every_service_id_has_one_lifecycle(channel, jobs):
    backtest_id = backtest_pb2_grpc.BacktestServiceStub(channel).IntegratedBacktest(backtest_request()).backtest_id
    training_id = ml_pb2_grpc.MLServiceStub(channel).TrainModel(
        train_request(model_params=json.dumps({"n_estimators": 10, "max_depth": 3}))).task_id
    panel = realtime_pb2_grpc.RealTimeServiceStub(channel).ComputeFeatures(
        realtime_pb2.FeatureRequest(stock_codes=["000001.SZ", "600000.SH"], feature_types=["sma_20"]))
    report = backtest_pb2_grpc.BacktestServiceStub(channel)
    expected_types = {backtest_id: "backtest", training_id: "training", panel.task_id: "features"}
    for job_id, task_type in expected_types.items():
        updates = watch_to_end(jobs, job_id)
        job = jobs.GetJob(jobs_pb2.JobRequest(job_id=job_id))
        assert job.job_id == job_id and job.task_type == task_type and job.status == jobs_pb2.COMPLETED
        assert job.progress == 1.0 and job.attempts == 1 and job.device == "cpu" and job.worker
        assert job.submitted_at <= job.started_at <= job.finished_at and job.priority in ("high", "normal")
        assert json.loads(job.progress_detail) is not None and updates[-1] == job
    report.GetBacktestReport(backtest_pb2.BacktestReportRequest(backtest_id=backtest_id))
    report_job = jobs.GetJob(jobs_pb2.JobRequest(job_id="rp-" + backtest_id.split("-", 1)[1]))
    assert report_job.task_type == "report" and report_job.status == jobs_pb2.COMPLETED

    listed = jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=10)).jobs
    assert [job.job_id for job in listed][:4] == [report_job.job_id, panel.task_id, training_id, backtest_id]
    only_training = jobs.ListJobs(jobs_pb2.ListJobsRequest(task_type="training")).jobs
    assert [job.job_id for job in only_training] == [training_id]
    assert jobs.ListJobs(jobs_pb2.ListJobsRequest(status=jobs_pb2.FAILED)).jobs == []


def test_training_progress_detail_is_shown(channel, jobs):
    training_id = ml_pb2_grpc.MLServiceStub(channel).TrainModel(train_request(
        model_type="gradient_boosting", model_params=json.dumps({"n_estimators": 30}))).task_id
    updates = watch_to_end(jobs, training_id)
    assert updates[-1].status == jobs_pb2.COMPLETED, updates[-1].error_message
    detail = json.loads(updates[-1].progress_detail)
    assert detail["unit"] == "trees" and 1 <= detail["done"] <= detail["total"] == 30  # early stopping may keep few


def test_cancel_a_pending_job_and_page_through_history(platform, jobs):
    platform.worker.stop()  # nothing takes jobs now: they stay PENDING
    ids = [platform.queue.enqueue(JobSpec("features", {"symbols": [], "features": []})) for _ in range(5)]
    job = jobs.CancelJob(jobs_pb2.JobRequest(job_id=ids[0]))
    assert job.status == jobs_pb2.CANCELLED and job.finished_at
    assert jobs.CancelJob(jobs_pb2.JobRequest(job_id=ids[0])).status == jobs_pb2.CANCELLED  # idempotent
    assert watch_to_end(jobs, ids[0])[-1].status == jobs_pb2.CANCELLED

    seen, token = [], ""
    while True:
        page = jobs.ListJobs(jobs_pb2.ListJobsRequest(task_type="features", page_size=2, page_token=token))
        seen += [job.job_id for job in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    pending = jobs.ListJobs(jobs_pb2.ListJobsRequest(status=jobs_pb2.PENDING)).jobs
    assert [job.job_id for job in pending] == ids[:0:-1]


@pytest.mark.parametrize("call, request_message, code, needle", [
    ("GetJob", jobs_pb2.JobRequest(job_id="bt-doesnotexist"), grpc.StatusCode.NOT_FOUND, "'bt-doesnotexist'"),
    ("CancelJob", jobs_pb2.JobRequest(job_id="zz-unknown"), grpc.StatusCode.NOT_FOUND, "'zz-unknown'"),
    ("GetJob", jobs_pb2.JobRequest(job_id=""), grpc.StatusCode.INVALID_ARGUMENT, "job_id"),
    ("ListJobs", jobs_pb2.ListJobsRequest(task_type="nope"), grpc.StatusCode.INVALID_ARGUMENT, "backtest"),
    ("ListJobs", jobs_pb2.ListJobsRequest(status=42), grpc.StatusCode.INVALID_ARGUMENT, "JobStatus"),
    ("ListJobs", jobs_pb2.ListJobsRequest(page_size=-1), grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
])
def test_bad_requests_get_clear_statuses(jobs, call, request_message, code, needle):
    with pytest.raises(grpc.RpcError) as error:
        getattr(jobs, call)(request_message)
    assert error.value.code() == code and needle in error.value.details()


def test_watch_of_an_unknown_job_is_not_found(jobs):
    with pytest.raises(grpc.RpcError) as error:
        list(jobs.WatchJob(jobs_pb2.JobRequest(job_id="tr-missing")))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "'tr-missing'" in error.value.details()


def test_reflection_lists_the_job_service(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert "gpu_api.jobs.JobService" in {service.name for service in reply.list_services_response.service}


def test_cluster_status_lists_workers_queues_and_dead_letters(platform, jobs):
    from tests.conftest import wait_until
    from utils.queue import keys
    wait_until(lambda: jobs.GetClusterStatus(jobs_pb2.ClusterStatusRequest()).workers)
    [worker] = jobs.GetClusterStatus(jobs_pb2.ClusterStatusRequest()).workers
    assert worker.alive and worker.device == "cpu" and worker.worker_id

    platform.worker.stop()  # deregisters; what is enqueued now waits
    for _ in range(3):
        platform.queue.enqueue(JobSpec("features", {"symbols": [], "features": []}))
    platform.queue.redis.xadd(keys.dead_letter("backtest"), {"job_id": "bt-dead"})
    state = jobs.GetClusterStatus(jobs_pb2.ClusterStatusRequest())
    assert list(state.workers) == []
    queues = {row.task_type: row for row in state.queues}
    assert (queues["features"].waiting, queues["features"].running) == (3, 0)
    assert queues["backtest"].dead_letters == 1 and queues["backtest"].waiting == 0
