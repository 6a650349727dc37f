"""Strategy registry: names clients may request, their parameters, and their signal functions.

A signal function maps bar panels (``{"open", "high", "low", "close", "volume"}``, each time x
symbols) to target positions (1.0 long, 0.0 flat; flat wherever an indicator is still NaN). The
indicator kernels are the same ones that serve features, so a backtest and a feature request see
identical values. Names map to known functions only; nothing is looked up dynamically.

Config (e.g. a job payload): ``{"strategy_type": "trend_following", "lookback_period": 20, ...}``.
Besides the strategy's own parameters only ``GENERAL_KEYS`` are allowed; ``fill`` picks the
simulator's fill convention. Integers may arrive as integral floats (protobuf Struct numbers are
doubles) or decimal strings (string maps); anything else is rejected with the field named.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from utils.engine.backtest.simulate import FILLS
from utils.engine.indicators.kernels import sma

GENERAL_KEYS = ("strategy_type", "fill")
MAX_WINDOW = 5000


class UnknownStrategyError(ValueError):
    def __init__(self, name: Any):
        super().__init__(f"strategy_config.strategy_type must be one of "
                         f"{', '.join(sorted(STRATEGIES))}, got {name!r}")


@dataclass(frozen=True)
class StrategySpec:
    strategy_type: str
    params: tuple[tuple[str, int], ...]   # (name, value) in the registry's order, defaults filled
    fill: str = "next_open"

    @property
    def param_values(self) -> dict[str, int]:
        return dict(self.params)


def _long_where(xp: Any, condition: Any) -> Any:
    return xp.where(condition, 1.0, 0.0)


def trend_following(xp: Any, bars: Mapping[str, Any], lookback_period: int,
                    moving_average_window: int) -> Any:
    """Long while close > SMA(close, window) and the ``lookback_period`` return is positive."""
    close = xp.asarray(bars["close"], dtype=xp.float64)
    average = sma(xp, close, moving_average_window)
    past_close = xp.full(close.shape, xp.nan)
    past_close[lookback_period:] = close[:-lookback_period]
    momentum = close / past_close - 1.0
    # NaN comparisons are False, so warm-up bars come out flat.
    return _long_where(xp, (close > average) & (momentum > 0))


def sma_crossover(xp: Any, bars: Mapping[str, Any], fast: int, slow: int) -> Any:
    """Long while SMA(close, fast) > SMA(close, slow)."""
    close = xp.asarray(bars["close"], dtype=xp.float64)
    return _long_where(xp, sma(xp, close, fast) > sma(xp, close, slow))


@dataclass(frozen=True)
class _StrategyDef:
    signal: Callable[..., Any]
    defaults: tuple[tuple[str, int], ...]
    warmup: Callable[[dict[str, int]], int]
    check: Callable[[dict[str, int]], str | None] = lambda params: None


def _crossover_check(params: dict[str, int]) -> str | None:
    if params["fast"] >= params["slow"]:
        return (f"strategy_config.fast must be smaller than strategy_config.slow, "
                f"got fast={params['fast']}, slow={params['slow']}")
    return None


STRATEGIES: dict[str, _StrategyDef] = {
    "trend_following": _StrategyDef(
        trend_following, (("lookback_period", 20), ("moving_average_window", 50)),
        lambda p: max(p["moving_average_window"] - 1, p["lookback_period"])),
    "sma_crossover": _StrategyDef(
        sma_crossover, (("fast", 10), ("slow", 30)), lambda p: p["slow"] - 1, _crossover_check),
}


def _parse_integer(field: str, value: Any) -> int:
    parsed: int | None = None
    if isinstance(value, bool):
        parsed = None
    elif isinstance(value, int):
        parsed = value
    elif isinstance(value, float) and value.is_integer():
        parsed = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and value.strip().isascii():
        parsed = int(value.strip())
    if parsed is None or not 1 <= parsed <= MAX_WINDOW:
        raise ValueError(f"strategy_config.{field} must be an integer in [1, {MAX_WINDOW}], got {value!r}")
    return parsed


def validate_strategy_config(config: Mapping[str, Any]) -> StrategySpec:
    """Check a client's strategy config once, at the edge; errors name the offending field."""
    if not isinstance(config, Mapping):
        raise ValueError(f"strategy_config must be an object, got {type(config).__name__}")
    name = config.get("strategy_type")
    if not isinstance(name, str) or name not in STRATEGIES:
        raise UnknownStrategyError(name)
    definition = STRATEGIES[name]
    allowed = set(GENERAL_KEYS) | {key for key, _ in definition.defaults}
    unknown = sorted(str(key) for key in config if key not in allowed)
    if unknown:
        raise ValueError(f"strategy_config has unknown keys for {name}: {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    fill = config.get("fill", "next_open")
    if fill not in FILLS:
        raise ValueError(f"strategy_config.fill must be one of {', '.join(FILLS)}, got {fill!r}")
    params = {key: _parse_integer(key, config[key]) if key in config else default
              for key, default in definition.defaults}
    problem = definition.check(params)
    if problem:
        raise ValueError(problem)
    return StrategySpec(strategy_type=name, params=tuple(params.items()), fill=fill)


def warmup_bars(spec: StrategySpec) -> int:
    """Bars of history needed before the start date for the first signal to be defined."""
    return int(STRATEGIES[spec.strategy_type].warmup(spec.param_values))


def target_positions(xp: Any, spec: StrategySpec, bars: Mapping[str, Any]) -> Any:
    """Target positions (time x symbols, 1.0 long / 0.0 flat) for a validated spec."""
    return STRATEGIES[spec.strategy_type].signal(xp, bars, **spec.param_values)


def list_strategies() -> list[dict[str, Any]]:
    """Names and parameter defaults, for discovery RPCs."""
    return [{"name": name, "params": dict(definition.defaults)} for name, definition in STRATEGIES.items()]
