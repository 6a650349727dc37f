"""The inference role (`main_server.py inference`): MLService.Predict only, for a GPU box.

CPU servers point ML_GPU_INFERENCE_URL at it. It loads models from the shared store
(MODEL_STORE_URI) and predicts on ML_INFERENCE_DEVICE through the same cache, device chain and
micro-batcher as the main server; every other MLService method answers UNIMPLEMENTED. Health,
reflection, TLS, API keys and the metrics endpoint work as on the main port.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from api_proto import ml_pb2, ml_pb2_grpc
from services.errors import ServiceError
from services.interceptors import ObservabilityInterceptor
from services.ml_service import MLServicer
from services.security import AdmissionInterceptor, KeyRing, add_port, server_credentials
from services.server import SERVICE_NAMES
from utils.engine.backend import Backend, resolve_backend
from utils.gpu.devices import DeviceSampler, record_samples
from utils.monitoring import Metrics, periodic
from utils.serving.model_cache import ModelCache
from utils.serving.model_store import open_model_store
from utils.serving.serving_model import ServingFactory

log = logging.getLogger(__name__)

ML_SERVICE = ml_pb2.DESCRIPTOR.services_by_name["MLService"].full_name
BACKEND_DEVICES = {"auto": "auto", "cuda": "gpu", "cpu": "cpu"}  # ML_INFERENCE_DEVICE -> COMPUTE_DEVICE


class PredictOnlyServicer(ml_pb2_grpc.MLServiceServicer):
    """MLServicer's Predict; the other methods keep the generated UNIMPLEMENTED answer."""

    def __init__(self, ml: MLServicer, settings: Any) -> None:
        self.ml = ml
        hooks = settings.inference_test_hooks  # test-only: see INFERENCE_TEST_HOOKS in .env.example
        self.delay = settings.inference_test_delay_seconds if hooks else 0.0
        self.error = settings.inference_test_error if hooks else False

    def Predict(self, request, context):
        if self.delay:
            time.sleep(self.delay)
        if self.error:
            # A ServiceError, not context.abort: the interceptor maps it to the status without
            # logging an "internal error" traceback for an intended failure.
            raise ServiceError(grpc.StatusCode.INTERNAL, "INFERENCE_TEST_ERROR is set (test hook)")
        return self.ml.Predict(request, context)


@dataclass
class InferenceServer:
    server: grpc.Server
    port: int
    metrics: Metrics
    registry: CollectorRegistry
    backend: Backend
    health: health.HealthServicer
    stop_event: threading.Event

    def stop(self, grace: float | None = 5.0) -> None:
        self.stop_event.set()
        for name in ("", ML_SERVICE):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()


def create_inference_server(settings: Any, registry: CollectorRegistry | None = None) -> InferenceServer:
    """Build and start the Predict-only server on settings.grpc_host:inference_port (0 = a free port)."""
    registry = registry or CollectorRegistry()
    metrics = Metrics(registry)
    key_ring, credentials = KeyRing.from_settings(settings, SERVICE_NAMES), server_credentials(settings)
    # Fails loudly (BackendUnavailable) for ML_INFERENCE_DEVICE=cuda without a usable GPU.
    backend = resolve_backend(BACKEND_DEVICES[settings.ml_inference_device], settings.gpu_device_id)
    model_store = open_model_store(settings)
    models = ModelCache(model_store, settings.model_cache_ttl, metrics.cache("models"),
                        prepare=ServingFactory(settings, metrics, backend))
    ml = MLServicer(None, model_store, models, settings, metrics)  # never remote: this is the remote

    options = [("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
               ("grpc.max_send_message_length", settings.grpc_max_message_bytes)]
    server = grpc.server(ThreadPoolExecutor(max_workers=settings.grpc_max_workers, thread_name_prefix="rpc"),
                         interceptors=[ObservabilityInterceptor(metrics), AdmissionInterceptor(key_ring, metrics)],
                         options=options, maximum_concurrent_rpcs=4 * settings.grpc_max_workers)
    ml_pb2_grpc.add_MLServiceServicer_to_server(PredictOnlyServicer(ml, settings), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", ML_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((ML_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    port = add_port(server, f"{settings.grpc_host}:{settings.inference_port}", credentials)
    if port == 0:
        raise RuntimeError(f"could not bind gRPC on {settings.grpc_host}:{settings.inference_port} (port in use?)")
    server.start()
    stop_event = threading.Event()
    sampler = DeviceSampler()  # every visible GPU
    periodic(5.0, lambda: record_samples(metrics, sampler.sample()), stop_event, "device-sampler")
    if settings.inference_test_hooks:
        log.warning("INFERENCE_TEST_HOOKS=1: Predict delayed %.3g s%s (test-only)",
                    settings.inference_test_delay_seconds, ", answering INTERNAL" if settings.inference_test_error else "")
    log.info("inference role: Predict on %s, gRPC on %s:%d", backend.label, settings.grpc_host, port)
    return InferenceServer(server, port, metrics, registry, backend, health_servicer, stop_event)
