"""Redis connections and the embedded redis-server used when none is configured (and by tests)."""
from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, TryAgainError
from redis.retry import Retry

log = logging.getLogger(__name__)

# Errors that mean "Redis is unreachable for now" rather than a bug: a connection refused or cut,
# a timeout, and on a cluster a master without its slots (CLUSTERDOWN, while it restarts or fails
# over) or a slot being moved (TRYAGAIN). Loops catch these, wait and go on.
REDIS_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError)


def make_redis(host: str, port: int, db: int = 0, password: str | None = None,
               decode: bool = True, socket_timeout: float = 5.0) -> redis.Redis:
    """A pooled client that fails fast when Redis is down (callers map that to UNAVAILABLE)."""
    return redis.Redis(host=host, port=port, db=db, password=password, decode_responses=decode,
                       socket_connect_timeout=3.0, socket_timeout=socket_timeout,
                       health_check_interval=15, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2))


def parse_cluster_nodes(spec: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` -> [(host, port)...]; a clear ValueError for anything else."""
    nodes = []
    for item in (part.strip() for part in spec.split(",")):
        host, sep, port = item.rpartition(":")
        if not item or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_CLUSTER_NODES: {item!r} is not host:port "
                             "(expected e.g. 10.0.0.1:7000,10.0.0.2:7000)")
        nodes.append((host, int(port)))
    return nodes


def make_redis_cluster(nodes: list[tuple[str, int]], password: str | None = None, decode: bool = True,
                       socket_timeout: float = 5.0) -> RedisCluster:
    """A RedisCluster client over the seed ``nodes`` (it discovers the others). Same timeouts
    and retries as ``make_redis``; MOVED/ASK redirections are followed by redis-py."""
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes], password=password,
                        decode_responses=decode, socket_connect_timeout=3.0, socket_timeout=socket_timeout,
                        health_check_interval=15, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2))


def redis_from_settings(settings: Any, decode: bool = True) -> redis.Redis:
    """The platform's client: RedisCluster when REDIS_CLUSTER_NODES is set, else one server."""
    if getattr(settings, "redis_cluster_nodes", ""):
        return make_redis_cluster(parse_cluster_nodes(settings.redis_cluster_nodes), settings.redis_password,
                                  decode, settings.redis_socket_timeout)
    return make_redis(settings.redis_host, settings.redis_port, settings.redis_db,
                      settings.redis_password, decode, settings.redis_socket_timeout)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def async_redis_from_settings(settings: Any, socket_timeout: float | None = None) -> Any:
    """The asyncio client (the WebSocket gateway): RedisCluster when REDIS_CLUSTER_NODES is set."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode as AsyncClusterNode, RedisCluster as AsyncRedisCluster
    timeout = socket_timeout or settings.redis_socket_timeout
    if getattr(settings, "redis_cluster_nodes", ""):
        nodes = [AsyncClusterNode(host, port) for host, port in parse_cluster_nodes(settings.redis_cluster_nodes)]
        return AsyncRedisCluster(startup_nodes=nodes, password=settings.redis_password, decode_responses=True,
                                 socket_timeout=timeout)
    return aioredis.Redis(host=settings.redis_host, port=settings.redis_port, db=settings.redis_db,
                          password=settings.redis_password, decode_responses=True, socket_timeout=timeout)


def redis_answers(host: str, port: int, password: str | None = None) -> bool:
    try:
        return bool(make_redis(host, port, password=password).ping())
    except redis.RedisError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """The system redis-server, or the one shipped by the `redis-server` pip package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_server  # type: ignore[import-not-found]
        return str(redis_server.REDIS_SERVER_PATH)
    except Exception as exc:
        raise RuntimeError("no redis-server binary: install Redis (apt-get install redis-server) "
                           "or set REDIS_HOST/REDIS_PORT to a running one") from exc


class EmbeddedRedis:
    """A redis-server child process on localhost with its data under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "EmbeddedRedis":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--save", "", "--daemonize", "no",
                "--logfile", str(self.data_dir / "redis.log")]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start; see {self.data_dir / 'redis.log'}")
            if redis_answers("127.0.0.1", self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def kill(self) -> None:
        """Die without warning (fault tests)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
