"""The /ws message protocol: what a client may send, what each connection follows, and the
shape of every push (``{"channel": ..., ..., "time": ...}``).

Client messages (JSON text frames)::

    {"type": "auth", "api_key": "..."}                        first, when keys are on and no header was sent
    {"type": "subscribe", "channel": "task_status", "job_id": "bt-..."}     or "task_type": "backtest" / "*"
    {"type": "subscribe", "channel": "market_data", "symbols": ["000001.SZ"]}
    {"type": "subscribe", "channel": "calc_result", "symbols": [...]}       indicator updates
    {"type": "subscribe", "channel": "calc_result", "job_id" | "task_type": ...}   finished jobs' results
    {"type": "subscribe", "channel": "alert"}
    {"type": "subscribe", "channel": "system"}                 workers and queue depths, periodically
    {"type": "unsubscribe", ...same fields...}
    {"type": "ping"}                                           answered {"type": "pong"}
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from utils.task_types import TASK_TYPES

CHANNELS = ("market_data", "calc_result", "task_status", "alert", "system")
ALL_TYPES = "*"
MAX_SYMBOLS_PER_MESSAGE = 500
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:^-]{0,63}$")
# Pushes a slow client may lose (a newer one supersedes them); the others are never dropped.
DROPPABLE = frozenset({"market_data", "indicators"})


class ProtocolError(ValueError):
    """A client message that cannot be honoured; the text goes back to the client."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Push(dict):
    """A push; fanned out to many connections, it is encoded to JSON once."""

    def encoded(self) -> str:
        text = getattr(self, "_text", None)
        if text is None:
            text = self._text = json.dumps(self)
        return text


def push(channel: str, **fields: Any) -> Push:
    return Push(channel=channel, **fields, time=now_iso())


def encode(message: dict[str, Any]) -> str:
    return message.encoded() if isinstance(message, Push) else json.dumps(message)


def error(message: str, code: str = "bad_request") -> dict[str, Any]:
    return {"type": "error", "error": code, "message": message, "time": now_iso()}


@dataclass(frozen=True)
class Subscription:
    """One subscribe/unsubscribe request, validated."""

    action: str  # subscribe | unsubscribe
    channel: str
    job_id: str | None = None
    task_type: str | None = None
    symbols: tuple[str, ...] = ()


def _text(message: dict[str, Any], name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{name} must be a non-empty string")
    return value


def _symbols(message: dict[str, Any]) -> tuple[str, ...]:
    symbols = message.get("symbols")
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
        raise ProtocolError("symbols must be a non-empty list of symbol strings")
    if len(symbols) > MAX_SYMBOLS_PER_MESSAGE:
        raise ProtocolError(f"at most {MAX_SYMBOLS_PER_MESSAGE} symbols per message, got {len(symbols)}")
    bad = [s for s in symbols if not _SYMBOL.match(s)]
    if bad:
        raise ProtocolError(f"invalid symbol {bad[0][:70]!r}")
    return tuple(dict.fromkeys(symbols))


def _job_target(message: dict[str, Any]) -> tuple[str | None, str | None]:
    job_id, task_type = _text(message, "job_id"), _text(message, "task_type")
    if (job_id is None) == (task_type is None):
        raise ProtocolError("give exactly one of job_id or task_type ('*' for every type)")
    if job_id is not None and not valid_job_id(job_id):
        raise ProtocolError(f"invalid job_id {job_id[:70]!r}")
    known = {t.name for t in TASK_TYPES}
    if task_type is not None and task_type != ALL_TYPES and task_type not in known:
        raise ProtocolError(f"unknown task_type {task_type!r}; known: {', '.join(sorted(known))} or '*'")
    return job_id, task_type


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id))


def parse_subscription(message: dict[str, Any]) -> Subscription:
    action, channel = message.get("type"), message.get("channel")
    if channel not in CHANNELS:
        raise ProtocolError(f"unknown channel {channel!r}; channels: {', '.join(CHANNELS)}")
    if channel == "market_data":
        return Subscription(action, channel, symbols=_symbols(message))
    if channel == "task_status":
        return Subscription(action, channel, *_job_target(message))
    if channel == "calc_result":
        if "symbols" in message:
            return Subscription(action, channel, symbols=_symbols(message))
        return Subscription(action, channel, *_job_target(message))
    return Subscription(action, channel)


@dataclass
class Interests:
    """What one connection follows."""

    status_jobs: set[str] = field(default_factory=set)
    status_types: set[str] = field(default_factory=set)
    result_jobs: set[str] = field(default_factory=set)
    result_types: set[str] = field(default_factory=set)
    market_symbols: set[str] = field(default_factory=set)
    indicator_symbols: set[str] = field(default_factory=set)
    alerts: bool = False
    system: bool = False

    def apply(self, sub: Subscription) -> None:
        add = sub.action == "subscribe"
        if sub.channel in ("task_status", "calc_result") and not sub.symbols:
            prefix = "status" if sub.channel == "task_status" else "result"
            target = getattr(self, f"{prefix}_jobs" if sub.job_id else f"{prefix}_types")
            (target.add if add else target.discard)(sub.job_id or sub.task_type)
        elif sub.channel in ("market_data", "calc_result"):
            target = self.market_symbols if sub.channel == "market_data" else self.indicator_symbols
            if add:
                target.update(sub.symbols)
            else:
                target.difference_update(sub.symbols)
        elif sub.channel == "alert":
            self.alerts = add
        else:
            self.system = add

    @property
    def symbols(self) -> set[str]:
        return self.market_symbols | self.indicator_symbols

    def wants_status(self, job_id: str, task_type: str) -> bool:
        return job_id in self.status_jobs or task_type in self.status_types or ALL_TYPES in self.status_types

    def wants_result(self, job_id: str, task_type: str) -> bool:
        return job_id in self.result_jobs or task_type in self.result_types or ALL_TYPES in self.result_types

    @property
    def follows_jobs(self) -> bool:
        return bool(self.status_jobs or self.status_types or self.result_jobs or self.result_types)


def job_status_push(job_id: str, fields: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """A task_status push from the job hash (``status`` overrides the hash's: the announced one)."""
    extra: dict[str, Any] = {}
    if fields.get("error"):
        extra["error"] = fields["error"]
    if fields.get("progress_detail"):
        extra["progress_detail"] = fields["progress_detail"]
    return push("task_status", job_id=job_id, task_type=fields.get("type", ""),
                status=status or fields.get("status", ""), progress=float(fields.get("progress") or 0.0), **extra)


def result_summary(result: dict[str, Any] | None) -> dict[str, Any]:
    """The small part of a finished job's result worth pushing: its metrics, else its scalars."""
    if not isinstance(result, dict):
        return {}
    if isinstance(result.get("metrics"), dict):
        return {"metrics": result["metrics"]}
    return {k: v for k, v in list(result.items())[:50] if isinstance(v, (int, float, str, bool)) or v is None}
