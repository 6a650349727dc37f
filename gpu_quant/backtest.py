"""Backtests: submit, follow, read the whole result (all trade pages) as DataFrames, tearsheet."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from ._proto import backtest_pb2, backtest_pb2_grpc
from .convert import frame, times, to_dict
from .jobs import JobHandle

if TYPE_CHECKING:
    from .jobs import Jobs
    from .transport import Transport

TRADE_PAGE_SIZE = 10_000  # the server's maximum page


@dataclass
class BacktestResult:
    """A completed backtest. `metrics` is PerformanceMetrics as a dict; the tables are DataFrames."""

    backtest_id: str
    metrics: dict[str, Any]
    equity: pd.DataFrame           # index time; columns equity, drawdown
    trades: pd.DataFrame           # every trade, all pages
    symbol_metrics: pd.DataFrame   # one row per symbol sleeve
    sweep: pd.DataFrame            # param_grid runs: rank, the params, their metrics (empty otherwise)
    walk_forward: pd.DataFrame
    strategy_config: dict[str, Any]
    device: str
    compute_seconds: float
    rank_by: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the first page, as a dict


def _equity_frame(points: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(points, columns=["time", "equity", "drawdown"])
    table.index = times(table.pop("time"))
    return table


def sweep_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """SweepRow dicts -> one row per parameter set: rank, each param (numbers parsed), metrics."""
    flat = []
    for row in rows:
        params = {name: _number(value) for name, value in (row.get("params") or {}).items()}
        flat.append({"rank": row["rank"], **params, **(row.get("metrics") or {})})
    return frame(flat).sort_values("rank").reset_index(drop=True) if flat else pd.DataFrame()


def _number(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _walk_forward_frame(windows: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for window in windows:
        row = {key: window[key] for key in ("window", "train_start", "train_end", "test_start", "test_end")}
        row.update({f"param_{name}": _number(value) for name, value in window["best_params"].items()})
        row.update({f"is_{name}": value for name, value in (window["in_sample"] or {}).items()})
        row.update({f"oos_{name}": value for name, value in (window["out_of_sample"] or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


class BacktestHandle(JobHandle):
    """A submitted backtest: wait(), result() -> BacktestResult, report(path)."""

    def __init__(self, backtests: "Backtests", job_id: str) -> None:
        super().__init__(backtests.jobs, job_id, backtests.fetch_result)
        self.backtests = backtests

    def report(self, path: str | Path | None = None) -> str:
        """The HTML tearsheet (waits for the backtest); written to `path` when given."""
        self.result()
        return self.backtests.report(self.job_id, path)


class Backtests:
    def __init__(self, transport: "Transport", jobs: "Jobs") -> None:
        self.transport = transport
        self.jobs = jobs
        self.stub = transport.stub(backtest_pb2_grpc.BacktestServiceStub)

    def submit(self, symbols: Iterable[str] | str, start: str, end: str, strategy: dict[str, Any] | str, *,
               capital: float = 1_000_000.0, commission: float = 0.0003, priority: str = "NORMAL",
               device: str = "auto") -> BacktestHandle:
        if isinstance(symbols, str):
            symbols = [name.strip() for name in symbols.split(",") if name.strip()]
        request = backtest_pb2.BacktestRequest(
            stock_codes=list(symbols), start_time=str(start), end_time=str(end),
            strategy_config=strategy if isinstance(strategy, str) else json.dumps(strategy),
            initial_capital=capital, commission_rate=commission,
            priority=backtest_pb2.Priority.Value(priority.upper()), device=device)
        # a submission is not idempotent (a retry would queue a second job): no retries
        response = self.transport.unary(self.stub.SubmitBacktestTask, request, idempotent=False)
        return BacktestHandle(self, response.backtest_id)

    def handle(self, backtest_id: str) -> BacktestHandle:
        return BacktestHandle(self, backtest_id)

    def fetch_result(self, backtest_id: str, page_size: int = TRADE_PAGE_SIZE) -> BacktestResult:
        """GetBacktestResult, every page of trades."""
        pages, token = [], ""
        while True:
            page = self.transport.unary(self.stub.GetBacktestResult, backtest_pb2.BacktestResultRequest(
                backtest_id=backtest_id, page_size=page_size, page_token=token))
            pages.append(page)
            token = page.next_page_token
            if not token:
                break
        first = to_dict(pages[0])
        trades = [to_dict(trade) for page in pages for trade in page.trades]
        symbols = [{"symbol": name, **metrics} for name, metrics in sorted(first["symbol_metrics"].items())]
        return BacktestResult(
            backtest_id=backtest_id, metrics=first["performance_metrics"] or {},
            equity=_equity_frame(first["equity_curve"]),
            trades=pd.DataFrame(trades, columns=list(backtest_pb2.Trade.DESCRIPTOR.fields_by_name)),
            symbol_metrics=frame(symbols, index="symbol"), sweep=sweep_frame(first["sweep"]),
            walk_forward=_walk_forward_frame(first["walk_forward"]),
            strategy_config=json.loads(first["strategy_config"] or "{}"), device=first["device"],
            compute_seconds=first["compute_seconds"], rank_by=first["rank_by"],
            raw={key: value for key, value in first.items() if key != "trades"})

    def report(self, backtest_id: str, path: str | Path | None = None) -> str:
        response = self.transport.unary(self.stub.GetBacktestReport,
                                        backtest_pb2.BacktestReportRequest(backtest_id=backtest_id))
        if path is not None:
            Path(path).write_text(response.html, encoding="utf-8")
        return response.html

    def history(self, symbol: str = "", strategy_type: str = "", limit: int = 50) -> pd.DataFrame:
        rows, token = [], ""
        while len(rows) < limit:
            page = self.transport.unary(self.stub.GetBacktestHistory, backtest_pb2.BacktestHistoryRequest(
                page_size=min(500, limit - len(rows)), page_token=token, stock_code=symbol,
                strategy_type=strategy_type))
            rows += [to_dict(summary) for summary in page.backtests]
            token = page.next_page_token
            if not token:
                break
        return frame(rows[:limit], columns=list(backtest_pb2.BacktestSummary.DESCRIPTOR.fields_by_name))

    def sweep(self, symbols: Iterable[str] | str, start: str, end: str, strategy: dict[str, Any],
              param_grid: dict[str, list[Any]], *, rank_by: str | None = None, progress: bool = True,
              **options: Any) -> pd.DataFrame:
        """Run a param_grid sweep as one job and return its ranked table (best first)."""
        config = {**strategy, "param_grid": param_grid}
        if rank_by:
            config["rank_by"] = rank_by
        handle = self.submit(symbols, start, end, config, **options)
        handle.wait(progress=progress)
        table = handle.result().sweep
        table.attrs["backtest_id"] = handle.job_id
        return table
