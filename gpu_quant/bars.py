"""MarketDataService: import bars from CSV files or DataFrames (chunked), read them back."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from ._proto import jobs_pb2, market_data_pb2, market_data_pb2_grpc
from .convert import frame, times, to_dict
from .jobs import JobHandle

if TYPE_CHECKING:
    from .jobs import Jobs
    from .transport import Transport

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
TIME_COLUMNS = ("time", "date", "datetime", "timestamp", "trade_date")
SYMBOL_COLUMNS = ("symbol", "stock_code", "ticker", "code")
CHUNK_ROWS = 50_000  # ~3 MB per ImportBars message, far below the 64 MB limit


def _column(table: pd.DataFrame, candidates: tuple[str, ...]) -> str | None:
    lowered = {str(name).lower(): name for name in table.columns}
    return next((lowered[name] for name in candidates if name in lowered), None)


def iso_times(values: Any) -> list[str]:
    """Dates stay dates ("2024-01-02"); intraday times keep their clock ("2024-01-02T09:30:00")."""
    stamps = pd.DatetimeIndex(pd.to_datetime(values, format="mixed"))
    if stamps.tz is not None:
        stamps = stamps.tz_convert("UTC").tz_localize(None)
    if (stamps == stamps.normalize()).all():
        return list(stamps.strftime("%Y-%m-%d"))
    return [stamp.isoformat() for stamp in stamps]


def bars_from_frame(table: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """(ISO times, a frame with open/high/low/close/volume) from a frame with a time column or
    a DatetimeIndex; column names are matched case-insensitively, volume defaults to 0."""
    time_column = _column(table, TIME_COLUMNS)
    stamps = table[time_column] if time_column is not None else table.index
    if time_column is None and not isinstance(table.index, pd.DatetimeIndex):
        raise ValueError(f"no time column (one of {', '.join(TIME_COLUMNS)}) and the index is not a DatetimeIndex")
    prices = {}
    for name in PRICE_COLUMNS:
        column = _column(table, (name,))
        if column is None and name != "volume":
            raise ValueError(f"missing column {name!r}; columns are {list(table.columns)}")
        prices[name] = table[column].astype(float).to_numpy() if column is not None else 0.0
    return iso_times(stamps), pd.DataFrame(prices, index=range(len(table)))


class Bars:
    def __init__(self, transport: "Transport", jobs: "Jobs | None" = None) -> None:
        self.transport = transport
        self.jobs = jobs
        self.stub = transport.stub(market_data_pb2_grpc.MarketDataServiceStub)

    def import_file(self, path: str, *, interval: str = "", replace: bool = False,
                    column_map: dict[str, str] | None = None, symbol: str = "", format: str = "") -> JobHandle:
        """Queue a server-side import of a CSV or Parquet file the *server* can read: a path under
        its IMPORT_ROOTS (relative = under the first root) or an s3:// URI of an allowed bucket.
        Columns by name (symbol, time/date, open, high, low, close, volume); `column_map` maps the
        file's other names ({"close": "Adj Close"}). Returns a JobHandle: `.wait()` shows the rows
        read, `.result()` the symbols, bars and interval written."""
        request = market_data_pb2.ImportFileRequest(path=str(path), interval=interval, replace=replace,
                                                    column_map=column_map or {}, symbol=symbol, format=format)
        handle = self.transport.unary(self.stub.ImportFile, request, idempotent=False)
        fetch = lambda job_id: to_dict(self.transport.unary(  # noqa: E731
            self.stub.GetImportFileResult, jobs_pb2.JobRequest(job_id=job_id)))
        return JobHandle(self.jobs, handle.job_id, fetch)

    def import_frame(self, table: pd.DataFrame, symbol: str | None = None, *, replace: bool = False,
                     chunk_rows: int = CHUNK_ROWS, progress: bool = True) -> dict[str, Any] | dict[str, dict[str, Any]]:
        """Store a frame's bars. With a symbol column and no `symbol`, each symbol is imported
        and a dict symbol -> ImportBarsResponse dict is returned."""
        symbol_column = _column(table, SYMBOL_COLUMNS)
        if symbol is None:
            if symbol_column is None:
                raise ValueError("give symbol=... or a symbol column")
            return {name: self.import_frame(group.drop(columns=symbol_column), str(name), replace=replace,
                                            chunk_rows=chunk_rows, progress=progress)
                    for name, group in table.groupby(symbol_column, sort=True)}
        stamps, prices = bars_from_frame(table)
        response = None
        with _bar_progress(progress, symbol, len(stamps)) as advance:
            for start in range(0, max(len(stamps), 1), chunk_rows):
                chunk = prices.iloc[start:start + chunk_rows]
                bars = [market_data_pb2.Bar(time=stamp, open=row[0], high=row[1], low=row[2], close=row[3], volume=row[4])
                        for stamp, row in zip(stamps[start:start + chunk_rows], chunk.itertuples(index=False))]
                # the first chunk replaces when asked; the rest merge into it. Re-sending a chunk
                # stores the same bars again, so UNAVAILABLE is retried.
                request = market_data_pb2.ImportBarsRequest(symbol=symbol, bars=bars, replace=replace and start == 0)
                response = self.transport.unary(self.stub.ImportBars, request)
                advance(len(bars))
        return to_dict(response)

    def import_csv(self, path: str | Path, symbol: str | None = None, **options: Any) -> dict[str, Any]:
        """Import a CSV with a time column (time/date/datetime/timestamp) and open/high/low/close[/volume]."""
        return self.import_frame(pd.read_csv(path), symbol, **options)

    def get(self, symbol: str, start: str = "", end: str = "", *, limit: int = 0, interval: str = "") -> pd.DataFrame:
        response = self.transport.unary(self.stub.GetBars, market_data_pb2.GetBarsRequest(
            symbol=symbol, start_time=str(start or ""), end_time=str(end or ""), limit=limit, interval=interval))
        table = pd.DataFrame({name: [getattr(bar, name) for bar in response.bars] for name in PRICE_COLUMNS})
        table.index = times(bar.time for bar in response.bars)
        table.attrs.update(symbol=response.symbol, version=response.version)
        return table

    def ls(self) -> pd.DataFrame:
        response = self.transport.unary(self.stub.ListSymbols, market_data_pb2.ListSymbolsRequest())
        return frame((to_dict(info) for info in response.symbols),
                     columns=list(market_data_pb2.SymbolInfo.DESCRIPTOR.fields_by_name))


class _bar_progress:
    def __init__(self, enabled: bool, symbol: str, total: int) -> None:
        self.progress = Progress(console=Console(stderr=True), transient=False) if enabled else None
        self.symbol, self.total = symbol, total

    def __enter__(self):
        if self.progress is None:
            return lambda rows: None
        self.progress.start()
        task = self.progress.add_task(f"import {self.symbol}", total=self.total)
        return lambda rows: self.progress.advance(task, rows)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

