"""Run the gateway app under uvicorn in a background thread (its own event loop), so it sits
beside the gRPC server in the all-in-one process or alone as the ``gateway`` role."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from services.gateway.app import create_app
from utils.monitoring import GatewayMetrics

log = logging.getLogger(__name__)


@dataclass
class RunningGateway:
    server: uvicorn.Server
    thread: threading.Thread
    port: int
    metrics: GatewayMetrics

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_gateway(settings: Any, registry: CollectorRegistry | None = None,
                  start_timeout: float = 20.0) -> RunningGateway:
    """Serve on HTTP_HOST:HTTP_PORT (0 = a free port; the bound one is returned)."""
    metrics = GatewayMetrics(registry or CollectorRegistry())
    config = uvicorn.Config(create_app(settings, metrics), host=settings.http_host, port=settings.http_port,
                            log_config=None, access_log=False, lifespan="on", ws="websockets-sansio",
                            ws_ping_interval=settings.gateway_ping_seconds,
                            ws_ping_timeout=settings.gateway_ping_seconds, ws_max_size=1024 * 1024)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the gateway did not start on {settings.http_host}:{settings.http_port} "
                               f"(is the port in use? set HTTP_PORT)")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    log.info("gateway: dashboard on http://%s:%d/ , WebSocket on ws://%s:%d/ws",
             settings.http_host, port, settings.http_host, port)
    return RunningGateway(server, thread, port, metrics)
