"""Feature names as clients send them over gRPC, and their mapping onto indicator kinds.

A name is ``<kind>`` (all defaults) or ``<kind>_<p1>_<p2>...``; trailing parameters may be left out
and take their defaults (``macd_12_26`` computes ``macd_12_26_9``). Output keys follow one rule: each
output of the kind (``kind.outputs``, or the kind's own name when it has one) carries the parameter
text exactly as asked, so a request answers under the name it used and two variants never collide:
``rsi`` -> ``rsi``; ``rsi_14`` -> ``rsi_14``; ``macd`` -> ``macd``, ``macd_signal``, ``macd_hist``;
``macd_5_35`` -> ``macd_5_35``, ``macd_signal_5_35``, ``macd_hist_5_35``; ``adx_20`` -> ``adx_20``,
``plus_di_20``, ``minus_di_20``; ``bollinger_10_1.5`` -> ``bb_upper_10_1.5``, ``bb_middle_10_1.5``,
``bb_lower_10_1.5``. Names are matched after ``strip().lower()``. The registry is the list of known
kinds (``kinds.KINDS``, declared by family), never a dynamic lookup. Integer parameters lie in
``[low, high]``, float ones in ``(low, high]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from utils.engine.indicators.kernels import (device_panels, device_to_caller, host_panels, run_kind, run_kind_on_gpu,
                                             to_caller, use_device_kernels)
from utils.engine.indicators.layout import to_host
from utils.engine.indicators.kinds import KINDS
from utils.engine.indicators.step_core import INPUT_NAMES, IndicatorKind, Param

NS_PER_DAY = 86_400 * 1_000_000_000


class UnknownFeatureError(ValueError):
    """A feature name that is not in the registry or carries invalid parameters."""

    def __init__(self, name: str, reason: str = "unknown feature"):
        self.feature = name
        super().__init__(f"{reason}: {name!r}; valid features: {', '.join(_valid_patterns())}")


class MissingInputError(UnknownFeatureError):
    """A known feature whose inputs (high, low, volume...) are not among the bars given."""

    def __init__(self, name: str, missing: Iterable[str], given: Iterable[str]):
        self.feature = name
        self.missing = tuple(missing)
        given = tuple(given)
        usable = _valid_patterns(lambda kind: set(kind.inputs) <= set(given))
        ValueError.__init__(self, f"feature {name!r} needs input(s) {', '.join(self.missing)}, which the "
                                  f"bars given ({', '.join(given) or 'none'}) do not have; features these "
                                  f"bars support: {', '.join(usable) or 'none'}")


@dataclass(frozen=True)
class FeatureSpec:
    name: str                      # normalised requested name, e.g. "rsi" or "sma_50"
    kernel: str                    # the indicator kind's name, e.g. "sma"
    params: tuple[float | int, ...]
    output_keys: tuple[str, ...]
    lookback: int                  # NaN bars after the first valid input
    kind: IndicatorKind = field(repr=False, compare=False, default=None)

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.kind.inputs

    def params_array(self) -> np.ndarray:
        return np.asarray(self.params, dtype=np.float64)


def _parse_param(param: Param, text: str) -> int | float:
    if param.is_integer:
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{param.name} must be an integer, got {text!r}")
        value: int | float = int(text)
        if not param.low <= value <= param.high:
            raise ValueError(f"{param.name} must be in [{param.low:g}, {param.high:g}], got {value}")
        return value
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{param.name} must be a number, got {text!r}") from None
    if not (math.isfinite(value) and param.low < value <= param.high):
        raise ValueError(f"{param.name} must be in ({param.low:g}, {param.high:g}], got {text!r}")
    return value


def _default(param: Param) -> int | float:
    return int(param.default) if param.is_integer else float(param.default)


def _pattern(kind: IndicatorKind) -> str:
    return "_".join([kind.name] + [f"<{param.name}>" for param in kind.params])


def _valid_patterns(accept: Callable[[IndicatorKind], bool] = lambda kind: True) -> list[str]:
    return list(dict.fromkeys(text for kind in KINDS.values() if accept(kind)
                              for text in (kind.name, _pattern(kind))))


def _match_kind(normalised: str) -> tuple[IndicatorKind | None, str | None]:
    """The longest kind name that is the whole name or its prefix before ``_``; its parameter text."""
    for kind_name in sorted(KINDS, key=len, reverse=True):
        if normalised == kind_name:
            return KINDS[kind_name], None
        if normalised.startswith(kind_name + "_"):
            return KINDS[kind_name], normalised[len(kind_name) + 1:]
    return None, None


def parse_feature(name: str) -> FeatureSpec:
    """Resolve a requested feature name; raises ``UnknownFeatureError`` naming the problem."""
    if not isinstance(name, str):
        raise UnknownFeatureError(repr(name), "feature names must be strings")
    normalised = name.strip().lower()
    kind, param_text = _match_kind(normalised)
    if kind is None:
        raise UnknownFeatureError(name)
    pieces = param_text.split("_") if param_text is not None else []
    if "" in pieces:
        raise UnknownFeatureError(name, "empty parameter")
    if len(pieces) > len(kind.params):
        raise UnknownFeatureError(name, f"too many parameters (expected {_pattern(kind)})")
    try:
        params = tuple(_parse_param(param, text) for param, text in zip(kind.params, pieces))
    except ValueError as exc:
        raise UnknownFeatureError(name, f"bad parameter ({exc})") from None
    defaults = tuple(_default(param) for param in kind.params)
    params += defaults[len(params):]
    problem = kind.check(params)
    if problem:
        raise UnknownFeatureError(name, f"bad parameters ({problem})")
    stems = kind.outputs or (kind.name,)
    output_keys = stems if param_text is None else tuple(f"{stem}_{param_text}" for stem in stems)
    return FeatureSpec(name=normalised, kernel=kind.name, params=params, output_keys=output_keys,
                       lookback=int(kind.lookback(params)), kind=kind)


@dataclass(frozen=True)
class FeaturePlan:
    """Requested names resolved once: one spec per distinct set of output keys, in request order
    (``sma_20`` and `` SMA_20 `` are one feature), and the bar inputs they read together."""

    specs: tuple[FeatureSpec, ...]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "FeaturePlan":
        specs = [parse_feature(name) for name in names]  # validate all before computing any
        unique = {spec.output_keys: spec for spec in reversed(specs)}  # first request wins
        return cls(tuple(spec for spec in specs if unique[spec.output_keys] is spec))

    @property
    def inputs(self) -> tuple[str, ...]:
        needed = {name for spec in self.specs for name in spec.inputs}
        return tuple(name for name in INPUT_NAMES if name in needed)

    @property
    def output_keys(self) -> tuple[str, ...]:
        return tuple(key for spec in self.specs for key in spec.output_keys)

    def check_inputs(self, given: Iterable[str]) -> None:
        """Raise ``MissingInputError`` for the first feature whose inputs are not all in ``given``."""
        given = tuple(given)
        for spec in self.specs:
            missing = [name for name in spec.inputs if name not in given]
            if missing:
                raise MissingInputError(spec.name, missing, given)


def session_starts(time_ns: np.ndarray) -> np.ndarray:
    """True on the first bar and wherever the UTC date changes (VWAP's session resets)."""
    day = np.asarray(time_ns, dtype=np.int64) // NS_PER_DAY
    starts = np.ones(day.shape[0], dtype=np.bool_)
    starts[1:] = day[1:] != day[:-1]
    return starts


def _bar_inputs(bars: Any) -> tuple[dict[str, Any], Any]:
    """``({input: array}, time or None)`` from a close array or a Mapping of bar columns."""
    if isinstance(bars, Mapping):
        inputs = {name: bars[name] for name in INPUT_NAMES if bars.get(name) is not None}
        return inputs, bars.get("time")
    return {"close": bars}, None


def compute_features(xp: Any, names: list[str], bars: Any, on_device: bool | None = None) -> dict[str, Any]:
    """Full series (same shape as the inputs) for every output key of the requested features.

    ``bars`` is a close series/panel (1-D or 2-D), or a Mapping with some of ``open``, ``high``,
    ``low``, ``close``, ``volume`` (same shapes) and optionally ``time`` (int64 ns, one per row;
    VWAP sessions start where the UTC date changes). A feature whose inputs are missing raises
    ``MissingInputError`` (a ``ValueError``) naming them. Each column of a feature starts at its
    first row where all of its kind's inputs are non-NaN. The steps run on the host (see
    ``kernels``); with ``on_device`` (a GPU backend, ``Backend.is_gpu``; by default whenever
    ``xp`` is not NumPy) they run as CUDA panel kernels instead
    (``utils/engine/cuda/indicator_kernels``) and the panels never leave the device (under the
    CUDA simulator ``xp`` is NumPy and the "device" is host memory). Where the kernels cannot be
    compiled (no libNVVM) GPU inputs are copied to the host and the outputs back to ``xp``.
    """
    plan = FeaturePlan.from_names(names)
    inputs, time_ns = _bar_inputs(bars)
    plan.check_inputs(inputs)
    if not plan.specs:
        return {}
    on_device = use_device_kernels(xp, on_device)
    selected = {name: inputs[name] for name in plan.inputs}
    panels, was_series = device_panels(xp, selected) if on_device else host_panels(xp, selected)
    new_session = None
    if time_ns is not None:
        new_session = session_starts(to_host(xp, xp.asarray(time_ns)))
        if new_session.shape[0] != next(iter(panels.values())).shape[0]:
            raise ValueError("bars: time must have one entry per row")
    features: dict[str, Any] = {}
    outputs: dict[tuple, tuple[Any, ...]] = {}  # ``macd`` and ``macd_12_26_9`` run once
    for spec in plan.specs:
        key = (spec.kernel, spec.params)
        if key not in outputs:
            if on_device:
                outputs[key] = device_to_caller(xp, run_kind_on_gpu(spec.kind, spec.params, panels, new_session),
                                                was_series)
            else:
                outputs[key] = to_caller(xp, run_kind(spec.kind, spec.params, panels, new_session), was_series)
        features.update(zip(spec.output_keys, outputs[key]))
    return features


def latest_values(features: dict[str, Any]) -> dict[str, float | list[float]]:
    """Last row of each feature (a float for a series, NaN allowed; a list for a panel)."""
    latest: dict[str, Any] = {}
    for key, series in features.items():
        last = series[-1]
        latest[key] = float(last) if np.ndim(last) == 0 else [float(value) for value in last.tolist()]
    return latest


@dataclass(frozen=True)
class SymbolFeatures:
    """One symbol's features over its bars: what a ComputeFeatures request answers."""

    latest: dict[str, float]       # last bar's value of each output key; NaN in warm-up or not finite
    series: dict[str, np.ndarray]  # with a tail: each output's values on the bars ``rows`` selects
    rows: slice                    # the last ``tail`` bars, which ``series`` covers


def symbol_features(bars: Mapping[str, Any], names: list[str], tail: int = 0) -> SymbolFeatures:
    """``compute_features`` over one symbol's bar columns (1-D, with ``time``), reduced to the
    latest values and, when ``tail`` > 0, the last ``tail`` rows of each output."""
    features = compute_features(np, names, bars)
    rows = len(next(iter(features.values()), ()))
    latest = {key: math.nan for key in features}
    if rows:
        latest = {key: value if math.isfinite(value) else math.nan for key, value in latest_values(features).items()}
    selected = slice(max(rows - tail, 0), rows)
    series = {key: np.asarray(values)[selected] for key, values in features.items()} if tail > 0 else {}
    return SymbolFeatures(latest=latest, series=series, rows=selected)


def list_features() -> list[dict[str, Any]]:
    """Description of each feature kind, for a ListFeatures RPC."""
    described = []
    for kind in KINDS.values():
        described.append({
            "name": kind.name,
            "pattern": _pattern(kind),
            "description": kind.description,
            "params": [{"name": param.name, "default": _default(param),
                        "type": "int" if param.is_integer else "float"} for param in kind.params],
            "inputs": list(kind.inputs),
            "outputs": list(kind.outputs) or [kind.name],
            "default_lookback": parse_feature(kind.name).lookback,
            "lookback": kind.lookback_formula,
        })
    return described
