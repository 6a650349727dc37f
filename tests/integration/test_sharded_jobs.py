"""Backtests and sweeps over more than SHARD_SYMBOLS symbols: shards as child jobs on two real
workers (real Redis), reduced by the parent to the unsharded job's very numbers."""
from __future__ import annotations

import time

import numpy as np
import pytest

from tests.conftest import InProcessWorker, wait_until
from tests.shard_helpers import ShardedWorkers, cancel_with_shards_running, failing_once, run_to_end
from utils.data.sample import sample_bars
from utils.data.store import bar_store_from_settings
from utils.engine.backend import cpu_backend
from utils.queue.jobs import JobRecord, JobSpec, JobStatus, initial_hash, new_job_id
from utils.queue.worker import JobContext
from utils.redis_client import redis_from_settings
from utils.tasks.backtest import make_backtest_handler
from utils.tasks.resources import WorkerResources
from utils.tasks.runtime import build_handlers
from utils.tasks.shards import SHARD_TYPE, child_job_id

SYMBOLS = [f"S{index:03d}.SZ" for index in range(5)]  # shards of 2: 2 + 2 + 1
GRID = {"strategy_type": "sma_crossover", "param_grid": {"fast": [5, 10, 20], "slow": [30, 60]},
        "rank_by": "sharpe_ratio"}
SINGLE = {"strategy_type": "sma_crossover", "fast": 10, "slow": 40, "direction": "long_short"}


def payload(config):
    return {"symbols": SYMBOLS, "start_ns": int(np.datetime64("2016-01-01", "ns").astype(np.int64)),
            "end_ns": int(np.datetime64("2024-12-31", "ns").astype(np.int64)), "strategy_config": config,
            "initial_capital": 1_000_000.0, "commission_rate": 0.0005, "device": "cpu"}


@pytest.fixture
def sharded(settings_factory, redis_client):
    settings = settings_factory(shard_symbols=2, max_concurrent_backtest_shards=1)
    workers = ShardedWorkers(settings, SYMBOLS)
    yield settings, workers.start
    workers.stop()


def unsharded(settings, queue, config):
    """The same job run by the real handler with sharding off (the reference)."""
    reference = settings.model_copy(update={"shard_symbols": 0})
    handler = make_backtest_handler(WorkerResources(reference, cpu_backend()))
    spec = JobSpec("backtest", payload(config))
    record = JobRecord.from_hash(initial_hash(new_job_id("backtest"), spec, time.time()))  # never queued
    return handler(JobContext(record=record, attempt=1, report=lambda *args: None))


def run(queue, config, timeout=60.0):
    return run_to_end(queue, "backtest", payload(config), timeout)


def assert_metrics_equal(actual, expected):
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def children(queue, parent_id, round_name):
    ids = [child_job_id(parent_id, round_name, index) for index in range(3)]
    return queue.get_many(ids)


def test_sharded_backtest_equals_unsharded_and_fans_out(sharded):
    settings, start_workers = sharded
    workers = start_workers()
    queue = workers[0].queue
    job_id, record, progress = run(queue, SINGLE)
    assert record.status is JobStatus.COMPLETED, record.error
    result = queue.result(job_id)
    expected = unsharded(settings, queue, SINGLE)
    assert_metrics_equal(result["metrics"], expected["metrics"])
    assert result["equity_curve"]["time"] == expected["equity_curve"]["time"]
    np.testing.assert_allclose(result["equity_curve"]["equity"], expected["equity_curve"]["equity"], rtol=1e-12)
    assert [(t["symbol"], t["entry_time"], t["exit_time"]) for t in result["trades"]] == \
        [(t["symbol"], t["entry_time"], t["exit_time"]) for t in expected["trades"]]
    assert [t["pnl"] for t in result["trades"]] == pytest.approx([t["pnl"] for t in expected["trades"]], rel=1e-9)
    assert list(result["symbol_metrics"]) == SYMBOLS
    for symbol in SYMBOLS:
        assert_metrics_equal(result["symbol_metrics"][symbol], expected["symbol_metrics"][symbol])
    shards = children(queue, job_id, "backtest")
    assert all(child.status is JobStatus.COMPLETED and child.task_type == SHARD_TYPE for child in shards)
    assert [len(child.payload["symbols"]) for child in shards] == [2, 2, 1]
    assert len({child.worker for child in shards}) == 2  # one shard slot per worker: both took shards
    assert progress == sorted(progress)


