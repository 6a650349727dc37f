"""Training columns from stored market data: indicator features plus a target definition.

A user trains on real history without shipping it through JSON: symbols' bars, a list of
indicator feature names (the indicator engine's names, e.g. ``rsi``, ``sma_20``, ``macd``) and a
target definition. For each symbol the features are computed over its own bars (the same kernels
as ``ComputeFeatures``), the target from its future closes, rows where any feature or the target is
undefined (warm-up, the last ``horizon`` bars) are dropped, and the symbols' rows are merged in time
order (ties by symbol order), so the trainer's time split never trains on the future of its
validation rows.

Targets (``horizon`` h bars ahead, default 1): ``next_return`` = close[t+h] / close[t] - 1
(regression); ``next_return_sign`` = 1 when that return is > 0 else 0 (classification);
``forward_return_<h>`` and ``forward_return_sign_<h>`` name the horizon explicitly.
Besides indicator features, the bar fields (``open``, ``high``, ``low``, ``close``, ``volume``) and
``return_1`` (close[t] / close[t-1] - 1) may be used as features, and ``sentiment``: the scores
stored by MLService.AnalyzeSentiment, which the loader adds to the bars (``utils.data.sentiment``:
the latest score at or before each bar, 0 before the first).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from utils.engine.indicators.features import UnknownFeatureError, compute_features

from .errors import InvalidTrainingData

TARGET_COLUMN = "target"
BAR_FIELDS = ("open", "high", "low", "close", "volume")
EXTRA_FEATURES = ("return_1", "sentiment")
TARGET_PATTERN = re.compile(r"^(next_return|next_return_sign|forward_return_(\d+)|forward_return_sign_(\d+))$")
MAX_HORIZON = 250


def parse_target(definition: str) -> tuple[int, bool]:
    """``(horizon, is_sign)`` of a target definition; InvalidTrainingData naming the valid forms."""
    match = TARGET_PATTERN.match(definition.strip().lower()) if isinstance(definition, str) else None
    if match is None:
        raise InvalidTrainingData(f"target {definition!r} is not a known definition; use next_return, "
                                  f"next_return_sign, forward_return_<h> or forward_return_sign_<h> (h bars ahead)")
    horizon = int(match.group(2) or match.group(3) or 1)
    if not 1 <= horizon <= MAX_HORIZON:
        raise InvalidTrainingData(f"target horizon must be in [1, {MAX_HORIZON}], got {horizon}")
    return horizon, "sign" in match.group(1)


def check_feature_names(names: list[str]) -> None:
    """Raise InvalidTrainingData for a name that is neither a bar field nor an indicator feature."""
    indicator_names = [name for name in names if name not in BAR_FIELDS + EXTRA_FEATURES]
    try:
        compute_features(np, indicator_names, {field: np.full(2, 1.0) for field in BAR_FIELDS})
    except UnknownFeatureError as exc:
        raise InvalidTrainingData(f"features: {exc}") from None


def _symbol_columns(bars: Mapping[str, np.ndarray], names: list[str], horizon: int,
                    is_sign: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    close = np.asarray(bars["close"], dtype=np.float64)
    indicator_names = [name for name in names if name not in BAR_FIELDS + EXTRA_FEATURES]
    computed = compute_features(np, indicator_names, {field: np.asarray(bars[field], dtype=np.float64)
                                                      for field in BAR_FIELDS if field in bars} |
                                {"time": np.asarray(bars["time"], dtype=np.int64)}) if indicator_names else {}
    columns: dict[str, np.ndarray] = {}
    for name in names:
        if name in BAR_FIELDS:
            columns[name] = np.asarray(bars[name], dtype=np.float64)
        elif name == "return_1":
            columns[name] = np.concatenate([[np.nan], close[1:] / close[:-1] - 1.0])
        elif name == "sentiment":
            if bars.get("sentiment") is None:
                raise InvalidTrainingData("feature sentiment needs the bars' sentiment column (the market-data "
                                          "loader adds it from the scores stored by AnalyzeSentiment)")
            columns[name] = np.asarray(bars["sentiment"], dtype=np.float64)
    columns.update(computed)
    future = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        future[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    target = np.where(np.isnan(future), np.nan, (future > 0).astype(np.float64)) if is_sign else future
    return columns, target


def market_training_columns(bars_by_symbol: Mapping[str, Mapping[str, np.ndarray]], features: list[str],
                            target: str, extra: Mapping[str, Mapping[str, np.ndarray]] | None = None
                            ) -> dict[str, list[float]]:
    """Feature columns (every output key of the requested features) and ``target``, rows merged in
    time order across symbols; only rows where everything is finite. ``extra``: more feature
    columns per symbol (name -> values on that symbol's bars, e.g. stored factors aligned by the
    caller), placed after the engine features; a name that repeats a feature column is refused."""
    horizon, is_sign = parse_target(target)
    check_feature_names(features)
    tables, times = [], []
    for order, (symbol, bars) in enumerate(bars_by_symbol.items()):
        columns, target_values = _symbol_columns(bars, features, horizon, is_sign)
        for name, values in (extra or {}).get(symbol, {}).items():
            if name in columns or name == TARGET_COLUMN:
                raise InvalidTrainingData(f"factor {name!r} has the name of a feature column; rename it in the "
                                          f"factor set or leave that feature out")
            values = np.asarray(values, dtype=np.float64)
            if values.shape != np.shape(bars["close"]):
                raise InvalidTrainingData(f"factor {name!r} of {symbol} has {values.shape[0]} rows for "
                                          f"{len(bars['close'])} bars")
            columns[name] = values
        keep = np.isfinite(target_values)
        for values in columns.values():
            keep &= np.isfinite(values)
        tables.append({**{name: values[keep] for name, values in columns.items()}, TARGET_COLUMN: target_values[keep]})
        times.append(np.column_stack([np.asarray(bars["time"], dtype=np.int64)[keep],
                                      np.full(int(keep.sum()), order)]))
    merged_times = np.concatenate(times) if times else np.empty((0, 2), dtype=np.int64)
    if len(merged_times) == 0:
        raise InvalidTrainingData("no rows left after the features' warm-up and the target horizon; "
                                  "widen the time range or use shorter feature periods")
    order = np.lexsort((merged_times[:, 1], merged_times[:, 0]))
    names = list(tables[0])
    return {name: np.concatenate([table[name] for table in tables])[order].tolist() for name in names}


def feature_columns_of(columns: Mapping[str, Any]) -> list[str]:
    return [name for name in columns if name != TARGET_COLUMN]
