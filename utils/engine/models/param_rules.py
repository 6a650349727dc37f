"""Shared hyper-parameter checks: each rule normalises one value or rejects it (returns ``INVALID``).

Numbers may arrive as JSON/protobuf doubles (``100.0``), so integral floats are accepted where a
count is expected. Every error names the parameter and the allowed ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Mapping

from .errors import InvalidModelParams

INVALID = object()  # a rule's "no": None is a legal value for nullable params


@dataclass(frozen=True)
class Rule:
    check: Callable[[Any], Any]  # the cleaned value, or INVALID
    description: str


def count(low: int, high: int | None = None) -> Callable[[Any], Any]:
    """An integer in [low, high] (integral floats accepted)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, Real):
            return INVALID
        if not isinstance(value, Integral) and not (math.isfinite(value) and float(value).is_integer()):
            return INVALID
        number = int(value)
        return number if low <= number and (high is None or number <= high) else INVALID

    return check


def real(low: float, high: float = math.inf, *, low_open: bool = False) -> Callable[[Any], Any]:
    """A finite float in [low, high] (or (low, high] with ``low_open``)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            return INVALID
        number = float(value)
        above = number > low if low_open else number >= low
        return number if above and number <= high else INVALID

    return check


def boolean(value: Any) -> Any:
    return value if isinstance(value, bool) else INVALID


def nullable(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def n_jobs(value: Any) -> Any:
    """-1 (all cores) or a thread count; null means -1."""
    if value is None:
        return -1
    threads = count(-1, 1024)(value)
    return INVALID if threads == 0 else threads


def clean_params(model_type: str, params: Mapping[str, Any] | None, rules: Mapping[str, Rule],
                 defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` overlaid with ``params``, each checked by its rule; raises ``InvalidModelParams``."""
    allowed = ", ".join(rules) or "(none)"
    if params is not None and not isinstance(params, Mapping):
        raise InvalidModelParams(f"params for {model_type} must be a mapping, got {type(params).__name__}")
    cleaned = dict(defaults)
    unknown = [name for name in (params or {}) if name not in rules]
    if unknown:
        raise InvalidModelParams(f"unknown parameter(s) {', '.join(map(repr, unknown))} for {model_type}; "
                                 f"allowed: {allowed}")
    for name, value in (params or {}).items():
        rule = rules[name]
        try:
            normalised = rule.check(value)
        except TypeError:  # e.g. an unhashable value compared with strings
            normalised = INVALID
        if normalised is INVALID:
            raise InvalidModelParams(f"invalid value for parameter {name!r} of {model_type}: {value!r} "
                                     f"(expected {rule.description}); allowed parameters: {allowed}")
        cleaned[name] = normalised
    return cleaned
