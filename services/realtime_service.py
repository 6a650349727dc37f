"""RealTimeService: ticks in / indicators out, fan-out to subscribers, features over history.

Latency-critical, so nothing here goes through the job queue: each tick updates the symbol's
O(1) indicator states in this process (the same step kernels as batch features, so the values
equal the batch result bit for bit); ticks are appended to Redis (capped stream) and published
for SubscribeMarketData.
"""
from __future__ import annotations

import json
import math
import uuid
from typing import Any, Callable, Iterable

import numpy as np
import redis

from api_proto import realtime_pb2, realtime_pb2_grpc
from services import validation
from services.errors import invalid
from utils.cache import RedisCache, digest
from utils.data.store import SYMBOL_PATTERN, Bars, BarStore
from utils.data.timeutil import format_time, format_times, parse_time
from utils.engine.indicators.features import (UnknownFeatureError, compute_features, latest_values,
                                              list_features, max_lookback, parse_feature)
from utils.queue import keys
from utils.realtime.symbol_state import SymbolStates, Tick

DEFAULT_STREAM_FEATURES = ("sma_5", "sma_20", "ema_12", "rsi")
DEFAULT_FEATURES = ("sma_20", "ema_12", "rsi", "macd", "bollinger")
MAX_SERIES_LOOKBACK = 100_000


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


def tick_error(tick: realtime_pb2.Tick) -> tuple[str, int | None]:
    """Why a tick must be rejected ('' if fine), and its parsed time. Ordering is checked
    against the symbol's state by the caller."""
    if not SYMBOL_PATTERN.match(tick.stock_code or ""):
        return f"stock_code {tick.stock_code!r} is not a valid symbol", None
    if not math.isfinite(tick.price) or tick.price <= 0:
        return f"price must be finite and > 0, got {tick.price}", None
    if not math.isfinite(tick.volume) or tick.volume < 0:
        return f"volume must be finite and >= 0, got {tick.volume}", None
    try:
        return "", parse_time(tick.timestamp)
    except ValueError:
        return f"timestamp {tick.timestamp!r} is not ISO-8601", None


