"""The market-data history store on Parquet: bars as files, the catalogue in Redis.

Layout at ``MARKET_DATA_URI`` (a local directory, or ``s3://bucket/prefix`` through pyarrow's S3
filesystem)::

    <root>/interval=<interval>/symbol=<SYMBOL>/part-<version:012d>.parquet

Each file holds a symbol's whole history of one interval, sorted by time, zstd-compressed, with
row-group statistics so a time-range read only decodes the row groups it needs. Ranges read
recently are kept in this process (an LRU of BAR_CACHE_MB) and in Redis for every process
(``utils/data/hot_cache.py``, bounded by HOT_CACHE_MB). A file is never
changed after it is written: a write produces the next version's file (local: a temp name renamed
into place; S3: a single PUT, visible only when complete), then records the version in the Redis
catalogue, so a reader never sees a torn file. Writers of one symbol are serialised by a Redis
lock. Ticks and the bars built from them stay in Redis (inherited from ``BarStore``).

The Parquet files are the source of truth: a symbol whose catalogue entry is missing (Redis
flushed) is re-catalogued from its newest file on first use. A symbol with neither, whose bars
are in a Redis hash of the ``redis`` store layout, is migrated on first use (as at start).
"""
from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import redis

from utils.data import keys
from utils.data.hot_cache import HotRangeCache
from utils.data.store import (COLUMNS, Bars, BarStore, InvalidBars, StoredColumns, SymbolInfo, SymbolNotFound,
                              _merge, validate_bars, validate_symbol)

DAILY = "1d"
INTERVAL_PATTERN = re.compile(r"^[1-9][0-9]{0,3}[smhd]$")
PART_PATTERN = re.compile(r"^part-(\d{12})\.parquet$")
SCHEMA = pa.schema([("time", pa.int64())] + [(name, pa.float64()) for name in COLUMNS])
LOCK_TIMEOUT_S = 120
READ_THREADS = 4


def catalogue_key(symbol: str, interval: str = DAILY) -> str:
    """Hash: one symbol's catalogue entry (rows, first, last, version, synthetic, source)."""
    return f"md:catalogue:{symbol}" if interval == DAILY else f"md:catalogue:{symbol}:{interval}"


def lock_key(symbol: str, interval: str) -> str:
    return f"md:catalogue-lock:{symbol}:{interval}"


def validate_interval(interval: str) -> str:
    if not INTERVAL_PATTERN.match(interval or ""):
        raise InvalidBars(f"interval {interval!r} must be a number and a unit s, m, h or d (e.g. 1d, 1m, 5m)")
    return interval


