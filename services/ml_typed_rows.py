"""PredictRequest.rows + feature_names -> the model's (n, k) float64 feature matrix.

The typed input skips JSON: values arrive as doubles. Checks, each with an INVALID_ARGUMENT that
says what to change: feature_names are exactly the model's feature columns (any order, no
repeats), every row has one value per name, values are finite, at most MAX_ROWS_PER_REQUEST
rows. The column permutation is worked out once per (model, names) and kept, so a steady client
pays for one dictionary look-up.
"""
from __future__ import annotations

import math
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from services.errors import ServiceError, invalid

MAX_CACHED_ORDERS = 4096


class TypedRows:
    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._orders: dict[tuple[str, tuple[str, ...]], np.ndarray | None] = {}
        self._lock = threading.Lock()

    def _order(self, model_id: str, metadata: Mapping[str, Any], names: tuple[str, ...]) -> np.ndarray | None:
        """Indexes that put the request's columns in the model's order; None when already in it."""
        key = (model_id, names)
        try:
            return self._orders[key]
        except KeyError:
            pass
        expected = list(metadata["feature_columns"])
        if not names:
            raise invalid("feature_names", f"name the columns of each row's values; the model uses {expected}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        missing = [name for name in expected if name not in names]
        extra = [name for name in names if name not in expected]
        if repeated or missing or extra:
            problems = [f"{label}: {', '.join(map(repr, found[:10]))}" for label, found in
                        (("repeated", repeated), ("missing", missing), ("unexpected", extra)) if found]
            raise invalid("feature_names", f"{'; '.join(problems)}; the model uses {expected} (any order)")
        position = {name: index for index, name in enumerate(names)}
        order = np.array([position[name] for name in expected], dtype=np.intp)
        result = None if np.array_equal(order, np.arange(len(expected))) else order
        with self._lock:
            if len(self._orders) >= MAX_CACHED_ORDERS:
                self._orders.clear()
            self._orders[key] = result
        return result

    def matrix(self, model_id: str, metadata: Mapping[str, Any], rows: Sequence[Any],
               feature_names: Sequence[str]) -> np.ndarray:
        names = tuple(feature_names)
        order = self._order(model_id, metadata, names)
        width = len(names)
        if not rows:
            raise invalid("rows", f"give at least one row of {width} values ({', '.join(names[:10])})")
        if len(rows) > self.max_rows:
            raise invalid("rows", f"has {len(rows):,} rows; the limit is {self.max_rows:,} per request "
                                  "(MAX_ROWS_PER_REQUEST)")
        if len(rows) == 1:
            values = rows[0].values
            if len(values) != width:
                raise _width(0, len(values), width)
            matrix = np.fromiter(values, np.float64, width).reshape(1, width)
        else:
            for index, row in enumerate(rows):
                if len(row.values) != width:
                    raise _width(index, len(row.values), width)
            matrix = np.array([list(row.values) for row in rows], dtype=np.float64)
        # A finite sum means finite values (NaN/inf propagate); only a sum that is not (or that
        # overflowed) needs the element-wise look.
        if not math.isfinite(matrix.sum()) and not np.isfinite(matrix).all():
            row, column = np.argwhere(~np.isfinite(matrix))[0]
            raise invalid(f"rows[{row}].values[{column}]", f"is {matrix[row, column]}; values must be finite "
                                                           f"(column {names[column]!r})")
        return matrix if order is None else np.ascontiguousarray(matrix[:, order])


def _width(index: int, got: int, width: int) -> ServiceError:
    return invalid(f"rows[{index}].values", f"has {got} value(s); each row needs {width}, one per feature_names entry")
