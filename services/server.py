"""Assemble the gRPC server: the services, health, reflection, interceptor, metrics."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from api_proto import (backtest_pb2, backtest_pb2_grpc, execution_pb2, execution_pb2_grpc, factor_pb2,
                       factor_pb2_grpc, jobs_pb2, jobs_pb2_grpc, portfolio_pb2, portfolio_pb2_grpc,
                       market_data_pb2, market_data_pb2_grpc, ml_pb2, ml_pb2_grpc, realtime_pb2, realtime_pb2_grpc)
from services.backtest_service import BacktestServicer
from services.execution_service import ExecutionServicer
from services.factor_service import FactorServicer
from services.job_service import JobServicer
from services.live_feed import LiveFeed
from services.portfolio_service import PortfolioServicer
from services.interceptors import ObservabilityInterceptor
from services.market_data_service import MarketDataServicer
from services.ml_service import MLServicer
from services.realtime_service import RealTimeServicer, warm_up_names
from services.security import AdmissionInterceptor, KeyRing, add_port, server_credentials
from utils.cache import RedisCache
from utils.data.store import BarStore, bar_store_from_settings
from utils.engine.backend import resolve_backend
from utils.engine.indicators.warmup import warm_up_in_background
from utils.gpu.devices import DeviceSampler, record_samples
from utils.monitoring import Metrics, QueueCollector, periodic
from utils.queue.streams import JobQueue, QueueConfig
from utils.realtime.symbol_state import SymbolStates
from utils.realtime.bar_aggregator import BarAggregator, parse_intervals
from utils.realtime.tick_writer import TickWriter
from utils.data.legacy_keys import migrate_legacy_keys
from utils.redis_client import redis_from_settings
from utils.serving.execution_policies import ExecutionPolicies
from utils.serving.model_cache import ModelCache
from utils.serving.model_store import open_model_store
from utils.serving.remote_inference import remote_from_settings
from utils.serving.serving_model import ServingFactory

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    backtest_pb2.DESCRIPTOR.services_by_name["BacktestService"].full_name,
    realtime_pb2.DESCRIPTOR.services_by_name["RealTimeService"].full_name,
    ml_pb2.DESCRIPTOR.services_by_name["MLService"].full_name,
    market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    factor_pb2.DESCRIPTOR.services_by_name["FactorService"].full_name,
    portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"].full_name,
    execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name,
)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    metrics: Metrics
    registry: CollectorRegistry
    queue: JobQueue
    store: BarStore
    health: health.HealthServicer
    stop_event: threading.Event
    states: SymbolStates
    writer: TickWriter

    def stop(self, grace: float | None = 5.0) -> None:
        self.stop_event.set()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()
        self.writer.stop()  # store the last accepted ticks before their states are snapshotted
        try:
            self.states.flush()  # the last ticks' states, for the next start
        except redis.RedisError as exc:
            log.warning("could not snapshot stream states at shutdown (%s); they are rebuilt from ticks", exc)


def _watch_redis(client: redis.Redis, health_servicer: health.HealthServicer, stop: threading.Event) -> None:
    """Report NOT_SERVING on the health service while Redis is unreachable (readiness)."""
    def check() -> None:
        try:
            client.ping()
            status = health_pb2.HealthCheckResponse.SERVING
        except redis.RedisError:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            health_servicer.set(name, status)
    periodic(2.0, check, stop, "redis-health")


def create_server(settings: Any, registry: CollectorRegistry | None = None) -> RunningServer:
    """Build and start the server on settings.grpc_host:grpc_port (0 picks a free port)."""
    registry = registry or CollectorRegistry()
    metrics = Metrics(registry)
    # Unreadable TLS or key files stop the start here (InvalidSettings), before anything runs.
    key_ring, credentials = KeyRing.from_settings(settings, SERVICE_NAMES), server_credentials(settings)
    client = redis_from_settings(settings, decode=True)
    queue = JobQueue(client, QueueConfig.from_settings(settings))
    migrate_legacy_keys(client)  # models and ticks stored under pre-hash-tag names, once
    store = bar_store_from_settings(redis_from_settings(settings, decode=False), settings)  # BAR_STORE
    if hasattr(store, "migrate_from_redis"):
        migrated = store.migrate_from_redis()  # bars left in Redis hashes by the redis store, once
        if migrated:
            log.info("migrated the bars of %d symbols from Redis to %s", len(migrated), store.uri)
    registry.register(QueueCollector(queue))
    model_store = open_model_store(settings)  # MODEL_STORE_URI: local directory or Redis

    options = [("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
               ("grpc.max_send_message_length", settings.grpc_max_message_bytes)]
    server = grpc.server(ThreadPoolExecutor(max_workers=settings.grpc_max_workers, thread_name_prefix="rpc"),
                         interceptors=[ObservabilityInterceptor(metrics),
                                       AdmissionInterceptor(key_ring, metrics)],
                         options=options, maximum_concurrent_rpcs=4 * settings.grpc_max_workers)
    backtest_pb2_grpc.add_BacktestServiceServicer_to_server(BacktestServicer(
        queue, store, settings,
        RedisCache(client, "backtests", settings.result_ttl_seconds, metrics.cache("backtests"))), server)
    writer = TickWriter(store, store.redis, settings.tick_stream_maxlen, settings.tick_backlog_max,
                        flush_seconds=settings.tick_flush_ms / 1000,
                        aggregator=BarAggregator(parse_intervals(settings.bar_intervals)))
    states = SymbolStates(store, flush_pending=writer.flush)
    realtime_pb2_grpc.add_RealTimeServiceServicer_to_server(RealTimeServicer(
        client, store, RedisCache(client, "features", settings.feature_cache_ttl, metrics.cache("features")),
        states, writer, queue, settings, metrics), server)
    ml_pb2_grpc.add_MLServiceServicer_to_server(MLServicer(
        queue, model_store, ModelCache(model_store, settings.model_cache_ttl, metrics.cache("models"),
                                       prepare=ServingFactory(settings, metrics, resolve_backend(
                                           settings.compute_device, settings.gpu_device_id))),
        settings, metrics, remote_from_settings(settings, metrics)), server)
    market_data_pb2_grpc.add_MarketDataServiceServicer_to_server(MarketDataServicer(store, writer.flush, queue, settings), server)
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(queue), server)
    factor_pb2_grpc.add_FactorServiceServicer_to_server(FactorServicer(queue, store, settings), server)
    portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server(PortfolioServicer(
        queue, store, settings, LiveFeed(client, writer), metrics), server)
    execution_pb2_grpc.add_ExecutionServiceServicer_to_server(ExecutionServicer(
        queue, store, settings, ExecutionPolicies(model_store)), server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    port = add_port(server, f"{settings.grpc_host}:{settings.grpc_port}", credentials)  # TLS when configured
    if port == 0:
        raise RuntimeError(f"could not bind gRPC on {settings.grpc_host}:{settings.grpc_port} (port in use?)")
    server.start()
    stop_event = threading.Event()
    _watch_redis(client, health_servicer, stop_event)
    sampler = DeviceSampler()  # every visible GPU
    periodic(5.0, lambda: record_samples(metrics, sampler.sample()), stop_event, "device-sampler")
    periodic(1.0, lambda: metrics.state_snapshots.inc(states.flush()), stop_event, "stream-state-snapshots")
    periodic(0.5, lambda: metrics.tick_backlog.set(writer.backlog), stop_event, "tick-backlog")
    warm_up_in_background(warm_up_names(settings.warm_up_indicators))
    log.info("gRPC listening on %s:%d", settings.grpc_host, port)
    return RunningServer(server, port, metrics, registry, queue, store, health_servicer, stop_event, states,
                         writer)
