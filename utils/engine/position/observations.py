"""What the position policy sees: engine features of the current and previous bars.

Feature names are the indicator engine's (``rsi_14``, ``macd``, ``zscore_20``... every output key
of a kind is a column) plus two price ratios computed here: ``return_<n>`` = close[t] /
close[t-n] - 1 and ``sma_ratio_<n>`` = close[t] / SMA(close, n)[t] - 1. Row t reads bars up to t
only. With ``history_bars`` h the observation holds each column at t, t-1, ..., t-h+1
(``<column>``, ``<column>_lag1``...), then the current ``position``. Works on one symbol's
series (rows) and on (time x symbols) panels alike.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from utils.engine.indicators.features import UnknownFeatureError, compute_features, parse_feature

DEFAULT_FEATURES = ("return_1", "return_5", "sma_ratio_10", "sma_ratio_30", "rsi_14")
POSITION = "position"
BAR_INPUTS = ("open", "high", "low", "close", "volume")
RATIO = re.compile(r"^(return|sma_ratio)_(\d+)$")
MAX_RATIO_PERIOD = 1000


def _ratio(name: str) -> tuple[str, int] | None:
    match = RATIO.match(name)
    if match is None:
        return None
    period = int(match.group(2))
    if not 1 <= period <= MAX_RATIO_PERIOD or (match.group(1) == "sma_ratio" and period < 2):
        raise ValueError(f"feature {name!r}: the period must be in [{1 if match.group(1) == 'return' else 2}, "
                         f"{MAX_RATIO_PERIOD}]")
    return match.group(1), period


def check_features(names: Any) -> list[str]:
    """Normalised names (ValueError naming the bad one); at least one, no repeats."""
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError("features must be a non-empty list of feature names, e.g. "
                         f"{list(DEFAULT_FEATURES)}")
    cleaned = [name.strip().lower() for name in names]
    if len(set(cleaned)) != len(cleaned):
        raise ValueError("features must not repeat a name")
    for name in cleaned:
        if _ratio(name) is None:
            try:
                parse_feature(name)
            except UnknownFeatureError as exc:
                raise ValueError(f"features: {exc} (or return_<n>, sma_ratio_<n>)") from None
    return cleaned


def feature_lookback(names: list[str]) -> int:
    """Bars before a feature row is defined (the largest over ``names``)."""
    lookbacks = []
    for name in names:
        ratio = _ratio(name)
        lookbacks.append((ratio[1] if ratio[0] == "return" else ratio[1] - 1) if ratio else parse_feature(name).lookback)
    return max(lookbacks)


def feature_columns(bars: Mapping[str, Any], names: list[str]) -> dict[str, np.ndarray]:
    """Column name -> values (the shape of ``bars['close']``: a series or a time x symbols panel)."""
    close = np.asarray(bars["close"], dtype=np.float64)
    engine = [name for name in names if _ratio(name) is None]
    inputs = {field: np.asarray(bars[field], dtype=np.float64) for field in BAR_INPUTS if field in bars}
    if "time" in bars:  # one per row (VWAP's sessions)
        inputs["time"] = np.asarray(bars["time"], dtype=np.int64)
    computed = compute_features(np, engine, inputs) if engine else {}
    columns: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in names:
            ratio = _ratio(name)
            if ratio is None:
                spec = parse_feature(name)
                columns.update((key, np.asarray(computed[key], dtype=np.float64)) for key in spec.output_keys)
            elif ratio[0] == "return":
                shifted = np.full_like(close, np.nan)
                shifted[ratio[1]:] = close[:-ratio[1]]
                columns[name] = close / shifted - 1.0
            else:
                sma = compute_features(np, [f"sma_{ratio[1]}"], close)[f"sma_{ratio[1]}"]
                columns[name] = close / np.asarray(sma, dtype=np.float64) - 1.0
    return columns


def column_names(names: list[str]) -> list[str]:
    """The feature columns ``names`` give (a multi-output kind gives each output), in order."""
    return [key for name in names for key in ((name,) if _ratio(name) else parse_feature(name).output_keys)]


def observation_names(columns: list[str], history_bars: int) -> list[str]:
    return [f"{column}_lag{lag}" if lag else column for lag in range(history_bars) for column in columns] + [POSITION]


def lagged_features(columns: dict[str, np.ndarray], history_bars: int) -> np.ndarray:
    """(rows, [symbols,] columns x history_bars) in ``observation_names`` order (position excluded);
    NaN where a lag reaches before the first row or a value is not finite."""
    stacked = np.stack(list(columns.values()), axis=-1)
    stacked = np.where(np.isfinite(stacked), stacked, np.nan)
    lags = []
    for lag in range(history_bars):
        shifted = np.full_like(stacked, np.nan)
        shifted[lag:] = stacked[:stacked.shape[0] - lag]
        lags.append(shifted)
    return np.concatenate(lags, axis=-1)


def observation_features(bars: Mapping[str, Any], names: list[str], history_bars: int) -> tuple[list[str], np.ndarray]:
    """(observation names, lagged feature rows) of ``bars`` for features ``names``."""
    columns = feature_columns(bars, names)
    return observation_names(list(columns), history_bars), lagged_features(columns, history_bars)
