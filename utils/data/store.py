"""The market-data store: each symbol's bars as columnar arrays in one Redis hash.

Why columnar bytes (not a row per bar): a backtest reads thousands of bars for many symbols;
one HGETALL per symbol returning six packed arrays is orders of magnitude faster than parsing
rows. The bytes are raw little-endian int64/float64 written by us (``numpy.frombuffer``), never
pickle. Every write bumps the symbol's ``version`` so caches keyed on it never serve stale data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import redis

from utils.data import keys

COLUMNS = ("open", "high", "low", "close", "volume")
SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9._\-]{1,32}$")


class SymbolNotFound(KeyError):
    def __init__(self, symbol: str, detail: str = "") -> None:
        super().__init__(symbol)
        self.symbol = symbol
        self.detail = detail

    def __str__(self) -> str:
        return self.detail or f"no bars stored for symbol {self.symbol!r} (import them with MarketDataService.ImportBars)"


class InvalidBars(ValueError):
    pass


@dataclass(frozen=True)
class Bars:
    symbol: str
    time: np.ndarray  # int64 ns, strictly increasing
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    version: int = 0

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def between(self, start_ns: int | None, end_ns: int | None) -> "Bars":
        lo = 0 if start_ns is None else int(np.searchsorted(self.time, start_ns, side="left"))
        hi = len(self) if end_ns is None else int(np.searchsorted(self.time, end_ns, side="right"))
        return self.take(slice(lo, hi))

    def take(self, index: slice) -> "Bars":
        return Bars(self.symbol, self.time[index], self.open[index], self.high[index], self.low[index],
                    self.close[index], self.volume[index], self.version)

    def columns(self) -> dict[str, np.ndarray]:
        return {"time": self.time, **{name: getattr(self, name) for name in COLUMNS}}


@dataclass(frozen=True)
class StoredColumns:
    """Some columns of one symbol's stored bars (``BarStore.read_columns_many``)."""

    version: int
    time: np.ndarray  # int64 ns, increasing
    values: dict[str, np.ndarray]  # column name -> float64, aligned with ``time``


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    rows: int
    first_time: int | None
    last_time: int | None
    version: int
    synthetic: bool
    source: str


def validate_symbol(symbol: str) -> str:
    if not SYMBOL_PATTERN.match(symbol or ""):
        raise InvalidBars(f"symbol {symbol!r} must be 1-32 letters, digits or ._-")
    return symbol


def invalid_rows(bars: Bars) -> np.ndarray:
    """Mask of bars whose prices are not finite and > 0 with low <= open, close <= high, or whose
    volume is not finite and >= 0."""
    prices = np.stack([bars.open, bars.high, bars.low, bars.close])
    bad = ~np.isfinite(prices).all(axis=0) | (prices <= 0).any(axis=0)
    bad |= ~np.isfinite(bars.volume) | (bars.volume < 0)
    bad |= (bars.low > np.minimum(bars.open, bars.close) + 1e-12 * bars.close)
    bad |= (bars.high < np.maximum(bars.open, bars.close) - 1e-12 * bars.close)
    return bad


def validate_bars(bars: Bars) -> Bars:
    """Sort by time and check prices; raise InvalidBars naming the first bad row."""
    order = np.argsort(bars.time, kind="stable")
    ordered = Bars(bars.symbol, *(np.ascontiguousarray(c[order]) for c in
                                  (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume)))
    if len(ordered) and np.any(np.diff(ordered.time) == 0):
        dup = int(ordered.time[1:][np.diff(ordered.time) == 0][0])
        from utils.data.timeutil import format_time
        raise InvalidBars(f"duplicate bar time {format_time(dup)} for {bars.symbol}")
    bad = invalid_rows(ordered)
    if bad.any():
        from utils.data.timeutil import format_time
        row = int(np.argmax(bad))
        raise InvalidBars(
            f"bar at {format_time(int(ordered.time[row]))} for {bars.symbol} is invalid: prices must be finite "
            f"and > 0 with low <= open, close <= high, and volume finite and >= 0 "
            f"(open={ordered.open[row]}, high={ordered.high[row]}, low={ordered.low[row]}, "
            f"close={ordered.close[row]}, volume={ordered.volume[row]})")
    return ordered