class RealTimeServicer(realtime_pb2_grpc.RealTimeServiceServicer):
    def __init__(self, client: redis.Redis, store: BarStore, feature_cache: RedisCache,
                 states: SymbolStates, settings: Any, metrics: Any) -> None:
        self.redis = client
        self.states = states
        self.store = store
        self.cache = feature_cache
        self.settings = settings
        self.metrics = metrics

    # ------------------------------------------------------------ streaming
    def StreamMarketData(self, request_iterator, context):
        stream_id = uuid.uuid4().hex
        names = list(DEFAULT_STREAM_FEATURES)
        sequence = 0
        active = self.metrics.realtime_streams_active.labels(kind="publish")
        active.inc()
        try:
            for message in request_iterator:
                if message.feature_types:
                    try:
                        names = parse_feature_names("feature_types", message.feature_types, DEFAULT_STREAM_FEATURES)
                    except Exception as exc:
                        sequence += 1
                        yield realtime_pb2.StreamDataResponse(stream_id=stream_id, sequence=sequence,
                                                              error=getattr(exc, "message", str(exc)))
                        continue
                ticks = list(message.ticks) or [realtime_pb2.Tick(
                    stock_code=message.stock_code, price=message.price, volume=message.volume,
                    timestamp=message.timestamp)]
                responses, accepted = [], []
                for tick in ticks:
                    sequence += 1
                    error, time_ns, processed = self._apply_tick(tick, names)
                    if error:
                        self.metrics.ticks_rejected.labels(reason=error.split(" ")[0]).inc()
                        responses.append(realtime_pb2.StreamDataResponse(
                            stock_code=tick.stock_code, stream_id=stream_id, timestamp=tick.timestamp,
                            error=error, sequence=sequence))
                        continue
                    accepted.append((tick, time_ns, processed))
                    responses.append(realtime_pb2.StreamDataResponse(
                        stock_code=tick.stock_code, processed_data=processed, stream_id=stream_id,
                        timestamp=tick.timestamp, sequence=sequence))
                self._publish(accepted)
                self.metrics.ticks_processed.inc(len(accepted))
                yield from responses
        finally:
            active.dec()

    def _apply_tick(self, tick: realtime_pb2.Tick, names: list[str]) -> tuple[str, int | None, dict[str, float]]:
        """(error, time, values): update the symbol's shared O(1) state, or say why not."""
        error, time_ns = tick_error(tick)
        if error:
            return error, None, {}
        state = self.states.get(tick.stock_code)
        with state.lock:
            if state.last_time_ns is not None and time_ns <= state.last_time_ns:
                kind = "duplicate" if time_ns == state.last_time_ns else "out-of-order"
                return (f"{kind} timestamp {tick.timestamp} (last accepted for {tick.stock_code}: "
                        f"{format_time(state.last_time_ns)})"), None, {}
            self.states.ensure_features(state, names)
            values = self.states.apply(state, names, Tick(time_ns, tick.price, tick.volume))
        return "", time_ns, {"price": tick.price, "volume": tick.volume,
                             **{k: finite_or_nan(v) for k, v in values.items()}}

    def _publish(self, accepted: list[tuple[realtime_pb2.Tick, int, dict[str, float]]]) -> None:
        if not accepted:
            return
        pipe = self.redis.pipeline(transaction=False)
        for tick, time_ns, processed in accepted:
            fields = {"timestamp": tick.timestamp, "time_ns": str(time_ns), "price": repr(tick.price),
                      "volume": repr(tick.volume)}
            pipe.xadd(keys.ticks(tick.stock_code), fields, maxlen=self.settings.tick_stream_maxlen, approximate=True)
            indicators = {k: v for k, v in processed.items() if k not in ("price", "volume") and math.isfinite(v)}
            pipe.publish(keys.live_channel(tick.stock_code), json.dumps({**fields, "indicators": indicators}))
        pipe.execute()

    def SubscribeMarketData(self, request, context):
        symbols = validation.symbols("stock_codes", list(request.stock_codes), self.settings.max_symbols_per_request)
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(*(keys.live_channel(s) for s in symbols))
        active = self.metrics.realtime_streams_active.labels(kind="subscribe")
        active.inc()
        try:
            while context.is_active():
                message = pubsub.get_message(timeout=0.25)
                if message is None or message.get("type") != "message":
                    continue
                update = json.loads(message["data"])
                yield realtime_pb2.MarketData(
                    stock_code=message["channel"].split(":", 2)[2], price=float(update["price"]),
                    volume=float(update["volume"]), timestamp=update["timestamp"], indicators=update["indicators"])
        finally:
            active.dec()
            pubsub.close()

    # ------------------------------------------------------------- features
    def ComputeFeatures(self, request, context):
        symbol = validation.symbol("stock_code", request.stock_code)
        names = parse_feature_names("feature_types", request.feature_types, DEFAULT_FEATURES)
        if request.lookback < 0 or request.lookback > MAX_SERIES_LOOKBACK:
            raise invalid("lookback", f"must be in [0, {MAX_SERIES_LOOKBACK}], got {request.lookback}")
        version, load = self._history(symbol)
        lookback = request.lookback or 100
        key = digest(symbol, version, sorted(names), request.return_series, lookback)
        cached = self.cache.get(key)
        if cached is None:
            cached = self._compute(load(), names, request.return_series, lookback)
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

    def ProcessFeatureCalculation(self, request, context):
        return self.ComputeFeatures(request, context)

    def _unknown_symbol(self, symbol: str):
        from services.errors import not_found
        return not_found(f"symbol {symbol!r} has no stored bars or ticks; import bars with "
                         f"MarketDataService.ImportBars")

    def _history(self, symbol: str) -> tuple[str, Callable[[], Bars]]:
        """(data version, loader) of the symbol's imported bars, else of its streamed ticks."""
        version = self.store.version(symbol)
        if version is not None:
            return f"bars:{version}", lambda: self.store.read(symbol)
        tick_version = self.store.tick_version(symbol)
        if tick_version is not None:
            return f"ticks:{tick_version}", lambda: self.store.read_ticks(symbol)
        raise self._unknown_symbol(symbol)

    def _compute(self, bars: Bars, names: list[str], return_series: bool, lookback: int) -> dict[str, Any]:
        series = compute_features(np, names, bars.columns())  # OHLCV + time (VWAP sessions)
        result: dict[str, Any] = {
            "latest": {k: finite_or_nan(v) for k, v in latest_values(series).items()},
            "timestamp": format_time(int(bars.time[-1])) if len(bars) else "",
            "needs_bars": max_lookback(names),
        }
        if return_series:
            tail = slice(max(len(bars) - lookback, 0), len(bars))
            result["series"] = {k: np.asarray(v)[tail].tolist() for k, v in series.items()}
            result["times"] = format_times(bars.time[tail])
        return result

    def ListFeatures(self, request, context):
        return realtime_pb2.ListFeaturesResponse(features=[realtime_pb2.FeatureInfo(
            name=info["name"], pattern=info["pattern"], description=info["description"],
            defaults={p["name"]: float(p["default"]) for p in info["params"]},
            outputs=info["outputs"], lookback=str(info["lookback"]), inputs=info["inputs"])
            for info in list_features()])
