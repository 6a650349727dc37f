"""Micro-batching for Predict: concurrent requests for one model become one model call.

No batching thread and no timer: the request that finds the model idle becomes the *leader*
and makes the call itself, in its own RPC thread, for every request queued by then; requests
arriving while a call runs queue up and wait. When its call returns, the leader hands each
waiter its slice and passes the lead to the oldest queued request, which calls for everything
queued meanwhile. So under load batches grow by themselves, at low load a request runs at once
(no thread hop, no wait), and no request leads more than one call (nobody is starved serving
others).

A leader lingers for more requests only while they keep arriving: it yields the GIL once and
looks again, at most ``max_wait`` seconds in all (0: never), so requests being decoded at that
moment join its call. A request with more than ``max_rows`` rows runs alone, never split.

Only row-wise models may be batched (``history_rows == 0``): a sequence model reads each row
with the rows before it, so stacking two requests would feed one's rows to the other.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import numpy as np

Prediction = tuple[np.ndarray, "np.ndarray | None"]
# (stacked features) -> ((predictions, probabilities), device that served them)
BatchCall = Callable[[np.ndarray], tuple[Prediction, str]]


class BatchTimeout(Exception):
    """The request's result did not come within its time budget."""


class _Pending:
    __slots__ = ("features", "rows", "woken", "lead", "result", "error", "done")

    def __init__(self, features: np.ndarray) -> None:
        self.features = features
        self.rows = features.shape[0]
        # Released when the result is in or when this request is to lead: a bare lock is the
        # cheapest wake-up (an Event builds a Condition per request).
        self.woken = threading.Lock()
        self.woken.acquire()
        self.lead = False
        self.done = False
        self.result: tuple[Prediction, str] | None = None
        self.error: BaseException | None = None


class PredictBatcher:
    def __init__(self, call: BatchCall, max_rows: int, max_wait: float = 0.0, name: str = "model") -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.call = call
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.name = name
        self.calls = 0  # model calls made (a debug counter for tests; metrics count them too)
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._busy = False  # a leader is collecting or calling

    def predict(self, features: np.ndarray, timeout: float) -> tuple[Prediction, str]:
        """This request's rows of the result; ``BatchTimeout`` after ``timeout`` seconds of waiting
        (a request already in a running call gets its answer dropped)."""
        pending = _Pending(features)
        with self._lock:
            self._queue.append(pending)
            if not self._busy:
                self._busy = pending.lead = True
        if not pending.lead and not pending.woken.acquire(timeout=max(timeout, 0.0)):
            with self._lock:
                if not pending.lead and not pending.done:
                    try:
                        self._queue.remove(pending)
                    except ValueError:  # taken into a running call: its answer will be dropped
                        pass
                    raise BatchTimeout(f"no prediction within {timeout:.3g} s")
        if pending.lead and not pending.done:
            self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _take(self) -> list[_Pending]:
        """The queued requests (oldest first) up to ``max_rows`` rows; the first always."""
        with self._lock:
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            while self._queue and rows + self._queue[0].rows <= self.max_rows:
                batch.append(self._queue.popleft())
                rows += batch[-1].rows
            return batch

    def _linger(self) -> None:
        """Let requests that are arriving right now join this call: yield while the queue grows."""
        if self.max_wait <= 0:
            return
        give_up = time.monotonic() + self.max_wait
        seen = len(self._queue)
        while time.monotonic() < give_up:
            time.sleep(0)  # hands the GIL to threads decoding requests
            now = len(self._queue)
            if now == seen or sum(p.rows for p in list(self._queue)) >= self.max_rows:
                return
            seen = now

    def _lead(self) -> None:
        self._linger()
        batch = self._take()
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._queue:  # the oldest waiter calls for everything queued meanwhile
                    heir = self._queue[0]
                    heir.lead = True
                    heir.woken.release()
                else:
                    self._busy = False

    def _run(self, batch: list[_Pending]) -> None:
        features = batch[0].features if len(batch) == 1 else np.concatenate([p.features for p in batch])
        try:
            self.calls += 1
            (predictions, probabilities), device = self.call(features)
        except Exception as exc:  # every caller of the batch gets the failure
            for index, pending in enumerate(batch):
                pending.error, pending.done = exc, True
                if index:  # batch[0] is the leader, this very thread
                    pending.woken.release()
            return
        start = 0
        for index, pending in enumerate(batch):
            stop = start + pending.rows
            pending.result = ((predictions[start:stop], None if probabilities is None else probabilities[start:stop]),
                              device)
            pending.done = True
            if index:  # batch[0] is the leader, this very thread
                pending.woken.release()
            start = stop
