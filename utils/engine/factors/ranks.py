"""Average ranks (scipy ``rankdata`` / pandas ``rank(method="average")``: ties share the mean of
their 1-based positions) of one date's values, and the valid columns of a date."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def rank_row(values: np.ndarray, ranks: np.ndarray) -> None:
    """Average ranks of ``values`` (no NaN) into ``ranks``."""
    count = values.size
    order = np.argsort(values)
    start = 0
    while start < count:
        end = start
        while end + 1 < count and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end + 2) / 2.0
        for k in range(start, end + 1):
            ranks[order[k]] = rank
        start = end + 1


@njit(cache=True, inline="always")
def valid_columns(valid_row: np.ndarray) -> np.ndarray:
    """Indices of the True cells of one date."""
    cols = np.empty(valid_row.size, np.int64)
    count = 0
    for j in range(valid_row.size):
        if valid_row[j]:
            cols[count] = j
            count += 1
    return cols[:count]
