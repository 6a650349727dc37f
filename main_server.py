"""GPU quant platform entry point.

    python main_server.py            all-in-one: gRPC server + metrics + supervised workers + the
                                     WebSocket gateway and dashboard on HTTP_PORT (8080)
    python main_server.py serve      gRPC server and metrics only (scale out against one Redis)
    python main_server.py worker     worker processes only
    python main_server.py inference  MLService.Predict only on INFERENCE_PORT (50061), on
                                     ML_INFERENCE_DEVICE: the GPU box that CPU servers reach
                                     through ML_GPU_INFERENCE_URL
    python main_server.py gateway    WebSocket gateway (/ws) + web dashboard (/) on HTTP_PORT only
                                     (scale out behind a load balancer against one Redis)
    python main_server.py report <backtest_id> [--output FILE]
                                     HTML tearsheet of a completed backtest, read from Redis

Settings come from the environment and `.env` (see .env.example). SIGTERM/SIGINT stop
gracefully: the server stops accepting, running jobs finish or go back to the queue.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger("main_server")


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _prepare_redis(settings: Any, allow_embedded: bool):
    """Use the configured Redis; in all-in-one mode start our own when none answers."""
    from utils.redis_client import EmbeddedRedis, free_port, redis_answers
    if settings.redis_cluster_nodes:
        log.info("using Redis Cluster at %s", settings.redis_cluster_nodes)
        return settings, None
    wants_embedded = settings.redis_embedded == "always" or (
        settings.redis_embedded == "auto" and allow_embedded and not settings.redis_configured
        and not redis_answers(settings.redis_host, settings.redis_port, settings.redis_password))
    if not wants_embedded:
        log.info("using Redis at %s:%d db %d", settings.redis_host, settings.redis_port, settings.redis_db)
        return settings, None
    port = 6380 if not redis_answers("127.0.0.1", 6380) else free_port()
    embedded = EmbeddedRedis(settings.data_dir / "redis", port=port).start()
    log.info("no Redis configured or answering at %s:%d: started an embedded redis-server on 127.0.0.1:%d "
             "(AOF on, data in %s)", settings.redis_host, settings.redis_port, port, embedded.data_dir)
    return settings.model_copy(update={"redis_host": "127.0.0.1", "redis_port": port}), embedded


def _load_sample_data(settings: Any) -> None:
    from utils.data.sample import ensure_sample_data
    from utils.data.store import bar_store_from_settings
    from utils.redis_client import redis_from_settings
    if settings.sample_data:
        written = ensure_sample_data(bar_store_from_settings(redis_from_settings(settings, decode=False), settings))
        if written:
            log.info("loaded synthetic sample bars for %s (labelled synthetic in ListSymbols)", ", ".join(written))


def _start_gateway(settings: Any, server: Any):
    """The gateway's metrics join the gRPC server's registry in one process, else get their own port."""
    from prometheus_client import CollectorRegistry
    from services.gateway.server import start_gateway
    from utils.monitoring import serve_metrics
    registry = server.registry if server else CollectorRegistry()
    gateway = start_gateway(settings, registry)
    if server is None and settings.prometheus_port:
        port = serve_metrics(registry, settings.metrics_host, settings.prometheus_port)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
    return gateway


def run(mode: str) -> int:
    from config.settings import load_settings
    from utils.logging_setup import configure_logging
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    from utils.compile_cache import use_compile_cache_dir
    use_compile_cache_dir(settings.compile_cache_path)  # before any kernel module is imported; workers inherit it
    settings, embedded = _prepare_redis(settings, allow_embedded=(mode == "all"))
    server = supervisor = gateway = None
    try:
        if mode == "inference":
            from services.inference_server import create_inference_server
            from utils.monitoring import serve_metrics
            server = create_inference_server(settings)
            if settings.prometheus_port:
                port = serve_metrics(server.registry, settings.metrics_host, settings.prometheus_port)
                log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
        if mode in ("all", "serve"):
            from services.server import create_server
            from utils.monitoring import serve_metrics
            _load_sample_data(settings)
            server = create_server(settings)
            if settings.prometheus_port:
                port = serve_metrics(server.registry, settings.metrics_host, settings.prometheus_port)
                log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)
        if mode in ("all", "worker"):
            from utils.engine.backend import resolve_backend
            from utils.supervisor import WorkerSupervisor
            # Fail here, loudly, rather than in a restart loop of workers: COMPUTE_DEVICE=gpu
            # without a usable GPU is a configuration error.
            resolve_backend(settings.compute_device, settings.gpu_device_id, simulator=settings.gpu_simulator)
            from utils.tasks.runtime import EXIT_BAD_REGISTRY, registry_problems, run_worker_process, worker_count
            problems = registry_problems(settings)
            if problems:  # a half-declared task type: its jobs would wait forever
                log.error("cannot start workers: the task-type registry (utils/task_types.py) is incomplete:"
                          "\n  %s", "\n  ".join(problems))
                return EXIT_BAD_REGISTRY
            restarts = server.metrics.worker_restarts.inc if server else None
            supervisor = WorkerSupervisor(run_worker_process, settings, worker_count(settings), restarts).start()
        if mode == "gateway":
            gateway = _start_gateway(settings, server)
        elif mode == "all" and settings.gateway_enabled:
            try:  # the dashboard is not worth losing the gRPC server over
                gateway = _start_gateway(settings, server)
            except RuntimeError as exc:
                log.error("%s; serving gRPC without it (GATEWAY_ENABLED=false silences this)", exc)
        log.info("ready (%s mode); Ctrl-C or SIGTERM to stop", mode)
        _wait_for_signal()
        log.info("shutting down")
    finally:
        if gateway:
            gateway.stop()
        if server:
            server.stop(grace=5.0)
        if supervisor:
            supervisor.stop(timeout=settings.shutdown_grace_seconds + 5)
        if embedded:
            embedded.stop()
    return 0


def report(backtest_id: str, output: str | None) -> int:
    """Write a completed backtest's tearsheet to ``output`` (stdout when None). Reads the
    configured Redis only: never starts an embedded one, since its data would be empty."""
    import redis
    from config.settings import load_settings
    from services.backtest_service import completed_backtest
    from utils.tasks.report import tearsheet_html
    from services.errors import ServiceError
    from utils.queue.streams import JobQueue, QueueConfig
    from utils.redis_client import redis_from_settings
    settings = load_settings()
    address = settings.redis_cluster_nodes or f"{settings.redis_host}:{settings.redis_port} db {settings.redis_db}"
    try:
        client = redis_from_settings(settings)
        client.ping()
        html = tearsheet_html(*completed_backtest(JobQueue(client, QueueConfig.from_settings(settings)), backtest_id))
    except redis.RedisError as exc:
        print(f"error: cannot reach Redis at {address} ({exc}); set REDIS_HOST/REDIS_PORT", file=sys.stderr)
        return 1
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(html)
    else:
        try:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(html)
        except OSError as exc:
            print(f"error: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {output} ({len(html):,} bytes)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="all", choices=("all", "serve", "worker", "inference", "gateway", "report"))
    parser.add_argument("backtest_id", nargs="?", help="report mode: the backtest to render")
    parser.add_argument("--output", "-o", metavar="FILE", help="report mode: write the HTML here, not to stdout")
    args = parser.parse_args(argv)
    if args.mode == "report":
        if not args.backtest_id:
            parser.error("report needs a backtest id: main_server.py report <backtest_id> [--output FILE]")
        return report(args.backtest_id, args.output)
    if args.backtest_id or args.output:
        parser.error(f"{args.mode} mode takes no backtest id or --output (those are for `report`)")
    from utils.engine.backend import BackendUnavailable
    try:
        return run(args.mode)
    except BackendUnavailable as exc:
        log.error("cannot start: %s (set COMPUTE_DEVICE=auto, or ML_INFERENCE_DEVICE=auto for the inference role, "
                  "to fall back to the CPU)", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
