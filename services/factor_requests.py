"""Submit-time checks shared by FactorService's RPCs: periods, quantiles, cleaning options,
expressions, library names and stored factor sets. Each raises INVALID_ARGUMENT / NOT_FOUND /
FAILED_PRECONDITION naming the field."""
from __future__ import annotations

import math
from typing import Any

from services.errors import failed_precondition, invalid, not_found
from services.job_views import job_id_field, require_job
from utils.data import factor_sets
from utils.queue.jobs import JobStatus

DEFAULT_PERIODS = (1, 5, 10)
MAX_PERIOD = 252
MAX_PERIODS = 32
DEFAULT_QUANTILES = 5
MAX_BINS = 100
DEFAULT_MAX_LOSS = 0.35
DEFAULT_FILTER_ZSCORE = 20.0
MAX_EXPRESSION_CHARS = 4096
MAX_FACTORS = 512
MAX_NAME_CHARS = 64
SET_TASK_TYPE = "factor_set"


def periods(values: list[int]) -> list[int]:
    values = list(values) or list(DEFAULT_PERIODS)
    if len(values) > MAX_PERIODS:
        raise invalid("periods", f"has {len(values)} entries; the limit is {MAX_PERIODS}")
    for period in values:
        if not 1 <= period <= MAX_PERIOD:
            raise invalid("periods", f"each must be 1..{MAX_PERIOD} rows, got {period}")
    if len(set(values)) != len(values):
        raise invalid("periods", f"lists a period twice: {values}")
    return values


def quantiles(request) -> int:
    value = request.quantiles if request.HasField("quantiles") else DEFAULT_QUANTILES
    if not 2 <= value <= MAX_BINS:
        raise invalid("quantiles", f"must be 2..{MAX_BINS}, got {value}")
    return value


def cleaning(request) -> dict[str, Any]:
    """max_loss, filter_zscore (None = off) and long_short, with their defaults."""
    max_loss = request.max_loss if request.HasField("max_loss") else DEFAULT_MAX_LOSS
    if not (math.isfinite(max_loss) and 0 <= max_loss <= 1):
        raise invalid("max_loss", f"must be a share in [0, 1], got {max_loss}")
    zscore = request.filter_zscore if request.HasField("filter_zscore") else DEFAULT_FILTER_ZSCORE
    if not (math.isfinite(zscore) and zscore >= 0):
        raise invalid("filter_zscore", f"must be a finite number >= 0 (0 = off), got {zscore}")
    return {"max_loss": max_loss, "filter_zscore": zscore or None,
            "long_short": request.long_short if request.HasField("long_short") else True}


def expression(text: str, field: str = "expression") -> str:
    if not text.strip():
        raise invalid(field, "is empty; give a factor expression, e.g. 'cs_rank(ts_mean(close, 5) / close)'")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise invalid(field, f"is {len(text)} characters; the limit is {MAX_EXPRESSION_CHARS}")
    from utils.engine.backtest.rule_syntax import RuleError
    from utils.engine.factors.expressions import parse_factor
    try:
        parse_factor(text)
    except RuleError as exc:
        raise invalid(field, f"column {exc.column}: {exc.reason}") from None
    except (ValueError, RecursionError) as exc:
        raise invalid(field, str(exc) or "does not parse") from None
    return text


def _names(names: list[str], field: str = "names") -> list[str]:
    for index, name in enumerate(names):
        if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise invalid(f"{field}[{index}]", f"must be 1..{MAX_NAME_CHARS} printable characters")
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise invalid(field, f"lists {duplicate[:40]!r} twice")
    return names


def subset(names: list[str], available: list[str], what: str) -> list[str]:
    """The requested names (default all available), each one of ``available``."""
    if not names:
        return list(available)
    _names(names)
    known = set(available)
    for index, name in enumerate(names):
        if name not in known:
            raise invalid(f"names[{index}]", f"{name[:40]!r} is not a factor of {what}")
    return names


def expressions_or_library(expressions: list[str], library: str, names: list[str]) -> tuple[list[str], list[str]]:
    """(names, expressions) of a request giving expressions (labelled by names, default f0, f1...)
    or a library (names = a subset of it)."""
    if expressions and library:
        raise invalid("library", "give expressions or library, not both")
    if library:
        from utils.engine.factors.alpha158 import LIBRARIES
        if library not in LIBRARIES:
            raise invalid("library", f"unknown library {library[:40]!r}; known: {', '.join(sorted(LIBRARIES))}")
        chosen = subset(names, list(LIBRARIES[library]), f"library {library}")
        return chosen, [LIBRARIES[library][name] for name in chosen]
    if not expressions:
        raise invalid("expressions", "is empty; give factor expressions or a library (\"alpha158\")")
    if len(expressions) > MAX_FACTORS:
        raise invalid("expressions", f"has {len(expressions)} entries; the limit is {MAX_FACTORS}")
    if names and len(names) != len(expressions):
        raise invalid("names", f"has {len(names)} labels for {len(expressions)} expressions")
    names = _names(names) if names else [f"f{index}" for index in range(len(expressions))]
    return names, [expression(text, f"expressions[{index}]") for index, text in enumerate(expressions)]


def stored_set(queue, redis, field: str, set_id: str) -> dict[str, Any]:
    """The meta of a COMPLETED, still stored factor set (NOT_FOUND / FAILED_PRECONDITION)."""
    set_id = job_id_field(field, set_id, SET_TASK_TYPE)
    record = require_job(queue, set_id, SET_TASK_TYPE)
    if record.status is not JobStatus.COMPLETED:
        raise failed_precondition(f"factor set {set_id} is {record.status.value}; it can be used once it is "
                                  f"COMPLETED (follow it with JobService.WatchJob)")
    meta = factor_sets.read_meta(redis, set_id)
    if meta is None:
        raise not_found(f"factor set {set_id} has expired (factor sets are kept for the result TTL)")
    meta["id"] = set_id
    meta["finished_at"] = record.finished_at  # its version: a re-run of the job rewrites the set
    return meta
