"""Server interceptor: RPC latency and counts by status code, and exception -> status mapping."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import grpc

from services.errors import to_status
from utils.logging_setup import bind_log_context, restore_log_context

log = logging.getLogger(__name__)


class ObservabilityInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        # The sync server asks every interceptor for a handler on every call; the inner handler
        # of a method is the same object each time, so its wrapper is built once (Predict profile).
        self._wrapped: dict[str, tuple[Any, Any]] = {}
        self._children: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        cached = self._wrapped.get(handler_call_details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, handler_call_details.method.rsplit("/", 1)[-1])
        self._wrapped[handler_call_details.method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Any, method: str) -> Any:
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method),
                handler.request_deserializer, handler.response_serializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                handler.request_deserializer, handler.response_serializer)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method),
                handler.request_deserializer, handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(
            self._wrap_unary(handler.unary_unary, method),
            handler.request_deserializer, handler.response_serializer)

    def _observe(self, method: str, code: grpc.StatusCode, started: float) -> None:
        children = self._children.get((method, code))
        if children is None:  # labelled children once per (method, code), not per call
            children = self._children[(method, code)] = (
                self.metrics.rpc_requests.labels(method=method, code=code.name),
                self.metrics.rpc_latency.labels(method=method))
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    def _abort(self, exc: Exception, method: str, started: float, context: grpc.ServicerContext) -> None:
        code, message = to_status(exc, method)
        self._observe(method, code, started)
        context.abort(code, message)

    def _wrap_unary(self, behavior: Callable, method: str) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            bound = bind_log_context(rpc_method=method)  # tags every log line of the call
            try:
                response = behavior(request, context)
            except Exception as exc:
                self._abort(exc, method, started, context)
            finally:
                restore_log_context(bound)
            self._observe(method, grpc.StatusCode.OK, started)
            return response
        return wrapper

    def _wrap_stream(self, behavior: Callable, method: str) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            bound = bind_log_context(rpc_method=method)
            try:
                yield from behavior(request, context)
            except GeneratorExit:
                self._observe(method, grpc.StatusCode.CANCELLED, started)
                raise
            except Exception as exc:
                self._abort(exc, method, started, context)
            finally:
                restore_log_context(bound)
            self._observe(method, grpc.StatusCode.OK, started)
        return wrapper
