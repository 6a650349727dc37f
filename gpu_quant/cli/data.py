"""gq data import|import-file|ls|get: the bar store."""
from __future__ import annotations

import click
import pandas as pd

from .output import emit_json, print_mapping, print_table, records


@click.group()
def data() -> None:
    """Market data: import bars, list symbols, read bars."""


@data.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--symbol", help="Symbol of the bars (default: the file's symbol column).")
@click.option("--replace", is_flag=True, help="Replace what is stored for the symbol (default: merge).")
@click.option("--chunk-rows", default=50_000, show_default=True, type=click.IntRange(1), help="Bars per request.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def data_import(connection, file: str, symbol: str | None, replace: bool, chunk_rows: int, as_json: bool) -> None:
    """Import a CSV (time/date column, open, high, low, close[, volume]) with a progress bar."""
    stored = connection.client.bars.import_csv(file, symbol, replace=replace, chunk_rows=chunk_rows,
                                               progress=not as_json)
    if symbol:
        stored = {symbol: stored}
    if as_json:
        emit_json(list(stored.values()))
    else:
        for info in stored.values():
            print_mapping(info, title="imported")


@data.command("import-file")
@click.argument("path")
@click.option("--interval", default="", help="Bar interval of every row (default 1d; 1m, 5m... need the parquet store).")
@click.option("--replace", is_flag=True, help="Replace each symbol's stored bars (default: merge).")
@click.option("--map", "mapping", multiple=True, metavar="FIELD=COLUMN",
              help="The file's column for a field, e.g. --map close='Adj Close' (repeatable).")
@click.option("--symbol", default="", help="Symbol of every row, for a file without a symbol column.")
@click.option("--format", "fmt", default="", type=click.Choice(["", "csv", "parquet"]), help="Default: from the name.")
@click.option("--no-wait", is_flag=True, help="Print the job id and return at once.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def data_import_file(connection, path: str, interval: str, replace: bool, mapping: tuple[str, ...], symbol: str,
                     fmt: str, no_wait: bool, as_json: bool) -> None:
    """Import a CSV or Parquet file the SERVER reads (under its IMPORT_ROOTS, or s3://), as a job."""
    column_map = {}
    for item in mapping:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column:
            raise click.BadParameter(f"{item!r}: use FIELD=COLUMN", param_hint="--map")
        column_map[field.strip()] = column
    handle = connection.client.bars.import_file(path, interval=interval, replace=replace, column_map=column_map,
                                                symbol=symbol, format=fmt)
    if no_wait:
        emit_json({"job_id": handle.job_id}) if as_json else click.echo(handle.job_id)
        return
    handle.wait(progress=not as_json)
    result = handle.result()
    if as_json:
        emit_json(result)
    else:
        print_table(pd.DataFrame(result["symbols"]), columns=["symbol", "rows", "version"],
                    title=f"imported {result['bars']} {result['interval']} bars ({result['rows_read']} rows)")


@data.command("ls")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of symbols.")
@click.pass_obj
def data_ls(connection, as_json: bool) -> None:
    """Stored symbols: rows, first and last bar, source."""
    table = connection.client.bars.ls()
    emit_json(records(table)) if as_json else print_table(
        table, columns=["symbol", "rows", "first_time", "last_time", "source"])


@data.command("get")
@click.argument("symbol")
@click.option("--start", default="", help="First bar, ISO-8601.")
@click.option("--end", default="", help="Last bar, ISO-8601.")
@click.option("--limit", default=0, type=click.IntRange(0), help="Only the most recent N bars in the range.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of bars.")
@click.pass_obj
def data_get(connection, symbol: str, start: str, end: str, limit: int, as_json: bool) -> None:
    """A symbol's bars."""
    table = connection.client.bars.get(symbol, start, end, limit=limit)
    emit_json(records(table, index="time")) if as_json else print_table(table, title=symbol, index="time")


COMMANDS = [data, data_import_file]  # also `gq import-file`
