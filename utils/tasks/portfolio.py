"""Portfolio optimisation job (PortfolioService.OptimizePortfolio, task type ``portfolio``).

The closes: the stored closes of the request's symbols inside [start, end] on the union of their
dates, NaN where a symbol has no bar (``utils/tasks/factor_panels.py``; PyPortfolioOpt's input is
the same frame and its NaN handling is reproduced by ``utils.engine.portfolio``). Or an inline
expected-return vector and covariance. The estimators, objectives, HRP, clean-up and whole-share
allocation are ``utils.engine.portfolio``'s; this module maps the validated payload onto them and
the answer onto a strict-JSON document.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from utils.data.store import BarStore, SymbolNotFound
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks.factor_panels import AlignedBarsCache, aligned_bars
from utils.tasks.resources import WorkerResources

DEFAULT_FREQUENCY = 252


def stored_closes(store: BarStore, symbols: list[str], start_ns: int, end_ns: int,
                  panels: AlignedBarsCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(times, closes (T, N), read-only) of ``symbols`` inside [start, end]; PermanentJobError
    without bars. ``panels``: the worker's cache of aligned bars (re-optimising one universe with
    other constraints reads nothing but the symbols' versions)."""
    load = panels.load if panels is not None else aligned_bars
    try:
        aligned = load(store, symbols, start_ns, end_ns, 0, ("close",))
    except SymbolNotFound as exc:
        raise PermanentJobError(str(exc)) from None
    closes = aligned.close[:aligned.factor_rows]
    empty = [symbol for symbol, count in zip(symbols, np.isfinite(closes).sum(axis=0)) if count < 2]
    if empty:
        raise PermanentJobError(f"{empty[0]} has fewer than 2 stored closes between start_time and end_time; "
                                f"widen the period or drop it")
    return aligned.times[:aligned.factor_rows], closes


def closes_on_calendar(store: BarStore, symbol: str, times: np.ndarray) -> np.ndarray:
    """(T,) one symbol's stored closes on another calendar ``times``: NaN on dates it has no bar
    (its bars on dates outside ``times`` are dropped)."""
    own_times, own = stored_closes(store, [symbol], int(times[0]), int(times[-1]))
    series = np.full(times.size, np.nan)
    rows = np.searchsorted(times, own_times)
    inside = (rows < times.size) & (times[np.minimum(rows, times.size - 1)] == own_times)
    series[rows[inside]] = own[inside, 0]
    return series


def _market(store: BarStore, payload: dict[str, Any], times: np.ndarray) -> np.ndarray | None:
    """capm's market closes on the assets' calendar (None: the engine's equal-weight default)."""
    symbol = payload.get("market_symbol")
    return closes_on_calendar(store, symbol, times) if symbol else None


def estimates(store: BarStore, payload: dict[str, Any], closes: np.ndarray, times: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, bool]:
    """(mu, covariance, whether the covariance was repaired) by the request's estimators."""
    from utils.engine import portfolio as engine
    frequency = payload.get("frequency") or DEFAULT_FREQUENCY
    method = payload.get("expected_returns") or "mean_historical"
    if method == "mean_historical":
        mu = engine.mean_historical(closes, frequency=frequency)
    elif method == "ema_historical":
        mu = engine.ema_historical(closes, span=payload.get("ema_span") or 500, frequency=frequency)
    else:
        mu = engine.capm(closes, market_prices=_market(store, payload, times),
                         risk_free_rate=payload.get("risk_free_rate", 0.0), frequency=frequency)
    model = payload.get("risk_model") or "sample_cov"
    if model == "sample_cov":
        cov = engine.sample_cov(closes, frequency=frequency, fix_psd=False)
    elif model == "ledoit_wolf":
        cov = engine.ledoit_wolf(closes, frequency=frequency, fix_psd=False)
    elif model == "exp_cov":
        cov = engine.exp_cov(closes, span=payload.get("cov_span") or 180, frequency=frequency, fix_psd=False)
    else:
        benchmark = payload.get("semicovariance_benchmark")
        cov = engine.semicovariance(closes, benchmark=0.000079 if benchmark is None else benchmark,
                                    frequency=frequency, fix_psd=False)
    cov, fixed = engine.fix_nonpositive_semidefinite(cov)
    return np.asarray(mu, dtype=np.float64), cov, fixed


