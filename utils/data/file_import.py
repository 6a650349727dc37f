"""Read a CSV or Parquet file of bars into validated per-symbol ``Bars`` (ImportFile's reader).

Columns are found by name, case-insensitively: ``symbol`` (or ``ticker``), ``time`` (or ``date``,
``datetime``, ``timestamp``), ``open``, ``high``, ``low``, ``close``, ``volume``; ``column_map``
({"close": "Adj Close", ...}) names the file's column for a field. One file may hold many symbols;
without a symbol column every row belongs to the request's ``symbol``. Times are ISO-8601 text
(naive = UTC), Parquet timestamps/dates, or int64 nanoseconds since the epoch.

Everything is checked before anything is returned, so a caller that writes only after a
successful read never writes part of a bad file. Errors (``BadImportFile``) name the line (CSV,
the header is line 1) or row (Parquet, 1-based) and the column. Each symbol's rows must be in
strictly increasing time order in the file (no duplicates).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from utils.data.store import COLUMNS, Bars, InvalidBars, invalid_rows, validate_bars, validate_symbol
from utils.data.timeutil import format_time, parse_times

FIELDS = ("symbol", "time", *COLUMNS)
ALIASES = {"symbol": ("symbol", "ticker"), "time": ("time", "date", "datetime", "timestamp")}
FORMATS = {".csv": "csv", ".csv.gz": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
BATCH_ROWS = 65_536
CSV_BLOCK_BYTES = 4 << 20

Progress = Callable[[int, int], None]  # (rows read, total rows)


class BadImportFile(ValueError):
    """The file cannot be imported; the message names the row/line and column."""


@dataclass(frozen=True)
class FileBars:
    bars: list[Bars]  # one per symbol, in first-seen order, validated and sorted by time
    rows: int  # data rows read
    format: str


def file_format(path: str, requested: str = "") -> str:
    if requested:
        if requested not in ("csv", "parquet"):
            raise BadImportFile(f"format {requested!r} is not csv or parquet")
        return requested
    lower = path.lower()
    for suffix, name in sorted(FORMATS.items(), key=lambda item: -len(item[0])):
        if lower.endswith(suffix):
            return name
    raise BadImportFile(f"cannot tell the format of {path!r} from its name; name it .csv or .parquet, or set format")


def read_bar_file(filesystem: pafs.FileSystem, path: str, fmt: str = "", column_map: dict[str, str] | None = None,
                  symbol: str = "", progress: Progress = lambda done, total: None) -> FileBars:
    """Read, map, convert and validate a whole file; raises BadImportFile (or FileNotFoundError)."""
    fmt = file_format(path, fmt)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(path)
    if info.type != pafs.FileType.File:
        raise BadImportFile(f"{path!r} is not a file")
    if fmt == "parquet":
        table = _read_parquet(filesystem, path, progress)
    else:
        table = _read_csv(filesystem, path, progress)
    where = (lambda row: f"line {row + 2}") if fmt == "csv" else (lambda row: f"row {row + 1}")
    return FileBars(_bars_by_symbol(table, column_map or {}, symbol, where), table.num_rows, fmt)


def _read_parquet(filesystem: pafs.FileSystem, path: str, progress: Progress) -> pa.Table:
    try:
        handle = pq.ParquetFile(filesystem.open_input_file(path))
    except pa.ArrowInvalid as exc:
        raise BadImportFile(f"not a readable Parquet file: {exc}") from None
    total, batches = handle.metadata.num_rows, []
    for batch in handle.iter_batches(batch_size=BATCH_ROWS):
        batches.append(batch)
        progress(sum(b.num_rows for b in batches), total)
    return pa.Table.from_batches(batches, schema=handle.schema_arrow)


def _read_csv(filesystem: pafs.FileSystem, path: str, progress: Progress) -> pa.Table:
    """Every column as text (converted and checked per column afterwards, naming the line)."""
    with filesystem.open_input_stream(path, compression="detect") as stream:
        raw = stream.read()
    header = next(csv.reader(io.StringIO(raw[:raw.find(b"\n") if b"\n" in raw else len(raw)]
                                         .decode("utf-8-sig", errors="replace"))), [])
    if not header:
        raise BadImportFile("the CSV file is empty (line 1 must name the columns)")
    try:
        reader = pacsv.open_csv(pa.BufferReader(raw),
                                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                convert_options=pacsv.ConvertOptions(
                                    column_types={name: pa.string() for name in header},
                                    strings_can_be_null=True))
        lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            progress(rows, max(lines - 1, rows))  # lines - header (blank lines are skipped)
    except pa.ArrowInvalid as exc:
        raise BadImportFile(f"not a readable CSV file: {exc}") from None
    progress(rows, rows)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _column_names(table: pa.Table, column_map: dict[str, str], symbol: str) -> dict[str, str | None]:
    unknown = sorted(set(column_map) - set(FIELDS))
    if unknown:
        raise BadImportFile(f"column_map: {unknown[0]!r} is not a field; fields are {', '.join(FIELDS)}")
    by_lower = {name.strip().lower(): name for name in table.column_names}
    chosen: dict[str, str | None] = {}
    for field in FIELDS:
        if field in column_map:
            source = column_map[field]
            if source not in table.column_names:
                source = by_lower.get(source.strip().lower())
            if source is None:
                raise BadImportFile(f"column_map: the file has no column {column_map[field]!r} for {field} "
                                    f"(columns: {', '.join(table.column_names)})")
            chosen[field] = source
            continue
        chosen[field] = next((by_lower[a] for a in ALIASES.get(field, (field,)) if a in by_lower), None)
    missing = [f for f, name in chosen.items() if name is None and not (f == "symbol" and symbol)]
    if missing:
        hint = " (or give the request's symbol for a one-symbol file)" if missing == ["symbol"] else ""
        raise BadImportFile(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}{hint}; the file "
                            f"has {', '.join(table.column_names) or 'no columns'} (map names with column_map)")
    return chosen


def _first_null(column: pa.ChunkedArray) -> int | None:
    if column.null_count == 0:
        return None
    return int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))


def _numbers(column: pa.ChunkedArray, name: str, where: Callable[[int], str]) -> np.ndarray:
    null = _first_null(column)
    if null is not None:
        raise BadImportFile(f"{where(null)}, column {name!r}: empty value")
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
        return column.cast(pa.float64()).to_numpy()
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        raise BadImportFile(f"column {name!r} holds {column.type}, not numbers")
    try:
        return pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for index, text in enumerate(column.to_pylist()):
            try:
                float(text)
            except ValueError:
                raise BadImportFile(f"{where(index)}, column {name!r}: {text!r} is not a number") from None
        raise


def _times(column: pa.ChunkedArray, name: str, where: Callable[[int], str]) -> np.ndarray:
    null = _first_null(column)
    if null is not None:
        raise BadImportFile(f"{where(null)}, column {name!r}: empty time")
    kind = column.type
    if pa.types.is_timestamp(kind):
        return column.cast(pa.timestamp("ns", tz=kind.tz)).cast(pa.int64()).to_numpy()
    if pa.types.is_date(kind):
        return column.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(kind):
        return column.cast(pa.int64()).to_numpy()  # nanoseconds since the epoch, the store's own unit
    if not pa.types.is_string(kind) and not pa.types.is_large_string(kind):
        raise BadImportFile(f"column {name!r} holds {kind}; times are ISO-8601 text, timestamps or int64 ns")
    texts = [text.strip() for text in column.to_pylist()]
    times, ok = parse_times(texts)
    if not ok.all():
        row = int(np.argmin(ok))
        raise BadImportFile(f"{where(row)}, column {name!r}: {texts[row]!r} is not an ISO-8601 date or time")
    return times


def _bars_by_symbol(table: pa.Table, column_map: dict[str, str], symbol: str,
                    where: Callable[[int], str]) -> list[Bars]:
    if table.num_rows == 0:
        raise BadImportFile("the file holds no rows")
    names = _column_names(table, column_map, symbol)
    time = _times(table.column(names["time"]), names["time"], where)
    values = {field: _numbers(table.column(names[field]), names[field], where) for field in COLUMNS}
    if names["symbol"] is None:
        codes, labels = np.zeros(table.num_rows, dtype=np.int64), [symbol]
    else:
        column = table.column(names["symbol"])
        null = _first_null(column)
        if null is not None:
            raise BadImportFile(f"{where(null)}, column {names['symbol']!r}: empty symbol")
        encoded = pc.dictionary_encode(column.cast(pa.string()).combine_chunks())
        codes = encoded.indices.to_numpy().astype(np.int64)
        labels = [str(label).strip() for label in encoded.dictionary.to_pylist()]
    found = []
    for code, label in enumerate(labels):
        rows = np.flatnonzero(codes == code)  # this symbol's rows, in file order
        try:
            validate_symbol(label)
        except InvalidBars as exc:
            raise BadImportFile(f"{where(int(rows[0]))}, column {names['symbol'] or 'symbol'!r}: {exc}") from None
        step = np.diff(time[rows])
        if (step <= 0).any():
            at = int(np.argmax(step <= 0))
            what = "repeats the time of" if step[at] == 0 else "is earlier than"
            raise BadImportFile(f"{where(int(rows[at + 1]))}, column {names['time']!r}: {label} at "
                                f"{format_time(int(time[rows[at + 1]]))} {what} its previous row ({where(int(rows[at]))}); "
                                f"each symbol's rows must be in increasing time order without duplicates")
        bars = Bars(label, time[rows], *(np.ascontiguousarray(values[field][rows]) for field in COLUMNS))
        bad = invalid_rows(bars)
        if bad.any():
            at = int(np.argmax(bad))
            row = {field: values[field][rows[at]] for field in COLUMNS}
            raise BadImportFile(f"{where(int(rows[at]))}: {label} at {format_time(int(time[rows[at]]))} is invalid "
                                f"(open={row['open']}, high={row['high']}, low={row['low']}, close={row['close']}, "
                                f"volume={row['volume']}): prices must be finite and > 0 with low <= open, "
                                f"close <= high, and volume finite and >= 0")
        found.append(validate_bars(bars))
    return found
