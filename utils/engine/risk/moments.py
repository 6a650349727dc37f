"""Sample moments the risk measures share: per-asset mean and covariance, portfolio return moments, beta."""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class ReturnMoments:
    """Moments of one daily return series (host floats)."""

    mean: float
    std: float  # ddof 1
    skewness: float  # biased, as scipy.stats.skew (0 for a constant series)
    excess_kurtosis: float  # biased, as scipy.stats.kurtosis (Fisher; 0 for a constant series)


def return_moments(returns: Any, xp: ModuleType) -> ReturnMoments:
    observations = returns.shape[0]
    mean = xp.mean(returns)
    centered = returns - mean
    squared = centered * centered
    second = float(xp.mean(squared))
    std = math.sqrt(float(xp.sum(squared)) / (observations - 1))
    if second == 0.0:  # a constant series: no shape to correct for
        return ReturnMoments(float(mean), std, 0.0, 0.0)
    third = float(xp.mean(squared * centered))
    fourth = float(xp.mean(squared * squared))
    return ReturnMoments(float(mean), std, third / second ** 1.5, fourth / second ** 2 - 3.0)


def asset_mean_covariance(asset_returns: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Per-asset sample mean (N,) and covariance (N, N) with ddof 1, on the array module ``xp``."""
    mean = xp.mean(asset_returns, axis=0)
    centered = asset_returns - mean
    covariance = (centered.T @ centered) / (asset_returns.shape[0] - 1)
    return mean, covariance


def beta(portfolio_returns: Any, benchmark_returns: Any, xp: ModuleType) -> float:
    """cov(r_p, r_b) / var(r_b), both ddof 1; 0.0 when the benchmark never moves (undefined)."""
    benchmark_centered = benchmark_returns - xp.mean(benchmark_returns)
    variation = float(xp.sum(benchmark_centered * benchmark_centered))
    if variation == 0.0:
        return 0.0
    co_variation = float(xp.sum((portfolio_returns - xp.mean(portfolio_returns)) * benchmark_centered))
    return co_variation / variation
