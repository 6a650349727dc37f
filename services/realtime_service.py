"""RealTimeService: ticks in / indicators out, fan-out to subscribers, features over history.

Latency-critical, so nothing here goes through the job queue: each tick updates the symbol's
O(1) indicator states in this process (the same step kernels as batch features, so the values
equal the batch result bit for bit); accepted ticks are stored in Redis (capped stream) and
published for SubscribeMarketData by a write-behind writer, off the response path.
"""
from __future__ import annotations

import math
import uuid
from typing import Any, Callable, Iterable

import redis

from api_proto import realtime_pb2, realtime_pb2_grpc
from services import validation
from services.errors import invalid, not_found, resource_exhausted
from services.job_views import run_job
from services.live_feed import LiveFeed
from utils.cache import RedisCache, digest
from utils.data.store import Bars, BarStore
from utils.data.timeutil import format_time, format_times
from utils.engine.indicators.features import (UnknownFeatureError, list_features, parse_feature,
                                              symbol_features)
from utils.queue.jobs import JobSpec
from utils.queue.streams import JobQueue
from utils.realtime.symbol_state import SymbolStates
from utils.realtime.tick_processor import TickResults, process_tick, process_ticks
from utils.realtime.tick_writer import Backlogged, TickWriter

DEFAULT_STREAM_FEATURES = ("sma_5", "sma_20", "ema_12", "rsi")
DEFAULT_FEATURES = ("sma_20", "ema_12", "rsi", "macd", "bollinger")


def warm_up_names(mode: str) -> list[str] | None:
    """Features to compile at start for WARM_UP_INDICATORS (None = every kind, [] = none)."""
    if mode == "none":
        return []
    return None if mode == "all" else sorted({*DEFAULT_STREAM_FEATURES, *DEFAULT_FEATURES})

MAX_SERIES_LOOKBACK = 100_000
MAX_BATCH_WINDOW_MS = 10_000
STREAM_END_FLUSH_SECONDS = 5.0  # a finished stream waits this long at most for its ticks to be stored
PANEL_TIMEOUT_SECONDS = 120.0  # a panel request waits this long for its job unless its deadline is sooner


def parse_feature_names(field: str, names: Iterable[str], defaults: tuple[str, ...]) -> list[str]:
    names = list(dict.fromkeys(names)) or list(defaults)
    for name in names:
        try:
            parse_feature(name)
        except UnknownFeatureError as exc:
            raise invalid(field, str(exc)) from None
    return names


def finite_or_nan(value: float) -> float:
    return float(value) if value is not None and math.isfinite(value) else float("nan")


def updates_as_batch(updates: list[tuple[str, dict[str, Any]]]) -> realtime_pb2.TickBatch:
    """Published updates (symbol, columnar dict) as one TickBatch: price, volume and every
    indicator key any of them carries, NaN where a tick has none."""
    batch = realtime_pb2.TickBatch()
    columns: dict[str, list[float]] = {"price": [], "volume": []}
    count = 0
    for symbol, update in updates:
        ticks = len(update["timestamp"])
        batch.stock_codes.extend([symbol] * ticks)
        batch.timestamps.extend(update["timestamp"])
        columns["price"].extend(update["price"])
        columns["volume"].extend(update["volume"])
        for key, column in update["indicators"].items():
            values = columns.setdefault(key, [math.nan] * count)
            values.extend(math.nan if value is None else value for value in column)
        count += ticks
        for values in columns.values():
            values.extend([math.nan] * (count - len(values)))  # keys this update lacked
    for key, values in columns.items():
        batch.values[key].values.extend(values)
    return batch


class TickCounter:
    """Accepted ticks counted locally and added to the Prometheus counter every FLUSH_EVERY and
    when the stream ends: a locked counter increment per tick is a measurable share of a tick."""

    FLUSH_EVERY = 256

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.pending = 0
        self.total = 0

    def add(self, ticks: int) -> None:
        self.pending += ticks
        self.total += ticks
        if self.pending >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.counter.inc(self.pending)
            self.pending = 0


