"""Allow-list and validation of random-forest hyper-parameters.

Numbers may arrive as JSON/protobuf doubles (``100.0``), so integral floats are accepted
where a count is expected. Every error names the parameter and the allowed ones.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Callable, Mapping

from .errors import InvalidModelParams

DEFAULT_N_ESTIMATORS = 100
DEFAULT_N_JOBS = -1


def _count(value: Any, low: int, high: int | None = None) -> int | None:
    """``value`` as an int in [low, high], or None when it is not such a count."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    if not isinstance(value, Integral) and not (math.isfinite(value) and float(value).is_integer()):
        return None
    count = int(value)
    if count < low or (high is not None and count > high):
        return None
    return count


def _fraction(value: Any, *, include_one: bool) -> float | None:
    """A float fraction in (0, 1) or (0, 1], or None."""
    if isinstance(value, (bool, Integral)) or not isinstance(value, Real):
        return None
    fraction = float(value)
    upper_ok = fraction <= 1.0 if include_one else fraction < 1.0
    return fraction if 0.0 < fraction and upper_ok else None


def _n_estimators(value: Any) -> Any:
    return _count(value, 1, 5000)


def _max_depth(value: Any) -> Any:
    return None if value is None else _count(value, 1, 200)


def _min_samples_split(value: Any) -> Any:
    fraction = _fraction(value, include_one=False)
    return fraction if fraction is not None else _count(value, 2)


def _min_samples_leaf(value: Any) -> Any:
    fraction = _fraction(value, include_one=False)
    return fraction if fraction is not None else _count(value, 1)


def _max_features(value: Any) -> Any:
    if value is None or value in ("sqrt", "log2"):
        return value
    fraction = _fraction(value, include_one=True)  # 1.0 means "all features", as in sklearn
    return fraction if fraction is not None else _count(value, 1)


def _bootstrap(value: Any) -> Any:
    return value if isinstance(value, bool) else None


def _n_jobs(value: Any) -> Any:
    if value is None:
        return None
    count = _count(value, -1, 1024)
    return None if count == 0 else count


def _random_state(value: Any) -> Any:
    return None if value is None else _count(value, 0, 2**32 - 1)


# name -> (normaliser returning the cleaned value or None for "invalid", description)
_ALLOWED: dict[str, tuple[Callable[[Any], Any], str]] = {
    "n_estimators": (_n_estimators, "integer 1..5000"),
    "max_depth": (_max_depth, "null or integer 1..200"),
    "min_samples_split": (_min_samples_split, "integer >= 2 or fraction in (0, 1)"),
    "min_samples_leaf": (_min_samples_leaf, "integer >= 1 or fraction in (0, 1)"),
    "max_features": (_max_features, "'sqrt', 'log2', null, integer >= 1 or fraction in (0, 1]"),
    "bootstrap": (_bootstrap, "true or false"),
    "n_jobs": (_n_jobs, "null, -1 or integer 1..1024"),
    "random_state": (_random_state, "null or integer 0..2**32-1"),
}
# Parameters whose legal value may itself be None (so None from a normaliser is ambiguous).
_NULLABLE = {"max_depth", "max_features", "n_jobs", "random_state"}

ALLOWED_PARAMS = tuple(_ALLOWED)


def validate_params(params: Mapping[str, Any] | None, random_state: int) -> dict[str, Any]:
    """Cleaned params with defaults filled in (n_estimators, n_jobs, random_state)."""
    allowed = ", ".join(ALLOWED_PARAMS)
    cleaned: dict[str, Any] = {"n_estimators": DEFAULT_N_ESTIMATORS, "n_jobs": DEFAULT_N_JOBS,
                               "random_state": random_state}
    for name, value in dict(params or {}).items():
        if name not in _ALLOWED:
            raise InvalidModelParams(f"unknown parameter {name!r} for random_forest; allowed: {allowed}")
        normalise, description = _ALLOWED[name]
        try:
            normalised = normalise(value)
        except TypeError:  # e.g. an unhashable value compared with strings
            normalised = None
        if normalised is None and not (value is None and name in _NULLABLE):
            raise InvalidModelParams(f"invalid value for parameter {name!r}: {value!r} "
                                     f"(expected {description}); allowed parameters: {allowed}")
        cleaned[name] = normalised
    return cleaned
