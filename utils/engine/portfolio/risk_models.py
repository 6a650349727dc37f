"""Annualised covariance models, as ``pypfopt.risk_models`` (1.6.0), each followed by its PSD fix.

Every model takes ``fix_psd=True`` (pypfopt always applies the "spectral" fix); a service that
reports whether the matrix was amended passes ``fix_psd=False`` and calls
``fix_nonpositive_semidefinite`` itself.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from .pairwise import ewm_last_cov, pairwise_cov
from .returns import returns_from_prices


def is_positive_semidefinite(matrix: np.ndarray) -> bool:
    """pypfopt's test: a Cholesky factorisation of ``matrix + 1e-16 I`` succeeds."""
    try:
        np.linalg.cholesky(matrix + 1e-16 * np.eye(len(matrix)))
        return True
    except np.linalg.LinAlgError:
        return False


def fix_nonpositive_semidefinite(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """(matrix, False) when PSD; else (V·max(q, 0)·Vᵀ, True): pypfopt's "spectral" fix.

    Computed as matrix − Σ_{q<0} q·v·vᵀ: only the (few) non-positive eigenpairs are needed,
    which is the same matrix up to rounding and skips most of a full eigen-decomposition."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if is_positive_semidefinite(matrix):
        return matrix, False
    negative, vectors = scipy.linalg.eigh(matrix, subset_by_value=(-np.inf, 0.0), driver="evr")
    return matrix - (vectors * negative) @ vectors.T, True


def _finish(covariance: np.ndarray, fix_psd: bool) -> np.ndarray:
    return fix_nonpositive_semidefinite(covariance)[0] if fix_psd else covariance


def sample_cov(prices, frequency: int = 252, log_returns: bool = False,
               fix_psd: bool = True) -> np.ndarray:
    """Pairwise-complete sample covariance of returns × frequency (pandas ``.cov()``)."""
    returns = returns_from_prices(prices, log_returns)
    return _finish(pairwise_cov(returns) * frequency, fix_psd)


def semicovariance(prices, benchmark: float = 0.000079, frequency: int = 252,
                   log_returns: bool = False, fix_psd: bool = True) -> np.ndarray:
    """Downside covariance: D = min(r − benchmark, 0) with NaN → 0, DᵀD / T × frequency."""
    returns = returns_from_prices(prices, log_returns)
    drops = np.fmin(returns - benchmark, 0.0)   # fmin: a NaN return counts as no drop
    return _finish(drops.T @ drops / drops.shape[0] * frequency, fix_psd)


def exp_cov(prices, span: int = 180, frequency: int = 252, log_returns: bool = False,
            fix_psd: bool = True) -> np.ndarray:
    """Exponentially weighted covariance: pypfopt ``exp_cov`` (each column centred on its mean)."""
    returns = returns_from_prices(prices, log_returns)
    return _finish(ewm_last_cov(returns, span) * frequency, fix_psd)


def ledoit_wolf_shrinkage(centred: np.ndarray) -> float:
    """scikit-learn ``ledoit_wolf_shrinkage`` of already centred data."""
    n_samples, n_features = centred.shape
    squares = centred ** 2
    trace_per_feature = squares.sum(axis=0) / n_samples
    mean_variance = trace_per_feature.sum() / n_features
    beta_sum = np.sum(squares.T @ squares)
    delta_sum = np.sum((centred.T @ centred) ** 2) / n_samples ** 2
    beta = 1.0 / (n_features * n_samples) * (beta_sum / n_samples - delta_sum)
    delta = (delta_sum - 2.0 * mean_variance * trace_per_feature.sum()
             + n_features * mean_variance ** 2) / n_features
    beta = min(beta, delta)
    return 0.0 if beta == 0 else beta / delta


def ledoit_wolf(prices, frequency: int = 252, log_returns: bool = False,
                fix_psd: bool = True) -> np.ndarray:
    """``CovarianceShrinkage(prices).ledoit_wolf()`` (constant-variance target, NaN → 0 as pypfopt),
    which is scikit-learn's ``LedoitWolf`` on those returns, × frequency."""
    returns = np.nan_to_num(returns_from_prices(prices, log_returns))
    centred = returns - returns.mean(axis=0)
    n_samples, n_features = centred.shape
    if n_features == 1:
        return _finish(np.atleast_2d((centred ** 2).mean()) * frequency, fix_psd)
    shrinkage = ledoit_wolf_shrinkage(centred)
    empirical = centred.T @ centred / n_samples
    shrunk = (1.0 - shrinkage) * empirical
    shrunk.flat[:: n_features + 1] += shrinkage * np.trace(empirical) / n_features
    return _finish(shrunk * frequency, fix_psd)
