"""Feature names as clients send them over gRPC, and their mapping onto indicator kernels.

A name is ``<kind>`` (all defaults) or ``<kind>_<p1>_<p2>...``; trailing parameters may be left out
and take their defaults (``macd_12_26`` = ``macd_12_26_9``). Output keys:
  * single-output kinds keep the requested name: ``rsi`` -> ``rsi``, ``rsi_14`` -> ``rsi_14``;
  * multi-output kinds use plain keys when the parameters are the defaults (``macd`` and
    ``macd_12_26_9`` -> ``macd``, ``macd_signal``, ``macd_hist``; ``bollinger`` and
    ``bollinger_20_2`` -> ``bb_upper``, ``bb_middle``, ``bb_lower``) and append the parameters
    otherwise, so two variants never collide (``macd_5_35_5`` -> ``macd_5_35_5``,
    ``macd_signal_5_35_5``, ``macd_hist_5_35_5``; ``bollinger_10_1.5`` -> ``bb_upper_10_1.5``...).
Names are matched after ``strip().lower()``. A registry of known kinds, never dynamic lookup.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from utils.engine.indicators import kernels

MAX_PERIOD = 10_000
MAX_NBDEV = 100.0


class UnknownFeatureError(ValueError):
    """A feature name that is not in the registry or carries invalid parameters."""

    def __init__(self, name: str, reason: str = "unknown feature"):
        self.feature = name
        super().__init__(f"{reason}: {name!r}; valid features: {', '.join(_valid_patterns())}")


@dataclass(frozen=True)
class FeatureSpec:
    name: str                      # normalised requested name, e.g. "rsi" or "sma_50"
    kernel: str                    # kernel in ``kernels``, e.g. "sma"
    params: tuple[float | int, ...]
    output_keys: tuple[str, ...]
    lookback: int                  # NaN bars after the first valid input


@dataclass(frozen=True)
class _Param:
    name: str
    default: int | float
    is_integer: bool = True

    def parse(self, text: str) -> int | float:
        if self.is_integer:
            if not (text.isascii() and text.isdigit()):
                raise ValueError(f"{self.name} must be an integer, got {text!r}")
            value: int | float = int(text)
            if not 1 <= value <= MAX_PERIOD:
                raise ValueError(f"{self.name} must be in [1, {MAX_PERIOD}], got {value}")
            return value
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{self.name} must be a number, got {text!r}") from None
        if not (math.isfinite(value) and 0 < value <= MAX_NBDEV):
            raise ValueError(f"{self.name} must be in (0, {MAX_NBDEV:g}], got {text!r}")
        return value


@dataclass(frozen=True)
class _Kind:
    kernel: str
    params: tuple[_Param, ...]
    outputs: tuple[str, ...]       # () = single output named after the request
    lookback: Callable[[tuple], int]
    lookback_formula: str
    check: Callable[[tuple], str | None] = lambda params: None
    description: str = ""


def _macd_check(params: tuple) -> str | None:
    fast, slow, _ = params
    return None if fast < slow else f"fast ({fast}) must be smaller than slow ({slow})"


_PERIOD = _Param("period", 20)
_KINDS: dict[str, _Kind] = {
    "sma": _Kind("sma", (_PERIOD,), (), lambda p: p[0] - 1, "period - 1", description="simple moving average"),
    "ema": _Kind("ema", (_Param("period", 12),), (), lambda p: p[0] - 1, "period - 1",
                 description="exponential moving average seeded with an SMA"),
    "rsi": _Kind("rsi", (_Param("period", 14),), (), lambda p: p[0], "period",
                 description="Wilder relative strength index, 0..100"),
    "macd": _Kind("macd", (_Param("fast", 12), _Param("slow", 26), _Param("signal", 9)),
                  ("macd", "macd_signal", "macd_hist"), lambda p: p[1] - 1 + p[2] - 1,
                  "slow - 1 + signal - 1", _macd_check, "MACD line, signal line and histogram"),
    "bollinger": _Kind("bollinger", (_PERIOD, _Param("nbdev", 2.0, is_integer=False)),
                       ("bb_upper", "bb_middle", "bb_lower"), lambda p: p[0] - 1, "period - 1",
                       description="Bollinger bands: SMA +/- nbdev population standard deviations"),
}


def _pattern(kind_name: str) -> str:
    return "_".join([kind_name] + [f"<{param.name}>" for param in _KINDS[kind_name].params])


def _valid_patterns() -> list[str]:
    return [text for kind_name in _KINDS for text in (kind_name, _pattern(kind_name))]


def _format_param(value: int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_feature(name: str) -> FeatureSpec:
    """Resolve a requested feature name; raises ``UnknownFeatureError`` naming the problem."""
    if not isinstance(name, str):
        raise UnknownFeatureError(repr(name), "feature names must be strings")
    normalised = name.strip().lower()
    kind_name, separator, param_text = normalised.partition("_")
    kind = _KINDS.get(kind_name)
    if kind is None:
        raise UnknownFeatureError(name)
    pieces = param_text.split("_") if separator else []
    if "" in pieces:
        raise UnknownFeatureError(name, "empty parameter")
    if len(pieces) > len(kind.params):
        raise UnknownFeatureError(name, f"too many parameters (expected {_pattern(kind_name)})")
    try:
        params = tuple(param.parse(text) for param, text in zip(kind.params, pieces))
    except ValueError as exc:
        raise UnknownFeatureError(name, f"bad parameter ({exc})") from None
    params += tuple(param.default for param in kind.params[len(params):])
    problem = kind.check(params)
    if problem:
        raise UnknownFeatureError(name, f"bad parameters ({problem})")
    if not kind.outputs:
        output_keys: tuple[str, ...] = (normalised,)
    elif params == tuple(param.default for param in kind.params):
        output_keys = kind.outputs
    else:
        suffix = "_".join(_format_param(value) for value in params)
        output_keys = tuple(f"{key}_{suffix}" for key in kind.outputs)
    return FeatureSpec(name=normalised, kernel=kind.kernel, params=params,
                       output_keys=output_keys, lookback=int(kind.lookback(params)))


def _run_kernel(xp: Any, spec: FeatureSpec, close: Any) -> tuple[Any, ...]:
    if spec.kernel == "bollinger":
        period, nbdev = spec.params
        return kernels.bollinger(xp, close, period, nbdev, nbdev)
    result = getattr(kernels, spec.kernel)(xp, close, *spec.params)
    return result if isinstance(result, tuple) else (result,)


def compute_features(xp: Any, names: list[str], close: Any) -> dict[str, Any]:
    """Full series (same shape as ``close``) for every output key of the requested features."""
    specs = [parse_feature(name) for name in names]  # validate all before computing any
    features: dict[str, Any] = {}
    for spec in specs:
        if all(key in features for key in spec.output_keys):
            continue  # e.g. "macd" and "macd_12_26_9" requested together
        features.update(zip(spec.output_keys, _run_kernel(xp, spec, close)))
    return features


def latest_values(features: dict[str, Any]) -> dict[str, float | list[float]]:
    """Last row of each feature (a float for a series, NaN allowed; a list for a panel)."""
    latest: dict[str, Any] = {}
    for key, series in features.items():
        last = series[-1]
        latest[key] = float(last) if np.ndim(last) == 0 else [float(value) for value in last.tolist()]
    return latest


def max_lookback(names: list[str]) -> int:
    """Bars of history needed before every requested feature is non-NaN."""
    return max((parse_feature(name).lookback for name in names), default=0)


def list_features() -> list[dict[str, Any]]:
    """Description of each feature kind, for a ListFeatures RPC."""
    described = []
    for kind_name, kind in _KINDS.items():
        defaults = parse_feature(kind_name)
        described.append({
            "name": kind_name,
            "pattern": _pattern(kind_name),
            "description": kind.description,
            "params": [{"name": param.name, "default": param.default,
                        "type": "int" if param.is_integer else "float"} for param in kind.params],
            "outputs": list(kind.outputs) or [kind_name],
            "default_lookback": defaults.lookback,
            "lookback": kind.lookback_formula,
        })
    return described
