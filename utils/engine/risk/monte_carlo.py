"""Monte-Carlo scenarios of the portfolio's h-day return, simulated in chunks of bounded memory.

``normal``: asset returns over h days ~ N(h mu, h Sigma) (mu, Sigma the sample mean and ddof-1
covariance). With A = V Lambda^(1/2) from the eigen-decomposition Sigma = V Lambda V' (any A with
A A' = Sigma gives the same law; unlike Cholesky it also serves a singular Sigma, e.g. more assets than
days), a draw is h mu + sqrt(h) A z, z ~ N(0, I_N), and the portfolio return is exactly
w'(h mu + sqrt(h) A z) = h w'mu + sqrt(h) (A'w)'z. So per chunk only Z (chunk x N) @ (A'w) is formed,
a matrix-vector product, and only the portfolio returns (one float per scenario) are kept.

``bootstrap``: each scenario is the sum of h portfolio daily returns drawn at random, with replacement,
from the history (whole days, so the cross-section of a day stays together).

Random numbers come from ``xp.random.default_rng(seed)`` (NumPy: Generator(PCG64(seed)); CuPy: its own
XORWOW stream, so GPU numbers differ from CPU ones). Chunks draw consecutively from that one stream:
on NumPy a seed and chunk size give the same scenarios bit for bit, and another chunk size gives the
same draws, with only the last bits of Z @ (A'w) changed by the BLAS's blocking (bootstrap: identical).
On CuPy a seed and chunk size are reproducible too, but cuRAND's stream depends on the chunk size.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from scipy.stats import norm

DEFAULT_CHUNK_SCENARIOS = 16_384  # x 500 assets x 8 bytes = 64 MiB of normals per chunk


def portfolio_loading(covariance: Any, weights: Any, xp: ModuleType) -> Any:
    """A'w for A = V Lambda^(1/2), Sigma = V Lambda V' (rounding-negative eigenvalues clipped to 0)."""
    eigenvalues, eigenvectors = xp.linalg.eigh(covariance)
    return xp.sqrt(xp.clip(eigenvalues, 0.0, None)) * (eigenvectors.T @ weights)


def normal_scenarios(portfolio_mean: float, loading: Any, horizon_days: int, scenarios: int, seed: int | None,
                     chunk_scenarios: int, xp: ModuleType) -> Any:
    """``scenarios`` h-day portfolio returns h mu_p + sqrt(h) (A'w)'z; memory: chunk x N normals at a time."""
    rng = xp.random.default_rng(seed)
    assets = loading.shape[0]
    returns = xp.empty(scenarios, dtype=xp.float64)
    # one buffer refilled in place: a fresh chunk each time costs its page faults again (~25 % on CPU)
    normals = xp.empty((min(chunk_scenarios, scenarios), assets), dtype=xp.float64)
    for start in range(0, scenarios, chunk_scenarios):
        stop = min(start + chunk_scenarios, scenarios)
        chunk = normals[:stop - start]
        rng.standard_normal(dtype=xp.float64, out=chunk)
        returns[start:stop] = chunk @ loading
    returns *= math.sqrt(horizon_days)
    returns += portfolio_mean * horizon_days
    return returns


def bootstrap_scenarios(portfolio_returns: Any, horizon_days: int, scenarios: int, seed: int | None,
                        chunk_scenarios: int, xp: ModuleType) -> Any:
    """``scenarios`` sums of h daily portfolio returns drawn with replacement from the history."""
    rng = xp.random.default_rng(seed)
    days = portfolio_returns.shape[0]
    returns = xp.empty(scenarios, dtype=xp.float64)
    rows = max(1, chunk_scenarios // horizon_days)  # chunk x h day indices at a time
    for start in range(0, scenarios, rows):
        stop = min(start + rows, scenarios)
        drawn_days = rng.integers(0, days, size=(stop - start, horizon_days))
        returns[start:stop] = portfolio_returns[drawn_days].sum(axis=1)
    return returns


def quantile_standard_error(scenario_returns: Any, value_at_risk: float, alpha: float, xp: ModuleType) -> float:
    """Standard error of the Monte-Carlo VaR: the asymptotic s.e. of a sample alpha-quantile,
    sqrt(alpha (1 - alpha) / n) / f(q), with f the normal density fitted to the scenarios (their mean
    and ddof-1 std) evaluated at the estimated quantile q = -VaR; 0 when the scenarios do not vary."""
    count = scenario_returns.shape[0]
    mean = float(xp.mean(scenario_returns))
    std = float(xp.std(scenario_returns, ddof=1))
    if std == 0.0:
        return 0.0
    density = float(norm.pdf((-value_at_risk - mean) / std)) / std
    return math.sqrt(alpha * (1.0 - alpha) / count) / density
