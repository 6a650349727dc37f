"""Average ranks (scipy ``rankdata`` / pandas ``rank(method="average")``: ties share the mean of
their 1-based positions), for one date's values and for every date of a (T, N) panel."""
from __future__ import annotations

import numpy as np
from numba import njit, prange


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


@njit(parallel=True, cache=True)
def average_ranks(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, N) average ranks of each date's valid cells; NaN elsewhere."""
    n_dates, n_symbols = values.shape
    ranks = np.full((n_dates, n_symbols), np.nan)
    for t in prange(n_dates):
        cols = valid_columns(valid[t])
        row = np.empty(cols.size)
        for k in range(cols.size):
            row[k] = values[t, cols[k]]
        row_ranks = np.empty(cols.size)
        rank_row(row, row_ranks)
        for k in range(cols.size):
            ranks[t, cols[k]] = row_ranks[k]
    return ranks
