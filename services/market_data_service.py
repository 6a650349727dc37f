"""MarketDataService: the bar store's gRPC face (import, read, list; ImportFile queues an
``import`` job, ``utils/tasks/import_file.py``)."""
from __future__ import annotations

from typing import Any, Callable

import grpc
import numpy as np
import pyarrow.fs as pafs

from api_proto import jobs_pb2, market_data_pb2, market_data_pb2_grpc
from services import validation
from services.errors import ServiceError, failed_precondition, invalid, not_found
from services.job_views import completed_result, job_id_field
from utils.data.file_import import FIELDS, BadImportFile, file_format
from utils.data.import_paths import ImportPathDenied, ImportRoots, InvalidImportPath, resolve_import_path
from utils.data.store import Bars, BarStore, SymbolInfo
from utils.data.timeutil import format_time, format_times
from utils.queue.jobs import JobSpec, new_job_id

MAX_BARS_PER_IMPORT = 2_000_000
DAILY = "1d"
COLUMN_NAMES = ("open", "high", "low", "close", "volume")
IMPORT_TASK_TYPE = "import"
FOLLOW_IMPORT = "follow it with JobService.WatchJob"


def symbol_info_message(info: SymbolInfo) -> market_data_pb2.SymbolInfo:
    return market_data_pb2.SymbolInfo(
        symbol=info.symbol, rows=info.rows, version=info.version, synthetic=info.synthetic, source=info.source,
        first_time=format_time(info.first_time) if info.first_time is not None else "",
        last_time=format_time(info.last_time) if info.last_time is not None else "")


