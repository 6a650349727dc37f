"""MarketDataService: the bar store's gRPC face (import, read, list)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from api_proto import market_data_pb2, market_data_pb2_grpc
from services import validation
from services.errors import failed_precondition, invalid
from utils.data.store import Bars, BarStore, SymbolInfo
from utils.data.timeutil import format_time, format_times

MAX_BARS_PER_IMPORT = 2_000_000
DAILY = "1d"
COLUMN_NAMES = ("open", "high", "low", "close", "volume")


def symbol_info_message(info: SymbolInfo) -> market_data_pb2.SymbolInfo:
    return market_data_pb2.SymbolInfo(
        symbol=info.symbol, rows=info.rows, version=info.version, synthetic=info.synthetic, source=info.source,
        first_time=format_time(info.first_time) if info.first_time is not None else "",
        last_time=format_time(info.last_time) if info.last_time is not None else "")


class MarketDataServicer(market_data_pb2_grpc.MarketDataServiceServicer):
    def __init__(self, store: BarStore, flush_ticks: Callable[[], object] = lambda: None) -> None:
        self.store = store
        # Writes this server's accepted-but-unstored ticks first, so bars built from them are current.
        self.flush_ticks = flush_ticks

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
