"""Predict's device fallback chain: the server backend's GPU, then the CPU (seed 001).

A model call gets ``timeout`` seconds on a device; after a timeout or an error it is retried
once on the next device of the chain (GPU -> CPU; a CPU-only model retries on the CPU). Each
hop is counted in ``predict_fallbacks_total{from,to,reason}``. A device that failed is skipped
for ``COOLDOWN_SECONDS`` (reason "cooldown"), so a hung GPU costs one timeout, not one per call.
When both attempts fail the call raises ``PredictTimeout`` (the last one timed out) or
``PredictUnavailable`` (errors); bad input (``InvalidInputData``) is raised at once, never retried.

Calls run on per-device thread pools so that a hung call can be abandoned: Python cannot kill
the thread, it stays busy until the call returns, which is why the pools have spare threads.
A route marked ``inline`` (a CPU forest fast path: compiled kernel, ONNX Runtime or scikit-learn
on in-memory trees, bounded work that cannot hang on a device) runs in the caller's thread
instead: one thread hop less per call, which was a third of Predict's Python time under load.

A predictor offers a GPU path by defining ``to_device(label) -> predictor`` (a copy that
predicts on that device); a loaded scikit-learn forest has none and predicts on the CPU. Which
GPU, if any, comes from the server's resolved ``Backend`` (never a probe of its own), so a
``COMPUTE_DEVICE=cpu`` server never places a model on a GPU.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from utils.engine.backend import Backend
from utils.engine.models import InvalidInputData

log = logging.getLogger(__name__)

COOLDOWN_SECONDS = 30.0
POOL_THREADS = 8

Prediction = tuple[np.ndarray, "np.ndarray | None"]


class PredictTimeout(Exception):
    """Every attempt of the chain failed and the last one ran out of time."""


class PredictUnavailable(Exception):
    """Every attempt of the chain failed with an error."""


def serving_gpu(backend: Backend) -> str | None:
    """The GPU label Predict may prefer ("gpu:0"), or None (a CPU backend)."""
    return backend.label if backend.is_gpu else None


@dataclass(frozen=True)
class Route:
    device: str  # "gpu:0" or "cpu"
    run: Callable[[np.ndarray], Prediction]
    inline: bool = False  # run in the caller's thread (bounded CPU work; no timeout to enforce)


class DevicePools:
    """One thread pool per device, shared by every model the server has loaded."""

    def __init__(self, threads: int = POOL_THREADS) -> None:
        self.threads = threads
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def pool(self, device: str) -> ThreadPoolExecutor:
        with self._lock:
            if device not in self._pools:
                self._pools[device] = ThreadPoolExecutor(self.threads, thread_name_prefix=f"predict-{device}")
            return self._pools[device]

    def shutdown(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


class DeviceChain:
    def __init__(self, routes: list[Route], timeout: float, pools: DevicePools, fallbacks: Any,
                 cooldown: float = COOLDOWN_SECONDS) -> None:
        if not routes:
            raise ValueError("a device chain needs at least one route")
        self.routes = routes
        self.timeout = timeout
        self.pools = pools
        self.fallbacks = fallbacks  # Counter with labels from/to/reason
        self.cooldown = cooldown
        self._failed_at: dict[str, float] = {}

    def _attempts(self) -> list[Route]:
        """Two attempts: the first healthy route, then the next one (or the same, when last)."""
        start = 0
        now = time.monotonic()
        while start < len(self.routes) - 1 and now - self._failed_at.get(self.routes[start].device, -1e18) \
                < self.cooldown:
            self._count(self.routes[start].device, self.routes[start + 1].device, "cooldown")
            start += 1
        first = self.routes[start]
        return [first, self.routes[min(start + 1, len(self.routes) - 1)]]

    def _count(self, source: str, target: str, reason: str) -> None:
        self.fallbacks.labels(**{"from": source, "to": target, "reason": reason}).inc()

    def run(self, features: np.ndarray, deadline: float | None = None) -> tuple[Prediction, str]:
        """(predictions, probabilities) and the device that served them."""
        attempts = self._attempts()
        failures: list[str] = []
        timed_out = False
        for index, route in enumerate(attempts):
            budget = self.timeout if deadline is None else min(self.timeout, deadline - time.monotonic())
            if budget <= 0:
                timed_out = True
                failures.append(f"no time left for {route.device}")
                break
            future = None
            try:
                if route.inline:
                    return route.run(features), route.device
                future = self.pools.pool(route.device).submit(route.run, features)
                return future.result(timeout=budget), route.device
            except InvalidInputData:
                raise
            except FutureTimeout:
                future.cancel()  # still queued: drop it; running: it finishes on its own
                timed_out, reason = True, "timeout"
                failures.append(f"{route.device} timed out after {budget:.3g} s")
            except Exception as exc:
                timed_out, reason = False, "error"
                log.warning("predict on %s failed: %s", route.device, exc, exc_info=exc)
                failures.append(f"{route.device} failed ({type(exc).__name__}: {exc})")
            self._failed_at[route.device] = time.monotonic()  # the last route is never skipped
            if index + 1 < len(attempts):
                self._count(route.device, attempts[index + 1].device, reason)
        message = "prediction failed on every device tried: " + "; ".join(failures)
        raise (PredictTimeout if timed_out else PredictUnavailable)(message)


def build_routes(predictor: Any, fast_cpu: Callable[[np.ndarray], Prediction] | None,
                 gpu: str | None) -> list[Route]:
    """The chain for ``predictor``: its GPU copy when a GPU serves and it has one, then the CPU."""
    from utils.engine.models.inference import predict_features
    routes = []
    if gpu is not None and callable(getattr(predictor, "to_device", None)):
        try:
            on_gpu = predictor.to_device(gpu)
            routes.append(Route(gpu, lambda features: predict_features(on_gpu, features)))
        except Exception as exc:  # e.g. out of GPU memory: serve from the CPU
            log.warning("could not place %s on %s (%s); predicting on the CPU", predictor.model_type, gpu, exc)
    # Only the forest fast path is known to be bounded CPU work; anything else keeps its pool.
    inline = getattr(getattr(fast_cpu, "__self__", None), "bounded_cpu_work", False)
    routes.append(Route("cpu", fast_cpu or (lambda features: predict_features(predictor, features)), inline))
    return routes