class MarketDataServicer(market_data_pb2_grpc.MarketDataServiceServicer):
    def __init__(self, store: BarStore, flush_ticks: Callable[[], object] = lambda: None, queue: Any = None,
                 settings: Any = None) -> None:
        self.store = store
        # Writes this server's accepted-but-unstored ticks first, so bars built from them are current.
        self.flush_ticks = flush_ticks
        self.queue, self.settings = queue, settings  # ImportFile's job queue and IMPORT_ROOTS
        self.import_roots = ImportRoots.from_settings(settings) if settings is not None else None
        for root in self.import_roots.local if self.import_roots else ():
            try:  # so files can be dropped there (DATA_DIR/imports by default)
                root.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # a root on a read-only or absent mount: ImportFile answers NOT_FOUND per file

    def ImportFile(self, request, context):
        if self.queue is None:
            raise failed_precondition("ImportFile is not available on this server (no job queue)")
        try:
            filesystem, path = resolve_import_path(request.path, self.import_roots)
            fmt = file_format(request.path, request.format)
        except ImportPathDenied as exc:
            raise ServiceError(grpc.StatusCode.PERMISSION_DENIED, f"path: {exc}") from None
        except InvalidImportPath as exc:
            raise invalid("path", str(exc)) from None
        except BadImportFile as exc:
            raise invalid("format", str(exc)) from None
        interval = validation.interval("interval", request.interval) or DAILY
        if interval != DAILY and not hasattr(self.store, "read_interval"):
            raise failed_precondition(f"interval: importing {interval} bars needs the parquet bar store (set "
                                      f"BAR_STORE=parquet); the redis store keeps daily bars only")
        for field in request.column_map:
            if field not in FIELDS:
                raise invalid("column_map", f"{field!r} is not a field; fields are {', '.join(FIELDS)}")
        if request.symbol:
            validation.symbol("symbol", request.symbol)
        try:
            found = filesystem.get_file_info(path).type
        except OSError as exc:  # a name the filesystem refuses (too long...) or a store error
            raise invalid("path", f"cannot be read: {exc}") from None
        if found != pafs.FileType.File:
            raise not_found(f"path: no file {request.path!r} (resolved to {path})")
        payload = {"path": request.path, "format": fmt, "interval": interval, "replace": request.replace,
                   "column_map": dict(request.column_map), "symbol": request.symbol}
        job_id = new_job_id(IMPORT_TASK_TYPE)
        self.queue.enqueue(JobSpec(IMPORT_TASK_TYPE, payload, "normal", self.settings.job_max_attempts,
                                   {"path": request.path, "interval": interval}), job_id)
        return jobs_pb2.JobHandle(job_id=job_id, status=jobs_pb2.PENDING, message="queued")

    def GetImportFileResult(self, request, context):
        job_id = job_id_field("job_id", request.job_id, IMPORT_TASK_TYPE)
        _, result = completed_result(self.queue, job_id, IMPORT_TASK_TYPE, FOLLOW_IMPORT)
        return market_data_pb2.ImportFileResult(
            job_id=job_id, bars=result["bars"], interval=result["interval"], rows_read=result["rows_read"],
            format=result.get("format", ""),
            symbols=[market_data_pb2.ImportBarsResponse(**entry) for entry in result["symbols"]])

    def ImportBars(self, request, context):
        symbol, interval, bars = self._request_bars(request, "")
        if not len(bars):
            raise invalid("bars", "must contain at least one bar")
        rows, version = self._write(bars, request.replace, interval)
        return market_data_pb2.ImportBarsResponse(symbol=symbol, rows=rows, version=version)

    def ImportBarsStream(self, request_iterator, context):
        """Chunks of one symbol and interval are combined and written once when the next
        (symbol, interval) starts or the stream ends; a pair seen again later is merged."""
        written: dict[tuple[str, str], market_data_pb2.ImportBarsResponse] = {}
        pending: list[Bars] = []
        current: tuple[str, str, bool] | None = None
        received = 0

        def flush() -> None:
            if current is None or not pending:
                return
            symbol, interval, replace = current
            combined = Bars(symbol, *(np.concatenate([getattr(b, name) for b in pending])
                                      for name in ("time", *COLUMN_NAMES)))
            rows, version = self._write(combined, replace and (symbol, interval) not in written, interval)
            written[(symbol, interval)] = market_data_pb2.ImportBarsResponse(symbol=symbol, rows=rows, version=version)
            pending.clear()

        for index, request in enumerate(request_iterator):
            symbol, interval, bars = self._request_bars(request, f"chunks[{index}].")
            received += len(bars)
            if current is None or current[:2] != (symbol, interval):
                flush()
                current = (symbol, interval, request.replace)
            if len(bars):
                pending.append(bars)
            if sum(len(b) for b in pending) > MAX_BARS_PER_IMPORT * 8:
                flush()
                current = (symbol, interval, False)
        flush()
        if not written:
            raise invalid("bars", "the stream carried no bars; send at least one chunk with bars")
        return market_data_pb2.ImportBarsStreamResponse(symbols=list(written.values()), bars_received=received)

    def _request_bars(self, request, prefix: str) -> tuple[str, str, Bars]:
        """``prefix``: where the request sits in a stream ("chunks[3]."), for error messages."""
        symbol = validation.symbol(f"{prefix}symbol", request.symbol)
        interval = validation.interval(f"{prefix}interval", request.interval) or DAILY
        if interval != DAILY and not hasattr(self.store, "read_interval"):
            raise failed_precondition(f"{prefix}interval: importing {interval} bars needs the parquet bar store (set "
                                      f"BAR_STORE=parquet); the redis store keeps daily bars only")
        if len(request.bars) > MAX_BARS_PER_IMPORT:
            raise invalid(f"{prefix}bars", f"has {len(request.bars)} bars; send at most {MAX_BARS_PER_IMPORT} per "
                                  f"message (ImportBarsStream takes any number of chunks)")
        times = np.empty(len(request.bars), dtype=np.int64)
        for index, bar in enumerate(request.bars):
            times[index] = validation.time_ns(f"{prefix}bars[{index}].time", bar.time)
        columns = {name: np.fromiter((getattr(bar, name) for bar in request.bars), dtype=np.float64,
                                     count=len(request.bars)) for name in COLUMN_NAMES}
        return symbol, interval, Bars(symbol, times, **columns)

    def _write(self, bars: Bars, replace: bool, interval: str) -> tuple[int, int]:
        if interval == DAILY:
            return self.store.write(bars, replace=replace)
        return self.store.write(bars, replace=replace, interval=interval)

    def GetBars(self, request, context):
        symbol = validation.symbol("symbol", request.symbol)
        start = validation.time_ns("start_time", request.start_time, required=False)
        end = validation.time_ns("end_time", request.end_time, required=False)
        if request.limit < 0:
            raise invalid("limit", f"must be >= 0, got {request.limit}")
        if request.interval:
            interval = validation.interval("interval", request.interval)
            self.flush_ticks()
            bars = self.store.read_interval_bars(symbol, interval, start, end)
        else:
            bars = self.store.read(symbol, start, end)
        if request.limit:
            bars = bars.take(slice(max(len(bars) - request.limit, 0), len(bars)))
        times = format_times(bars.time)
        messages = [market_data_pb2.Bar(time=t, open=o, high=h, low=lo, close=c, volume=v)
                    for t, o, h, lo, c, v in zip(times, bars.open.tolist(), bars.high.tolist(), bars.low.tolist(),
                                                 bars.close.tolist(), bars.volume.tolist())]
        return market_data_pb2.GetBarsResponse(symbol=symbol, bars=messages, version=bars.version)

    def ListSymbols(self, request, context):
        return market_data_pb2.ListSymbolsResponse(
            symbols=[symbol_info_message(info) for info in self.store.list_symbols()])
