"""The `gq` command through its entry point (`python -m gpu_quant.cli`, a subprocess) against the
real server: output, --json documents and exit codes (0 ok, 1 job failed, 2 usage, 3 unreachable)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc
from gpu_quant import Client
from tests.conftest import PROJECT_ROOT

STRATEGY = json.dumps({"strategy_type": "trend_following", "lookback_period": 20, "moving_average_window": 50})


def gq(target: str | None, *args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200"}
    env.pop("GQ_TARGET", None)
    if target:
        env["GQ_TARGET"] = target
    return subprocess.run([sys.executable, "-m", "gpu_quant.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT, env=env)


@pytest.fixture
def target(platform):
    return f"127.0.0.1:{platform.port}"


@pytest.fixture
def client(target):
    with Client(target) as client:
        yield client


def test_usage_and_unreachable_exit_codes():
    assert gq(None, "--help").returncode == 0
    missing = gq(None, "backtest", "run", "--symbols", "000001.SZ")
    assert missing.returncode == 2 and "Missing option" in missing.stderr
    bad_json = gq("127.0.0.1:1", "backtest", "run", "--symbols", "A", "--start", "2024-01-01", "--end", "2024-02-01",
                  "--strategy", "{nope")
    assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr
    down = gq(None, "--target", "127.0.0.1:1", "data", "ls")
    assert down.returncode == 3 and "UNAVAILABLE" in down.stderr


def test_backtest_run_watch_then_json_report_and_jobs(target, client, channel, tmp_path):
    watched = gq(target, "backtest", "run", "--symbols", "000001.SZ,600000.SH", "--start", "2024-01-01",
                 "--end", "2024-12-31", "--strategy", STRATEGY, "--capital", "1000000", "--commission", "0.0003",
                 "--watch")
    assert watched.returncode == 0, watched.stderr
    assert "total_return" in watched.stdout and "sharpe_ratio" in watched.stdout and "100%" in watched.stderr

    scripted = gq(target, "backtest", "run", "--symbols", "000001.SZ,600000.SH", "--start", "2024-01-01",
                  "--end", "2024-12-31", "--strategy", STRATEGY, "--commission", "0.0005", "--json")
    assert scripted.returncode == 0, scripted.stderr
    metrics = json.loads(scripted.stdout)  # one JSON object, nothing else on stdout
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    raw = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=metrics["backtest_id"]))
    assert metrics["total_return"] == raw.performance_metrics.total_return
    assert metrics["num_trades"] == raw.performance_metrics.num_trades

    report = gq(target, "report", metrics["backtest_id"], "-o", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == stub.GetBacktestReport(
        backtest_pb2.BacktestReportRequest(backtest_id=metrics["backtest_id"])).html

    listed = json.loads(gq(target, "jobs", "ls", "--type", "backtest", "--json").stdout)
    assert metrics["backtest_id"] in {job["job_id"] for job in listed} and len(listed) == 2
    final = gq(target, "jobs", "watch", metrics["backtest_id"], "--json")
    assert final.returncode == 0 and json.loads(final.stdout)["status"] == "COMPLETED"
    assert json.loads(gq(target, "jobs", "cancel", metrics["backtest_id"], "--json").stdout)["status"] == "COMPLETED"
    history = json.loads(gq(target, "backtest", "ls", "--json").stdout)
    assert {row["backtest_id"] for row in history} == {job["job_id"] for job in listed}
    status = json.loads(gq(target, "status", "--json").stdout)
    assert status["health"] == "SERVING" and set(status) >= {"queues", "workers"}
    assert gq(target, "jobs", "get", "bt-unknown").returncode == 2


def test_failed_job_exits_1(target, client):
    failing = client.execution.simulate([{"symbol": "000001.SZ", "side": "buy", "quantity": 10,
                                          "start_time": "2030-01-01", "end_time": "2030-01-02"}])
    watched = gq(target, "jobs", "watch", failing.job_id)
    assert watched.returncode == 1 and "FAILED" in watched.stdout and "no stored bars" in watched.stdout


def _bars_csv(path, count=60):
    rng = np.random.default_rng(11)
    close = 15 * np.exp(np.cumsum(rng.normal(0, 0.01, count)))
    pd.DataFrame({"date": pd.bdate_range("2023-01-02", periods=count).strftime("%Y-%m-%d"), "open": close,
                  "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1000.0}).to_csv(path, index=False)
    return close


def test_data_import_ls_get(target, client, tmp_path):
    close = _bars_csv(tmp_path / "bars.csv")
    imported = gq(target, "data", "import", str(tmp_path / "bars.csv"), "--symbol", "CLI.A", "--chunk-rows", "25")
    assert imported.returncode == 0, imported.stderr
    symbols = {row["symbol"]: row for row in json.loads(gq(target, "data", "ls", "--json").stdout)}
    assert symbols["CLI.A"]["rows"] == 60 and symbols["CLI.A"]["first_time"].startswith("2023-01-02")
    bars = json.loads(gq(target, "data", "get", "CLI.A", "--limit", "5", "--json").stdout)
    assert [bar["close"] for bar in bars] == list(close[-5:])
    assert np.array_equal(client.bars.get("CLI.A")["close"].to_numpy(), close)
    without = gq(target, "data", "import", str(tmp_path / "bars.csv"))  # no --symbol, no symbol column
    assert without.returncode == 2 and "symbol" in without.stderr


def test_models_train_ls_predict(target, tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"price": rng.normal(10, 1, 150), "rsi": rng.uniform(20, 80, 150)})
    frame["target"] = (frame["rsi"] > 50).astype(int)
    frame.to_csv(tmp_path / "train.csv", index=False)
    trained = gq(target, "models", "train", "--type", "logistic", "--data", str(tmp_path / "train.csv"),
                 "--features", "price,rsi", "--target", "target", "--json")
    assert trained.returncode == 0, trained.stderr
    model_id = json.loads(trained.stdout)["model_id"]
    assert model_id in {row["model_id"] for row in json.loads(gq(target, "models", "ls", "--json").stdout)}
    pd.DataFrame({"price": [10.0, 10.0], "rsi": [25.0, 75.0]}).to_csv(tmp_path / "rows.csv", index=False)
    predicted = json.loads(gq(target, "models", "predict", model_id, str(tmp_path / "rows.csv"), "--json").stdout)
    assert [row["prediction"] for row in predicted] == [0.0, 1.0]
    assert gq(target, "models", "train", "--type", "logistic").returncode == 2  # neither --data nor --market-data


def test_stream_replays_a_csv_as_ticks(target, client, tmp_path):
    prices = 10 + np.sin(np.arange(30) / 3)
    pd.DataFrame({"timestamp": [f"2025-03-03T10:00:{second:02d}" for second in range(30)], "price": prices,
                  "volume": 100.0}).to_csv(tmp_path / "ticks.csv", index=False)
    lines = gq(target, "stream", "--symbol", "CLI.T", str(tmp_path / "ticks.csv"), "--features", "sma_5,rsi", "--json")
    assert lines.returncode == 0, lines.stderr
    updates = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [update["sequence"] for update in updates] == list(range(1, 31))
    assert updates[-1]["sma_5"] == pytest.approx(prices[-5:].mean())
    printed = gq(target, "stream", "--symbol", "CLI.U", str(tmp_path / "ticks.csv"), "--features", "sma_5", "--batch", "8")
    assert printed.returncode == 0 and printed.stdout.splitlines()[0].split() == ["seq", "timestamp", "price", "volume",
                                                                                 "sma_5"]
    assert len(printed.stdout.splitlines()) == 31


@pytest.mark.parametrize("answer, after", [("y\n", "CANCELLED"), ("n\n", "PENDING")])
def test_ctrl_c_asks_then_cancels_the_job(settings, redis_client, answer, after):
    from services.server import create_server
    from utils.data.sample import ensure_sample_data
    from utils.data.store import BarStore
    from utils.redis_client import redis_from_settings
    ensure_sample_data(BarStore(redis_from_settings(settings, decode=False)))
    server = create_server(settings)  # no worker: the backtest stays PENDING
    try:
        target = f"127.0.0.1:{server.port}"
        with Client(target) as client:
            run = client.backtest(["000001.SZ"], "2024-01-01", "2024-12-31", {"strategy_type": "trend_following"})
            env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "GQ_TARGET": target}
            watcher = subprocess.Popen([sys.executable, "-m", "gpu_quant.cli", "jobs", "watch", run.job_id],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, cwd=PROJECT_ROOT, env=env)
            try:
                assert "watching" in watcher.stderr.readline()  # it found the job and is about to watch it
                time.sleep(0.5)
                watcher.send_signal(signal.SIGINT)
                _, err = watcher.communicate(answer, timeout=30)
            finally:
                if watcher.poll() is None:
                    watcher.kill()
            assert watcher.returncode == 130 and "Cancel job" in err, err
            assert client.jobs.get(run.job_id)["status"] == after
    finally:
        server.stop(grace=0)
