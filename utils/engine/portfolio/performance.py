"""Portfolio statistics as pypfopt: expected return, volatility, Sharpe; risk contributions; cleaning."""
from __future__ import annotations

import numpy as np


def portfolio_performance(weights, mu, cov, risk_free_rate: float = 0.0) -> tuple[float, float, float]:
    """(μᵀw, sqrt(wᵀΣw), (μᵀw − rf) / sqrt(wᵀΣw)): ``base_optimizer.portfolio_performance``."""
    weights = np.asarray(weights, dtype=np.float64)
    volatility = float(np.sqrt(weights @ np.asarray(cov) @ weights))
    expected_return = float(weights @ np.asarray(mu))
    return expected_return, volatility, (expected_return - risk_free_rate) / volatility


def risk_contributions(weights, cov) -> np.ndarray:
    """Each asset's share wᵢ(Σw)ᵢ / wᵀΣw of the portfolio variance (they sum to 1)."""
    weights = np.asarray(weights, dtype=np.float64)
    marginal = np.asarray(cov) @ weights
    return weights * marginal / (weights @ marginal)


def clean_weights(weights, cutoff: float = 1e-4, rounding: int | None = 5) -> np.ndarray:
    """Zero |w| < cutoff, then round: pypfopt ``clean_weights``."""
    cleaned = np.array(weights, dtype=np.float64)
    cleaned[np.abs(cleaned) < cutoff] = 0.0
    if rounding is not None:
        if not isinstance(rounding, int) or rounding < 1:
            raise ValueError("rounding must be a positive integer")
        cleaned = np.round(cleaned, rounding)
    return cleaned
