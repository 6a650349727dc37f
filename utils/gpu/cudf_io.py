"""cuDF readers for GPU workers: Parquet and CSV decoded on the device, columns handed back as NumPy.

cuDF is optional (requirements-gpu.txt; not installable on CPU hosts), so it is imported only by
``cudf_module()`` and every function takes the module as a parameter. The bar store's read path
(``ParquetBarStore.table_reader``) takes ``parquet_reader(cudf)`` on a GPU worker with cuDF and a
local store (``utils/tasks/resources.py``); the values are the ones pyarrow decodes (same file, same
types), checked by ``tests/unit/test_cudf_readers.py`` where cuDF is installed.
"""
from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

# (path, columns, filters in pyarrow's DNF form or None) -> {column: 1-D ndarray}
TableReader = Callable[[str, Sequence[str], Any], dict[str, np.ndarray]]


def cudf_module() -> ModuleType | None:
    """cuDF when it imports and sees a device, else None."""
    try:
        return importlib.import_module("cudf")
    except Exception:  # ImportError, or CUDA libraries that fail to load
        return None


def _host_columns(frame: Any, columns: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(frame[name].to_numpy()) for name in columns}


def parquet_reader(cudf: ModuleType) -> TableReader:
    """A ``TableReader`` decoding Parquet with cuDF (row-group filters pushed down, then applied
    to the rows, as pyarrow's ``read_table(filters=...)`` does)."""
    def read(path: str, columns: Sequence[str], filters: Any) -> dict[str, np.ndarray]:
        frame = cudf.read_parquet(path, columns=list(columns), filters=filters)
        return _host_columns(frame, columns)
    return read


def pyarrow_parquet_reader(path: str, columns: Sequence[str], filters: Any) -> dict[str, np.ndarray]:
    """The CPU ``TableReader`` (what the bar store does without one): pyarrow."""
    import pyarrow.parquet as pq
    table = pq.read_table(path, columns=list(columns), filters=filters)
    return {name: np.ascontiguousarray(table.column(name).to_numpy()) for name in columns}


def read_csv_columns(cudf: ModuleType, path: str, columns: Sequence[str],
                     dtypes: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """A CSV file's ``columns`` parsed on the GPU (for large bar imports on a GPU worker)."""
    frame = cudf.read_csv(path, usecols=list(columns), dtype=dtypes)
    return _host_columns(frame, columns)
