"""Structured logs: lines logged inside a job carry its id, inside an RPC the method name."""
from __future__ import annotations

import io
import json
import logging
import threading

import grpc
import pytest

from utils.logging_setup import configure_logging, current_log_context, log_context

log = logging.getLogger("tests.logging")


@pytest.fixture
def log_lines():
    """configure_logging as the server does, writing to a buffer; the root logger (and pytest's
    capture handlers) restored afterwards. Returns a callable giving the lines so far."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()

    def configure(fmt: str = "json", level: str = "INFO"):
        configure_logging(level, fmt)
        root.handlers[0].setStream(buffer)
        return lambda: [line for line in buffer.getvalue().splitlines() if line]

    yield configure
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_json_line_inside_a_context_carries_its_fields_and_nothing_leaks(log_lines):
    lines = log_lines("json")
    with log_context(job_id="bt-1", task_type="backtest"):
        log.info("inside")
    log.info("outside")
    inside, outside = (json.loads(line) for line in lines())
    assert inside["job_id"] == "bt-1" and inside["task_type"] == "backtest"
    assert inside["message"] == "inside" and inside["level"] == "INFO" and inside["logger"] == "tests.logging"
    assert "job_id" not in outside and "task_type" not in outside
    assert current_log_context() == {}


def test_explicit_extra_wins_over_the_bound_context(log_lines):
    lines = log_lines("json")
    with log_context(job_id="bt-1"):
        log.info("x", extra={"job_id": "bt-explicit"})
    assert json.loads(lines()[0])["job_id"] == "bt-explicit"


def test_text_format_appends_the_bound_fields(log_lines):
    lines = log_lines("text")
    with log_context(rpc_method="Predict"):
        log.warning("slow")
    log.warning("plain")
    tagged, plain = lines()
    assert tagged.endswith("tests.logging: slow [rpc_method=Predict]")
    assert plain.endswith("tests.logging: plain")


def test_level_comes_from_settings(log_lines):
    from config.settings import load_settings
    settings = load_settings(log_level="warning", log_format="json")
    lines = log_lines(settings.log_format, settings.log_level)
    log.info("dropped")
    log.warning("kept")
    assert [json.loads(line)["message"] for line in lines()] == ["kept"]


def test_worker_tags_job_lines_with_job_id(log_lines, settings):
    """A real Worker (tests/conftest.py) on a real Redis runs a handler that logs."""
    from tests.conftest import InProcessWorker, wait_until
    from utils.queue.jobs import JobSpec, JobStatus

    def handler(context):
        logging.getLogger("utils.tasks.example").info("computing %s", context.job_id)
        return {"ok": True}

    lines = log_lines("json")
    worker = InProcessWorker(settings, handlers={"features": handler}).start()
    try:
        job_id = worker.queue.enqueue(JobSpec("features", {}))
        wait_until(lambda: (record := worker.queue.get(job_id)) and record.status == JobStatus.COMPLETED)
    finally:
        worker.stop()
    entries = [json.loads(line) for line in lines()]
    job_lines = [entry for entry in entries if entry["message"] == f"computing {job_id}"]
    assert len(job_lines) == 1, entries
    assert job_lines[0]["job_id"] == job_id
    assert job_lines[0]["task_type"] == "features"
    assert job_lines[0]["worker_id"] == worker.worker.consumer
    # the worker loop's own lines (started/stopped) are outside any job
    assert all("job_id" not in entry for entry in entries if entry["logger"] == "utils.queue.worker")


class _Context:
    def abort(self, code, message):
        raise grpc.RpcError(f"{code}: {message}")


def _call_through_interceptor(handler_factory, behavior, method="/gpu_api.ml.MLService/Predict"):
    from services.interceptors import ObservabilityInterceptor
    from utils.monitoring import Metrics
    from prometheus_client import CollectorRegistry
    interceptor = ObservabilityInterceptor(Metrics(CollectorRegistry()))
    details = type("Details", (), {"method": method, "invocation_metadata": ()})()
    return interceptor.intercept_service(lambda _: handler_factory(behavior, None, None), details)


def test_rpc_lines_carry_the_method_unary_and_streaming(log_lines):
    lines = log_lines("json")

    def unary(request, context):
        log.info("unary body")
        return "reply"

    def streaming(request, context):
        log.info("stream start")
        yield 1
        log.info("stream end")

    wrapped = _call_through_interceptor(grpc.unary_unary_rpc_method_handler, unary)
    assert wrapped.unary_unary("request", _Context()) == "reply"
    wrapped = _call_through_interceptor(grpc.unary_stream_rpc_method_handler, streaming,
                                        "/gpu_api.backtest.BacktestService/WatchBacktest")
    assert list(wrapped.unary_stream("request", _Context())) == [1]
    log.info("after")
    entries = {entry["message"]: entry for entry in map(json.loads, lines())}
    assert entries["unary body"]["rpc_method"] == "Predict"
    assert entries["stream start"]["rpc_method"] == entries["stream end"]["rpc_method"] == "WatchBacktest"
    assert "rpc_method" not in entries["after"]


def test_internal_error_of_an_rpc_is_logged_with_the_method(log_lines):
    lines = log_lines("json")

    def broken(request, context):
        raise RuntimeError("boom")

    wrapped = _call_through_interceptor(grpc.unary_unary_rpc_method_handler, broken)
    with pytest.raises(grpc.RpcError):
        wrapped.unary_unary("request", _Context())
    errors = [entry for entry in map(json.loads, lines()) if entry["level"] == "ERROR"]
    assert errors and all(entry["rpc_method"] == "Predict" for entry in errors)


def test_context_is_per_thread():
    seen = {}
    with log_context(job_id="main-thread"):
        thread = threading.Thread(target=lambda: seen.update(current_log_context()))
        thread.start()
        thread.join()
    assert seen == {}
