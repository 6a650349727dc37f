"""Request validation shared by the servicers: each check names the field it rejects."""
from __future__ import annotations

import json
import math
from typing import Any

from services.errors import invalid
from utils.data.store import SYMBOL_PATTERN
from utils.data.timeutil import TimeOutOfRange, parse_time
from utils.engine.backend import VALID_DEVICES
from utils.realtime.bar_aggregator import INTERVAL_NS

PRIORITY_NAMES = {0: "normal", 1: "low", 2: "normal", 3: "high"}


def json_object(field: str, text: str, max_bytes: int, required: bool = True) -> dict[str, Any]:
    """Parse a JSON object; empty text gives {} unless required."""
    if not text:
        if required:
            raise invalid(field, "is required (a JSON object)")
        return {}
    if len(text.encode()) > max_bytes:
        raise invalid(field, f"is {len(text.encode())} bytes; the limit is {max_bytes} bytes")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise invalid(field, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:
        raise invalid(field, str(exc)) from None
    if not isinstance(value, dict):
        raise invalid(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed; use finite numbers")


def symbol(field: str, value: str) -> str:
    if not value:
        raise invalid(field, "is required")
    if not SYMBOL_PATTERN.match(value):
        raise invalid(field, f"{value!r} is not a valid symbol (1-32 letters, digits or ._-)")
    return value


def symbols(field: str, values: list[str], limit: int) -> list[str]:
    if not values:
        raise invalid(field, "must name at least one symbol, e.g. ['000001.SZ']")
    if len(values) > limit:
        raise invalid(field, f"has {len(values)} symbols; the limit is {limit}")
    seen: set[str] = set()
    for index, value in enumerate(values):
        symbol(f"{field}[{index}]", value)
        if value in seen:
            raise invalid(field, f"lists {value!r} twice")
        seen.add(value)
    return list(values)


def time_ns(field: str, value: str, required: bool = True) -> int | None:
    if not value:
        if required:
            raise invalid(field, "is required (ISO-8601 date, e.g. '2024-01-01')")
        return None
    try:
        return parse_time(value)
    except TimeOutOfRange as exc:
        raise invalid(field, str(exc)) from None
    except ValueError:
        raise invalid(field, f"{value!r} is not an ISO-8601 date or datetime (e.g. '2024-01-01')") from None


def time_range(start_field: str, start: str, end_field: str, end: str) -> tuple[int, int]:
    start_ns, end_ns = time_ns(start_field, start), time_ns(end_field, end)
    if start_ns > end_ns:
        raise invalid(start_field, f"{start!r} is after {end_field} {end!r}")
    return start_ns, end_ns


def finite(field: str, value: float, minimum: float | None = None, maximum: float | None = None,
           strict_minimum: bool = False) -> float:
    if not math.isfinite(value):
        raise invalid(field, f"must be a finite number, got {value}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        raise invalid(field, f"must be {'>' if strict_minimum else '>='} {minimum}, got {value}")
    if maximum is not None and value >= maximum:
        raise invalid(field, f"must be < {maximum}, got {value}")
    return value


def device(field: str, value: str) -> str:
    value = (value or "auto").lower()
    if value not in VALID_DEVICES:
        raise invalid(field, f"must be one of {', '.join(VALID_DEVICES)}, got {value!r}")
    return value


def interval(field: str, value: str) -> str:
    """A bar interval built from ticks ('1m', '1d', ...); '' passes through (no interval)."""
    if value and value not in INTERVAL_NS:
        raise invalid(field, f"{value!r} is not a bar interval; valid: {', '.join(INTERVAL_NS)}")
    return value


def identifier(field: str, value: str, kind: str) -> str:
    if not value:
        raise invalid(field, f"is required (the {kind} id returned at submission)")
    if len(value) > 128:
        raise invalid(field, "is longer than 128 characters")
    return value


def page(field_size: str, size: int, token: str, default: int, maximum: int) -> tuple[int, int]:
    """(offset, page size) from a page token (a decimal offset) and a size."""
    if size < 0:
        raise invalid(field_size, f"must be >= 0, got {size}")
    size = min(size or default, maximum)
    if not token:
        return 0, size
    if not (token.isascii() and token.isdigit() and len(token) <= 18):  # int() of 5000 digits raises
        raise invalid("page_token", f"{token[:40]!r} is not a token returned by this RPC")
    return int(token), size


def column_rows(field: str, columns: dict[str, Any], limit: int) -> dict[str, Any]:
    """Reject a column dict ({name: [values]}) with a column longer than ``limit`` rows."""
    longest = max((len(values) for values in columns.values() if isinstance(values, list)), default=0)
    if longest > limit:
        raise invalid(field, f"has {longest:,} rows; the limit is {limit:,} per request (MAX_ROWS_PER_REQUEST)")
    return columns


def tick_count(field: str, count: int, limit: int) -> int:
    if count > limit:
        raise invalid(field, f"has {count:,} ticks; the limit is {limit:,} per message (MAX_TICKS_PER_MESSAGE); "
                             f"split the batch")
    return count
