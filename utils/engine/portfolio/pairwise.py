"""Pairwise-complete moments of returns with NaN gaps, as pandas ``.cov()`` / ``.corr()`` / ``.ewm()``.

For each pair (i, j) pandas uses only the dates where both are valid. With M the 0/1 validity
mask and X0 the (column-centred) returns with NaN set to 0, every pairwise sum is one matrix
product: counts MᵀM, sums X0ᵀM, cross products X0ᵀX0, squares (X0²)ᵀM.
"""
from __future__ import annotations

import numpy as np


def _centred(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(returns minus each column's mean with NaN → 0, validity mask as float).

    Centring first does not change any covariance (a per-column shift) but removes the
    cancellation of the raw-sum formula."""
    valid = ~np.isnan(returns)
    with np.errstate(invalid="ignore", divide="ignore"):
        column_mean = np.nansum(returns, axis=0) / valid.sum(axis=0)
    centred = np.where(valid, returns - np.nan_to_num(column_mean), 0.0)
    return centred, valid.astype(np.float64)


def _masked_sums(values: np.ndarray, valid: np.ndarray, gappy: np.ndarray) -> np.ndarray:
    """[i, j] = sum of ``values[:, i]`` over the dates where asset j is valid.

    For a complete column j that is the plain column sum, so only the columns with gaps
    (``gappy``) need a matrix product: the cost is T·N·(number of gappy columns)."""
    sums = np.repeat(values.sum(axis=0)[:, None], values.shape[1], axis=1)
    if gappy.any():
        sums[:, gappy] = values.T @ valid[:, gappy]
    return sums


def _pairwise_parts(returns: np.ndarray):
    centred, valid = _centred(returns)
    gappy = valid.min(axis=0) == 0.0
    counts = _masked_sums(valid, valid, gappy)
    sums = _masked_sums(centred, valid, gappy)
    cross = centred.T @ centred                 # numpy uses a symmetric rank-k update for AᵀA
    return centred, valid, gappy, counts, sums, cross


def _covariance_from_parts(counts, sums, cross, ddof: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        covariance = (cross - sums * sums.T / counts) / (counts - ddof)
    covariance[counts < 2] = np.nan
    return covariance


def pairwise_cov(returns: np.ndarray, ddof: int = 1) -> np.ndarray:
    """(N, N) covariance over each pair's common dates: pandas ``DataFrame.cov()``."""
    if not np.isnan(returns).any():
        centred = returns - returns.mean(axis=0)
        return centred.T @ centred / (returns.shape[0] - ddof)
    _, _, _, counts, sums, cross = _pairwise_parts(returns)
    return _covariance_from_parts(counts, sums, cross, ddof)


def pairwise_cov_and_corr(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pandas ``.cov()`` and ``.corr()``: each pair's correlation uses that pair's own variances."""
    centred, valid, gappy, counts, sums, cross = _pairwise_parts(returns)
    covariance = _covariance_from_parts(counts, sums, cross, 1)
    squares = _masked_sums(centred * centred, valid, gappy)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance_given_pair = (squares - sums * sums / counts) / (counts - 1)
        correlation = covariance / np.sqrt(variance_given_pair * variance_given_pair.T)
    np.fill_diagonal(correlation, np.where(np.diag(counts) >= 2, 1.0, np.nan))
    return covariance, correlation


def ewm_weights(n_dates: int, span: float) -> np.ndarray:
    """pandas ``ewm(span=span, adjust=True)`` weight of each date in the last date's mean."""
    if span < 1:
        raise ValueError(f"span must be at least 1, got {span}")
    decay = 1.0 - 2.0 / (span + 1.0)
    return decay ** np.arange(n_dates - 1, -1, -1, dtype=np.float64)


def ewm_last_mean(values: np.ndarray, span: float) -> np.ndarray:
    """Per column, ``Series.ewm(span).mean().iloc[-1]`` (NaN dates keep decaying: ignore_na=False)."""
    valid = ~np.isnan(values)
    weights = ewm_weights(values.shape[0], span)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(valid, values, 0.0)) / (weights @ valid)


def ewm_last_cov(returns: np.ndarray, span: float) -> np.ndarray:
    """pypfopt ``_pair_exp_cov`` for all pairs: EWM of (x_i − mean_i)(x_j − mean_j) at the last date."""
    centred, valid = _centred(returns)
    weights = ewm_weights(returns.shape[0], span)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((weights * centred).T @ centred) / ((weights * valid).T @ valid)
