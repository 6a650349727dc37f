#!/usr/bin/env python3
"""Container health check: exit 0 when healthy, 1 when not (Docker HEALTHCHECK, Kubernetes exec probe).

    healthcheck.py [grpc] [PORT]     grpc.health.v1 Check("") on 127.0.0.1:PORT (default GRPC_PORT
                                     or 50051): healthy only when the answer is SERVING, which the
                                     server reports while Redis answers (services/server.py).
    healthcheck.py metrics PORT      HTTP GET 127.0.0.1:PORT/metrics answers 200 (workers serve no
                                     gRPC; worker i serves /metrics on PROMETHEUS_PORT + 1 + i).

Options for grpc (TLS): when TLS_CERT_FILE and TLS_KEY_FILE are set (the server then serves TLS,
services/security.py) the check speaks TLS too, trusting --ca (default
/etc/gq/tls/ca.crt, or the server certificate itself when that file does not exist, which suits a
self-signed one) and checking the certificate against --server-name (default localhost: issue the
server certificate with `localhost` among its names). When TLS_CLIENT_CA_FILE is also set (mutual
TLS) it presents TLS_CERT_FILE / TLS_KEY_FILE as its client certificate, which therefore needs the
clientAuth usage and a signature by that CA. No API key is sent: health is open to every caller.

Only the standard library, grpcio and grpcio-health-checking (both in requirements.txt).
"""
from __future__ import annotations

import argparse
import os
import sys
import urllib.request

DEFAULT_CA = "/etc/gq/tls/ca.crt"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def check_grpc(port: int, timeout: float, ca: str, server_name: str) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = f"127.0.0.1:{port}"
    cert_file, key_file, client_ca = _env("TLS_CERT_FILE"), _env("TLS_KEY_FILE"), _env("TLS_CLIENT_CA_FILE")
    if cert_file and key_file:
        root = _read(ca) if os.path.exists(ca) else _read(cert_file)
        chain = _read(cert_file) if client_ca else None
        key = _read(key_file) if client_ca else None
        credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                                   certificate_chain=chain)
        channel = grpc.secure_channel(target, credentials,
                                      options=[("grpc.ssl_target_name_override", server_name)])
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                              timeout=timeout)
        except grpc.RpcError as exc:
            return False, f"health check on {target} failed: {exc.code().name} {exc.details() or ''}".strip()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{target}: {status}"


def check_metrics(port: int, timeout: float) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed local URL)
            return response.status == 200, f"{url}: HTTP {response.status}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", nargs="?", default="grpc", choices=("grpc", "metrics"))
    parser.add_argument("port", nargs="?", type=int, help="default: GRPC_PORT (grpc); required for metrics")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--ca", default=DEFAULT_CA, help="CA bundle that signed the server certificate")
    parser.add_argument("--server-name", default="localhost", help="name to verify the server certificate for")
    args = parser.parse_args(argv)
    if args.kind == "metrics":
        if args.port is None:
            parser.error("metrics needs a port (worker i: PROMETHEUS_PORT + 1 + i)")
        healthy, detail = check_metrics(args.port, args.timeout)
    else:
        port = args.port if args.port is not None else int(_env("GRPC_PORT") or 50051)
        healthy, detail = check_grpc(port, args.timeout, args.ca, args.server_name)
    print(("healthy: " if healthy else "unhealthy: ") + detail)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
