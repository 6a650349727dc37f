"""The gateway's ASGI app: ``/ws`` (the push protocol), the dashboard (``/``, ``/static``), small
JSON reads for it (``/api/...``), ``/metrics`` and ``/healthz``.

API keys are the gRPC server's (API_KEYS / API_KEYS_FILE, services/security.py): on the upgrade
request as ``authorization: Bearer <key>`` or ``x-api-key``, or - browsers cannot set headers on a
WebSocket - in the first message ``{"type": "auth", "api_key": ...}``. A wrong header key is
refused at the upgrade (HTTP 403); a missing or wrong first-message key closes with 1008.
"""
from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.websockets import WebSocketDisconnect, WebSocketState

from services.gateway import views
from services.gateway.hub import Connection, Hub
from services.gateway.outbox import Outbox
from services.gateway.protocol import (Interests, ProtocolError, encode, error, parse_subscription,
                                       valid_job_id)
from services.security import KeyRing, presented_key
from utils.monitoring import GatewayMetrics
from utils.queue.streams import JobQueue, QueueConfig
from utils.redis_client import async_redis_from_settings, redis_from_settings
from utils.task_types import TASK_TYPES

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
POLICY_VIOLATION, TRY_AGAIN_LATER, GOING_AWAY = 1008, 1013, 1001
MAX_MESSAGE_CHARS = 64 * 1024
TASK_TYPE_NAMES = frozenset(t.name for t in TASK_TYPES)


