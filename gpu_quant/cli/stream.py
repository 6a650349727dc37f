"""gq stream: replay a CSV as ticks through StreamMarketData and print the indicators live."""
from __future__ import annotations

import time
from typing import Any, Iterator

import click
import pandas as pd

from .output import cell, emit_json, stdout


def _ticks(table: pd.DataFrame, delay: float) -> Iterator[dict[str, Any]]:
    lowered = {str(name).lower(): name for name in table.columns}
    price = lowered.get("price") or lowered.get("close")
    if price is None:
        raise ValueError(f"the CSV needs a price or close column; it has {list(table.columns)}")
    stamp = next((lowered[name] for name in ("timestamp", "time", "datetime", "date") if name in lowered), None)
    volume = lowered.get("volume")
    for row in table.to_dict(orient="records"):
        tick = {"price": row[price], "volume": row[volume] if volume is not None else 0.0}
        if stamp is not None:
            tick["timestamp"] = str(row[stamp])
        yield tick
        if delay:
            time.sleep(delay)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--symbol", required=True, help="Symbol the ticks belong to.")
@click.option("--features", default="", help="Comma-separated indicators (default: the server's sma_5, sma_20, "
                                              "ema_12, rsi).")
@click.option("--delay", default=0.0, show_default=True, type=click.FloatRange(0), help="Seconds between ticks.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1), help="Ticks per message.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tick (JSON lines).")
@click.pass_obj
def stream(connection, file: str, symbol: str, features: str, delay: float, batch: int, as_json: bool) -> int:
    """Replay FILE.csv (timestamp/time, price or close, volume) as ticks of SYMBOL; print each
    tick's indicators as the server answers."""
    names = [name.strip() for name in features.split(",") if name.strip()]
    rejected = 0
    header_printed = False
    for update in connection.client.stream(_ticks(pd.read_csv(file), delay), symbol=symbol, features=names,
                                           batch_size=batch):
        rejected += bool(update["error"])
        if as_json:
            emit_json(update)
            continue
        if update["error"]:
            stdout.print(f"[red]#{update['sequence']} rejected:[/] {update['error']}", highlight=False)
            continue
        values = {key: value for key, value in update.items() if key not in ("symbol", "timestamp", "sequence", "error")}
        if not header_printed:
            stdout.print("  ".join(["seq", "timestamp", *values]), style="bold")
            header_printed = True
        stdout.print("  ".join([str(update["sequence"]), update["timestamp"], *(cell(value) for value in values.values())]),
                     highlight=False)
    return 1 if rejected else 0


COMMANDS = [stream]
