"""The Predict load both the `ml` and the `inference` sections apply: ``clients`` asyncio tasks on
one grpc.aio channel, each sending its next request when the previous answer arrives, and the
bare grpcio echo server that is their anchor (the transport's ceiling)."""
from __future__ import annotations

import asyncio
import time


async def concurrent_predicts(target: str, requests: list, clients: int, seconds: float) -> dict:
    """Per-request client-side latency, the answered count, errors and elapsed seconds."""
    import grpc
    from api_proto import ml_pb2_grpc
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ml_pb2_grpc.MLServiceStub(channel)
        stop_at = time.perf_counter() + seconds

        async def client(index: int) -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                try:
                    await stub.Predict(requests[index % len(requests)], timeout=30)
                    latencies.append(time.perf_counter() - began)
                except grpc.aio.AioRpcError:
                    errors += 1
                index += clients
        began = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    return {"n": len(latencies), "seconds": elapsed, "latency": latencies, "errors": errors}


def echo_server_main(threads: int, ready, stop) -> None:
    """A spawned process: a bare grpcio server whose Predict returns a constant answer (no JSON,
    no validation, no model) on ``threads`` RPC threads; puts its port, serves until ``stop``,
    then puts (0.0, 0.0) (no model calls, no rows) for callers that read a server's counters."""
    from concurrent.futures import ThreadPoolExecutor
    import grpc
    from api_proto import ml_pb2, ml_pb2_grpc

    class Echo(ml_pb2_grpc.MLServiceServicer):
        def Predict(self, request, context):
            return ml_pb2.PredictResponse(predictions=[1.0], device="cpu", model_id=request.model_id)

    server = grpc.server(ThreadPoolExecutor(max_workers=threads))
    ml_pb2_grpc.add_MLServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ready.put(port)
    stop.wait()
    ready.put((0.0, 0.0))
    server.stop(0)
