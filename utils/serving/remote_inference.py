"""Predict on a remote GPU inference role first, then locally (seed 001, scheme B).

A server with ML_GPU_INFERENCE_URL sends the caller's PredictRequest unchanged to that target's
``MLService.Predict`` (a `main_server.py inference` process, usually on a GPU box). Each try gets
ML_REMOTE_TIMEOUT_SECONDS (less when the caller's own deadline is nearer); a try that fails fast
with UNAVAILABLE (connection refused or reset: a restart) is retried once. A timeout is not
retried: that would double what a hung box costs every request. The retry waits for the
connection within its budget, so a dead box costs one timeout per request until the breaker opens. When no answer comes, the caller
computes locally and says why in ``served_by`` ("local:cpu (fallback: timeout)").

A circuit breaker skips the remote after ML_REMOTE_BREAKER_FAILURES failed requests in a row for
ML_REMOTE_BREAKER_COOLDOWN_SECONDS (reason "breaker_open"), so a dead GPU box costs one timeout,
not one per request; after the cool-down one trial request goes through (half-open) and its
outcome closes or re-opens the breaker. Answers about the request itself (INVALID_ARGUMENT,
NOT_FOUND...) come from a healthy remote: they do not count as failures, and the local path
answers (it has the same validation, and perhaps the model). Only a gRPC client here; the
servicers are in services/.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import grpc

from api_proto import ml_pb2, ml_pb2_grpc

log = logging.getLogger(__name__)

# The remote's answer about the request, not a failure of the remote.
REJECTIONS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE})
# Reconnect quickly once the box is back (gRPC's default backoff grows to 120 s, which would make
# every half-open trial fail at once long after the remote recovered).
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 500), ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024)]


def local_served_by(device: str, reason: str = "") -> str:
    """``served_by`` of a locally computed answer: "local:cpu", "local:cuda:0 (fallback: timeout)"."""
    label = "local:" + device.replace("gpu:", "cuda:")
    return f"{label} (fallback: {reason})" if reason else label


class CircuitBreaker:
    """closed -> (``failures`` in a row) -> open -> (``cooldown`` s) -> half-open: one trial."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial is in flight
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "open" if self._trial or self.clock() - self._opened_at < self.cooldown else "half_open"

    def allow(self) -> bool:
        """May a request go to the remote now? In half-open state only the first one may."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial or self.clock() - self._opened_at < self.cooldown:
                return False
            self._trial = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def released(self) -> None:
        """The allowed request never reached the remote (no time left): no verdict."""
        with self._lock:
            self._trial = False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.threshold:
                if self._opened_at is None or self._trial:
                    log.warning("remote inference: %d failure(s) in a row, skipping it for %.3g s",
                                self._failures, self.cooldown)
                self._opened_at, self._trial = self.clock(), False


def _reason(code: grpc.StatusCode) -> str:
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "timeout"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "unavailable"
    return "rejected" if code in REJECTIONS else "error"


class RemoteInference:
    """``predict(request)`` -> (response, "") from the remote, or (None, reason) to go local."""

    def __init__(self, target: str, timeout: float, breaker: CircuitBreaker, metrics: Any,
                 api_key: str = "", ca_file: str = "") -> None:
        self.target = target
        self.timeout = timeout
        self.breaker = breaker
        self.metrics = metrics
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        if ca_file:
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
            self.channel = grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = ml_pb2_grpc.MLServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _fallback(self, reason: str) -> tuple[None, str]:
        self.metrics.predict_fallbacks.labels(**{"from": f"remote:{self.target}", "to": "local",
                                                 "reason": reason}).inc()
        return None, reason

    def predict(self, request: ml_pb2.PredictRequest,
                deadline: float | None = None) -> tuple[ml_pb2.PredictResponse | None, str]:
        """``deadline`` (time.monotonic) is the caller's: a try never runs past it."""
        if not self.breaker.allow():
            return self._fallback("breaker_open")
        reason, tried = "timeout", False
        for attempt in range(2):
            budget = self.timeout if deadline is None else min(self.timeout, deadline - time.monotonic())
            if budget <= 0:
                break
            tried = True
            started = time.perf_counter()
            try:
                # The retry waits (within its budget) for the channel to reconnect: a restarted box
                # is used again at once, a dead one costs one timeout before the local answer.
                response = self.stub.Predict(request, timeout=budget, metadata=self.metadata,
                                             wait_for_ready=attempt > 0)
            except grpc.RpcError as exc:
                code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
                reason = "unavailable" if attempt > 0 and code == grpc.StatusCode.DEADLINE_EXCEEDED else _reason(code)
                self.metrics.predict_remote_seconds.labels(outcome=reason).observe(time.perf_counter() - started)
                if reason == "rejected":
                    self.breaker.succeeded()  # the remote is healthy; the local path gives the answer
                    return self._fallback(reason)
                if reason != "unavailable" or attempt == 1:
                    if reason == "error":
                        log.warning("remote inference %s answered %s: %s", self.target, code.name,
                                    exc.details() if callable(getattr(exc, "details", None)) else exc)
                    break
                continue  # a fast UNAVAILABLE (restart, reset connection): one retry
            self.metrics.predict_remote_seconds.labels(outcome="ok").observe(time.perf_counter() - started)
            self.breaker.succeeded()
            remote_device = response.served_by.removeprefix("local:") or response.device.replace("gpu:", "cuda:")
            response.served_by = f"remote:{self.target}/{remote_device}"
            return response, ""
        if tried:
            self.breaker.failed()
        else:
            self.breaker.released()
        return self._fallback(reason)


class FallbackWarmer:
    """Keeps the local copy of each remotely served model loaded, off the request path, so that a
    fallback costs the remote's timeout and not also a cold model load. ``load`` is the model
    cache's ``get``; calling it again every ``ttl / 2`` keeps the entry from expiring."""

    def __init__(self, load: Callable[[str], Any], ttl: float) -> None:
        self.load = load
        self.refresh = ttl / 2
        self._warmed: dict[str, float] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="warm-fallback")

    def __call__(self, model_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._warmed.get(model_id, -1e18) < self.refresh:
                return
            self._warmed[model_id] = now
        self._pool.submit(self._load, model_id)

    def _load(self, model_id: str) -> None:
        try:
            self.load(model_id)
        except Exception as exc:  # the fallback will report it if it is ever needed
            log.debug("could not pre-load %s for the local fallback: %s", model_id, exc)


def remote_from_settings(settings: Any, metrics: Any) -> RemoteInference | None:
    """The client for ML_GPU_INFERENCE_URL, or None when it is not set."""
    target = settings.ml_gpu_inference_url.strip()
    if not target:
        return None
    for prefix in ("grpc://", "http://"):  # "gpu-box:50061" is what gRPC wants
        target = target.removeprefix(prefix)
    breaker = CircuitBreaker(settings.ml_remote_breaker_failures, settings.ml_remote_breaker_cooldown_seconds)
    log.info("Predict asks the remote inference role at %s first (timeout %.3g s per try)", target,
             settings.ml_remote_timeout_seconds)
    return RemoteInference(target, settings.ml_remote_timeout_seconds, breaker, metrics,
                           settings.ml_gpu_inference_api_key, settings.ml_gpu_inference_ca_file)
