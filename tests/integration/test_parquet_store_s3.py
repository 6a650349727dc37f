"""The parquet bar store on an S3 endpoint (moto's server on a free port, started here; skipped
when moto[server] is not installed): the same writes, versions and range reads as on disk."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_parquet_store import DAY_NS, T0, bars
from utils.data.parquet_store import ParquetBarStore
from utils.redis_client import make_redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("moto", reason="moto[server] is not installed (pip install 'moto[server]')")
    beside_python = Path(sys.executable).parent / "moto_server"  # the moto this interpreter imports
    executable = str(beside_python) if beside_python.exists() else shutil.which("moto_server")
    if executable is None:
        pytest.skip("moto_server is not on PATH")
    port = free_port()
    process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.skip("moto_server did not start")
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_store(s3_endpoint, redis_server, redis_client, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    uri = f"s3://bars/market?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1&allow_bucket_creation=true"
    store = ParquetBarStore(make_redis("127.0.0.1", redis_server.port, decode=False), uri, row_group_rows=100)
    store.fs.create_dir("bars")
    return store


def test_s3_write_merge_range_and_recatalogue(s3_store, redis_client):
    assert s3_store.write(bars("S3X", 1000), replace=True) == (1000, 1)
    assert s3_store.write(bars("S3X", 10, start=T0 + 1000 * DAY_NS, price=12), replace=False) == (1010, 2)
    read = s3_store.read("S3X", T0 + 995 * DAY_NS, T0 + 1004 * DAY_NS)
    assert read.time.tolist() == (T0 + DAY_NS * np.arange(995, 1005)).tolist()
    assert read.close.tolist() == [10.0] * 5 + [12.0] * 5
    redis_client.flushall()
    s3_store.cache.entries.clear()
    assert s3_store.version("S3X") == 2 and len(s3_store.read("S3X")) == 1010
    assert [i.symbol for i in s3_store.list_symbols()] == ["S3X"]
