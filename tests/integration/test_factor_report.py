"""GetFactorReport over real gRPC + Redis + worker: a ``report`` job renders a completed factor
analysis's tearsheet; asking again reuses it."""
from __future__ import annotations

import re

import grpc
import pytest

from api_proto import jobs_pb2
from tests.integration.test_api_factor import request, stubs, watch_to_end  # noqa: F401 (stubs: a fixture)
from utils.queue.jobs import derived_job_id
from utils.queue.streams import JobQueue

EXPRESSION = "cs_rank(ts_mean(close, 5) / close)"
SECTIONS = ("Information", "Information coefficient", "Mean return by quantile", "Cumulative returns",
            "Mean turnover by quantile")


@pytest.fixture
def completed(stubs):
    factors, jobs = stubs
    handle = factors.AnalyzeFactor(request(expression=EXPRESSION, periods=[1, 5]))
    job = watch_to_end(jobs, handle.job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    return handle.job_id


def test_report_page_and_reuse(platform, stubs, completed, redis_client):
    factors, jobs = stubs
    report = factors.GetFactorReport(jobs_pb2.JobRequest(job_id=completed), timeout=90)
    assert report.job_id == completed and report.content_type == "text/html; charset=utf-8"
    html = report.html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert f"Factor analysis {completed}" in html and EXPRESSION in html
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in html
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert "1 row" in html and "5 rows" in html and "000001.SZ" in html
    # IC series + histogram per period, quantile bars, two cumulative charts, turnover bars
    assert html.count("<svg") == 2 * 2 + 1 + 2 + 1
    stored = JobQueue(redis_client).result(completed)  # what the factor worker wrote
    assert len(stored["quantile_cumulative_returns"]["value"]) == stored["n_quantiles"] == 5
    assert all(len(line) == len(stored["quantile_cumulative_returns"]["time"])
               for line in stored["quantile_cumulative_returns"]["value"])
    assert f"{stored['loss_fraction'] * 100:.2f} % of factor values dropped" in html
    assert len(re.findall(r"<polyline", html)) == 2 * 2 + 1 + 5  # IC + rolling mean per period, curve, quantiles

    report_id = derived_job_id("report", completed)
    first = jobs.GetJob(jobs_pb2.JobRequest(job_id=report_id))
    assert first.task_type == "report" and first.status == jobs_pb2.COMPLETED
    again = factors.GetFactorReport(jobs_pb2.JobRequest(job_id=completed), timeout=90)
    assert again.html == html
    second = jobs.GetJob(jobs_pb2.JobRequest(job_id=report_id))
    assert (second.finished_at, second.attempts) == (first.finished_at, first.attempts)  # not rendered again
    listed = jobs.ListJobs(jobs_pb2.ListJobsRequest(task_type="report")).jobs
    assert [job.job_id for job in listed] == [report_id]
    assert JobQueue(redis_client).get(report_id).payload == {"source_id": completed}


def test_not_completed_and_unknown_ids(platform, stubs):
    factors, _ = stubs
    platform.worker.stop()  # nobody runs it: it stays PENDING
    pending = factors.AnalyzeFactor(request(expression=EXPRESSION)).job_id
    cases = [(pending, grpc.StatusCode.FAILED_PRECONDITION, "PENDING"),
             ("fa-" + "0" * 32, grpc.StatusCode.NOT_FOUND, "no factor analysis with id"),
             ("bt-" + "0" * 32, grpc.StatusCode.NOT_FOUND, "no factor analysis with id"),
             ("", grpc.StatusCode.INVALID_ARGUMENT, "job_id")]
    for job_id, code, text in cases:
        with pytest.raises(grpc.RpcError) as error:
            factors.GetFactorReport(jobs_pb2.JobRequest(job_id=job_id))
        assert error.value.code() == code and text in error.value.details(), error.value.details()
