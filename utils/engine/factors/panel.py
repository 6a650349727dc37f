"""Masked statistics over (T, N) panels: per date, or per (date, group) segment.

A cell counts when ``valid`` is True; ``groups`` holds one code in 0..G-1 per symbol (None = one
group). Sums go through ``np.bincount`` so every segment of every date is one pass, not a loop.
"""
from __future__ import annotations

import numpy as np


def segment_index(shape: tuple[int, int], groups: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Flat segment id of every cell (t * G + group) and the segment count T * G."""
    n_dates, n_symbols = shape
    if groups is None:
        return np.repeat(np.arange(n_dates), n_symbols), n_dates
    n_groups = int(groups.max()) + 1 if groups.size else 1
    ids = np.arange(n_dates)[:, None] * n_groups + groups[None, :]
    return ids.ravel(), n_dates * n_groups


def segment_sums(values: np.ndarray, valid: np.ndarray, groups: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sum, count, segment id per cell) of ``values`` over valid cells of each segment."""
    ids, n_segments = segment_index(values.shape, groups)
    mask = valid.ravel()
    sums = np.bincount(ids[mask], weights=values.ravel()[mask], minlength=n_segments)
    counts = np.bincount(ids[mask], minlength=n_segments)
    return sums, counts, ids.reshape(values.shape)


def segment_mean_per_cell(values: np.ndarray, valid: np.ndarray,
                          groups: np.ndarray | None = None) -> np.ndarray:
    """The mean of each cell's segment, broadcast back to (T, N) (NaN for empty segments)."""
    sums, counts, ids = segment_sums(values, valid, groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return means[ids]


def demean(values: np.ndarray, valid: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """``values`` minus their date (or date-and-group) mean on valid cells, NaN elsewhere
    (alphalens ``demean_forward_returns``)."""
    return np.where(valid, values - segment_mean_per_cell(values, valid, groups), np.nan)


def row_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean over valid cells of each date; NaN for a date without one."""
    counts = valid.sum(axis=1)
    totals = np.where(valid, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def row_pearson(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pearson correlation of x and y over the valid cells of each date (NaN below two cells or
    for a constant side), as ``np.corrcoef`` / ``Series.corr`` compute it."""
    counts = valid.sum(axis=1)
    dx = np.where(valid, x - row_mean(x, valid)[:, None], 0.0)
    dy = np.where(valid, y - row_mean(y, valid)[:, None], 0.0)
    sxy = (dx * dy).sum(axis=1)
    sxx = (dx * dx).sum(axis=1)
    syy = (dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = sxy / np.sqrt(sxx) / np.sqrt(syy)
    rho = np.clip(rho, -1.0, 1.0)
    return np.where((counts >= 2) & (sxx > 0) & (syy > 0), rho, np.nan)


def series_mean_std(series: np.ndarray) -> tuple[float, float, int]:
    """Mean, standard deviation (ddof 1) and count of the non-NaN entries, as pandas skips NaN."""
    clean = series[~np.isnan(series)]
    count = clean.size
    if count == 0:
        return float("nan"), float("nan"), 0
    mean = float(clean.mean())
    std = float(np.sqrt(((clean - mean) ** 2).sum() / (count - 1))) if count > 1 else float("nan")
    return mean, std, count
