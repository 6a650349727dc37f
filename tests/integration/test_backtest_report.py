"""GetBacktestReport over real gRPC + Redis + worker, and `main_server.py report` against the same Redis."""
from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc
from tests.conftest import PROJECT_ROOT
from tests.integration.test_api_backtest import request, wait_done
from utils.queue import keys
from utils.queue.streams import JobQueue
from utils.redis_client import free_port


@pytest.fixture
def stub(channel):
    return backtest_pb2_grpc.BacktestServiceStub(channel)


def report_cli(settings, *args: str, port: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port or settings.redis_port),
           "REDIS_DB": str(settings.redis_db)}
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "main_server.py"), "report", *args],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def completed(stub):
    response = stub.IntegratedBacktest(request(stock_codes=["000001.SZ"]))
    status = wait_done(stub, response.backtest_id)
    assert status.status == backtest_pb2.COMPLETED, status.error_message
    return response.backtest_id


def test_report_rpc_and_cli_agree(platform, stub, completed, redis_client, tmp_path):
    report = stub.GetBacktestReport(backtest_pb2.BacktestReportRequest(backtest_id=completed))
    assert report.backtest_id == completed and report.content_type == "text/html; charset=utf-8"
    html = report.html
    assert html.startswith("<!DOCTYPE html>") and f"Backtest {completed}" in html
    for heading in ("Metrics", "Equity curve", "Drawdown", "Monthly returns", "Trades"):
        assert heading in html
    assert "<script" not in html.lower() and "000001.SZ" in html and "trend_following" in html
    stored = JobQueue(redis_client).result(completed)  # what the worker wrote
    # A one-year run from the starting capital: the 2024 total of the monthly table is the total return.
    assert f'title="{stored["metrics"]["total_return"] * 100:.4f} %"' in html
    assert f"Trades ({len(stored['trades'])})" in html or not stored["trades"]

    output = tmp_path / "report.html"
    run = report_cli(platform.settings, completed, "--output", str(output))
    assert run.returncode == 0, run.stderr
    assert output.read_text(encoding="utf-8") == html  # one renderer, one lookup

    to_stdout = report_cli(platform.settings, completed)
    assert to_stdout.returncode == 0 and to_stdout.stdout == html


def test_unknown_id(platform, stub, tmp_path):
    with pytest.raises(grpc.RpcError) as error:
        stub.GetBacktestReport(backtest_pb2.BacktestReportRequest(backtest_id="bt-unknown"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "bt-unknown" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        stub.GetBacktestReport(backtest_pb2.BacktestReportRequest())
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    output = tmp_path / "report.html"
    run = report_cli(platform.settings, "bt-unknown", "--output", str(output))
    assert run.returncode == 1 and "bt-unknown" in run.stderr and "Traceback" not in run.stderr
    assert not output.exists() and run.stdout == ""


def test_not_completed_and_expired(platform, stub, completed, redis_client):
    redis_client.delete(keys.result(completed))
    with pytest.raises(grpc.RpcError) as error:
        stub.GetBacktestReport(backtest_pb2.BacktestReportRequest(backtest_id=completed))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "expired" in error.value.details()

    platform.worker.stop()  # nothing runs: the next job stays pending
    pending = stub.IntegratedBacktest(request(stock_codes=["000001.SZ"])).backtest_id
    with pytest.raises(grpc.RpcError) as error:
        stub.GetBacktestReport(backtest_pb2.BacktestReportRequest(backtest_id=pending))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "PENDING" in error.value.details()
    run = report_cli(platform.settings, pending)
    assert run.returncode == 1 and "PENDING" in run.stderr and run.stdout == ""


def test_cli_without_redis_fails_in_one_line(settings):
    run = report_cli(settings, "bt-anything", port=free_port())
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "cannot reach Redis" in run.stderr and "Traceback" not in run.stderr
