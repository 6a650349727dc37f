"""Feature jobs over more than SHARD_SYMBOLS symbols (symbol shards) and factor analyses over more
than FACTOR_SHARD_DAYS dates (date shards) as panel_shard child jobs on two real workers (real
Redis, the configured bar store): the parent's result equals the unsharded job's (features:
exactly; factor statistics: to 1e-9 relative, see utils/tasks/factor_shards.py), a failed shard is
retried alone, cancelling the parent cancels its shards."""
from __future__ import annotations

import time

import numpy as np
import pytest

from tests.shard_helpers import ShardedWorkers, cancel_with_shards_running, failing_once, run_to_end
from utils.engine.backend import cpu_backend
from utils.queue.jobs import JobRecord, JobSpec, JobStatus, initial_hash, new_job_id
from utils.queue.worker import JobContext
from utils.tasks.factor import make_factor_handler
from utils.tasks.factor_shards import shard_payloads
from utils.tasks.features import make_features_handler
from utils.tasks.panel_shards import PANEL_SHARD_TYPE, child_id
from utils.tasks.resources import WorkerResources
from utils.tasks.runtime import build_handlers

SYMBOLS = [f"P{index:03d}.SZ" for index in range(8)]
SHARD_DAYS = 600  # 2016-2024 is ~2,350 business days: 4 date shards
FEATURES = {"symbols": SYMBOLS[:5], "features": ["rsi", "sma_20", "macd", "atr"], "interval": "", "device": "cpu"}
FACTOR = {"symbols": SYMBOLS, "start_ns": int(np.datetime64("2016-01-01", "ns").astype(np.int64)),
          "end_ns": int(np.datetime64("2024-12-31", "ns").astype(np.int64)),
          "expression": "cs_rank(ts_mean(close, 10) / close) + ts_std(close, 20) / close", "values": None,
          "periods": [5, 1, 10], "quantiles": 4, "bins": 0, "max_loss": 0.5, "filter_zscore": None,
          "zero_aware": False, "groups": {}, "group_adjust": False, "by_group": False, "long_short": True,
          "equal_weight": False, "rank_ties": "average"}


@pytest.fixture
def sharded(settings_factory, redis_client):
    settings = settings_factory(shard_symbols=2, factor_shard_days=SHARD_DAYS, max_concurrent_panel_shards=1)
    workers = ShardedWorkers(settings, SYMBOLS)
    yield settings, workers.start
    workers.stop()


def unsharded(settings, make_handler, task_type, payload):
    """The same job run by the real handler in this process with sharding off (the reference)."""
    reference = settings.model_copy(update={"shard_symbols": 0, "factor_shard_days": 0})
    handler = make_handler(WorkerResources(reference, cpu_backend()))
    record = JobRecord.from_hash(initial_hash(new_job_id(task_type), JobSpec(task_type, payload), time.time()))
    return handler(JobContext(record=record, attempt=1, report=lambda *args: None))


def completed(queue, task_type, payload):
    """(job id, result, progress seen) of a job that must complete."""
    job_id, record, progress = run_to_end(queue, task_type, payload)
    assert record.status is JobStatus.COMPLETED, record.error
    return job_id, queue.result(job_id), progress


def children(queue, parent_id, round_name, count):
    return queue.get_many([child_id(parent_id, round_name, index) for index in range(count)])


def assert_close(actual, expected, path="result"):
    """Equal structure; numbers to 1e-9 relative (None = NaN on both sides)."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{path}[{index}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12), path
    else:
        assert actual == expected, path


def test_sharded_features_equal_unsharded(sharded):
    settings, start_workers = sharded
    queue = start_workers()[0].queue
    job_id, result, progress = completed(queue, "features", FEATURES)
    expected = unsharded(settings, make_features_handler, "features", FEATURES)
    assert result["features"] == expected["features"]  # exact: each symbol's values are its own
    assert result["timestamps"] == expected["timestamps"]
    shards = children(queue, job_id, "features", 3)
    assert [child.payload["symbols"] for child in shards] == [SYMBOLS[:2], SYMBOLS[2:4], SYMBOLS[4:5]]
    assert all(child.status is JobStatus.COMPLETED and child.task_type == PANEL_SHARD_TYPE for child in shards)
    assert progress == sorted(progress)


def test_sharded_factor_analysis_equals_unsharded(sharded):
    settings, start_workers = sharded
    queue = start_workers()[0].queue
    job_id, result, progress = completed(queue, "factor", FACTOR)
    expected = unsharded(settings, make_factor_handler, "factor", FACTOR)
    assert result.pop("shards") == 4
    for key in ("compute_seconds", "device"):
        result.pop(key), expected.pop(key)
    assert result["ic_series"]["time"] == expected["ic_series"]["time"]
    assert_close(result, expected)
    shards = children(queue, job_id, "factor", 4)
    assert all(child.status is JobStatus.COMPLETED for child in shards)
    # each shard read its dates plus the warm-up and forward-return rows, never the whole history
    assert shards[1].payload["from_ns"] > FACTOR["start_ns"] and shards[1].payload["to_ns"] < shards[3].payload["to_ns"]
    assert progress == sorted(progress)


def test_shard_windows_cover_warm_up_lags_and_forward_returns():
    times = np.arange(100, dtype=np.int64) * 10
    payloads = shard_payloads({"periods": [1, 5]}, times, 90, 40, 7)
    assert [(p["own_from_ns"], p["own_to_ns"], p["rows"]) for p in payloads] == [(0, 390, 40), (400, 790, 40),
                                                                                 (800, 990, 20)]
    assert [(p["from_ns"], p["to_ns"]) for p in payloads] == [(0, 440), (400 - 120, 840), (800 - 120, 990)]


def test_a_failed_factor_shard_is_retried_alone(sharded):
    settings, start_workers = sharded
    handlers = build_handlers(settings, cpu_backend())
    flaky, failed = failing_once(handlers[PANEL_SHARD_TYPE])
    queue = start_workers({**handlers, PANEL_SHARD_TYPE: flaky})[0].queue
    job_id, record, _ = run_to_end(queue, "factor", FACTOR)
    assert record.status is JobStatus.COMPLETED, record.error
    assert record.attempts == 1  # the parent ran once
    shards = {child.id: child for child in children(queue, job_id, "factor", 4)}
    assert shards[failed[0]].attempts == 2
    assert sorted(child.attempts for child_id, child in shards.items() if child_id != failed[0]) == [1, 1, 1]
    expected = unsharded(settings, make_factor_handler, "factor", FACTOR)
    assert_close(queue.result(job_id)["periods"], expected["periods"])


def test_cancelling_a_sharded_feature_job_cancels_its_shards(sharded):
    settings, start_workers = sharded
    cancel_with_shards_running(settings, start_workers, PANEL_SHARD_TYPE, JobSpec("features", FEATURES),
                               lambda queue, job_id: children(queue, job_id, "features", 3))
