"""Every Prometheus metric, defined once, on a registry passed in (never the global one).

The server process and each worker serve their own /metrics. Task counts by status and queue
depth are read from Redis at scrape time (``QueueCollector``), so they are global across
workers and survive restarts; process-local facts (RPC latency, job durations, streams,
caches, GPU utilisation) are ordinary metrics.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from utils.task_types import TASK_TYPES, TaskType

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
JOB_COUNTS = ("submitted", "started", "completed", "failed", "cancelled", "retried", "cached")
JOB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)



class CacheStats:
    """Hits and misses of one named cache, exported as a counter and a hit-rate gauge."""

    def __init__(self, name: str, requests: Counter, hit_rate: Gauge) -> None:
        self.name = name
        self._requests = requests
        self._hit_rate = hit_rate
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()
        self._children: dict[bool, Any] = {}
        self._rate = hit_rate.labels(cache=name)
        self._rate.set(0.0)  # the series exists before the first look-up

    def record(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1
            rate = self._hits / (self._hits + self._misses)
        # Labelled children looked up once (a look-up per Predict was measurable under load).
        counter = self._children.get(hit)
        if counter is None:
            counter = self._children[hit] = self._requests.labels(cache=self.name, result="hit" if hit else "miss")
        counter.inc()
        self._rate.set(rate)


class Metrics:
    """Process-local metrics shared by the server and workers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # GPU series (utils/gpu/devices.py): per device from NVML (CuPy: memory only); on hosts
        # without a GPU only gpu_metrics_available{source="none"} 0 exists (no zero for a fake device).
        self.gpu_metrics_available = Gauge("gpu_metrics_available", "1 when this process reads GPU metrics "
                                           "(source nvml or cupy); source=\"none\" 0 without a GPU or NVML",
                                           ["source"], registry=registry)
        self.gpu_utilization = Gauge("gpu_utilization", "Device utilisation, 0-100, from NVML (absent without a GPU)",
                                     ["device", "kind"], registry=registry)
        self.gpu_memory_used_bytes = Gauge("gpu_memory_used_bytes", "Device memory in use",
                                           ["device"], registry=registry)
        self.gpu_memory_total_bytes = Gauge("gpu_memory_total_bytes", "Device memory size",
                                            ["device"], registry=registry)
        self.realtime_streams_active = Gauge("realtime_streams_active",
                                             "Open market-data streams (StreamMarketData and SubscribeMarketData)",
                                             ["kind"], registry=registry)
        self.cache_requests = Counter("cache_requests", "Cache look-ups by result", ["cache", "result"],
                                      registry=registry)
        self.cache_hit_rate = Gauge("cache_hit_rate", "Hits / look-ups since start, per cache", ["cache"],
                                    registry=registry)
        self.rpc_requests = Counter("grpc_requests", "RPCs handled by method and status code",
                                    ["method", "code"], registry=registry)
        self.rpc_latency = Histogram("grpc_request_duration_seconds", "RPC handling time", ["method"],
                                     buckets=LATENCY_BUCKETS, registry=registry)
        self.ticks_processed = Counter("realtime_ticks_processed", "Ticks applied to indicator state",
                                       registry=registry)
        self.ticks_rejected = Counter("realtime_ticks_rejected", "Ticks rejected with a per-tick error",
                                      ["reason"], registry=registry)
        self.tick_backlog = Gauge("realtime_tick_backlog", "Accepted ticks not yet written to Redis",
                                  registry=registry)
        self.state_snapshots = Counter("realtime_state_snapshots", "Symbol state snapshots written to Redis",
                                       registry=registry)
        self.predictions = Counter("ml_predictions", "Rows predicted", ["model_type", "device"],
                                   registry=registry)
        # Predict serving: one observation per model call (its _count is the number of calls, so
        # rows/calls shows how well micro-batching coalesces), and each hop down the device chain.
        self.predict_batch_rows = Histogram("ml_predict_batch_rows", "Rows per model call in Predict",
                                            ["model_type", "device"], buckets=BATCH_ROW_BUCKETS,
                                            registry=registry)
        self.predict_fallbacks = Counter("predict_fallbacks", "Predict model calls moved to the next device",
                                         ["from", "to", "reason"], registry=registry)
        # Remote GPU inference (ML_GPU_INFERENCE_URL): each try's time by outcome (ok, timeout,
        # unavailable, error, rejected); falling back to the local CPU counts in predict_fallbacks
        # with from="remote:<target>", to="local" and reason timeout/unavailable/error/rejected/breaker_open.
        self.predict_remote_seconds = Histogram("predict_remote_seconds", "Remote Predict tries (seconds)",
                                                ["outcome"], buckets=LATENCY_BUCKETS, registry=registry)
        self.jobs_in_progress = Gauge("jobs_in_progress", "Jobs running in this worker", ["task_type"],
                                      registry=registry)
        self.job_duration = Histogram("job_duration_seconds", "Job run time by outcome",
                                      ["task_type", "outcome"], buckets=JOB_BUCKETS, registry=registry)
        self.job_handoff = Histogram("job_handoff_seconds", "Enqueue to worker start", ["task_type"],
                                     buckets=LATENCY_BUCKETS, registry=registry)
        self.worker_restarts = Counter("worker_restarts", "Worker processes restarted by the supervisor",
                                       registry=registry)
        self.auth_rejections = Counter("auth_rejections", "RPCs refused by the API-key check", ["reason"],
                                       registry=registry)
        self.risk_limit_breaches = Counter("risk_limit_breaches", "Live portfolios entering a breach of a risk "
                                           "limit (PortfolioService.WatchRisk)", ["limit"], registry=registry)
        self._caches: dict[str, CacheStats] = {}
        for kind in ("publish", "subscribe"):
            self.realtime_streams_active.labels(kind=kind).set(0)

    def cache(self, name: str) -> CacheStats:
        if name not in self._caches:
            self._caches[name] = CacheStats(name, self.cache_requests, self.cache_hit_rate)
        return self._caches[name]

    # Worker hooks (called by utils.queue.worker.Worker).
    def job_started(self, task_type: str, handoff_seconds: float) -> None:
        self.jobs_in_progress.labels(task_type=task_type).inc()
        self.job_handoff.labels(task_type=task_type).observe(handoff_seconds)

    def job_finished(self, task_type: str, outcome: str, seconds: float) -> None:
        self.jobs_in_progress.labels(task_type=task_type).dec()
        self.job_duration.labels(task_type=task_type, outcome=outcome).observe(seconds)