class RealTimeServicer(realtime_pb2_grpc.RealTimeServiceServicer):
    def __init__(self, client: redis.Redis, store: BarStore, feature_cache: RedisCache,
                 states: SymbolStates, writer: TickWriter, queue: JobQueue, settings: Any, metrics: Any) -> None:
        self.redis = client
        self.queue = queue
        self.states = states
        self.writer = writer
        self.feed = LiveFeed(client, writer)
        self.store = store
        self.cache = feature_cache
        self.settings = settings
        self.metrics = metrics

    # ------------------------------------------------------------ streaming
    def StreamMarketData(self, request_iterator, context):
        stream_id = uuid.uuid4().hex
        names = tuple(DEFAULT_STREAM_FEATURES)
        sequence = 0
        accepted = TickCounter(self.metrics.ticks_processed)
        active = self.metrics.realtime_streams_active.labels(kind="publish")
        active.inc()
        Response = realtime_pb2.StreamDataResponse
        try:
            for message in request_iterator:
                if message.feature_types:
                    try:
                        names = tuple(parse_feature_names("feature_types", message.feature_types,
                                                          DEFAULT_STREAM_FEATURES))
                    except Exception as exc:
                        sequence += 1
                        yield Response(stream_id=stream_id, sequence=sequence, error=getattr(exc, "message", str(exc)))
                        continue
                if not message.ticks:  # the one-tick form: no arrays, no per-tick dict copies
                    sequence += 1
                    symbol, stamp, price, volume = message.stock_code, message.timestamp, message.price, message.volume
                    error, values = self._process_one(names, symbol, stamp, price, volume)
                    if error:
                        self.metrics.ticks_rejected.labels(reason=error.split(" ")[0]).inc()
                    else:
                        accepted.add(1)
                    if message.columnar_response:
                        yield self._one_as_batch(stream_id, sequence, symbol, stamp, price, volume, error, values)
                    elif error:
                        yield Response(stock_code=symbol, stream_id=stream_id, timestamp=stamp, sequence=sequence,
                                       error=error)
                    else:
                        yield Response(stock_code=symbol, stream_id=stream_id, timestamp=stamp, sequence=sequence,
                                       processed_data={"price": price, "volume": volume, **values})
                    continue
                results = self._process(message, list(names), accepted)
                first = sequence + 1
                sequence += len(results.symbols)
                if message.columnar_response:
                    yield self._batch_response(stream_id, first, results)
                else:
                    yield from self._tick_responses(stream_id, first, results)
            if accepted.total:  # a stream that ends normally ends with its ticks stored
                self.writer.flush(STREAM_END_FLUSH_SECONDS)
        finally:
            accepted.flush()
            active.dec()

    def _process_one(self, names: tuple[str, ...], symbol: str, stamp: str, price: float,
                     volume: float) -> tuple[str, dict[str, float]]:
        try:
            return process_tick(self.states, self.writer, names, symbol, stamp, price, volume)
        except Backlogged as exc:
            raise resource_exhausted(str(exc)) from None

    @staticmethod
    def _one_as_batch(stream_id: str, sequence: int, symbol: str, stamp: str, price: float, volume: float,
                      error: str, values: dict[str, float]) -> realtime_pb2.StreamDataResponse:
        """A one-tick message that asked for columnar_response: its tick as a one-row batch."""
        batch = realtime_pb2.TickBatch(stock_codes=[symbol], timestamps=[stamp], sequences=[sequence], errors=[error])
        for key, value in {"price": price, "volume": volume, **values}.items():
            batch.values[key].values.append(value)
        return realtime_pb2.StreamDataResponse(stream_id=stream_id, batch=batch)

    def _process(self, message: realtime_pb2.StreamDataRequest, names: list[str],
                 accepted: "TickCounter") -> TickResults:
        validation.tick_count("ticks", len(message.ticks), self.settings.max_ticks_per_message)
        ticks = message.ticks
        symbols, stamps = [t.stock_code for t in ticks], [t.timestamp for t in ticks]
        prices, volumes = [t.price for t in ticks], [t.volume for t in ticks]
        try:
            results = process_ticks(self.states, self.writer, names, symbols, stamps, prices, volumes)
        except Backlogged as exc:
            raise resource_exhausted(str(exc)) from None
        rejected = [error for error in results.errors if error]
        for error in rejected:
            self.metrics.ticks_rejected.labels(reason=error.split(" ")[0]).inc()
        accepted.add(len(results.errors) - len(rejected))
        return results

    @staticmethod
    def _tick_responses(stream_id: str, first: int, results: TickResults):
        for index, error in enumerate(results.errors):
            response = realtime_pb2.StreamDataResponse(
                stock_code=results.symbols[index], stream_id=stream_id, timestamp=results.timestamps[index],
                sequence=first + index, error=error)
            if not error:
                response.processed_data.update({"price": float(results.prices[index]),
                                                "volume": float(results.volumes[index]),
                                                **results.values_of(index)})
            yield response

    @staticmethod
    def _batch_response(stream_id: str, first: int, results: TickResults) -> realtime_pb2.StreamDataResponse:
        batch = realtime_pb2.TickBatch(stock_codes=results.symbols, timestamps=results.timestamps,
                                       sequences=range(first, first + len(results.symbols)), errors=results.errors)
        batch.values["price"].values.extend(results.prices.tolist())
        batch.values["volume"].values.extend(results.volumes.tolist())
        for key, column in results.values.items():
            batch.values[key].values.extend(column.tolist())
        return realtime_pb2.StreamDataResponse(stream_id=stream_id, batch=batch)

    def SubscribeMarketData(self, request, context):
        symbols = validation.symbols("stock_codes", list(request.stock_codes), self.settings.max_symbols_per_request)
        if request.batch_window_ms > MAX_BATCH_WINDOW_MS:
            raise invalid("batch_window_ms", f"must be at most {MAX_BATCH_WINDOW_MS}, got {request.batch_window_ms}")
        if request.batch_window_ms and not request.columnar:
            raise invalid("batch_window_ms", "needs columnar (one message per tick has nothing to gather)")
        active = self.metrics.realtime_streams_active.labels(kind="subscribe")
        active.inc()
        try:
            if request.columnar:  # everything waiting (and what follows within the window), one message
                for waiting in self.feed.follow_waiting(symbols, context,
                                                        window_seconds=request.batch_window_ms / 1000):
                    yield realtime_pb2.MarketData(batch=updates_as_batch(waiting))
                return
            for symbol, update in self.feed.follow(symbols, context):  # columnar: one entry per tick
                for index, timestamp in enumerate(update["timestamp"]):
                    yield realtime_pb2.MarketData(
                        stock_code=symbol, price=update["price"][index], volume=update["volume"][index],
                        timestamp=timestamp, indicators={key: column[index] for key, column in
                                                         update["indicators"].items() if column[index] is not None})
        finally:
            active.dec()

    # ------------------------------------------------------------- features
    def ComputeFeatures(self, request, context):
        names = parse_feature_names("feature_types", request.feature_types, DEFAULT_FEATURES)
        if request.stock_codes:
            return self._panel(request, names, context)
        symbol = validation.symbol("stock_code", request.stock_code)
        if request.lookback < 0 or request.lookback > MAX_SERIES_LOOKBACK:
            raise invalid("lookback", f"must be in [0, {MAX_SERIES_LOOKBACK}], got {request.lookback}")
        version, load = self._history(symbol, request.interval)
        lookback = request.lookback or 100
        key = digest(symbol, request.interval, version, sorted(names), request.return_series, lookback)
        cached = self.cache.get(key)
        if cached is None:
            cached = self._cache_entry(load(), names, request.return_series, lookback)
            self.cache.set(key, cached)
            from_cache = False
        else:
            from_cache = True
        response = realtime_pb2.FeatureResponse(stock_code=symbol, features=cached["latest"],
                                                timestamp=cached["timestamp"], cached=from_cache)
        if request.return_series:
            for name, values in cached["series"].items():
                response.series[name].values.extend(values)
            response.series_times.extend(cached["times"])
        return response

    def _panel(self, request, names: list[str], context) -> realtime_pb2.FeatureResponse:
        """Many symbols: one queued job on a compute worker; latest values per symbol."""
        symbols = validation.symbols("stock_codes", list(request.stock_codes), self.settings.max_symbols_per_request)
        if request.return_series:
            raise invalid("return_series", "is not available for panel requests (stock_codes); ask per symbol")
        device = validation.device("device", request.device)
        interval = self._interval(request.interval)
        for symbol in symbols:
            if (self.store.interval_bar_count(symbol, interval) if interval else self.store.version(symbol)) is None:
                raise not_found(f"symbol {symbol!r} has no stored {interval + ' ' if interval else ''}bars")
        payload = {"symbols": symbols, "features": names, "interval": interval, "device": device}
        job_id, result = run_job(self.queue, JobSpec("features", payload, "high", self.settings.job_max_attempts,
                                                     {"symbols": symbols[:20]}), context, PANEL_TIMEOUT_SECONDS)
        response = realtime_pb2.FeatureResponse(task_id=job_id, device=result.get("device", ""))
        for symbol, values in result.get("features", {}).items():
            response.panel[symbol].features.update({k: finite_or_nan(v) for k, v in values.items()})
            response.panel[symbol].timestamp = result["timestamps"][symbol]
        return response

    def _interval(self, interval: str) -> str:
        if validation.interval("interval", interval):
            self.writer.flush()  # bars built from this server's latest ticks
        return interval

    def ProcessFeatureCalculation(self, request, context):
        return self.ComputeFeatures(request, context)

    @staticmethod
    def _unknown_symbol(symbol: str):
        return not_found(f"symbol {symbol!r} has no stored bars or ticks; import bars with "
                         f"MarketDataService.ImportBars")

    def _history(self, symbol: str, interval: str = "") -> tuple[str, Callable[[], Bars]]:
        """(data version, loader): the symbol's bars of ``interval`` built from ticks; else its
        imported bars; else its raw ticks."""
        if self._interval(interval):
            return (f"{interval}:{self.store.tick_version(symbol)}",
                    lambda: self.store.read_interval_bars(symbol, interval))
        version = self.store.version(symbol)
        if version is not None:
            return f"bars:{version}", lambda: self.store.read(symbol)
        self.writer.flush()  # ticks this process accepted are part of the history asked for
        tick_version = self.store.tick_version(symbol)
        if tick_version is not None:
            return f"ticks:{tick_version}", lambda: self.store.read_ticks(symbol)
        raise self._unknown_symbol(symbol)

    @staticmethod
    def _cache_entry(bars: Bars, names: list[str], return_series: bool, lookback: int) -> dict[str, Any]:
        """The engine's features of ``bars`` as the JSON the feature cache keeps (times as ISO text)."""
        values = symbol_features(bars.columns(), names, lookback if return_series else 0)  # with time: VWAP sessions
        result: dict[str, Any] = {"latest": values.latest,
                                  "timestamp": format_time(int(bars.time[-1])) if len(bars) else ""}
        if return_series:
            result["series"] = {key: column.tolist() for key, column in values.series.items()}
            result["times"] = format_times(bars.time[values.rows])
        return result

    def ListFeatures(self, request, context):
        return realtime_pb2.ListFeaturesResponse(features=[realtime_pb2.FeatureInfo(
            name=info["name"], pattern=info["pattern"], description=info["description"],
            defaults={p["name"]: float(p["default"]) for p in info["params"]},
            outputs=info["outputs"], lookback=str(info["lookback"]), inputs=info["inputs"])
            for info in list_features()])
