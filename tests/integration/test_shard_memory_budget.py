"""SHARD_MEMORY_MB: a backtest over fewer symbols than SHARD_SYMBOLS still fans out when their
bars exceed one shard's memory budget, in shards the budget holds, with the unsharded numbers."""
from __future__ import annotations

import numpy as np
import pytest

from tests.integration.test_sharded_jobs import SINGLE, SYMBOLS, assert_metrics_equal, children, run, unsharded
from utils.data.store import Bars, bar_store_from_settings
from utils.queue.jobs import JobStatus
from utils.redis_client import redis_from_settings
from utils.tasks.shard_sizing import BAR_FIELDS
from utils.tasks.shards import SHARD_TYPE


def long_history(symbol: str, seed: int) -> Bars:
    """Business days 1985-2024 (10,436 bars, 500,928 bytes of time + OHLCV): 2 fit in 1 MiB."""
    days = np.arange(np.datetime64("1985-01-01"), np.datetime64("2025-01-01"), dtype="datetime64[D]")
    days = days[np.is_busday(days)]
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, days.size)))
    open_ = np.concatenate([[20.0], close[:-1]])
    return Bars(symbol, days.astype("datetime64[ns]").astype(np.int64), open_, np.maximum(open_, close) * 1.01,
                np.minimum(open_, close) * 0.99, close, np.full(days.size, 1e6))


@pytest.fixture
def budgeted(settings_factory, redis_client):
    from tests.conftest import InProcessWorker
    settings = settings_factory(shard_symbols=200, shard_memory_mb=1, max_concurrent_backtest_shards=1)
    store = bar_store_from_settings(redis_from_settings(settings, decode=False), settings)
    for index, symbol in enumerate(SYMBOLS):
        store.write(long_history(symbol, index), replace=True)
    assert 2 ** 20 // (store.info(SYMBOLS[0]).rows * BAR_FIELDS * 8) == 2
    workers = [InProcessWorker(settings).start() for _ in range(2)]
    yield settings, workers[0].queue
    for worker in workers:
        worker.stop()


def test_the_memory_budget_sizes_the_shards(budgeted):
    settings, queue = budgeted
    job_id, record, _ = run(queue, SINGLE, timeout=120)
    assert record.status is JobStatus.COMPLETED, record.error
    shards = children(queue, job_id, "backtest")
    assert all(child is not None and child.task_type == SHARD_TYPE for child in shards)
    assert [len(child.payload["symbols"]) for child in shards] == [2, 2, 1]  # 1 MiB // 500,928 bytes = 2
    assert_metrics_equal(queue.result(job_id)["metrics"], unsharded(settings, queue, SINGLE)["metrics"])
