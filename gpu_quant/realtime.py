"""RealTimeService: indicator features as DataFrames, tick streams as iterators of dicts."""
from __future__ import annotations

import datetime as dt
import itertools
import math
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import pandas as pd

from ._proto import realtime_pb2, realtime_pb2_grpc
from .convert import frame, times, to_dict

if TYPE_CHECKING:
    from .transport import Transport


def _tick_rows(ticks: Iterable[dict[str, Any]] | pd.DataFrame) -> Iterator[dict[str, Any]]:
    if isinstance(ticks, pd.DataFrame):
        columns = [str(name) for name in ticks.columns]
        return (dict(zip(columns, row)) for row in ticks.itertuples(index=False))
    return iter(ticks)


def to_tick(row: dict[str, Any], symbol: str | None = None) -> realtime_pb2.Tick:
    """A tick from a dict: symbol/stock_code, price (or close), volume (0), timestamp/time (now)."""
    name = row.get("symbol") or row.get("stock_code") or symbol
    if not name:
        raise ValueError(f"tick without a symbol: {row}")
    price = row.get("price", row.get("close"))
    if price is None:
        raise ValueError(f"tick without a price: {row}")
    stamp = row.get("timestamp", row.get("time"))
    if stamp is None or (isinstance(stamp, float) and math.isnan(stamp)):
        stamp = dt.datetime.now(dt.timezone.utc).isoformat()
    elif not isinstance(stamp, str):
        stamp = pd.Timestamp(stamp).isoformat()
    volume = row.get("volume")
    return realtime_pb2.Tick(stock_code=str(name), price=float(price), timestamp=stamp,
                             volume=0.0 if volume is None else float(volume))


class Realtime:
    def __init__(self, transport: "Transport") -> None:
        self.transport = transport
        self.stub = transport.stub(realtime_pb2_grpc.RealTimeServiceStub)

    def features(self, symbol: str | list[str], names: Iterable[str] = (), *, lookback: int = 100,
                 interval: str = "") -> pd.DataFrame:
        """One symbol: each output's series over the last `lookback` bars (index time).
        A list of symbols: a panel of the latest values (index symbol), computed as one job."""
        if isinstance(symbol, (list, tuple)):
            request = realtime_pb2.FeatureRequest(stock_codes=list(symbol), feature_types=list(names),
                                                  interval=interval)
            response = self.transport.unary(self.stub.ComputeFeatures, request, timeout=None)
            rows = [{"symbol": name, **dict(sorted(values.features.items())), "timestamp": values.timestamp}
                    for name, values in sorted(response.panel.items())]
            table = frame(rows, index="symbol")
            table.attrs.update(task_id=response.task_id, device=response.device)
            return table
        response = self.transport.unary(self.stub.ComputeFeatures, realtime_pb2.FeatureRequest(
            stock_code=symbol, feature_types=list(names), lookback=lookback, return_series=True, interval=interval))
        table = pd.DataFrame({key: list(series.values) for key, series in sorted(response.series.items())})
        table.index = times(response.series_times)
        table.attrs.update(symbol=response.stock_code, cached=response.cached)
        return table

    def latest(self, symbol: str, names: Iterable[str] = (), *, interval: str = "") -> dict[str, float]:
        response = self.transport.unary(self.stub.ComputeFeatures, realtime_pb2.FeatureRequest(
            stock_code=symbol, feature_types=list(names), interval=interval))
        return dict(response.features)

    def list_features(self) -> pd.DataFrame:
        response = self.transport.unary(self.stub.ListFeatures, realtime_pb2.ListFeaturesRequest())
        return frame((to_dict(info) for info in response.features), index="name")

    def stream(self, ticks: Iterable[dict[str, Any]] | pd.DataFrame, *, symbol: str | None = None,
               features: Iterable[str] = (), batch_size: int = 1) -> Iterator[dict[str, Any]]:
        """Send ticks (dicts or a frame's rows) over StreamMarketData; yield one dict per tick:
        symbol, timestamp, sequence, error, then price, volume and each indicator value.
        batch_size > 1 sends that many ticks per message (columnar answers, far fewer messages)."""
        names = list(features)
        rows = (to_tick(row, symbol) for row in _tick_rows(ticks))

        def requests() -> Iterator[realtime_pb2.StreamDataRequest]:
            first = True
            while True:
                chunk = list(itertools.islice(rows, max(1, batch_size)))
                if not chunk:
                    return
                request = realtime_pb2.StreamDataRequest(feature_types=names if first else [])
                if batch_size > 1:
                    request.ticks.extend(chunk)
                    request.columnar_response = True
                else:
                    tick = chunk[0]
                    request.stock_code, request.price = tick.stock_code, tick.price
                    request.volume, request.timestamp = tick.volume, tick.timestamp
                first = False
                yield request

        # a stream sends data once: never retried
        for response in self.transport.stream(self.stub.StreamMarketData, requests(), idempotent=False):
            if response.HasField("batch"):
                yield from _unfold(response.batch)
            else:
                yield {"symbol": response.stock_code, "timestamp": response.timestamp, "sequence": response.sequence,
                       "error": response.error, **_ordered(response.processed_data)}

    def subscribe(self, symbols: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Live ticks with their indicators as other clients stream them (until you stop iterating)."""
        request = realtime_pb2.SubscriptionRequest(stock_codes=list(symbols))
        for update in self.transport.stream(self.stub.SubscribeMarketData, request):
            yield {"symbol": update.stock_code, "timestamp": update.timestamp, "price": update.price,
                   "volume": update.volume, **_ordered(update.indicators)}


def _ordered(values: Mapping[str, Any]) -> dict[str, Any]:
    """price and volume first, then the indicator outputs by name (protobuf maps have no order)."""
    return {key: values[key] for key in sorted(values, key=lambda key: (key not in ("price", "volume"), key != "price", key))}


def _unfold(batch: realtime_pb2.TickBatch) -> Iterator[dict[str, Any]]:
    columns = _ordered({key: list(series.values) for key, series in batch.values.items()})
    for index, name in enumerate(batch.stock_codes):
        error = batch.errors[index] if index < len(batch.errors) else ""
        row = {"symbol": name, "timestamp": batch.timestamps[index], "sequence": batch.sequences[index], "error": error}
        if not error:
            row.update({key: values[index] for key, values in columns.items()})
        yield row
