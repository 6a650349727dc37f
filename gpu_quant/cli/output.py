"""How `gq` prints: rich tables for people, one JSON document for scripts (--json)."""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Iterable

import pandas as pd
from rich.console import Console
from rich.table import Table

# piped output (no terminal, no COLUMNS) gets 160 columns rather than rich's 80, so tables of
# job ids and timestamps stay one line per row in logs and files
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
stdout = Console(width=_PIPED_WIDTH)
stderr = Console(stderr=True)


def plain(value: Any) -> Any:
    """JSON-safe: NaN/inf -> null, timestamps -> ISO text, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def records(table: pd.DataFrame, index: str | None = None) -> list[dict[str, Any]]:
    if index is not None:
        table = table.reset_index(names=index)
    return [plain(row) for row in table.to_dict(orient="records")]


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(plain(document), default=str) + "\n")
    sys.stdout.flush()


def cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items())
    return "" if value is None else str(value)


def print_table(table: pd.DataFrame, title: str | None = None, columns: Iterable[str] | None = None,
                index: str | None = None) -> None:
    if index is not None:
        table = table.reset_index(names=index)
    names = [name for name in (columns or table.columns) if name in table.columns]
    view = Table(title=title, show_lines=False)
    for position, name in enumerate(names):  # the first column is the id: never wrapped
        view.add_column(str(name), overflow="fold", no_wrap=position == 0)
    for row in table[names].itertuples(index=False):
        view.add_row(*(cell(value) for value in row))
    stdout.print(view)


def print_mapping(mapping: dict[str, Any], title: str | None = None) -> None:
    view = Table(title=title, show_header=False)
    view.add_column("name", style="bold")
    view.add_column("value")
    for key, value in mapping.items():
        view.add_row(str(key), cell(value))
    stdout.print(view)
