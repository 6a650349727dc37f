"""ISO-8601 <-> int64 nanoseconds since the epoch (UTC), the engine's time representation."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

NS_PER_DAY = 86_400 * 10**9


def parse_time(text: str) -> int:
    """Parse an ISO-8601 date or datetime; naive times are UTC. Raises ValueError."""
    value = (text or "").strip()
    if not value:
        raise ValueError("empty time")
    moment = datetime.fromisoformat(value.replace(" ", "T", 1) if "T" not in value and " " in value else value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def format_time(ns: int) -> str:
    """'2024-01-02' for midnight UTC, else '2024-01-02T09:30:00.5Z'-style full precision."""
    ns = int(ns)
    if ns % NS_PER_DAY == 0:
        return str(np.datetime64(ns, "ns").astype("datetime64[D]"))
    text = str(np.datetime64(ns, "ns"))
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text + "Z"


def format_times(ns_values: np.ndarray) -> list[str]:
    return [format_time(v) for v in ns_values.tolist()]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def epoch_to_iso(seconds: float | None) -> str:
    if not seconds:
        return ""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")
