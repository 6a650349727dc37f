"""gq data import|ls|get: the bar store."""
from __future__ import annotations

import click

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


COMMANDS = [data]
