"""Per-date average ranks over the valid cells of a (T, N) panel (scipy ``rankdata`` / pandas
``rank(method="average")``: ties share the mean of their 1-based positions)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def average_ranks(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    n_dates, n_symbols = values.shape
    ranks = np.full((n_dates, n_symbols), np.nan)
    for t in prange(n_dates):
        cols = np.empty(n_symbols, np.int64)
        count = 0
        for j in range(n_symbols):
            if valid[t, j]:
                cols[count] = j
                count += 1
        cols = cols[:count]
        row = np.empty(count)
        for k in range(count):
            row[k] = values[t, cols[k]]
        order = np.argsort(row)
        start = 0
        while start < count:
            end = start
            while end + 1 < count and row[order[end + 1]] == row[order[start]]:
                end += 1
            rank = (start + end + 2) / 2.0
            for k in range(start, end + 1):
                ranks[t, cols[order[k]]] = rank
            start = end + 1
    return ranks
