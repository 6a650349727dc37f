"""Risk report job (PortfolioService.ComputeRisk, task type ``risk``): ``utils.engine.risk``'s
measures of a constant-weight portfolio of stored symbols, or of a completed backtest's equity.

Daily asset returns come from the stored closes on the union calendar of the symbols inside
[start, end], each close carried forward over the dates a symbol has no bar (a halted position keeps
its value, and the move over the halt lands on the day trading resumes); before a symbol's first
close its return is 0. A backtest is assessed as one asset: its equity curve's returns, weight 1.
The Monte-Carlo simulation runs on the worker's backend (CuPy on a GPU, NumPy on the CPU).
"""
from __future__ import annotations

import math
import secrets
import time
from typing import Any

import numpy as np

from utils.data.store import BarStore
from utils.data.timeutil import format_time
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks.portfolio import closes_on_calendar, stored_closes
from utils.tasks.resources import WorkerResources


def carried_returns(closes: np.ndarray) -> np.ndarray:
    """(T - 1, N) simple returns of closes carried forward over gaps; NaN before the first close."""
    from utils.engine.factors.forward_returns import forward_fill
    filled = forward_fill(closes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return filled[1:] / filled[:-1] - 1.0


def _benchmark(store: BarStore, symbol: str, times: np.ndarray) -> np.ndarray:
    """The benchmark's returns on the portfolio's calendar (closes carried forward)."""
    return carried_returns(closes_on_calendar(store, symbol, times)[:, None])[:, 0]


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def assess(store: BarStore, payload: dict[str, Any], xp: Any = np, panels: Any = None) -> dict[str, Any]:
    """The job's result without timing (also used by tests and the benchmark)."""
    from utils.engine.risk import risk_report
    if payload.get("equity"):
        equity = np.asarray(payload["equity"], dtype=np.float64)
        times = np.asarray(payload["equity_times"], dtype=np.int64)
        symbols, weights = [payload.get("backtest_id", "backtest")], np.ones(1)
        returns = (equity[1:] / equity[:-1] - 1.0)[:, None]
    else:
        symbols = list(payload["weights"])
        weights = np.array([payload["weights"][s] for s in symbols], dtype=np.float64)
        times, closes = stored_closes(store, symbols, payload["start_ns"], payload["end_ns"], panels)
        returns = carried_returns(closes)
    benchmark = _benchmark(store, payload["benchmark"], times) if payload.get("benchmark") else None
    shocks = payload.get("shocks") or {}
    seed = payload.get("seed")
    seed = secrets.randbits(63) if seed is None else int(seed)
    try:
        report = risk_report(
            returns, weights, confidences=payload.get("confidence") or (0.95, 0.99),
            horizon_days=payload.get("horizon_days") or 1, mc_scenarios=payload.get("mc_scenarios") or 100_000,
            seed=seed, mc_method=payload.get("mc_method") or "normal", benchmark_returns=benchmark,
            shocks=np.array([shocks.get(s, 0.0) for s in symbols]) if shocks else None, xp=xp)
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    return_times = times[1:]
    first = report.levels[0]
    return {
        "levels": [{name: _number(getattr(level, name)) for name in (
            "confidence", "historical_var", "historical_cvar", "parametric_var", "parametric_es",
            "cornish_fisher_var", "mc_var", "mc_es", "mc_standard_error")} for level in report.levels],
        "annual_volatility": _number(report.annual_volatility), "max_drawdown": _number(report.max_drawdown),
        "beta": _number(report.beta), "observations": report.observations,
        "component_var": {s: _number(c) for s, c in zip(symbols, first.component_var)},
        "worst_windows": [{"start_time": format_time(int(return_times[w.start])),
                           "end_time": format_time(int(return_times[w.end])),
                           "portfolio_return": _number(w.window_return)} for w in report.worst_windows],
        "shock_return": _number(report.shock_return) or 0.0, "seed": seed,
        "mc_scenarios": payload.get("mc_scenarios") or 100_000,
    }


def make_risk_handler(resources: WorkerResources):
    def handle(context: JobContext) -> dict[str, Any]:
        started = time.perf_counter()
        backend = resources.backend_for(context.payload.get("device") or "auto")
        result = assess(resources.bar_store, context.payload, backend.xp, resources.aligned_bars_cache)
        result.update(compute_time=time.perf_counter() - started, device=backend.name)
        context.progress(1.0)
        return result
    return handle