def _merge(old: Bars, new: Bars) -> Bars:
    """Union by time; on equal times the new bar wins."""
    keep_old = ~np.isin(old.time, new.time)
    merged = [np.concatenate([getattr(old, name)[keep_old], getattr(new, name)])
              for name in ("time", *COLUMNS)]
    order = np.argsort(merged[0], kind="stable")
    return Bars(new.symbol, *(column[order] for column in merged))


class BarStore:
    def __init__(self, client: redis.Redis) -> None:
        # A client with decode_responses=False: the arrays are raw bytes.
        self.redis = client

    def write(self, bars: Bars, replace: bool, synthetic: bool = False, source: str = "import") -> tuple[int, int]:
        """Store bars (merge or replace). Returns (rows stored, new version)."""
        validate_symbol(bars.symbol)
        incoming = validate_bars(bars)
        key = keys.bars(bars.symbol)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    existing = None if replace else self._decode(bars.symbol, pipe.hgetall(key))
                    combined = incoming if existing is None or not len(existing) else _merge(existing, incoming)
                    version = int(pipe.hget(key, "version") or 0) + 1
                    pipe.multi()
                    pipe.delete(key)
                    pipe.hset(key, mapping=self._encode(combined, version, synthetic, source))
                    pipe.execute()
                    # Outside the MULTI: the catalogue is another hash slot on a Redis Cluster.
                    self.redis.sadd(keys.SYMBOLS, bars.symbol)
                    return len(combined), version
                except redis.WatchError:
                    continue

    def read(self, symbol: str, start_ns: int | None = None, end_ns: int | None = None) -> Bars:
        bars = self._decode(symbol, self.redis.hgetall(keys.bars(symbol)))
        if bars is None:
            raise SymbolNotFound(symbol)
        return bars.between(start_ns, end_ns)

    def read_many(self, symbols: list[str], start_ns: int | None = None,
                  end_ns: int | None = None) -> dict[str, Bars]:
        """Several symbols' bars in one round trip (a pipeline of HGETALL)."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hgetall(keys.bars(symbol))
        found = {}
        for symbol, fields in zip(symbols, pipe.execute()):
            bars = self._decode(symbol, fields)
            if bars is None:
                raise SymbolNotFound(symbol)
            found[symbol] = bars.between(start_ns, end_ns)
        return found

    # Ticks: one stream entry per (message, symbol) holding packed int64/float64 arrays, so a
    # batch of ticks costs one XADD; TICK_STREAM_MAXLEN caps entries (approximately).
    @staticmethod
    def append_ticks(pipe: redis.client.Pipeline, symbol: str, time_ns: np.ndarray, price: np.ndarray,
                     volume: np.ndarray, maxlen: int) -> None:
        pipe.xadd(keys.ticks(symbol), {"time_ns": time_ns.astype("<i8").tobytes(),
                                       "price": price.astype("<f8").tobytes(),
                                       "volume": volume.astype("<f8").tobytes()},
                  maxlen=maxlen, approximate=True)

    def read_ticks(self, symbol: str) -> Bars:
        """The symbol's stored ticks, oldest first, as bars: price as open/high/low/close."""
        entries = self.redis.xrange(keys.ticks(symbol))
        time = np.concatenate([np.frombuffer(f[b"time_ns"], dtype="<i8") for _, f in entries] or [np.empty(0, np.int64)])
        price = np.concatenate([np.frombuffer(f[b"price"], dtype="<f8") for _, f in entries] or [np.empty(0)])
        volume = np.concatenate([np.frombuffer(f[b"volume"], dtype="<f8") for _, f in entries] or [np.empty(0)])
        return Bars(symbol, time, price, price, price, price, volume)

    def last_tick_time(self, symbol: str) -> int | None:
        last = self.redis.xrevrange(keys.ticks(symbol), count=1)
        return int(np.frombuffer(last[0][1][b"time_ns"], dtype="<i8")[-1]) if last else None

    def last_price(self, symbol: str) -> tuple[int, float] | None:
        """(time ns, price) of the symbol's latest stored tick, else of its last bar's close; None
        when it has neither."""
        last = self.redis.xrevrange(keys.ticks(symbol), count=1)
        if last:
            fields = last[0][1]
            return (int(np.frombuffer(fields[b"time_ns"], dtype="<i8")[-1]),
                    float(np.frombuffer(fields[b"price"], dtype="<f8")[-1]))
        stored = self.read_columns_many([symbol], ("close",)) if self.exists(symbol) else {}
        if not stored or not stored[symbol].time.size:
            return None
        return int(stored[symbol].time[-1]), float(stored[symbol].values["close"][-1])

    def tick_version(self, symbol: str) -> str | None:
        """Id of the last stored tick entry (changes with every write), or None without ticks."""
        last = self.redis.xrevrange(keys.ticks(symbol), count=1)
        return last[0][0].decode() if last else None

    # Bars aggregated from ticks: one hash per (symbol, interval), upserted as ticks arrive.
    @staticmethod
    def upsert_interval_bars(pipe: redis.client.Pipeline, symbol: str, interval: str,
                             bars: dict[int, np.ndarray]) -> None:
        """``bars``: bucket start (ns) -> [open, high, low, close, volume]."""
        pipe.hset(keys.interval_bars(symbol, interval),
                  mapping={str(start): values.astype("<f8").tobytes() for start, values in bars.items()})

    def interval_bar_count(self, symbol: str, interval: str) -> int | None:
        count = self.redis.hlen(keys.interval_bars(symbol, interval))
        return count or None

    def interval_bar(self, symbol: str, interval: str, start_ns: int) -> np.ndarray | None:
        raw = self.redis.hget(keys.interval_bars(symbol, interval), str(start_ns))
        return np.frombuffer(raw, dtype="<f8") if raw else None

    def read_interval_bars(self, symbol: str, interval: str, start_ns: int | None = None,
                           end_ns: int | None = None) -> Bars:
        fields = self.redis.hgetall(keys.interval_bars(symbol, interval))
        if not fields:
            raise SymbolNotFound(symbol, f"no {interval} bars for {symbol!r}: they are built from ticks sent "
                                         f"with StreamMarketData (BAR_INTERVALS lists the intervals kept)")
        starts = np.array(sorted(int(k) for k in fields), dtype=np.int64)
        table = np.stack([np.frombuffer(fields[str(t).encode()], dtype="<f8") for t in starts])
        return Bars(symbol, starts, *(np.ascontiguousarray(table[:, i]) for i in range(5))).between(start_ns, end_ns)

    def version(self, symbol: str) -> int | None:
        value = self.redis.hget(keys.bars(symbol), "version")
        return int(value) if value is not None else None

    def versions(self, symbols: list[str]) -> list[int | None]:
        """Each symbol's version (None when not stored), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hget(keys.bars(symbol), "version")
        return [int(value) if value is not None else None for value in pipe.execute()]

    def read_columns_many(self, symbols: list[str], columns: tuple[str, ...], start_ns: int | None = None
                          ) -> dict[str, StoredColumns]:
        """Only ``columns`` of several symbols' bars from ``start_ns`` on (HMGET in one round trip:
        a factor on closes reads a sixth of the bytes of ``read_many``). Raises SymbolNotFound."""
        unknown = [name for name in columns if name not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown bar column {unknown[0]!r}; columns are {', '.join(COLUMNS)}")
        fields = ("version", "time") + tuple(columns)
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hmget(keys.bars(symbol), fields)
        found = {}
        for symbol, (version, raw_time, *raw_columns) in zip(symbols, pipe.execute()):
            if raw_time is None:
                raise SymbolNotFound(symbol)
            time = np.frombuffer(raw_time, dtype="<i8")
            first = 0 if start_ns is None else int(np.searchsorted(time, start_ns, side="left"))
            found[symbol] = StoredColumns(int(version or 0), time[first:], {
                name: np.frombuffer(raw, dtype="<f8")[first:] for name, raw in zip(columns, raw_columns)})
        return found

    def exists(self, symbol: str) -> bool:
        return bool(self.redis.exists(keys.bars(symbol)))

    def stored_times(self, symbols: list[str]) -> dict[str, np.ndarray]:
        """Each symbol's bar times (int64 ns; empty when none), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hget(keys.bars(symbol), "time")
        return {symbol: np.frombuffer(raw or b"", dtype="<i8") for symbol, raw in zip(symbols, pipe.execute())}

    INFO_FIELDS = ("rows", "first", "last", "version", "synthetic", "source")

    def info(self, symbol: str) -> SymbolInfo | None:
        return self._info(symbol, self.redis.hmget(keys.bars(symbol), *self.INFO_FIELDS))

    def info_many(self, symbols: list[str]) -> dict[str, SymbolInfo | None]:
        """``info`` of several symbols in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hmget(keys.bars(symbol), *self.INFO_FIELDS)
        return {symbol: self._info(symbol, fields) for symbol, fields in zip(symbols, pipe.execute())}

    @staticmethod
    def _info(symbol: str, fields: list[bytes | None]) -> SymbolInfo | None:
        if fields[0] is None:
            return None
        rows, first, last, version, synthetic, source = fields
        return SymbolInfo(symbol, int(rows), int(first) if first else None, int(last) if last else None,
                          int(version or 0), synthetic == b"1", (source or b"").decode())

    def list_symbols(self) -> list[SymbolInfo]:
        symbols = sorted(s.decode() for s in self.redis.smembers(keys.SYMBOLS))
        return [info for info in (self.info(s) for s in symbols) if info is not None]

    @staticmethod
    def _encode(bars: Bars, version: int, synthetic: bool, source: str) -> dict[str, bytes | str | int]:
        fields: dict[str, bytes | str | int] = {
            "time": bars.time.astype("<i8").tobytes(),
            "rows": len(bars), "version": version, "synthetic": "1" if synthetic else "0", "source": source,
            "first": int(bars.time[0]) if len(bars) else "", "last": int(bars.time[-1]) if len(bars) else "",
        }
        for name in COLUMNS:
            fields[name] = getattr(bars, name).astype("<f8").tobytes()
        return fields

    @staticmethod
    def _decode(symbol: str, fields: dict[bytes, bytes]) -> Bars | None:
        if not fields or b"time" not in fields:
            return None
        columns = [np.frombuffer(fields[b"time"], dtype="<i8")]
        columns += [np.frombuffer(fields[name.encode()], dtype="<f8") for name in COLUMNS]
        return Bars(symbol, *columns, version=int(fields.get(b"version", b"0")))


def bar_store_from_settings(client: redis.Redis, settings) -> BarStore:
    """The bar store ``settings.bar_store`` names (``client``: decode_responses=False)."""
    if getattr(settings, "bar_store", "redis") != "parquet":
        return BarStore(client)
    from utils.data.hot_cache import HotRangeCache
    from utils.data.parquet_store import ParquetBarStore
    uri = settings.market_data_uri or str((settings.data_dir / "market").resolve())
    hot = HotRangeCache(client, settings.hot_cache_mb * 2**20, settings.hot_cache_ttl_seconds,
                        settings.hot_cache_entry_mb * 2**20)
    return ParquetBarStore(client, uri, cache_bytes=settings.bar_cache_mb * 2**20, hot=hot)
