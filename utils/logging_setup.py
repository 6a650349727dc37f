"""Logging configuration: text or JSON lines (LOG_FORMAT), level from LOG_LEVEL.

Records carry the context they were logged in: the worker binds ``job_id``/``task_type``/
``worker_id`` around a job, the RPC interceptor binds ``rpc_method`` around a call. The values
live in contextvars and a handler filter copies them onto every record, so any module's plain
``log.info(...)`` inside a job or an RPC is tagged without passing ids around.
"""
from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterator, Mapping

# The fields that may be bound; each is a record attribute and a key of the JSON line.
CONTEXT_FIELDS = ("job_id", "task_type", "worker_id", "rpc_method")
_CONTEXT: dict[str, ContextVar[str | None]] = {name: ContextVar(f"log_{name}", default=None)
                                               for name in CONTEXT_FIELDS}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def bind_log_context(**fields: str | None) -> dict[str, str | None]:
    """Bind context fields for this thread/task; returns the previous values for
    ``restore_log_context``. Values, not tokens, are restored, so a generator finalised on
    another thread (a cancelled stream) cannot raise."""
    previous = {}
    for name, value in fields.items():
        var = _CONTEXT[name]  # KeyError names an unknown field
        previous[name] = var.get()
        var.set(value)
    return previous


def restore_log_context(previous: Mapping[str, str | None]) -> None:
    for name, value in previous.items():
        _CONTEXT[name].set(value)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    previous = bind_log_context(**fields)
    try:
        yield
    finally:
        restore_log_context(previous)


def current_log_context() -> dict[str, str]:
    return {name: value for name, var in _CONTEXT.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (an explicit ``extra=`` value wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_log_context().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    EXTRA_FIELDS = CONTEXT_FIELDS + ("method",)

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                 "level": record.levelname, "logger": record.name, "process": record.processName,
                 "message": record.getMessage()}
        for name in self.EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ContextTextFormatter(logging.Formatter):
    """The plain text line, with ``[job_id=... rpc_method=...]`` appended when bound."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={value}" for name in CONTEXT_FIELDS
                          if (value := getattr(record, name, None)) is not None)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the tagged line
        return f"{head} [{fields}]{newline}{rest}"


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ContextTextFormatter(TEXT_FORMAT))
    # On the handler, not a logger: handler filters see records of every propagating logger.
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