class RangeCache:
    """Bounded in-process LRU of recently read bars, keyed by (interval, symbol, version, range):
    a new version is a new key, so an entry is never stale."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, Bars] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key: tuple) -> Bars | None:
        with self.lock:
            bars = self.entries.get(key)
            if bars is not None:
                self.entries.move_to_end(key)
            return bars

    def put(self, key: tuple, bars: Bars) -> None:
        size = len(bars) * 48
        if size > self.max_bytes:
            return
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = bars
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, dropped = self.entries.popitem(last=False)
                self.bytes -= len(dropped) * 48


class ParquetBarStore(BarStore):
    def __init__(self, client: redis.Redis, uri: str, cache_bytes: int = 256 * 1024 * 1024,
                 row_group_rows: int = 65_536, hot: HotRangeCache | None = None) -> None:
        super().__init__(client)
        self.uri = uri
        self.hot = hot  # the ranges shared through Redis (second level, after this process's LRU)
        self.fs, self.root = pafs.FileSystem.from_uri(uri)
        self.root = self.root.rstrip("/")
        self.atomic_rename = self.fs.type_name == "local"
        self.row_group_rows = row_group_rows
        self.cache = RangeCache(cache_bytes)
        # (path, columns, filters) -> {column: ndarray} for local files: cuDF on GPU workers
        # (utils/gpu/cudf_io.py, set by utils/tasks/resources.py); None: pyarrow
        self.table_reader: Callable[..., dict[str, np.ndarray]] | None = None
        if self.atomic_rename:
            self.fs.create_dir(self.root, recursive=True)

    # Paths.
    def _dir(self, symbol: str, interval: str) -> str:
        return f"{self.root}/interval={interval}/symbol={symbol}"

    def _part(self, symbol: str, interval: str, version: int) -> str:
        return f"{self._dir(symbol, interval)}/part-{version:012d}.parquet"

    def _stored_versions(self, symbol: str, interval: str) -> list[int]:
        selector = pafs.FileSelector(self._dir(symbol, interval), allow_not_found=True)
        found = (PART_PATTERN.match(info.base_name) for info in self.fs.get_file_info(selector))
        return sorted(int(match.group(1)) for match in found if match)

    # Catalogue.
    def _entry(self, symbol: str, interval: str = DAILY, migrate: bool = True) -> dict[bytes, bytes] | None:
        fields = self.redis.hgetall(catalogue_key(symbol, interval))
        if fields:
            return fields
        fields = self._recatalogue(symbol, interval)
        if fields is None and migrate and interval == DAILY and _symbol_ok(symbol):
            fields = self._migrate_one(symbol)
        return fields

    def _migrate_one(self, symbol: str) -> dict[bytes, bytes] | None:
        """A symbol with no catalogue entry and no file whose bars are in a Redis hash (written by
        the redis store after this process started: another process, an older client or tool)
        is written to the store on first use, as the migration at start does."""
        fields = self.redis.hgetall(keys.bars(symbol))
        bars = BarStore._decode(symbol, fields)
        if bars is None or not len(bars):
            return None
        self.write(bars, replace=True, synthetic=fields.get(b"synthetic") == b"1",
                   source=(fields.get(b"source") or b"import").decode())
        return self.redis.hgetall(catalogue_key(symbol)) or None

    def _recatalogue(self, symbol: str, interval: str) -> dict[bytes, bytes] | None:
        """Rebuild a lost catalogue entry from the symbol's newest file (None when it has none)."""
        if not _symbol_ok(symbol):
            return None
        versions = self._stored_versions(symbol, interval)
        if not versions:
            return None
        path = self._part(symbol, interval, versions[-1])
        meta = pq.read_metadata(path, filesystem=self.fs)
        extra = meta.metadata or {}
        table = pq.read_table(path, columns=["time"], filesystem=self.fs)
        times = table.column("time").to_numpy()
        fields = self._catalogue_fields(len(times), times, versions[-1],
                                        extra.get(b"synthetic", b"0") == b"1",
                                        extra.get(b"source", b"import").decode())
        self._catalogue(symbol, interval, fields)
        return {k.encode(): str(v).encode() for k, v in fields.items()}

    def _catalogue(self, symbol: str, interval: str, fields: dict) -> None:
        # Single-key commands (no MULTI across keys): each may live in another Redis Cluster slot.
        self.redis.hset(catalogue_key(symbol, interval), mapping=fields)
        if interval == DAILY:
            self.redis.sadd(keys.SYMBOLS, symbol)

    @staticmethod
    def _catalogue_fields(rows: int, times: np.ndarray, version: int, synthetic: bool, source: str) -> dict:
        return {"rows": rows, "version": version, "synthetic": "1" if synthetic else "0", "source": source,
                "first": int(times[0]) if rows else "", "last": int(times[-1]) if rows else ""}

    # Writes.
    def write(self, bars: Bars, replace: bool, synthetic: bool = False, source: str = "import",
              interval: str = DAILY) -> tuple[int, int]:
        validate_symbol(bars.symbol)
        validate_interval(interval)
        incoming = validate_bars(bars)
        with self.redis.lock(lock_key(bars.symbol, interval), timeout=LOCK_TIMEOUT_S, blocking_timeout=None):
            entry = self._entry(bars.symbol, interval, migrate=False)
            version = int(entry[b"version"]) if entry else 0
            combined = incoming
            if not replace and entry:
                existing = self._read_file(bars.symbol, interval, version, None, None)
                if len(existing):
                    combined = _merge(existing, incoming)
            # Above any version this symbol ever had (files, or the redis store's hash before a
            # migration), so a cache keyed on an older version never matches the new bars.
            legacy = int(self.redis.hget(keys.bars(bars.symbol), "version") or 0) if interval == DAILY else 0
            version = max([version, legacy, *self._stored_versions(bars.symbol, interval)]) + 1
            self._write_file(combined, interval, version, synthetic, source)
            self._catalogue(bars.symbol, interval,
                            self._catalogue_fields(len(combined), combined.time, version, synthetic, source))
            self._drop_old_parts(bars.symbol, interval, keep_from=version - 1)
        return len(combined), version

    def _write_file(self, bars: Bars, interval: str, version: int, synthetic: bool, source: str) -> None:
        table = pa.table({"time": bars.time.astype(np.int64),
                          **{name: getattr(bars, name).astype(np.float64) for name in COLUMNS}}, schema=SCHEMA)
        table = table.replace_schema_metadata({"symbol": bars.symbol, "interval": interval, "version": str(version),
                                               "synthetic": "1" if synthetic else "0", "source": source})
        final = self._part(bars.symbol, interval, version)
        self.fs.create_dir(self._dir(bars.symbol, interval), recursive=True)
        options = dict(compression="zstd", row_group_size=self.row_group_rows, write_statistics=True)
        if self.atomic_rename:
            target = f"{self._dir(bars.symbol, interval)}/.tmp-{uuid.uuid4().hex}.parquet"
            pq.write_table(table, target, filesystem=self.fs, **options)
            self.fs.move(target, final)
            return
        # Object stores: an upload is visible only once complete (PUT or completed multipart upload).
        pq.write_table(table, final, filesystem=self.fs, **options)

    def _drop_old_parts(self, symbol: str, interval: str, keep_from: int) -> None:
        """Delete files older than the previous version (a reader that looked up the previous
        version a moment ago can still open it; older readers retry with the new version)."""
        for old in self._stored_versions(symbol, interval):
            if old < keep_from:
                try:
                    self.fs.delete_file(self._part(symbol, interval, old))
                except FileNotFoundError:
                    pass

    # Reads.
    def _read_file(self, symbol: str, interval: str, version: int, start_ns: int | None,
                   end_ns: int | None, columns: tuple[str, ...] = ("time", *COLUMNS)) -> Bars:
        filters = []
        if start_ns is not None:
            filters.append(("time", ">=", int(start_ns)))
        if end_ns is not None:
            filters.append(("time", "<=", int(end_ns)))
        path = self._part(symbol, interval, version)
        if self.table_reader is not None and self.atomic_rename:
            read = self.table_reader(path, list(columns), filters or None)
        else:
            table = pq.read_table(path, columns=list(columns), filesystem=self.fs, filters=filters or None)
            read = {name: table.column(name).to_numpy() for name in columns}
        empty = np.empty(0)
        arrays = {name: np.ascontiguousarray(read[name]) if name in columns else empty
                  for name in ("time", *COLUMNS)}
        return Bars(symbol, arrays["time"], *(arrays[name] for name in COLUMNS), version=version)

    def read_interval(self, symbol: str, interval: str = DAILY, start_ns: int | None = None,
                      end_ns: int | None = None) -> Bars:
        """Stored bars of one symbol and interval in [start_ns, end_ns] (served from the hot cache
        when this version and range were read recently). Raises SymbolNotFound."""
        for _ in range(5):
            entry = self._entry(symbol, interval)
            if entry is None:
                raise SymbolNotFound(symbol) if interval == DAILY else SymbolNotFound(
                    symbol, f"no imported {interval} bars for {symbol!r} (import them with ImportBars interval={interval})")
            version = int(entry[b"version"])
            key = (interval, symbol, version, start_ns, end_ns)
            cached = self.cache.get(key)
            if cached is None and self.hot is not None:
                cached = self.hot.get(symbol, interval, version, start_ns, end_ns)
                if cached is not None:
                    self.cache.put(key, cached)
            if cached is not None:
                return cached
            try:
                bars = self._read_file(symbol, interval, version, start_ns, end_ns)
            except FileNotFoundError:
                continue  # a newer version replaced it between the lookup and the open
            self.cache.put(key, bars)
            if self.hot is not None:
                self.hot.put(bars, interval, start_ns, end_ns)
            return bars
        raise SymbolNotFound(symbol, f"bars of {symbol!r} kept changing while being read; retry")

    def read(self, symbol: str, start_ns: int | None = None, end_ns: int | None = None) -> Bars:
        return self.read_interval(symbol, DAILY, start_ns, end_ns)

    def read_many(self, symbols: list[str], start_ns: int | None = None,
                  end_ns: int | None = None) -> dict[str, Bars]:
        """Cached ranges first (versions in one round trip, then this process's LRU, then the Redis
        hot cache in one more), then the other files in parallel threads (pyarrow decodes without
        the GIL)."""
        found: dict[str, Bars] = {}
        shared: list[tuple[str, int]] = []  # not in this process: asked of the Redis hot cache at once
        for symbol, version in zip(symbols, self.versions(symbols)):
            cached = None if version is None else self.cache.get((DAILY, symbol, version, start_ns, end_ns))
            if cached is not None:
                found[symbol] = cached
            elif version is not None:
                shared.append((symbol, version))
        if self.hot is not None and shared:
            for symbol, bars in self.hot.get_many(shared, DAILY, start_ns, end_ns).items():
                self.cache.put((DAILY, symbol, bars.version, start_ns, end_ns), bars)
                found[symbol] = bars
        missing = [symbol for symbol in symbols if symbol not in found]
        if len(missing) < 4:
            found.update((symbol, self.read(symbol, start_ns, end_ns)) for symbol in missing)
        else:
            with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="bar-read") as pool:
                found.update(zip(missing, pool.map(lambda symbol: self.read(symbol, start_ns, end_ns), missing)))
        return {symbol: found[symbol] for symbol in symbols}

    def read_columns_many(self, symbols: list[str], columns: tuple[str, ...], start_ns: int | None = None
                          ) -> dict[str, StoredColumns]:
        unknown = [name for name in columns if name not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown bar column {unknown[0]!r}; columns are {', '.join(COLUMNS)}")
        return {symbol: StoredColumns(bars.version, bars.time, {name: getattr(bars, name) for name in columns})
                for symbol, bars in self.read_many(symbols, start_ns, None).items()}

    def read_interval_bars(self, symbol: str, interval: str, start_ns: int | None = None,
                           end_ns: int | None = None) -> Bars:
        """Imported bars of the interval merged with those built from live ticks (live win)."""
        try:
            live = super().read_interval_bars(symbol, interval, start_ns, end_ns)
        except SymbolNotFound:
            live = None
        try:
            imported = self.read_interval(symbol, interval, start_ns, end_ns)
        except SymbolNotFound:
            if live is None:
                raise
            return live
        return imported if live is None or not len(live) else _merge(imported, live)

    # Catalogue reads.
    def version(self, symbol: str) -> int | None:
        entry = self._entry(symbol)
        return int(entry[b"version"]) if entry else None

    def versions(self, symbols: list[str]) -> list[int | None]:
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hget(catalogue_key(symbol), "version")
        values = pipe.execute()
        return [int(value) if value is not None else self.version(symbol) for symbol, value in zip(symbols, values)]

    def exists(self, symbol: str) -> bool:
        return self._entry(symbol) is not None

    def stored_times(self, symbols: list[str]) -> dict[str, np.ndarray]:
        found = {}
        for symbol in symbols:
            try:
                found[symbol] = self.read(symbol).time
            except SymbolNotFound:
                found[symbol] = np.empty(0, np.int64)
        return found

    def info(self, symbol: str) -> SymbolInfo | None:
        entry = self._entry(symbol)
        return self._info(symbol, [entry.get(name.encode()) for name in self.INFO_FIELDS]) if entry else None

    def info_many(self, symbols: list[str]) -> dict[str, SymbolInfo | None]:
        """Catalogue entries in one round trip (a missing one is rebuilt from its file)."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hgetall(catalogue_key(symbol))
        found = {}
        for symbol, entry in zip(symbols, pipe.execute()):
            entry = entry or self._entry(symbol)
            found[symbol] = self._info(symbol, [entry.get(n.encode()) for n in self.INFO_FIELDS]) if entry else None
        return found

    def list_symbols(self) -> list[SymbolInfo]:
        names = {s.decode() for s in self.redis.smembers(keys.SYMBOLS)}
        selector = pafs.FileSelector(f"{self.root}/interval={DAILY}", allow_not_found=True)
        names |= {info.base_name[len("symbol="):] for info in self.fs.get_file_info(selector)
                  if info.base_name.startswith("symbol=")}
        return [info for info in (self.info(s) for s in sorted(names)) if info is not None]

    # Migration.
    def migrate_from_redis(self) -> list[str]:
        """Write bars still held in Redis hashes (the ``redis`` store's layout) to the Parquet store,
        once: a symbol already catalogued here is skipped. Returns the symbols migrated."""
        legacy = BarStore(self.redis)
        migrated = []
        for raw in sorted(self.redis.smembers(keys.SYMBOLS)):
            symbol = raw.decode()
            if self.redis.exists(catalogue_key(symbol)) or self._stored_versions(symbol, DAILY):
                continue
            fields = self.redis.hgetall(keys.bars(symbol))
            bars = legacy._decode(symbol, fields)
            if bars is None or not len(bars):
                continue
            self.write(bars, replace=True, synthetic=fields.get(b"synthetic") == b"1",
                       source=(fields.get(b"source") or b"import").decode())
            migrated.append(symbol)
        return migrated


def _symbol_ok(symbol: str) -> bool:
    try:
        validate_symbol(symbol)
        return True
    except InvalidBars:
        return False
