"""Column-dict validation shared by training and inference: every error names its columns."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def numeric_columns(columns: Mapping[str, Any], names: Sequence[str],
                    error: type[ValueError]) -> dict[str, np.ndarray]:
    """Return ``names`` from ``columns`` as equal-length, finite float64 arrays or raise ``error``.

    Bool columns become 0.0/1.0. Columns not in ``names`` are not inspected.
    """
    if not isinstance(columns, Mapping):
        raise error(f"columns must be a mapping of column name to values, got {type(columns).__name__}")
    missing = [name for name in names if name not in columns]
    if missing:
        raise error(f"missing column(s): {_quoted(missing)}; got {_quoted(sorted(map(str, columns)))}")

    raw = {}
    for name in names:
        try:
            raw[name] = np.asarray(columns[name])
        except (ValueError, TypeError):  # ragged nesting such as [0, []]
            raise error(f"column {name!r} must be a flat list of numbers") from None
    not_1d = [name for name, values in raw.items() if values.ndim != 1]
    if not_1d:
        raise error(f"column(s) must be one-dimensional: {_quoted(not_1d)}")
    lengths = {name: values.shape[0] for name, values in raw.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise error(f"columns have unequal lengths: {detail}")
    if next(iter(lengths.values())) == 0:
        raise error(f"no rows: column(s) {_quoted(list(names))} are empty")

    non_numeric = [name for name, values in raw.items() if values.dtype.kind not in "biuf"]
    if non_numeric:
        detail = ", ".join(f"{name!r} ({raw[name].dtype})" for name in non_numeric)
        raise error(f"non-numeric column(s): {detail}")

    numeric = {name: values.astype(np.float64) for name, values in raw.items()}
    non_finite = []
    for name, values in numeric.items():
        bad_rows = np.flatnonzero(~np.isfinite(values))
        if bad_rows.size:
            non_finite.append(f"{name!r} ({bad_rows.size} row(s), first at row {bad_rows[0]})")
    if non_finite:
        raise error(f"non-finite values (NaN/inf) in column(s): {', '.join(non_finite)}")
    return numeric


def feature_matrix(numeric: Mapping[str, np.ndarray], feature_columns: Sequence[str]) -> np.ndarray:
    """Stack validated columns into an (n, k) float64 matrix in ``feature_columns`` order."""
    return np.column_stack([numeric[name] for name in feature_columns])
