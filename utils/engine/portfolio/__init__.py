"""Portfolio optimisation engine: PyPortfolioOpt's estimators and objectives on plain arrays.

Prices are (dates, assets) float arrays with NaN where an asset has no bar. No pandas in the
hot paths, no gRPC or Redis; the mean-variance objectives call Clarabel directly.
"""
from .allocation import greedy_allocation, lp_allocation
from .errors import InfeasibleProblem, OptimizationFailed
from .expected_returns import capm, ema_historical, mean_historical
from .hrp import hrp_performance, hrp_weights
from .objectives import OBJECTIVES
from .optimize import optimize
from .performance import clean_weights, portfolio_performance, risk_contributions
from .problem import OptimizationResult, PortfolioProblem
from .returns import returns_from_prices
from .risk_models import (
    exp_cov,
    fix_nonpositive_semidefinite,
    ledoit_wolf,
    sample_cov,
    semicovariance,
)

__all__ = [
    "OBJECTIVES",
    "InfeasibleProblem",
    "OptimizationFailed",
    "OptimizationResult",
    "PortfolioProblem",
    "capm",
    "clean_weights",
    "ema_historical",
    "exp_cov",
    "fix_nonpositive_semidefinite",
    "greedy_allocation",
    "hrp_performance",
    "hrp_weights",
    "ledoit_wolf",
    "lp_allocation",
    "mean_historical",
    "optimize",
    "portfolio_performance",
    "returns_from_prices",
    "risk_contributions",
    "sample_cov",
    "semicovariance",
]
