"""WebSocket gateway benchmark: market-data fan-out latency and throughput, against a bare
``websockets`` broadcast server (the anchor) fed from the same Redis channel in the same run.

Both servers run in this process (the gateway under uvicorn in its thread, the anchor in another
thread with its own loop) against a private redis-server; the clients (1 and 100 per case) run in a
spawned process. A publisher PUBLISHes one tick per message on ``md:live:BENCH`` (what the tick
writer does) at a fixed rate, stamped with ``time.time_ns()``; latency = client receive - stamp.
The anchor forwards the raw Redis payload with ``websockets.broadcast`` (no parsing, no auth, no
per-connection queue); the gateway parses it, builds the market_data push and queues it per client.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import tempfile
import threading
import time
from pathlib import Path

from bench import Section, latency_summary

QUICK = os.environ.get("BENCH_QUICK") == "1"
# (clients, messages per second): 100 clients at 50/s is 5,000 deliveries/s, which one client
# process can read; more and the clients, not the servers, set the latency.
CASES = ((1, 500), (100, 50))
SECONDS = 2.0 if QUICK else 6.0
CHANNEL_SYMBOL = "BENCH"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


# ------------------------------------------------------------------ anchor
def start_anchor(redis_port: int) -> int:
    """A bare websockets server broadcasting every message of the Redis channel to all clients."""
    import redis.asyncio as aioredis
    from websockets.asyncio.server import broadcast, serve
    from utils.data import keys as data_keys
    bound: list[int] = []
    ready = threading.Event()

    async def main() -> None:
        clients: set = set()

        async def handler(connection) -> None:
            clients.add(connection)
            try:
                await connection.wait_closed()
            finally:
                clients.discard(connection)

        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            bound.append(server.sockets[0].getsockname()[1] if hasattr(server, "sockets") else 0)
            pubsub = aioredis.Redis(port=redis_port, decode_responses=True).pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(data_keys.live_channel(CHANNEL_SYMBOL))
            ready.set()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    broadcast(clients, message["data"])

    threading.Thread(target=lambda: asyncio.run(main()), name="anchor", daemon=True).start()
    ready.wait(10)
    return bound[0]


# ----------------------------------------------------------------- clients
def _clients(url: str, count: int, subscribe: bool, expected: int, ready, results) -> None:
    from websockets.asyncio.client import connect

    async def one(latencies: list[float], connected: asyncio.Event, go: asyncio.Event) -> None:
        async with connect(url, compression=None, max_queue=None) as ws:
            if subscribe:
                await ws.send(json.dumps({"type": "subscribe", "channel": "market_data",
                                          "symbols": [CHANNEL_SYMBOL]}))
                await ws.recv()  # "subscribed"
            connected.set()
            await go.wait()
            deadline = time.monotonic() + SECONDS + 10
            while len(latencies) < expected and time.monotonic() < deadline:
                try:
                    text = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except TimeoutError:
                    break
                received = time.time_ns()
                latencies.append((received - int(json.loads(text)["timestamp"][0])) / 1e9)

    async def main() -> list[list[float]]:
        per_client = [[] for _ in range(count)]
        go = asyncio.Event()
        events = [asyncio.Event() for _ in range(count)]
        tasks = [asyncio.create_task(one(per_client[i], events[i], go)) for i in range(count)]
        await asyncio.gather(*(e.wait() for e in events))
        ready.set()
        go.set()
        await asyncio.gather(*tasks)
        return per_client

    results.put(asyncio.run(main()))


def measure(url: str, count: int, rate: int, subscribe: bool, redis_client) -> dict:
    from utils.data import keys as data_keys
    context = mp.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    messages = int(rate * SECONDS)
    process = context.Process(target=_clients, args=(url, count, subscribe, messages, ready, results))
    process.start()
    if not ready.wait(60):
        process.kill()
        raise RuntimeError("clients did not connect")
    time.sleep(0.3)  # the gateway follows the symbol's channel
    channel = data_keys.live_channel(CHANNEL_SYMBOL)
    started = time.perf_counter()
    for index in range(messages):
        target = started + index / rate
        pause = target - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        redis_client.publish(channel, json.dumps({"timestamp": [str(time.time_ns())], "price": [10.0 + index % 7],
                                                  "volume": [index], "indicators": {}}))
    per_client = results.get(timeout=SECONDS + 60)
    process.join(30)
    latencies = [value for client in per_client for value in client]
    return {"clients": count, "rate": rate, "sent": messages, "delivered": len(latencies) / (messages * count),
            **latency_summary(latencies)}


# --------------------------------------------------------------------- run
def run() -> Section:
    from config.settings import load_settings
    from services.gateway.server import start_gateway
    from utils.redis_client import EmbeddedRedis, make_redis
    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        redis_server = EmbeddedRedis(Path(scratch) / "redis", appendonly=False).start()
        try:
            settings = load_settings(redis_host="127.0.0.1", redis_port=redis_server.port, redis_embedded="never",
                                     http_host="127.0.0.1", http_port=0, data_dir=Path(scratch) / "data",
                                     gateway_queue_size=100_000)
            gateway = start_gateway(settings)
            anchor_port = start_anchor(redis_server.port)
            client = make_redis("127.0.0.1", redis_server.port)
            rows = []
            for count, rate in CASES:
                ours = measure(f"ws://127.0.0.1:{gateway.port}/ws", count, rate, True, client)
                anchor = measure(f"ws://127.0.0.1:{anchor_port}", count, rate, False, client)
                rows.append((count, ours, anchor))
            gateway.stop()
        finally:
            redis_server.stop()
    return Section("WebSocket gateway: market-data fan-out", _markdown(rows, load_before, load_average()))


def _markdown(rows, load_before: str, load_after: str) -> str:
    lines = [
        f"Redis PUBLISH on `md:live:{CHANNEL_SYMBOL}` (one tick per message for {SECONDS:g} s at the rate shown) "
        "-> WebSocket clients in another process; latency = receive - publish stamp. Anchor: a bare "
        "`websockets` server forwarding the raw payload with `broadcast` (same Redis channel, same run). "
        f"Load average before / after: {load_before} / {load_after}.",
        "",
        "| clients | messages/s | server | delivered | p50 ms | p90 ms | p99 ms | max ms | p50 / anchor |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for count, ours, anchor in rows:
        ratio = ours["p50"] / anchor["p50"] if anchor["p50"] else float("nan")
        for name, result, shown in (("gateway", ours, f"{ratio:.2f}x"), ("anchor", anchor, "")):
            lines.append(f"| {count} | {result['rate']} | {name} | {result['delivered']:.1%} | {result['p50']:.2f} | {result['p90']:.2f} | "
                         f"{result['p99']:.2f} | {result['max']:.2f} | {shown} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run().markdown)
