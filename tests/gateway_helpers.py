"""WebSocket client helpers shared by the gateway and dashboard tests."""
from __future__ import annotations

import asyncio
import json
import time


def start_gateway_for(settings, **overrides):
    from services.gateway.server import start_gateway
    return start_gateway(settings.model_copy(update={"http_host": "127.0.0.1", "http_port": 0, **overrides}))


def ws_url(gateway) -> str:
    return f"ws://127.0.0.1:{gateway.port}/ws"


async def send(ws, **message) -> None:
    await ws.send(json.dumps(message))


async def receive_until(ws, done, timeout: float = 60.0) -> list[dict]:
    """Messages until ``done(messages)`` holds."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while not done(messages):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"gave up waiting; received {messages[-10:]}")
        try:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), remaining)))
        except TimeoutError:
            raise AssertionError(f"gave up waiting after {len(messages)} messages; last {messages[-3:]}") from None
    return messages


async def subscribed(ws, **message) -> None:
    await send(ws, type="subscribe", **message)
    replies = await receive_until(ws, lambda m: m and m[-1].get("type") in ("subscribed", "error"), 10)
    assert replies[-1]["type"] == "subscribed", replies[-1]
