"""Long lists of a job's result stored apart from it, in chunks, so a page of them is read
without the rest.

A sharded backtest over thousands of symbols closes hundreds of thousands of trades; as one
JSON string the result is hundreds of megabytes, and every GetBacktestResult page would fetch
and parse all of it. So a top-level list longer than ``chunk_rows`` is written as JSON chunks
under their own keys (``keys.result_part``) and the result keeps a small descriptor in its
place; a page reads the descriptor and the one or two chunks it covers.

Each write uses a fresh ``generation`` in its key names: a job delivered twice (at-least-once)
may be finished by two workers, and only the one whose FINISH wins has its descriptor stored;
the loser deletes its chunks, and never overwrites the winner's.

Pure functions here; JobQueue does the Redis round trips."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

CHUNK_ROWS = 10_000  # about 2 MB of trades per chunk; a page (at most 10,000 rows) spans two at most
MARKER = "$parts"


@dataclass(frozen=True)
class Rows:
    """A list of records held as one tuple of field names and value rows (a fraction of the
    memory of as many dicts: a sharded backtest's parent holds every trade of every shard).
    Stored, it is a list of objects like any other; ``split`` makes them a chunk at a time."""

    fields: tuple[str, ...]
    rows: Sequence[Sequence[Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (dict(zip(self.fields, row)) for row in self.rows)

    def objects(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        return [dict(zip(self.fields, row)) for row in self.rows[start:stop]]


@dataclass(frozen=True)
class PartsDescriptor:
    """Where a split list lives: ``chunks`` keys of ``chunk_rows`` rows (the last one shorter)."""

    field: str
    generation: str
    count: int
    chunk_rows: int

    @property
    def chunks(self) -> int:
        return -(-self.count // self.chunk_rows)

    def to_json(self) -> dict[str, Any]:
        return {MARKER: {"generation": self.generation, "count": self.count, "chunk_rows": self.chunk_rows}}

    def chunk_span(self, offset: int, size: int) -> range:
        """Indexes of the chunks holding rows [offset, offset + size)."""
        end = min(offset + size, self.count)
        if offset >= end:
            return range(0)
        return range(offset // self.chunk_rows, (end - 1) // self.chunk_rows + 1)


def descriptor(result: dict[str, Any], field: str) -> PartsDescriptor | None:
    """The descriptor stored in place of ``result[field]``, if that list was split."""
    value = result.get(field)
    if not isinstance(value, dict) or set(value) != {MARKER} or not isinstance(value[MARKER], dict):
        return None
    spec = value[MARKER]
    return PartsDescriptor(field, str(spec["generation"]), int(spec["count"]), int(spec["chunk_rows"]))


def split(result: dict[str, Any], chunk_rows: int = CHUNK_ROWS) -> tuple[dict[str, Any], dict[PartsDescriptor, Iterator[str]]]:
    """(the result with every top-level list (or ``Rows``) longer than ``chunk_rows`` replaced
    by its descriptor and every shorter ``Rows`` by its objects, each descriptor's JSON chunks
    in order). The chunks are made as they are iterated, so a writer holds one batch of them."""
    head: dict[str, Any] = {}
    parts: dict[PartsDescriptor, Iterator[str]] = {}
    generation = uuid.uuid4().hex[:12]
    for field, value in result.items():
        if isinstance(value, (list, Rows)) and len(value) > chunk_rows:
            found = PartsDescriptor(field, generation, len(value), chunk_rows)
            parts[found] = _chunks(value, chunk_rows)
            head[field] = found.to_json()
        else:
            head[field] = value.objects() if isinstance(value, Rows) else value
    return head, parts


def _chunks(value: list[Any] | Rows, chunk_rows: int) -> Iterator[str]:
    for start in range(0, len(value), chunk_rows):
        stop = start + chunk_rows
        yield dumps(value.objects(start, stop) if isinstance(value, Rows) else value[start:stop])


def descriptors(head: dict[str, Any]) -> list[PartsDescriptor]:
    return [found for field in head if (found := descriptor(head, field)) is not None]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
