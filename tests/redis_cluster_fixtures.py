"""A real 3-master Redis Cluster on free ports for the cluster tests (session scoped)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from utils.redis_client import free_port, make_redis, redis_server_binary


def cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536 and _free(port + 10000):
            return port


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _state_ok(info) -> bool:
    """CLUSTER INFO comes back parsed (a dict) from redis-py, raw text from others."""
    return info.get("cluster_state") == "ok" if isinstance(info, dict) else "cluster_state:ok" in str(info)


class LocalRedisCluster:
    """Three ``redis-server --cluster-enabled yes`` children joined by ``redis-cli --cluster create``."""

    def __init__(self, data_dir: Path, masters: int = 3, appendonly: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.ports = [cluster_port() for _ in range(masters)]
        self.appendonly = appendonly
        self.processes: list[subprocess.Popen] = []

    @property
    def nodes_setting(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, timeout: float = 20.0) -> "LocalRedisCluster":
        for port in self.ports:
            self.processes.append(self._spawn(port))
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait(lambda: make_redis("127.0.0.1", port).ping(), deadline, f"node {port} to answer")
        subprocess.run([self._cli(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        for port in self.ports:
            self._wait(lambda: _state_ok(make_redis("127.0.0.1", port).execute_command("CLUSTER INFO")),
                       deadline, f"node {port} to report cluster_state:ok")
        return self

    def _spawn(self, port: int) -> subprocess.Popen:
        node_dir = self.data_dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(node_dir / "nodes.conf"), "--cluster-node-timeout", "5000",
             "--dir", str(node_dir), "--save", "", "--daemonize", "no", "--logfile", str(node_dir / "redis.log"),
             *(["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self, port: int, down_seconds: float = 1.0, timeout: float = 20.0) -> None:
        """Stop one master (SHUTDOWN writes its AOF), wait, start it again on its port and data."""
        index = self.ports.index(port)
        self.processes[index].terminate()
        self.processes[index].wait(timeout=10)
        time.sleep(down_seconds)
        self.processes[index] = self._spawn(port)
        deadline = time.monotonic() + timeout
        for each in self.ports:
            self._wait(lambda: _state_ok(make_redis("127.0.0.1", each).execute_command("CLUSTER INFO")),
                       deadline, f"node {each} to report cluster_state:ok after the restart")

    @staticmethod
    def _cli() -> str:
        found = shutil.which("redis-cli") or str(Path(redis_server_binary()).with_name("redis-cli"))
        if not Path(found).exists():
            pytest.skip("redis-cli not found (needed to create a Redis Cluster)")
        return found

    def _wait(self, check, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:  # not up yet
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"timed out waiting for {what}; logs under {self.data_dir}")

    def flushall(self) -> None:
        for port in self.ports:
            make_redis("127.0.0.1", port).flushall()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes = []


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()
