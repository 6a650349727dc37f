"""The leader/follower micro-batcher: every caller gets its own rows, concurrent callers share
calls, a failing call reaches every caller of its batch, and a waiter past its budget gives up."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from utils.serving.batcher import BatchTimeout, PredictBatcher


def doubling(calls: list[int], delay: float = 0.0):
    def call(features):
        calls.append(features.shape[0])
        time.sleep(delay)
        return (features[:, 0] * 2, None), "cpu"
    return call


def run_concurrently(batcher, requests, timeout=10.0):
    barrier = threading.Barrier(len(requests))
    results = [None] * len(requests)

    def send(index):
        barrier.wait()
        try:
            results[index] = batcher.predict(requests[index], timeout)
        except Exception as exc:  # collected for the assertions
            results[index] = exc
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("max_wait", [0.0, 0.002])
def test_each_caller_gets_its_rows_and_calls_are_shared(max_wait):
    calls: list[int] = []
    batcher = PredictBatcher(doubling(calls, delay=0.002), max_rows=64, max_wait=max_wait)
    requests = [np.full((1 + i % 3, 2), float(i)) for i in range(40)]
    results = run_concurrently(batcher, requests)
    for index, ((predictions, probabilities), device) in enumerate(results):
        assert predictions.tolist() == [2.0 * index] * (1 + index % 3) and probabilities is None and device == "cpu"
    assert sum(calls) == sum(r.shape[0] for r in requests)
    assert len(calls) < len(requests) and max(calls) <= 64


def test_a_lone_request_is_served_at_once_in_its_own_thread():
    seen = []
    batcher = PredictBatcher(lambda f: (seen.append(threading.current_thread()) or ((f[:, 0], None), "cpu")), 8)
    (predictions, _), _ = batcher.predict(np.ones((1, 2)), timeout=1.0)
    assert predictions.tolist() == [1.0] and seen == [threading.current_thread()]


def test_a_failed_call_reaches_every_caller_of_its_batch_and_the_next_call_works():
    fail = threading.Event()
    fail.set()

    def call(features):
        time.sleep(0.002)
        if fail.is_set():
            raise RuntimeError("device lost")
        return (features[:, 0], None), "cpu"
    batcher = PredictBatcher(call, max_rows=64)
    results = run_concurrently(batcher, [np.ones((1, 1))] * 10)
    assert all(isinstance(r, RuntimeError) for r in results)
    fail.clear()
    assert batcher.predict(np.ones((1, 1)), 1.0)[0][0].tolist() == [1.0]


def test_a_waiter_past_its_budget_gives_up_and_the_rest_are_served():
    release = threading.Event()

    def call(features):
        release.wait(5)
        return (features[:, 0], None), "cpu"
    batcher = PredictBatcher(call, max_rows=1)
    leader = threading.Thread(target=batcher.predict, args=(np.ones((1, 1)), 5.0))
    leader.start()
    time.sleep(0.05)  # the leader's call is running
    with pytest.raises(BatchTimeout):
        batcher.predict(np.ones((1, 1)), timeout=0.05)
    release.set()
    leader.join()
    assert batcher.predict(np.full((1, 1), 3.0), 1.0)[0][0].tolist() == [3.0]


def test_rows_above_the_limit_run_alone():
    calls: list[int] = []
    batcher = PredictBatcher(doubling(calls, delay=0.002), max_rows=4)
    results = run_concurrently(batcher, [np.ones((6, 1))] + [np.ones((1, 1))] * 6)
    assert all(not isinstance(r, Exception) for r in results)
    assert 6 in calls and max(calls) == 6 and sum(calls) == 12