def create_app(settings: Any, metrics: GatewayMetrics, key_ring: KeyRing | None = None) -> FastAPI:
    keys = key_ring if key_ring is not None else KeyRing.from_settings(settings)
    queue = JobQueue(redis_from_settings(settings), QueueConfig.from_settings(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = async_redis_from_settings(settings, socket_timeout=max(settings.redis_socket_timeout, 5.0))
        if hasattr(client, "get_primaries"):  # a cluster: learn its slots before pub/sub picks a node
            await client.initialize()
        app.state.hub = Hub(client, queue, settings.gateway_system_interval_seconds)
        app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()

    app = FastAPI(title="GPU quant gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def require_key(request: Request) -> None:
        if not keys.enabled:
            return
        presented = presented_key(request.headers.items())
        if presented is None or keys.find(presented) is None:
            raise HTTPException(401, "an API key is required: header 'x-api-key' or 'authorization: Bearer'")

    async def read(request: Request, reader, *args):
        require_key(request)
        try:
            return await asyncio.to_thread(reader, queue, *args)
        except views.NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "connections": len(app.state.hub.connections)}

    @app.get("/metrics")
    async def metrics_page() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/overview")
    async def overview(request: Request) -> dict[str, Any]:
        return await read(request, views.overview)

    @app.get("/api/jobs")
    async def jobs(request: Request, task_type: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if task_type is not None and task_type not in TASK_TYPE_NAMES:
            raise HTTPException(400, f"unknown task_type; known: {', '.join(sorted(TASK_TYPE_NAMES))}")
        return await read(request, views.recent_jobs, task_type, max(1, min(limit, 500)))

    @app.get("/api/jobs/{job_id}")
    async def job(request: Request, job_id: str) -> dict[str, Any]:
        return await read(request, views.job, checked_job_id(job_id))

    @app.get("/api/jobs/{job_id}/equity")
    async def equity(request: Request, job_id: str) -> dict[str, Any]:
        return await read(request, views.equity, checked_job_id(job_id))

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await Session(websocket, app.state.hub, keys, metrics, settings).run()

    return app


def checked_job_id(job_id: str) -> str:
    if not valid_job_id(job_id):
        raise HTTPException(400, "not a valid job id")
    return job_id


class Session:
    """One /ws connection: authenticate, then read client messages while a sender task drains
    the outbox; ends on disconnect, idle timeout or overflow."""

    def __init__(self, websocket: WebSocket, hub: Hub, keys: KeyRing, metrics: GatewayMetrics,
                 settings: Any) -> None:
        self.websocket, self.hub, self.keys, self.metrics, self.settings = websocket, hub, keys, metrics, settings
        self.connection = Connection(Outbox(settings.gateway_queue_size, self._dropped), self._close_soon)
        self._closing = False

    def _dropped(self, channel: str, reason: str) -> None:
        self.metrics.messages_dropped.labels(channel=channel, reason=reason).inc()

    def _refused(self, reason: str) -> None:
        self.metrics.auth_rejections.labels(reason=reason).inc()

    async def run(self) -> None:
        presented = presented_key(self.websocket.headers.items())
        if self.keys.enabled and presented is not None and not self._admit(presented):
            await self.websocket.close(POLICY_VIOLATION)  # before accept: HTTP 403
            return
        await self.websocket.accept()
        if self.keys.enabled and presented is None and not await self._first_message_auth():
            return
        self.metrics.connections_active.inc()
        self.hub.add(self.connection)
        sender = asyncio.create_task(self._send_loop())
        try:
            await self._receive_loop()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await self.hub.remove(self.connection)
            self.metrics.connections_active.dec()

    def _admit(self, presented: str) -> bool:
        key = self.keys.find(presented)
        if key is None:
            self._refused("unknown_key")
            return False
        if not self.keys.admit(key):
            self._refused("rate_limited")
            return False
        return True

    async def _first_message_auth(self) -> bool:
        raw = message = None
        try:
            raw = await asyncio.wait_for(self.websocket.receive(), self.settings.gateway_auth_timeout_seconds)
        except TimeoutError:
            pass
        if raw_is_disconnect(raw):
            return False
        try:
            message = json.loads(raw.get("text") or "null") if raw else None
        except json.JSONDecodeError:
            pass
        api_key = message.get("api_key") if isinstance(message, dict) and message.get("type") == "auth" else None
        if not isinstance(api_key, str) or not api_key:
            self._refused("missing_key")
            await self._refuse("an API key is required: send {\"type\": \"auth\", \"api_key\": ...} first "
                               "(or the header authorization: Bearer <key>)")
            return False
        if not self._admit(api_key):
            await self._refuse("the API key is not valid or is over its rate limit")
            return False
        await self.websocket.send_text(json.dumps({"type": "authenticated"}))
        return True

    async def _refuse(self, message: str) -> None:
        try:
            await self.websocket.send_text(json.dumps(error(message, "unauthenticated")))
            await self.websocket.close(POLICY_VIOLATION, "unauthenticated")
        except (RuntimeError, WebSocketDisconnect):
            pass

    async def _receive_loop(self) -> None:
        idle = self.settings.gateway_idle_timeout_seconds
        while True:
            try:
                raw = await asyncio.wait_for(self.websocket.receive(), idle)
            except TimeoutError:
                self._close_soon(GOING_AWAY, f"idle for {idle:g} s")
                return
            except (RuntimeError, WebSocketDisconnect):
                return
            if raw_is_disconnect(raw):
                return
            await self._handle(raw.get("text"))

    async def _handle(self, text: str | None) -> None:
        if text is None or len(text) > MAX_MESSAGE_CHARS:
            self.connection.send(error(f"send JSON text messages of at most {MAX_MESSAGE_CHARS} characters"))
            return
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            self.connection.send(error("not valid JSON"))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            self.connection.send({"type": "pong"})
        elif kind == "auth":
            self.connection.send({"type": "authenticated"})
        elif kind in ("subscribe", "unsubscribe"):
            await self._subscribe(message)
        else:
            self.connection.send(error("type must be subscribe, unsubscribe, ping or auth"))

    async def _subscribe(self, message: dict[str, Any]) -> None:
        try:
            request = parse_subscription(message)
        except ProtocolError as exc:
            self.connection.send(error(str(exc)))
            return
        interests: Interests = self.connection.interests
        limit = self.settings.max_symbols_per_request
        if request.action == "subscribe" and len(interests.symbols | set(request.symbols)) > limit:
            self.connection.send(error(f"at most {limit} symbols per connection (MAX_SYMBOLS_PER_REQUEST)"))
            return
        interests.apply(request)
        reply = {k: v for k, v in message.items() if k in ("channel", "job_id", "task_type", "symbols")}
        self.connection.send({"type": f"{request.action}d", **reply})
        if request.symbols:
            await self.hub.symbols_changed()
        if request.action != "subscribe":
            return
        if request.channel == "task_status" and request.job_id:  # the state now, then changes
            snapshot = await self.hub.job_snapshot(request.job_id)
            self.connection.send(snapshot or error(f"no job {request.job_id!r} (ids expire with their results)",
                                                   "not_found"))
        elif request.channel == "system":
            self.connection.send(await self.hub.system_snapshot())

    async def _send_loop(self) -> None:
        outbox = self.connection.outbox
        try:
            while not outbox.overflowed:
                message = await outbox.get()
                await self.websocket.send_text(encode(message))
                if "channel" in message:
                    self.metrics.messages_sent.labels(channel=message["channel"]).inc()
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass

    def _close_soon(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                await asyncio.wait_for(self.websocket.close(code, reason), 2.0)
        except (RuntimeError, WebSocketDisconnect, OSError, TimeoutError):
            pass


def raw_is_disconnect(raw: dict[str, Any] | None) -> bool:
    return isinstance(raw, dict) and raw.get("type") == "websocket.disconnect"
