"""Checks the inputs of a risk report once, with messages a user can act on (ValueError -> INVALID_ARGUMENT).

Missing data: a NaN asset return (an asset not trading that day) counts as a 0 return for that asset on
that day, so every row stays in the sample; likewise a NaN benchmark return. Infinite values and simple
returns below -1 (a loss beyond 100 %) are rejected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MC_METHODS = ("normal", "bootstrap")
MIN_MC_SCENARIOS = 100
MAX_MC_SCENARIOS = 10_000_000
MIN_OBSERVATIONS = 2


@dataclass(frozen=True)
class RiskInputs:
    """Validated host arrays and settings (asset returns with NaN already replaced by 0)."""

    asset_returns: np.ndarray  # (T, N) float64
    weights: np.ndarray  # (N,) float64
    confidences: tuple[float, ...]
    horizon_days: int
    mc_scenarios: int
    mc_method: str
    benchmark_returns: np.ndarray | None  # (T,) float64
    shocks: np.ndarray | None  # (N,) float64
    frequency: float
    chunk_scenarios: int


def _float_array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numbers: {error}") from None
    return array


def _returns_without_gaps(values: Any, name: str, ndim: int) -> np.ndarray:
    returns = _float_array(values, name)
    if returns.ndim != ndim:
        shape = "(T, N) days x assets" if ndim == 2 else "(T,) days"
        raise ValueError(f"{name} must be a {ndim}-D array of shape {shape}, got shape {returns.shape}")
    if np.isinf(returns).any():
        raise ValueError(f"{name} contains an infinite value; pass simple returns (0.01 = +1 %)")
    returns = np.where(np.isnan(returns), 0.0, returns)  # a missing return counts as 0 that day
    if (returns < -1.0).any():
        raise ValueError(f"{name} contains a simple return below -1 (a loss beyond 100 %); "
                         "pass simple returns, not log returns or percentages")
    return returns


def _whole_number(value: Any, name: str) -> int:
    try:
        whole = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _per_asset(values: Any, name: str, assets: int) -> np.ndarray:
    array = _float_array(values, name)
    if array.shape != (assets,):
        raise ValueError(f"{name} must hold one value per asset ({assets}), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite numbers (no NaN or infinity)")
    return array


def check_inputs(asset_returns: Any, weights: Any, *, confidences: Sequence[float], horizon_days: int,
                 mc_scenarios: int, mc_method: str, benchmark_returns: Any, shocks: Any,
                 frequency: float, chunk_scenarios: int) -> RiskInputs:
    """Validate everything ``risk_report`` takes; raise ValueError naming the argument and the fix."""
    returns = _returns_without_gaps(asset_returns, "asset_returns", ndim=2)
    observations, assets = returns.shape
    if assets < 1:
        raise ValueError("asset_returns must have at least one asset column")
    if observations < MIN_OBSERVATIONS:
        raise ValueError(f"asset_returns has {observations} observation(s); at least {MIN_OBSERVATIONS} "
                         "days are needed to estimate a risk")
    checked_weights = _per_asset(weights, "weights", assets)
    try:
        levels = tuple(float(confidence) for confidence in confidences)
    except (TypeError, ValueError):
        raise ValueError(f"confidences must be a sequence of numbers, got {confidences!r}") from None
    if not levels:
        raise ValueError("confidences must hold at least one level, e.g. (0.95, 0.99)")
    for confidence in levels:
        if not (0.0 < confidence < 1.0):
            raise ValueError(f"each confidence must lie strictly between 0 and 1 (0.95 = 95 %), got {confidence}")
    horizon = _whole_number(horizon_days, "horizon_days")
    if not 1 <= horizon < observations:
        raise ValueError(f"horizon_days must be at least 1 and below the number of observations "
                         f"({observations}), got {horizon}")
    scenarios = _whole_number(mc_scenarios, "mc_scenarios")
    if not MIN_MC_SCENARIOS <= scenarios <= MAX_MC_SCENARIOS:
        raise ValueError(f"mc_scenarios must be between {MIN_MC_SCENARIOS:,} and {MAX_MC_SCENARIOS:,}, "
                         f"got {scenarios:,}")
    if mc_method not in MC_METHODS:
        raise ValueError(f"mc_method must be one of {', '.join(MC_METHODS)}, got {mc_method!r}")
    chunk = _whole_number(chunk_scenarios, "chunk_scenarios")
    if chunk < 1:
        raise ValueError(f"chunk_scenarios must be at least 1, got {chunk}")
    if isinstance(frequency, bool) or not (math.isfinite(float(frequency)) and float(frequency) > 0):
        raise ValueError(f"frequency must be a positive number of periods a year (252 for days), got {frequency!r}")
    benchmark = None
    if benchmark_returns is not None:
        benchmark = _returns_without_gaps(benchmark_returns, "benchmark_returns", ndim=1)
        if benchmark.shape[0] != observations:
            raise ValueError(f"benchmark_returns must have one return per day of asset_returns "
                             f"({observations}), got {benchmark.shape[0]}")
    checked_shocks = None if shocks is None else _per_asset(shocks, "shocks", assets)
    return RiskInputs(asset_returns=returns, weights=checked_weights, confidences=levels,
                      horizon_days=horizon, mc_scenarios=scenarios, mc_method=mc_method,
                      benchmark_returns=benchmark, shocks=checked_shocks, frequency=float(frequency),
                      chunk_scenarios=chunk)
