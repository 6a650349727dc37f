"""Closed-form (model) risk measures: normal VaR and ES, Cornish-Fisher VaR, Euler component VaR.

For a horizon of h days the daily moments scale as an i.i.d. sum: mean * h, std * sqrt(h), skewness
/ sqrt(h), excess kurtosis / h. alpha = 1 - confidence, z = Phi^-1(alpha) (negative for alpha < 0.5).
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from scipy.stats import norm

from utils.engine.risk.moments import ReturnMoments


def normal_var(moments: ReturnMoments, alpha: float, horizon_days: int) -> float:
    """-(mu h + z_alpha sigma sqrt(h))."""
    return -(moments.mean * horizon_days + float(norm.ppf(alpha)) * moments.std * math.sqrt(horizon_days))


def normal_es(moments: ReturnMoments, alpha: float, horizon_days: int) -> float:
    """-mu h + sigma sqrt(h) phi(z_alpha) / alpha: the mean loss beyond the normal VaR."""
    z = float(norm.ppf(alpha))
    return -moments.mean * horizon_days + moments.std * math.sqrt(horizon_days) * float(norm.pdf(z)) / alpha


def cornish_fisher_var(moments: ReturnMoments, alpha: float, horizon_days: int) -> float:
    """PerformanceAnalytics' "modified" VaR -(mu h + z_cf sigma sqrt(h)) with
    z_cf = z + (z^2 - 1) S/6 + (z^3 - 3z) K/24 - (2z^3 - 5z) S^2/36, S the biased skewness and K the
    biased excess kurtosis of the daily returns, scaled to the horizon as S/sqrt(h), K/h."""
    z = float(norm.ppf(alpha))
    skewness = moments.skewness / math.sqrt(horizon_days)
    kurtosis = moments.excess_kurtosis / horizon_days
    z_cf = (z + (z * z - 1.0) * skewness / 6.0 + (z ** 3 - 3.0 * z) * kurtosis / 24.0
            - (2.0 * z ** 3 - 5.0 * z) * skewness * skewness / 36.0)
    return -(moments.mean * horizon_days + z_cf * moments.std * math.sqrt(horizon_days))


def component_var(asset_mean: Any, covariance: Any, weights: Any, alpha: float, horizon_days: int,
                  xp: ModuleType) -> tuple[float, ...]:
    """Euler decomposition of the normal VaR, one contribution per asset:
    c_i = -(w_i mu_i h + z sqrt(h) w_i (Sigma w)_i / sigma_p), sigma_p = sqrt(w' Sigma w); they sum
    to -(w'mu h + z sqrt(h) sigma_p), the parametric VaR. With sigma_p = 0 only the mean term remains."""
    z = float(norm.ppf(alpha))
    marginal = covariance @ weights
    portfolio_std = math.sqrt(max(float(weights @ marginal), 0.0))
    contributions = -(weights * asset_mean * horizon_days)
    if portfolio_std > 0.0:
        contributions = contributions - z * math.sqrt(horizon_days) * weights * marginal / portfolio_std
    return tuple(float(value) for value in contributions.tolist())
