"""WORKER_TASK_TYPES: a worker builds, warms up and reads the streams of its task types only,
so backtest-only workers never load the ML stack, and jobs of other types wait for a worker
that takes them."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc
from config.settings import InvalidSettings, load_settings
from tests.integration.test_api_backtest import wait_done
from utils.queue.jobs import JobSpec, JobStatus

BACKTEST_ONLY = "backtest, backtest_shard"


@pytest.fixture
def settings(settings_factory, redis_client):
    return settings_factory(worker_task_types=BACKTEST_ONLY)


def test_the_setting_names_registered_types_only():
    assert load_settings(worker_task_types=BACKTEST_ONLY).worker_task_types == "backtest,backtest_shard"
    assert [t.name for t in load_settings(worker_task_types="features").worker_types()] == ["features"]
    assert len(load_settings().worker_types()) > 10  # empty: every type
    with pytest.raises(InvalidSettings, match=r"WORKER_TASK_TYPES=.*unknown task type\(s\) backtests; known: backtest,"):
        load_settings(worker_task_types="backtests")


def test_a_backtest_only_worker_runs_backtests_and_leaves_other_jobs_queued(platform, channel):
    assert set(platform.worker.worker.handlers) == {"backtest", "backtest_shard"}
    queue = platform.worker.queue
    waiting = queue.enqueue(JobSpec("training", {}, "normal", 3, {}))
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    response = stub.SubmitBacktestTask(backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ"], start_time="2024-01-01", end_time="2024-12-31",
        strategy_config=json.dumps({"strategy_type": "sma_crossover"}), initial_capital=100_000))
    assert wait_done(stub, response.backtest_id).status == backtest_pb2.COMPLETED
    time.sleep(0.5)  # several of the worker's read cycles
    assert queue.get(waiting).status is JobStatus.PENDING


def test_backtest_handlers_do_not_load_the_ml_stack(tmp_path):
    """What the setting saves: a worker process that builds the backtest handlers only imports
    neither torch nor LightGBM nor scikit-learn (their ~380 MiB stay out of it)."""
    script = (
        "import sys\n"
        "from config.settings import load_settings\n"
        "from utils.engine.backend import cpu_backend\n"
        "from utils.tasks.runtime import build_handlers\n"
        f"s = load_settings(worker_task_types='{BACKTEST_ONLY}', redis_embedded='never', data_dir=r'{tmp_path}')\n"
        "build_handlers(s, cpu_backend(), s.worker_types())\n"
        "print(','.join(m for m in ('torch', 'lightgbm', 'sklearn') if m in sys.modules))\n")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert loaded.stdout.strip() == ""
