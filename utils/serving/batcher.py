"""Micro-batching for Predict: concurrent requests for one model become one model call.

Each model has a queue and a worker thread (started on the first request, gone after
``IDLE_EXIT_SECONDS`` without any). The worker takes the oldest request, then keeps adding
queued ones until the batch has ``max_rows`` rows or the oldest has waited ``max_wait``
seconds; it stacks their (already validated) feature matrices, makes one call and hands each
caller its own slice. A request with more than ``max_rows`` rows runs alone, never split. While
a call runs, new requests queue up, so under load batches grow by themselves and at low load a
request waits at most ``max_wait``.

Only row-wise models may be batched (``history_rows == 0``): a sequence model reads each row
with the rows before it, so stacking two requests would feed one's rows to the other.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

IDLE_EXIT_SECONDS = 10.0

Prediction = tuple[np.ndarray, "np.ndarray | None"]
# (stacked features) -> ((predictions, probabilities), device that served them)
BatchCall = Callable[[np.ndarray], tuple[Prediction, str]]


@dataclass
class _Pending:
    features: np.ndarray
    enqueued: float
    future: Future = field(default_factory=Future)

    @property
    def rows(self) -> int:
        return self.features.shape[0]


class PredictBatcher:
    def __init__(self, call: BatchCall, max_rows: int, max_wait: float, name: str = "model",
                 idle_exit: float = IDLE_EXIT_SECONDS) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.call = call
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.name = name
        self.idle_exit = idle_exit
        self.calls = 0  # model calls made (a debug counter for tests; metrics count them too)
        self._queue: deque[_Pending] = deque()
        self._ready = threading.Condition()
        self._running = False

    def submit(self, features: np.ndarray) -> "Future[tuple[Prediction, str]]":
        """Queue ``features`` (n, k); the future gives this request's rows of the result."""
        pending = _Pending(features, time.monotonic())
        with self._ready:
            self._queue.append(pending)
            if not self._running:
                self._running = True
                threading.Thread(target=self._work, name=f"batch-{self.name}", daemon=True).start()
            self._ready.notify()
        return pending.future

    def _next_batch(self) -> list[_Pending] | None:
        with self._ready:
            while not self._queue:
                if not self._ready.wait(self.idle_exit) and not self._queue:
                    self._running = False  # under the lock: a later submit starts a new worker
                    return None
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            deadline = batch[0].enqueued + self.max_wait
            while rows < self.max_rows:
                if self._queue:
                    if rows + self._queue[0].rows > self.max_rows:
                        break
                    batch.append(self._queue.popleft())
                    rows += batch[-1].rows
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [pending for pending in batch if pending.future.set_running_or_notify_cancel()]
            if live:
                self._run(live)

    def _run(self, batch: list[_Pending]) -> None:
        features = batch[0].features if len(batch) == 1 else np.concatenate([p.features for p in batch])
        try:
            self.calls += 1
            (predictions, probabilities), device = self.call(features)
        except Exception as exc:  # every caller of the batch gets the failure
            for pending in batch:
                pending.future.set_exception(exc)
            return
        start = 0
        for pending in batch:
            stop = start + pending.rows
            pending.future.set_result(((predictions[start:stop],
                                        None if probabilities is None else probabilities[start:stop]), device))
            start = stop
