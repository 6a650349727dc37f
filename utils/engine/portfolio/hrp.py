"""Hierarchical risk parity as pypfopt ``HRPOpt.optimize`` (López de Prado's quasi-diagonal bisection).

Same steps as pypfopt: pairwise-complete correlation and covariance of the returns, distance
sqrt(clip((1 − ρ)/2, 0, 1)), scipy linkage, leaf order of the tree, then halves of the ordered
list split recursively with inverse-variance cluster variances. Ordering Σ once makes every
cluster a contiguous block, so the bisection is slicing, not pandas ``.loc`` look-ups.
"""
from __future__ import annotations

import numpy as np
import scipy.cluster.hierarchy as sch
import scipy.spatial.distance as ssd

from .pairwise import pairwise_cov, pairwise_cov_and_corr
from .performance import portfolio_performance


def _cov_to_corr(cov: np.ndarray) -> np.ndarray:
    inverse_std = 1.0 / np.sqrt(np.diag(cov))
    return inverse_std[:, None] * cov * inverse_std[None, :]


def _cluster_variance(ordered_cov: np.ndarray, start: int, stop: int) -> float:
    block = ordered_cov[start:stop, start:stop]
    inverse_variance = 1.0 / np.diag(block)
    inverse_variance /= inverse_variance.sum()
    return float(inverse_variance @ block @ inverse_variance)


def bisection_weights(ordered_cov: np.ndarray) -> np.ndarray:
    """Weights in the quasi-diagonal order: pypfopt ``_raw_hrp_allocation`` on contiguous ranges."""
    n_assets = ordered_cov.shape[0]
    weights = np.ones(n_assets)
    clusters = [(0, n_assets)]
    while clusters:
        clusters = [half for start, stop in clusters if stop - start > 1
                    for half in ((start, start + (stop - start) // 2), (start + (stop - start) // 2, stop))]
        for (first_start, first_stop), (second_start, second_stop) in zip(clusters[::2], clusters[1::2]):
            first_variance = _cluster_variance(ordered_cov, first_start, first_stop)
            second_variance = _cluster_variance(ordered_cov, second_start, second_stop)
            alpha = 1 - first_variance / (first_variance + second_variance)
            weights[first_start:first_stop] *= alpha
            weights[second_start:second_stop] *= 1 - alpha
    return weights


def _correlation_and_cov(returns, cov) -> tuple[np.ndarray, np.ndarray]:
    if (returns is None) == (cov is None):
        raise ValueError("hrp_weights needs either returns or cov (not both)")
    if returns is not None:
        returns = np.asarray(returns, dtype=np.float64)
        if returns.ndim != 2:
            raise ValueError(f"returns must be (dates, assets), got shape {returns.shape}")
        covariance, correlation = pairwise_cov_and_corr(returns)
        return correlation, covariance
    covariance = np.asarray(cov, dtype=np.float64)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError(f"cov must be square, got shape {covariance.shape}")
    return np.round(_cov_to_corr(covariance), 6), covariance   # pypfopt rounds this correlation


def hrp_weights(returns=None, linkage: str = "single", cov=None) -> np.ndarray:
    """(N,) HRP weights from (T, N) returns (NaN allowed) or from a covariance matrix."""
    if linkage not in sch._LINKAGE_METHODS:
        raise ValueError(f"linkage must be one of scipy's {sorted(sch._LINKAGE_METHODS)}, got {linkage!r}")
    correlation, covariance = _correlation_and_cov(returns, cov)
    if not (np.all(np.isfinite(correlation)) and np.all(np.isfinite(covariance))):
        raise ValueError("hrp_weights: the correlation or covariance has NaN (an asset with < 2 returns "
                         "or no overlap with another)")
    distance = np.sqrt(np.clip((1.0 - correlation) / 2.0, 0.0, 1.0))
    tree = sch.linkage(ssd.squareform(distance, checks=False), linkage)
    order = sch.leaves_list(tree)
    ordered = bisection_weights(covariance[np.ix_(order, order)])
    weights = np.empty_like(ordered)
    weights[order] = ordered
    return weights


def hrp_performance(weights, returns, risk_free_rate: float = 0.0, frequency: int = 252):
    """``HRPOpt.portfolio_performance``: arithmetic mean × frequency, pairwise sample cov × frequency."""
    returns = np.asarray(returns, dtype=np.float64)
    mu = np.nanmean(returns, axis=0) * frequency
    return portfolio_performance(weights, mu, pairwise_cov(returns) * frequency, risk_free_rate)
