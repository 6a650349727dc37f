"""ISO-8601 <-> int64 nanoseconds since the epoch (UTC), the engine's time representation."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import numpy as np

NS_PER_DAY = 86_400 * 10**9


class TimeOutOfRange(ValueError):
    """A valid date that int64 nanoseconds cannot hold (before 1677-09-22 or after 2262-04-11)."""


def parse_time(text: str) -> int:
    """Parse an ISO-8601 date or datetime; naive times are UTC. Raises ValueError."""
    value = (text or "").strip()
    if not value:
        raise ValueError("empty time")
    moment = datetime.fromisoformat(value.replace(" ", "T", 1) if "T" not in value and " " in value else value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    if not -2**63 < ns < 2**63:  # numpy's datetime64[ns] range; beyond it int64 arrays overflow
        raise TimeOutOfRange(f"{value!r} is outside the supported range 1677-09-22 .. 2262-04-11")
    return ns


_PLAIN_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?$")


def parse_times(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``parse_time``: (int64 ns, ok mask). Plain UTC stamps ('...Z', '+00:00' or no
    offset) are parsed by NumPy in one call; anything else falls back to ``parse_time``."""
    plain, odd = [], []
    for index, text in enumerate(texts):
        stem = text[:-6] if text.endswith("+00:00") else text[:-1] if text.endswith("Z") else text
        if _PLAIN_ISO.match(stem) and 1678 <= int(stem[:4]) <= 2261:  # numpy wraps outside int64 ns silently
            plain.append(stem)
        else:
            plain.append("NaT")
            odd.append(index)
    try:
        times = np.array(plain, dtype="datetime64[ns]").astype(np.int64)
    except ValueError:  # a plain-looking but impossible date (month 13...): one at a time
        times, odd = np.zeros(len(texts), dtype=np.int64), list(range(len(texts)))
    ok = np.ones(len(texts), dtype=np.bool_)
    for index in odd:
        try:
            times[index] = parse_time(texts[index])
        except ValueError:
            ok[index] = False
    return times, ok


def format_time(ns: int) -> str:
    """'2024-01-02' for midnight UTC, else '2024-01-02T09:30:00.5Z'-style full precision."""
    ns = int(ns)
    if ns % NS_PER_DAY == 0:
        return str(np.datetime64(ns, "ns").astype("datetime64[D]"))
    text = str(np.datetime64(ns, "ns"))
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text + "Z"


def format_times(ns_values: np.ndarray) -> list[str]:
    values = np.asarray(ns_values, dtype=np.int64)
    if values.size and not np.any(values % NS_PER_DAY):  # daily bars: one vectorised conversion
        return np.datetime_as_string(values.astype("datetime64[ns]").astype("datetime64[D]")).tolist()
    return [format_time(v) for v in values.tolist()]


def epoch_to_iso(seconds: float | None) -> str:
    if not seconds:
        return ""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")
