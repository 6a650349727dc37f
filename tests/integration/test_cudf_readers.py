"""cuDF on GPU workers (utils/gpu/cudf_io.py): the bar store's table_reader hook, and cuDF's
Parquet/CSV decoding against pyarrow/NumPy's on the same files where cuDF is installed."""
from __future__ import annotations

import numpy as np
import pytest

from utils.data.parquet_store import ParquetBarStore
from utils.data.store import Bars
from utils.engine.backend import Backend, cpu_backend
from utils.gpu.cudf_io import cudf_module, parquet_reader, pyarrow_parquet_reader, read_csv_columns
from utils.redis_client import make_redis
from utils.tasks.resources import with_gpu_reader

DAY_NS = 86_400 * 10**9
T0 = 1_704_067_200 * 10**9  # 2024-01-01
NO_CUDF = ("cuDF is not installed here (a GPU-only package of requirements-gpu.txt); this CPU-equivalence "
           "check is not a reference parity test, so CI=true's no-skip rule does not apply")


def random_bars(symbol: str, count: int) -> Bars:
    rng = np.random.default_rng(5)
    time = T0 + DAY_NS * np.arange(count, dtype=np.int64)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, count)))
    return Bars(symbol, time, close * 1.001, close * 1.01, close * 0.99, close, rng.integers(1, 10**6, count) * 1.0)


@pytest.fixture
def make_store(redis_server, redis_client, tmp_path):  # redis_client: a flushed server
    """Stores on one directory, without the in-process cache (each read decodes the file)."""
    return lambda: ParquetBarStore(make_redis("127.0.0.1", redis_server.port, decode=False),
                                   str(tmp_path / "market"), row_group_rows=500, cache_bytes=0)


def read_through(store: ParquetBarStore, reader) -> tuple[Bars, Bars, list]:
    calls = []

    def counting(path, columns, filters):
        calls.append((columns, filters))
        return reader(path, columns, filters)
    store.table_reader = counting
    start, end = T0 + DAY_NS * 700, T0 + DAY_NS * 1800
    return store.read("X"), store.read("X", start, end), calls


def assert_same(a: Bars, b: Bars) -> None:
    for name in ("time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))  # exact: same file, same decoding


def test_reads_go_through_the_table_reader_hook(make_store):
    store = make_store()
    store.write(random_bars("X", 3000), replace=True)
    whole, ranged = store.read("X"), store.read("X", T0 + DAY_NS * 700, T0 + DAY_NS * 1800)
    via_whole, via_ranged, calls = read_through(make_store(), pyarrow_parquet_reader)
    assert len(calls) == 2 and calls[1][1] == [("time", ">=", T0 + DAY_NS * 700), ("time", "<=", T0 + DAY_NS * 1800)]
    assert_same(whole, via_whole)
    assert_same(ranged, via_ranged)
    assert len(ranged) == 1101


def test_only_a_gpu_worker_with_cudf_gets_the_cudf_reader(make_store):
    store = make_store()
    assert with_gpu_reader(store, cpu_backend()).table_reader is None
    simulated = Backend(name="gpu", xp=np, device_id=0, simulated=True)
    assert with_gpu_reader(store, simulated).table_reader is None  # the CUDA simulator: no cuDF
    real = Backend(name="gpu", xp=np, device_id=0)
    assert (with_gpu_reader(make_store(), real).table_reader is None) == (cudf_module() is None)


@pytest.mark.skipif(cudf_module() is None, reason=NO_CUDF)
def test_cudf_parquet_reads_equal_pyarrow(make_store):
    make_store().write(random_bars("X", 3000), replace=True)
    whole, ranged, _ = read_through(make_store(), pyarrow_parquet_reader)
    gpu_whole, gpu_ranged, calls = read_through(make_store(), parquet_reader(cudf_module()))
    assert len(calls) == 2
    assert_same(whole, gpu_whole)
    assert_same(ranged, gpu_ranged)


@pytest.mark.skipif(cudf_module() is None, reason=NO_CUDF)
def test_cudf_csv_columns_equal_numpy(tmp_path):
    bars = random_bars("X", 500)
    path = tmp_path / "bars.csv"
    rows = np.column_stack([bars.time, bars.open, bars.close])
    np.savetxt(path, rows, delimiter=",", header="time,open,close", comments="", fmt=["%d", "%.17g", "%.17g"])
    read = read_csv_columns(cudf_module(), str(path), ["time", "close"], {"time": "int64", "close": "float64"})
    np.testing.assert_array_equal(read["time"], bars.time)
    np.testing.assert_array_equal(read["close"], bars.close)  # %.17g round-trips float64 exactly
