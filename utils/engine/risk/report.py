"""``risk_report``: every risk measure of one constant-weight portfolio, from daily asset returns.

Conventions (the proto comments repeat them):
  * Losses are positive fractions of capital (0.02 = a 2 % loss); returns (worst windows, shock) keep
    their sign. alpha = 1 - confidence.
  * Portfolio daily return r_t = sum_i w_i r_{t,i}, constant weights as given (not renormalised); a
    NaN asset return counts as 0 for that asset on that day (a NaN benchmark return likewise).
  * Horizon h days: historical measures use the T - h + 1 overlapping h-day compounded portfolio
    returns prod(1 + r) - 1; parametric measures scale the daily mean by h and std by sqrt(h);
    Monte-Carlo draws h-day returns (see monte_carlo.py).
  * historical_var / historical_cvar: Riskfolio-Lib VaR_Hist / CVaR_Hist (see tails.py), alpha the
    decimal complement of the confidence.
  * parametric_var = -(mu h + z sigma sqrt(h)), parametric_es = -mu h + sigma sqrt(h) phi(z) / alpha,
    z = Phi^-1(alpha), mu and sigma (ddof 1) of the daily portfolio returns; cornish_fisher_var is
    PerformanceAnalytics' modified VaR (parametric.py).
  * mc_var / mc_es: the historical formulas applied to the simulated scenarios; mc_standard_error is
    the asymptotic standard error of that quantile under a fitted normal density (monte_carlo.py).
  * component_var (per level): Euler contributions to that level's parametric VaR, summing to it.
  * annual_volatility = std(r, ddof 1) sqrt(frequency); max_drawdown of prod(1 + r) from a start at 1
    (Riskfolio MDD_Rel); beta = cov(r_p, r_b) / var(r_b), ddof 1, None without a benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Sequence

import numpy

from utils.engine.risk.historical import WorstWindow, horizon_returns, max_drawdown, worst_windows
from utils.engine.risk.inputs import RiskInputs, check_inputs
from utils.engine.risk.moments import asset_mean_covariance, beta, return_moments
from utils.engine.risk.monte_carlo import (DEFAULT_CHUNK_SCENARIOS, bootstrap_scenarios, normal_scenarios,
                                           portfolio_loading, quantile_standard_error)
from utils.engine.risk.parametric import component_var, cornish_fisher_var, normal_es, normal_var
from utils.engine.risk.tails import tail_alpha, var_cvar


@dataclass(frozen=True)
class RiskLevel:
    """Every measure at one confidence level, losses as positive fractions over ``horizon_days``."""

    confidence: float
    historical_var: float
    historical_cvar: float
    parametric_var: float
    parametric_es: float
    cornish_fisher_var: float
    mc_var: float
    mc_es: float
    mc_standard_error: float
    component_var: tuple[float, ...]  # one per asset, sums to parametric_var


@dataclass(frozen=True)
class RiskReport:
    levels: tuple[RiskLevel, ...]  # in the order of ``confidences``
    annual_volatility: float
    max_drawdown: float
    beta: float | None
    worst_windows: tuple[WorstWindow, ...]  # up to 5, worst first, not overlapping
    shock_return: float | None  # sum_i w_i shock_i (a return: negative is a loss)
    observations: int  # T, the daily rows of asset_returns

    @property
    def component_var(self) -> tuple[float, ...]:
        """The Euler decomposition at the first confidence level (each level carries its own)."""
        return self.levels[0].component_var


def _host(values: Any) -> numpy.ndarray:
    """A device array back in host memory (CuPy arrays have ``.get()``; NumPy ones are already there)."""
    return values.get() if hasattr(values, "get") else numpy.asarray(values)


def _scenarios(inputs: RiskInputs, portfolio_returns: Any, weights: Any,
               portfolio_mean: float, covariance: Any, seed: int | None, xp: ModuleType) -> Any:
    if inputs.mc_method == "bootstrap":
        return bootstrap_scenarios(portfolio_returns, inputs.horizon_days, inputs.mc_scenarios, seed,
                                   inputs.chunk_scenarios, xp)
    loading = portfolio_loading(covariance, weights, xp)
    return normal_scenarios(portfolio_mean, loading, inputs.horizon_days, inputs.mc_scenarios, seed,
                            inputs.chunk_scenarios, xp)


def risk_report(asset_returns: Any, weights: Any, *, confidences: Sequence[float] = (0.95, 0.99),
                horizon_days: int = 1, mc_scenarios: int = 100_000, seed: int | None = None,
                mc_method: str = "normal", benchmark_returns: Any = None, shocks: Any = None,
                frequency: float = 252, xp: ModuleType = numpy,
                chunk_scenarios: int = DEFAULT_CHUNK_SCENARIOS) -> RiskReport:
    """The risk report of a constant-weight portfolio (conventions in the module docstring).

    ``asset_returns`` (T, N) daily simple returns and the other arrays are host arrays; ``xp`` (NumPy or
    CuPy, from ``Backend.xp``) is where the computation runs; on CuPy the portfolio returns come from
    cuBLAS, so history-based values may differ from the CPU's in the last bits. Raises ValueError on
    invalid input.
    """
    inputs = check_inputs(asset_returns, weights, confidences=confidences, horizon_days=horizon_days,
                          mc_scenarios=mc_scenarios, mc_method=mc_method, benchmark_returns=benchmark_returns,
                          shocks=shocks, frequency=frequency, chunk_scenarios=chunk_scenarios)
    horizon = inputs.horizon_days
    device_returns = xp.asarray(inputs.asset_returns, dtype=xp.float64)
    device_weights = xp.asarray(inputs.weights, dtype=xp.float64)
    portfolio_returns = device_returns @ device_weights
    moments = return_moments(portfolio_returns, xp)
    asset_mean, covariance = asset_mean_covariance(device_returns, xp)
    window_returns = horizon_returns(portfolio_returns, horizon, xp)
    scenarios = _scenarios(inputs, portfolio_returns, device_weights, moments.mean,
                           covariance, seed, xp)
    levels = []
    for confidence in inputs.confidences:
        alpha = tail_alpha(confidence)
        historical_var, historical_cvar = var_cvar(window_returns, confidence, xp)
        mc_var, mc_es = var_cvar(scenarios, confidence, xp)
        levels.append(RiskLevel(
            confidence=confidence, historical_var=historical_var, historical_cvar=historical_cvar,
            parametric_var=normal_var(moments, alpha, horizon), parametric_es=normal_es(moments, alpha, horizon),
            cornish_fisher_var=cornish_fisher_var(moments, alpha, horizon), mc_var=mc_var, mc_es=mc_es,
            mc_standard_error=quantile_standard_error(scenarios, mc_var, alpha, xp),
            component_var=component_var(asset_mean, covariance, device_weights, alpha, horizon, xp)))
    host_returns = _host(portfolio_returns)
    benchmark = inputs.benchmark_returns
    return RiskReport(
        levels=tuple(levels),
        annual_volatility=moments.std * math.sqrt(inputs.frequency),
        max_drawdown=max_drawdown(host_returns),
        beta=None if benchmark is None else beta(portfolio_returns, xp.asarray(benchmark, dtype=xp.float64), xp),
        worst_windows=worst_windows(_host(window_returns), horizon),
        shock_return=None if inputs.shocks is None else float(inputs.shocks @ inputs.weights),
        observations=int(inputs.asset_returns.shape[0]))