def test_sharded_sweep_equals_unsharded_with_the_same_ranking(sharded):
    settings, start_workers = sharded
    queue = start_workers()[0].queue
    job_id, record, progress = run(queue, GRID)
    assert record.status is JobStatus.COMPLETED, record.error
    result = queue.result(job_id)
    expected = unsharded(settings, queue, GRID)
    rows, expected_rows = result["sweep"]["rows"], expected["sweep"]["rows"]
    assert [row["params"] for row in rows] == [row["params"] for row in expected_rows]
    for row, expected_row in zip(rows, expected_rows):
        assert row["rank"] == expected_row["rank"]
        assert_metrics_equal(row["metrics"], expected_row["metrics"])
    assert result["best_params"] == expected["best_params"]
    assert result["sweep"]["cells"] == expected["sweep"]["cells"]
    assert result["sweep"]["combinations"] == expected["sweep"]["combinations"]
    assert_metrics_equal(result["metrics"], expected["metrics"])
    assert result["strategy_config"] == expected["strategy_config"]
    assert all(child.status is JobStatus.COMPLETED for child in children(queue, job_id, "sweep"))
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_a_failed_shard_is_retried_alone(sharded):
    settings, start_workers = sharded
    handlers = build_handlers(settings, cpu_backend())
    flaky, failed = failing_once(handlers[SHARD_TYPE])
    queue = start_workers({**handlers, SHARD_TYPE: flaky})[0].queue
    job_id, record, _ = run(queue, SINGLE)
    assert record.status is JobStatus.COMPLETED, record.error
    assert record.attempts == 1  # the parent ran once
    shards = {child.id: child for child in children(queue, job_id, "backtest")}
    assert shards[failed[0]].attempts == 2
    assert [child.attempts for child_id, child in shards.items() if child_id != failed[0]] == [1, 1]
    assert_metrics_equal(queue.result(job_id)["metrics"], unsharded(settings, queue, SINGLE)["metrics"])


def test_cancelling_the_parent_cancels_its_shards(sharded):
    settings, start_workers = sharded
    cancel_with_shards_running(settings, start_workers, SHARD_TYPE, JobSpec("backtest", payload(GRID)),
                               lambda queue, job_id: children(queue, job_id, "sweep"))


def test_shards_on_different_calendars_fall_back_to_the_unsharded_job(sharded):
    settings, start_workers = sharded
    store = bar_store_from_settings(redis_from_settings(settings, decode=False), settings)
    bars = sample_bars(SYMBOLS[-1], 14.0)
    keep = np.arange(len(bars.time)) % 7 != 3  # the last shard's only symbol misses some days
    store.write(type(bars)(bars.symbol, bars.time[keep], bars.open[keep], bars.high[keep], bars.low[keep],
                           bars.close[keep], bars.volume[keep]), replace=True, synthetic=True)
    queue = start_workers()[0].queue
    job_id, record, _ = run(queue, SINGLE)
    assert record.status is JobStatus.COMPLETED, record.error
    result, expected = queue.result(job_id), unsharded(settings, queue, SINGLE)
    assert result["equity_curve"]["time"] == expected["equity_curve"]["time"]
    assert_metrics_equal(result["metrics"], expected["metrics"])


def test_parents_filling_every_backtest_slot_still_get_their_shards_run(sharded):
    settings, _ = sharded
    one_slot = settings.model_copy(update={"max_concurrent_backtests": 1})
    workers = [InProcessWorker(one_slot).start() for _ in range(2)]
    try:
        queue = workers[0].queue
        job_ids = [queue.enqueue(JobSpec("backtest", payload({**SINGLE, "fast": fast}))) for fast in (5, 10, 15)]
        records = wait_until(lambda: all(r.status.is_terminal for r in queue.get_many(job_ids))
                             and queue.get_many(job_ids), timeout=60)
        assert [r.status for r in records] == [JobStatus.COMPLETED] * 3, [r.error for r in records]
    finally:
        for worker in workers:
            worker.stop()