def _problem(payload: dict[str, Any], mu: np.ndarray, cov: np.ndarray, returns: np.ndarray | None):
    from utils.engine.portfolio import PortfolioProblem
    symbols = payload["symbols"]
    sectors = payload.get("sectors") or {}
    names = sorted(set(sectors.values()))
    sector_of = np.array([names.index(sectors[s]) if s in sectors else len(names) for s in symbols]) \
        if sectors else None
    previous = payload.get("previous_weights") or {}
    return PortfolioProblem(
        mu=mu, cov=cov, weight_lower=payload.get("weight_lower", 0.0), weight_upper=payload.get("weight_upper", 1.0),
        sector_of=sector_of,
        sector_lower={names.index(name): value for name, value in (payload.get("sector_lower") or {}).items()},
        sector_upper={names.index(name): value for name, value in (payload.get("sector_upper") or {}).items()},
        l2_gamma=payload.get("l2_gamma", 0.0),
        previous_weights=np.array([previous.get(s, 0.0) for s in symbols]) if previous else None,
        max_turnover=payload.get("max_turnover"), risk_free_rate=payload.get("risk_free_rate", 0.0),
        returns=returns)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def optimise(store: BarStore, payload: dict[str, Any], panels: AlignedBarsCache | None = None) -> dict[str, Any]:
    """The job's result without timing (also used by tests and the benchmark)."""
    from utils.engine import portfolio as engine
    symbols, objective = payload["symbols"], payload.get("objective") or "min_volatility"
    frequency = payload.get("frequency") or DEFAULT_FREQUENCY
    risk_free_rate = payload.get("risk_free_rate", 0.0)
    warnings: list[str] = []
    closes = returns = times = None
    try:
        if payload.get("inline"):
            mu = np.asarray(payload["inline"]["expected_returns"], dtype=np.float64)
            cov = np.asarray(payload["inline"]["covariance"], dtype=np.float64).reshape(len(symbols), len(symbols))
            cov, fixed = engine.fix_nonpositive_semidefinite(cov)
        else:
            times, closes = stored_closes(store, symbols, payload["start_ns"], payload["end_ns"], panels)
            returns = engine.returns_from_prices(closes)
            mu, cov, fixed = (None, None, False) if objective == "hrp" else estimates(store, payload, closes, times)
        if fixed:
            warnings.append("the covariance matrix was not positive semidefinite; its negative eigenvalues were "
                            "set to 0 (PyPortfolioOpt's spectral fix)")
        if objective == "hrp":
            weights = engine.hrp_weights(returns, linkage=payload.get("linkage") or "single")
            expected, volatility, sharpe = engine.hrp_performance(weights, returns, risk_free_rate, frequency)
            cov = engine.sample_cov(closes, frequency=frequency, fix_psd=False)  # HRPOpt's performance covariance
            solver, status = "none", "optimal"
        else:
            result = engine.optimize(
                _problem(payload, mu, cov, returns if objective == "min_cvar" else None), objective,
                target_volatility=payload.get("target_volatility"), target_return=payload.get("target_return"),
                risk_aversion=payload.get("risk_aversion") or 1.0, alpha=payload.get("alpha") or 0.95)
            weights, solver, status = result.weights, result.solver, result.status
            if payload.get("clean"):
                weights = engine.clean_weights(weights, cutoff=payload.get("cutoff") or 1e-4,
                                               rounding=payload.get("rounding") or 5)
            expected, volatility, sharpe = engine.portfolio_performance(weights, mu, cov, risk_free_rate)
    except engine.InfeasibleProblem as exc:
        raise PermanentJobError(f"infeasible: {exc}") from None
    except (ValueError, engine.OptimizationFailed) as exc:
        raise PermanentJobError(str(exc)) from None
    contributions = engine.risk_contributions(weights, cov)
    document = {
        "objective": objective, "weights": dict(zip(symbols, map(float, weights))),
        "expected_return": _finite(expected), "volatility": _finite(volatility), "sharpe_ratio": _finite(sharpe),
        "risk_contributions": {s: _finite(c) for s, c in zip(symbols, contributions)},
        "solver": solver, "status": status, "covariance_fixed": bool(fixed), "warnings": warnings,
        "observations": int(returns.shape[0]) if returns is not None else 0, "allocation": None,
    }
    if payload.get("portfolio_value"):
        document["allocation"] = allocation(payload, symbols, weights, closes)
    return document


def allocation(payload: dict[str, Any], symbols: list[str], weights: np.ndarray, closes: np.ndarray | None
               ) -> dict[str, Any]:
    """Whole shares at each symbol's latest stored close (DiscreteAllocation)."""
    from utils.engine import portfolio as engine
    if closes is None:
        raise PermanentJobError("portfolio_value needs stored closes (start_time/end_time), not an inline model")
    latest = np.array([column[np.isfinite(column)][-1] for column in closes.T])
    method = payload.get("allocation_method") or "greedy"
    allocate = engine.lp_allocation if method == "lp" else engine.greedy_allocation
    try:
        shares, leftover = allocate(weights, latest, payload["portfolio_value"])
    except ValueError as exc:
        raise PermanentJobError(f"allocation: {exc}") from None
    return {"method": method, "leftover": float(leftover),
            "shares": {s: int(n) for s, n in zip(symbols, shares) if n != 0}}


def make_portfolio_handler(resources: WorkerResources):
    def handle(context: JobContext) -> dict[str, Any]:
        started = time.perf_counter()
        result = optimise(resources.bar_store, context.payload, resources.aligned_bars_cache)
        result["compute_time"] = time.perf_counter() - started
        context.progress(1.0)
        return result
    return handle
