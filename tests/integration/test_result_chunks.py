"""A result's long lists stored in chunks beside it (RESULT_CHUNK_ROWS): the queue on a real
redis-server, and GetBacktestResult paging over real gRPC reading only a page's chunks."""
from __future__ import annotations

import json

import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc
from tests.integration.test_api_backtest import wait_done
from utils.queue import keys, result_parts
from utils.queue.jobs import JobSpec, JobStatus
from utils.queue.streams import JobQueue, QueueConfig
from utils.redis_client import redis_from_settings

CHUNK_ROWS = 4


@pytest.fixture
def settings(settings_factory, redis_client):
    return settings_factory(result_chunk_rows=CHUNK_ROWS)


@pytest.fixture
def queue(settings):
    q = JobQueue(redis_from_settings(settings), QueueConfig.from_settings(settings))
    q.ensure_groups()
    return q


def finished(queue, result, worker="a"):
    job_id = queue.enqueue(JobSpec("features", {}, "normal", 3, {}))
    delivery = queue.read(worker, [keys.stream("features", "normal")], block_ms=None)[0]
    queue.start(delivery, worker, "cpu")
    return job_id, delivery, queue.finish(delivery, JobStatus.COMPLETED, result)


def part_keys(queue, job_id):
    return sorted(queue.redis.scan_iter(match=f"gq:part:{{{job_id}}}:*"))


def test_long_lists_are_chunked_with_the_results_ttl_and_pages_read_them(queue):
    rows = [{"i": i} for i in range(10)]
    job_id, _, written = finished(queue, {"metrics": {"x": 1.0}, "trades": rows})
    assert written
    stored = part_keys(queue, job_id)
    assert len(stored) == 3 and all(0 < queue.redis.ttl(key) <= queue.result_ttl("features") for key in stored)
    head = queue.result_head(job_id)
    assert head["metrics"] == {"x": 1.0} and result_parts.descriptor(head, "trades").count == 10
    assert queue.result(job_id) == {"metrics": {"x": 1.0}, "trades": rows}
    assert queue.result_page(job_id, head, "trades", 3, 4) == (rows[3:7], 10)
    assert queue.result_page(job_id, head, "trades", 8, 100) == (rows[8:], 10)
    assert queue.result_page(job_id, head, "trades", 10, 5) == ([], 10)
    assert queue.result_page(job_id, head, "metrics_absent", 0, 5) == ([], 0)
    queue.redis.delete(stored[1])  # a chunk lost (evicted): the page says so, the whole result too
    assert queue.result_page(job_id, head, "trades", 4, 1) is None and queue.result(job_id) is None


def test_a_losing_duplicate_finish_removes_its_chunks_and_keeps_the_winners(queue):
    job_id, delivery, written = finished(queue, {"trades": [{"by": "a", "i": i} for i in range(6)]})
    assert written
    winners = part_keys(queue, job_id)
    assert queue.finish(delivery, JobStatus.COMPLETED, {"trades": [{"by": "b", "i": i} for i in range(6)]}) is False
    assert part_keys(queue, job_id) == winners
    assert {row["by"] for row in queue.result(job_id)["trades"]} == {"a"}


def test_get_backtest_result_pages_across_chunks(channel, platform, queue):
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    config = {"strategy_type": "sma_crossover", "fast": 3, "slow": 8}
    response = stub.SubmitBacktestTask(backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ", "600000.SH", "000002.SZ"], start_time="2024-01-01", end_time="2024-12-31",
        strategy_config=json.dumps(config), initial_capital=1_000_000, commission_rate=0.0003))
    assert wait_done(stub, response.backtest_id).status == backtest_pb2.COMPLETED
    whole = queue.result(response.backtest_id)["trades"]
    assert len(whole) > 3 * CHUNK_ROWS  # several chunks
    assert result_parts.descriptor(queue.result_head(response.backtest_id), "trades") is not None
    paged, token = [], ""
    while True:
        page = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(
            backtest_id=response.backtest_id, page_size=5, page_token=token))
        assert page.total_trades == len(whole) and len(page.trades) <= 5
        paged += [(t.symbol, t.entry_time, t.exit_time, t.pnl) for t in page.trades]
        token = page.next_page_token
        if not token:
            break
    assert paged == [(t["symbol"], t["entry_time"], t["exit_time"], t["pnl"]) for t in whole]
    report = stub.GetBacktestReport(backtest_pb2.BacktestReportRequest(backtest_id=response.backtest_id))
    assert f"Trades ({len(whole):,})" in report.html  # the tearsheet gets every trade


def test_a_result_that_expires_after_a_page_was_read_answers_not_found(channel, platform, queue):
    import grpc
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    response = stub.SubmitBacktestTask(backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ"], start_time="2024-01-01", end_time="2024-12-31",
        strategy_config=json.dumps({"strategy_type": "sma_crossover", "fast": 3, "slow": 8}), initial_capital=100_000))
    assert wait_done(stub, response.backtest_id).status == backtest_pb2.COMPLETED
    request = backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id, page_size=2)
    first, again = stub.GetBacktestResult(request), stub.GetBacktestResult(request)  # the second from the server's cache
    assert first == again and len(first.trades) == 2 and first.equity_curve
    queue.redis.delete(keys.result(response.backtest_id))  # its TTL passed
    with pytest.raises(grpc.RpcError) as failure:
        stub.GetBacktestResult(request)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND and "expired" in failure.value.details()
