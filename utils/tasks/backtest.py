"""Backtest job: load bars from the store, run the engine, shape the JSON result."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from utils.data.store import BarStore, SymbolNotFound
from utils.data.timeutil import format_times
from utils.engine.backend import Backend, cpu_backend
from utils.engine.backtest.runner import NoDataInRange, run_backtest
from utils.engine.backtest.config import validate_strategy_config
from utils.queue.worker import JobContext, PermanentJobError

LOAD_SHARE = 0.2  # progress fraction attributed to loading bars


def backend_for_job(requested: str, worker_backend: Backend) -> Backend:
    if requested == "cpu":
        return cpu_backend()
    if requested == "gpu" and not worker_backend.is_gpu:
        raise PermanentJobError("device 'gpu' requested but this worker has no GPU")
    return worker_backend


def normalised_config(spec: Any) -> dict[str, Any]:
    return {"strategy_type": spec.strategy_type, **spec.param_values, "fill": spec.fill}


def backtest_result(report: Any, spec: Any, backend: Backend, seconds: float) -> dict[str, Any]:
    trades = []
    for trade in report.trades:
        row = asdict(trade)
        if trade.is_open:
            row["exit_time"] = ""
        trades.append(row)
    return {
        "metrics": report.metrics,
        "equity_curve": {"time": format_times(report.equity_times), "equity": report.equity.tolist(),
                         "drawdown": report.drawdown.tolist()},
        "trades": trades,
        "symbol_metrics": report.per_symbol,
        "strategy_config": normalised_config(spec),
        "device": backend.label,
        "compute_seconds": seconds,
    }


def make_backtest_handler(store: BarStore, worker_backend: Backend):
    def handle(context: JobContext) -> dict[str, Any]:
        payload = context.payload
        started = time.perf_counter()
        backend = backend_for_job(payload.get("device", "auto"), worker_backend)
        try:
            spec = validate_strategy_config(payload["strategy_config"])
        except ValueError as exc:
            raise PermanentJobError(str(exc)) from None
        symbols = payload["symbols"]
        bars = {}
        for index, symbol in enumerate(symbols):
            try:
                bars[symbol] = store.read(symbol, None, payload["end_ns"]).columns()
            except SymbolNotFound as exc:
                raise PermanentJobError(str(exc)) from None
            context.progress(LOAD_SHARE * (index + 1) / len(symbols))
        try:
            report = run_backtest(backend, spec, bars, payload["start_ns"], payload["end_ns"],
                                  payload["initial_capital"], payload["commission_rate"],
                                  progress=lambda f: context.progress(LOAD_SHARE + (1 - LOAD_SHARE) * f * 0.99))
        except NoDataInRange as exc:
            raise PermanentJobError(str(exc)) from None
        return backtest_result(report, spec, backend, time.perf_counter() - started)
    return handle
