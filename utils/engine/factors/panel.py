"""Masked statistics over (T, N) panels: per date, or per (date, group) segment.

A cell counts when ``valid`` is True; ``groups`` holds one code in 0..G-1 per symbol (None = one
group). A group's sums are one reduction over its columns for all dates at once, never a loop
over dates.
"""
from __future__ import annotations

import numpy as np


def segment_sums(values: np.ndarray, valid: np.ndarray, groups: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sums (T, G), counts (T, G), group code per symbol) of ``values`` over the valid cells of
    each segment; G = 1 without groups. ``sums[:, codes]`` broadcasts back to (T, N)."""
    masked = np.where(valid, values, 0.0)
    if groups is None:
        codes = np.zeros(values.shape[1], np.int64)
        return masked.sum(axis=1)[:, None], valid.sum(axis=1)[:, None], codes
    n_groups = int(groups.max()) + 1
    sums = np.zeros((values.shape[0], n_groups))
    counts = np.zeros((values.shape[0], n_groups), np.int64)
    for group in range(n_groups):
        members = groups == group
        sums[:, group] = masked[:, members].sum(axis=1)
        counts[:, group] = valid[:, members].sum(axis=1)
    return sums, counts, groups


def segment_mean_per_cell(values: np.ndarray, valid: np.ndarray,
                          groups: np.ndarray | None = None) -> np.ndarray:
    """The mean of each cell's segment, broadcast back to (T, N) (NaN for empty segments)."""
    sums, counts, codes = segment_sums(values, valid, groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return means[:, codes]


def series_mean_std(series: np.ndarray) -> tuple[float, float, int]:
    """Mean, standard deviation (ddof 1) and count of the non-NaN entries, as pandas skips NaN."""
    clean = series[~np.isnan(series)]
    count = clean.size
    if count == 0:
        return float("nan"), float("nan"), 0
    mean = float(clean.mean())
    std = float(np.sqrt(((clean - mean) ** 2).sum() / (count - 1))) if count > 1 else float("nan")
    return mean, std, count
