"""Import job (task type ``import``): read a CSV or Parquet file the server can reach and write
its bars to the bar store (MarketDataService.ImportFile).

The payload names the file (already checked against IMPORT_ROOTS by the service; checked again
here, since the worker may run with other settings), the interval, replace, the column map and
an optional symbol for one-symbol files. The whole file is read and validated first
(``utils/data/file_import.py``): a bad file fails the job with the row/line and column, and
nothing of it is written. Progress: rows read of the total while reading (first half), then
symbols written. Result: {"symbols": [{symbol, rows, version}], "bars", "interval", "rows_read"}.
"""
from __future__ import annotations

from typing import Any

from utils.data.file_import import BadImportFile, read_bar_file
from utils.data.import_paths import ImportPathDenied, ImportRoots, InvalidImportPath, resolve_import_path
from utils.data.store import InvalidBars
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks.resources import WorkerResources

DAILY = "1d"


def import_file(store: Any, roots: ImportRoots, payload: dict[str, Any], context: JobContext) -> dict[str, Any]:
    try:
        filesystem, path = resolve_import_path(payload["path"], roots)
    except (ImportPathDenied, InvalidImportPath) as exc:
        raise PermanentJobError(f"path {exc}") from None
    interval = payload.get("interval") or DAILY
    if interval != DAILY and not hasattr(store, "read_interval"):
        raise PermanentJobError(f"importing {interval} bars needs the parquet bar store (BAR_STORE=parquet)")

    def read_progress(done: int, total: int) -> None:
        context.progress(0.5 * done / max(total, 1), {"phase": "reading", "rows_read": done, "total_rows": total})

    try:
        found = read_bar_file(filesystem, path, payload.get("format", ""), payload.get("column_map") or {},
                              payload.get("symbol", ""), read_progress)
    except FileNotFoundError:
        raise PermanentJobError(f"path {payload['path']!r}: no such file") from None
    except BadImportFile as exc:
        raise PermanentJobError(f"{payload['path']}: {exc}") from None
    written = []
    for index, bars in enumerate(found.bars):
        try:
            rows, version = (store.write(bars, replace=bool(payload.get("replace")), source="import-file")
                             if interval == DAILY else
                             store.write(bars, replace=bool(payload.get("replace")), source="import-file",
                                         interval=interval))
        except InvalidBars as exc:
            raise PermanentJobError(f"{payload['path']}: {exc}") from None
        written.append({"symbol": bars.symbol, "rows": rows, "version": version})
        context.progress(0.5 + 0.5 * (index + 1) / len(found.bars),
                         {"phase": "writing", "rows_read": found.rows, "total_rows": found.rows,
                          "symbols_written": index + 1, "symbols": len(found.bars)})
    return {"symbols": written, "bars": sum(len(b) for b in found.bars), "interval": interval,
            "rows_read": found.rows, "format": found.format}


def make_import_handler(resources: WorkerResources):
    roots = ImportRoots.from_settings(resources.settings)

    def handle(context: JobContext) -> dict[str, Any]:
        return import_file(resources.bar_store, roots, context.payload, context)
    return handle