class GatewayMetrics:
    """The WebSocket gateway's metrics (services/gateway), on the registry it is given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.connections_active = Gauge("websocket_connections_active", "Open WebSocket connections (/ws)",
                                        registry=registry)
        self.messages_sent = Counter("websocket_messages_sent", "Pushes written to WebSocket clients",
                                     ["channel"], registry=registry)
        self.messages_dropped = Counter("websocket_messages_dropped", "Pushes dropped for a slow client (the "
                                        "oldest market data first; overflow closes the connection)",
                                        ["channel", "reason"], registry=registry)
        self.auth_rejections = Counter("websocket_auth_rejections", "WebSocket connections refused by the "
                                       "API-key check", ["reason"], registry=registry)


class QueueCollector(Collector):
    """Task counters (one family per registered task type, named by its ``counter``) and queue
    depth, read from Redis at scrape time."""

    def __init__(self, queue: Any, task_types: tuple[TaskType, ...] = TASK_TYPES) -> None:
        self.queue = queue
        self.counter_names = {t.name: t.counter for t in task_types}

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("queue_redis_up", "1 when the queue's Redis answered this scrape")
        try:
            stats = {t: self.queue.stats(t) for t in self.counter_names}
            depth = self.queue.depth()
            dead = {t: self.queue.dead_letter_size(t) for t in self.counter_names}
        except Exception as exc:  # Redis down: report it rather than fail the scrape
            log.debug("queue collector: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        # Every type under one family too, so dashboards and alerts cover types added later.
        all_jobs = CounterMetricFamily("queue_jobs", "Jobs by task type and status (all workers)",
                                       labels=["task_type", "status"])
        for task_type, name in self.counter_names.items():
            family = CounterMetricFamily(name, f"{task_type} jobs by status (all workers)", labels=["status"])
            for status in JOB_COUNTS:
                family.add_metric([status], stats[task_type].get(status, 0))
                all_jobs.add_metric([task_type, status], stats[task_type].get(status, 0))
            yield family
        yield all_jobs
        depth_family = GaugeMetricFamily("queue_depth", "Jobs in a stream by state",
                                         labels=["task_type", "priority", "state"])
        for task_type, priority, waiting, in_flight in depth:
            depth_family.add_metric([task_type, priority, "waiting"], waiting)
            depth_family.add_metric([task_type, priority, "in_flight"], in_flight)
        yield depth_family
        dead_family = GaugeMetricFamily("dead_letter_jobs", "Jobs in the dead-letter stream", labels=["task_type"])
        for task_type, size in dead.items():
            dead_family.add_metric([task_type], size)
        yield dead_family


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> int:
    """Serve /metrics; returns the bound port (port 0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server.server_address[1]


def periodic(interval: float, action: Callable[[], None], stop: threading.Event, name: str) -> threading.Thread:
    """Run ``action`` every ``interval`` seconds until ``stop``; errors are logged, not raised."""
    def loop() -> None:
        while not stop.is_set():
            try:
                action()
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # an outage, not a bug
                log.warning("%s: Redis unavailable (%s)", name, exc)
            except Exception:
                log.exception("%s failed", name)
            stop.wait(interval)
    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
