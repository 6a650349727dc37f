"""``strategy_config`` as clients send it, checked once at the edge into a ``StrategySpec``.

Config (e.g. a job payload)::

    {"strategy_type": "sma_crossover", "fast": 10, "slow": 30,          # strategy parameters
     "entry": "cross" | "level",                                       # (see strategies.py)
     "fill": "next_open" | "close", "direction": "long_only" | "long_short",
     "sizing": "all_in" | "percent_equity" | "fixed_cash" | "volatility_target", "size": 0.5,
     "target_volatility": 0.15, "vol_window": 20,
     "commission_min": 5, "slippage_bps": 2, "spread": 0.0005, "borrow_rate": 0.03,
     "stop_loss": 0.05, "take_profit": 0.1, "trailing_stop": 0.08, "periods_per_year": 252,
     "param_grid": {"fast": [5, 10, 20], "slow": [20, 50, 100]}, "rank_by": "sharpe_ratio",
     "walk_forward": {"splits": 4, "train_fraction": 0.7},
     "position_model": "m-...", "position_threshold": 0.2}                # position_sizing.py

Besides the strategy's own parameters only ``GENERAL_KEYS`` are allowed. Integers may arrive as
integral floats (protobuf Struct numbers are doubles) or decimal strings (string maps); anything
else is rejected with the field named. Sizing: ``size`` is the fraction of equity for
``percent_equity`` (default 1), the cash per entry for ``fixed_cash``; ``volatility_target``
deploys ``min(1, target_volatility / realised volatility)`` of equity, the realised volatility
being the engine's ``volatility`` indicator over ``vol_window`` returns, annualised.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from utils.engine.backtest.simulate import FILLS, FULL_EQUITY, SimulationConfig
from utils.engine.backtest.strategies import STRATEGIES, ParamDef, UnknownStrategyError, top_k_source_problem
from utils.engine.indicators.layout import to_host

DIRECTIONS = ("long_only", "long_short")
SIZINGS = ("all_in", "percent_equity", "fixed_cash", "volatility_target")
RANK_METRICS = ("sharpe_ratio", "sortino_ratio", "calmar_ratio", "total_return", "annualized_return",
                "max_drawdown", "profit_factor", "win_rate")
GENERAL_KEYS = ("strategy_type", "fill", "direction", "sizing", "size", "target_volatility", "vol_window",
                "commission_min", "slippage_bps", "spread", "borrow_rate", "stop_loss", "take_profit",
                "trailing_stop", "periods_per_year", "param_grid", "rank_by", "walk_forward", "position_model",
                "position_threshold")
MAX_GRID_COMBINATIONS = 100_000
MAX_RULE_CHARS = 2000
MAX_NAME_CHARS = 128
UNSWEPT_KINDS = ("rule", "factor", "name")


@dataclass(frozen=True)
class WalkForward:
    splits: int = 4
    train_fraction: float = 0.7


@dataclass(frozen=True)
class StrategySpec:
    strategy_type: str
    params: tuple[tuple[str, Any], ...]   # (name, value) in the registry's order, defaults filled
    fill: str = "next_open"
    direction: str = "long_only"
    sizing: str = "all_in"
    size: float = 1.0
    target_volatility: float = 0.15
    vol_window: int = 20
    commission_min: float = 0.0
    slippage_bps: float = 0.0
    spread: float = 0.0
    borrow_rate: float = 0.0
    stop_loss: float = 0.0
    take_profit: float = 0.0
    trailing_stop: float = 0.0
    periods_per_year: int = 252
    param_grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    rank_by: str = "sharpe_ratio"
    walk_forward: WalkForward | None = None
    position_model: str = ""              # a ppo_position model id scaling entries (position_sizing.py)
    position_threshold: float = 0.0
    position_lookback: int = 0            # set by the job from the loaded policy; not client config

    @property
    def param_values(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def allow_short(self) -> bool:
        return self.direction == "long_short"

    @property
    def is_portfolio(self) -> bool:
        return STRATEGIES[self.strategy_type].portfolio

    def simulation_config(self, commission_rate: float) -> SimulationConfig:
        return SimulationConfig(
            fill=self.fill, allow_short=self.allow_short, commission_rate=commission_rate,
            commission_min=self.commission_min, slippage=self.slippage_bps / 10_000, spread=self.spread,
            borrow_rate=self.borrow_rate, stop_loss=self.stop_loss, take_profit=self.take_profit,
            trailing_stop=self.trailing_stop,
            fixed_cash=self.size if self.sizing == "fixed_cash" else 0.0,
            periods_per_year=self.periods_per_year)

    def combinations(self) -> list["StrategySpec"]:
        """One spec per point of ``param_grid`` (itself when there is no grid), in grid order;
        points that break a cross-parameter rule (fast >= slow...) are left out."""
        if not self.param_grid:
            return [self]
        names = [name for name, _ in self.param_grid]
        specs = []
        definition = STRATEGIES[self.strategy_type]
        for values in itertools.product(*(values for _, values in self.param_grid)):
            params = {**self.param_values, **dict(zip(names, values))}
            if definition.check(params):
                continue
            specs.append(replace(self, params=tuple(params.items()), param_grid=()))
        return specs

    def normalised(self) -> dict[str, Any]:
        """The config with defaults filled, as stored with results (JSON-ready)."""
        kinds = {param.name: param.kind for param in STRATEGIES[self.strategy_type].params}
        params = {name: value for name, value in self.params  # top_k's unused factor source is left out
                  if value is not None or kinds[name] not in ("factor", "name")}
        config = {"strategy_type": self.strategy_type, **params, "fill": self.fill,
                  "direction": self.direction, "sizing": self.sizing}
        for key in ("size", "commission_min", "slippage_bps", "spread", "borrow_rate", "stop_loss",
                    "take_profit", "trailing_stop"):
            value = getattr(self, key)
            if value and not (key == "size" and self.sizing == "all_in"):
                config[key] = value
        if self.sizing == "volatility_target":
            config.update(target_volatility=self.target_volatility, vol_window=self.vol_window)
        if self.param_grid:
            config["param_grid"] = {name: list(values) for name, values in self.param_grid}
            config["rank_by"] = self.rank_by
        if self.walk_forward:
            config["walk_forward"] = {"splits": self.walk_forward.splits,
                                      "train_fraction": self.walk_forward.train_fraction}
        if self.position_model:
            config.update(position_model=self.position_model, position_threshold=self.position_threshold)
        return config


# ------------------------------------------------------------------ field parsers
def _integer(field: str, value: Any, low: float = 1, high: float = MAX_GRID_COMBINATIONS) -> int:
    parsed: int | None = None
    if isinstance(value, bool):
        parsed = None
    elif isinstance(value, int):
        parsed = value
    elif isinstance(value, float) and value.is_integer():
        parsed = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and value.strip().isascii():
        parsed = int(value.strip())
    if parsed is None or not low <= parsed <= high:
        raise ValueError(f"strategy_config.{field} must be an integer in [{low:g}, {high:g}], got {value!r}")
    return parsed


def _number(field: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    parsed: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        parsed = float(value)
    elif isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            parsed = None
    if parsed is None or not math.isfinite(parsed) or parsed > high or parsed < low or (low_open and parsed == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"strategy_config.{field} must be a number in {bracket}{low:g}, {high:g}], got {value!r}")
    return parsed


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"strategy_config.{field} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _param_value(param: ParamDef, value: Any, field: str | None = None) -> Any:
    field = field or param.name
    if param.kind == "int":
        return _integer(field, value, param.low, param.high)
    if param.kind == "float":
        return _number(field, value, param.low, param.high)
    if param.kind == "choice":
        return _choice(field, value, param.choices)
    if param.kind == "name":  # an identifier such as a factor set id or a factor's name
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS or not value.isprintable():
            raise ValueError(f"strategy_config.{field} must be 1..{MAX_NAME_CHARS} printable characters, got {value!r}")
        return value
    what = "factor expression" if param.kind == "factor" else "rule text"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"strategy_config.{field} must be a non-empty {what}, got {value!r}")
    if len(value) > MAX_RULE_CHARS:
        raise ValueError(f"strategy_config.{field} is {len(value)} characters; the limit is {MAX_RULE_CHARS}")
    if param.kind == "factor":  # parsed at submit: an error names the field and the column
        from utils.engine.factors.expressions import parse_factor
        parse_factor(value, f"strategy_config.{field}")
    return value


def _grid(definition, raw: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("strategy_config.param_grid must be an object of parameter -> list of values, "
                         f"e.g. {{\"fast\": [5, 10], \"slow\": [20, 50]}}, got {raw!r}")
    params = {param.name: param for param in definition.params}
    grid = []
    count = 1
    for name, values in raw.items():
        if name not in params or params[name].kind in UNSWEPT_KINDS:
            sweepable = [p.name for p in definition.params if p.kind not in UNSWEPT_KINDS]
            raise ValueError(f"strategy_config.param_grid.{name} is not a parameter that can be swept; "
                             f"parameters: {', '.join(sweepable) or 'none'}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"strategy_config.param_grid.{name} must be a non-empty list, got {values!r}")
        parsed = tuple(dict.fromkeys(_param_value(params[name], value, f"param_grid.{name}") for value in values))
        grid.append((name, parsed))
        count *= len(parsed)
    if count > MAX_GRID_COMBINATIONS:
        raise ValueError(f"strategy_config.param_grid has {count:,} combinations; the limit is "
                         f"{MAX_GRID_COMBINATIONS:,}")
    return tuple(grid)


def _walk_forward(raw: Any) -> WalkForward:
    if raw is True:
        return WalkForward()
    if not isinstance(raw, Mapping):
        raise ValueError(f"strategy_config.walk_forward must be an object like "
                         f"{{\"splits\": 4, \"train_fraction\": 0.7}}, got {raw!r}")
    unknown = sorted(set(raw) - {"splits", "train_fraction"})
    if unknown:
        raise ValueError(f"strategy_config.walk_forward has unknown keys: {', '.join(unknown)}; "
                         f"allowed: splits, train_fraction")
    return WalkForward(splits=_integer("walk_forward.splits", raw.get("splits", 4), 1, 50),
                       train_fraction=_number("walk_forward.train_fraction", raw.get("train_fraction", 0.7),
                                              0.1, 0.95))


def validate_strategy_config(config: Mapping[str, Any], symbols: int | None = None) -> StrategySpec:
    """Check a client's strategy config once, at the edge; errors name the offending field.
    ``symbols``: the request's symbol count, the bound of parameters such as ``top_k``'s ``k``."""
    if not isinstance(config, Mapping):
        raise ValueError(f"strategy_config must be an object, got {type(config).__name__}")
    name = config.get("strategy_type")
    if not isinstance(name, str) or name not in STRATEGIES:
        raise UnknownStrategyError(name)
    definition = STRATEGIES[name]
    allowed = set(GENERAL_KEYS) | {param.name for param in definition.params}
    unknown = sorted(str(key) for key in config if key not in allowed)
    if unknown:
        raise ValueError(f"strategy_config has unknown keys for {name}: {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    params = {}
    for param in definition.params:
        if param.name in config:
            params[param.name] = _param_value(param, config[param.name])
        elif param.default is None and not param.optional:
            raise ValueError(f"strategy_config.{param.name} is required for {name}")
        else:
            params[param.name] = param.default
    grid = _grid(definition, config["param_grid"]) if "param_grid" in config else ()
    if not grid:
        problem = definition.check(params)
        if problem:
            raise ValueError(problem)
    if name == "signals":
        _check_rules(params)
    if name == "top_k":
        problem = top_k_source_problem(params)
        if problem:
            raise ValueError(problem)
    sizing = _choice("sizing", config.get("sizing", "all_in"), SIZINGS)
    size = 1.0
    if sizing == "percent_equity":
        size = _number("size", config.get("size", 1.0), 0.0, 1.0, low_open=True)
    elif sizing == "fixed_cash":
        if "size" not in config:
            raise ValueError("strategy_config.size (cash per entry) is required with sizing fixed_cash")
        size = _number("size", config["size"], 0.0, 1e15, low_open=True)
    elif "size" in config:
        raise ValueError(f"strategy_config.size applies to sizing percent_equity or fixed_cash, not {sizing}")
    spec = StrategySpec(
        strategy_type=name, params=tuple(params.items()),
        fill=_choice("fill", config.get("fill", "next_open"), FILLS),
        direction=_choice("direction", config.get("direction", "long_only"), DIRECTIONS),
        sizing=sizing, size=size,
        target_volatility=_number("target_volatility", config.get("target_volatility", 0.15), 0.0, 10.0, True),
        vol_window=_integer("vol_window", config.get("vol_window", 20), 2, 1000),
        commission_min=_number("commission_min", config.get("commission_min", 0.0), 0.0, 1e9),
        slippage_bps=_number("slippage_bps", config.get("slippage_bps", 0.0), 0.0, 1000.0),
        spread=_number("spread", config.get("spread", 0.0), 0.0, 0.1),
        borrow_rate=_number("borrow_rate", config.get("borrow_rate", 0.0), 0.0, 10.0),
        stop_loss=_number("stop_loss", config.get("stop_loss", 0.0), 0.0, 0.99),
        take_profit=_number("take_profit", config.get("take_profit", 0.0), 0.0, 100.0),
        trailing_stop=_number("trailing_stop", config.get("trailing_stop", 0.0), 0.0, 0.99),
        periods_per_year=_integer("periods_per_year", config.get("periods_per_year", 252), 1, 10_000_000),
        param_grid=grid, rank_by=_choice("rank_by", config.get("rank_by", "sharpe_ratio"), RANK_METRICS),
        walk_forward=_walk_forward(config["walk_forward"]) if "walk_forward" in config else None,
        **_position_model(config))
    if spec.walk_forward and not grid:
        raise ValueError("strategy_config.walk_forward needs a param_grid to optimise in each training window")
    if grid and not spec.combinations():
        raise ValueError("strategy_config.param_grid has no valid combination (e.g. every fast >= slow)")
    if definition.long_only and spec.allow_short:
        raise ValueError(f"strategy_config.direction: {name} is long-only, got 'long_short'")
    if symbols is not None:
        _check_symbol_bounds(definition, params, grid, symbols)
    if definition.portfolio and (spec.stop_loss or spec.take_profit or spec.trailing_stop
                                 or sizing != "all_in" or spec.position_model):
        raise ValueError(f"{name} rebalances target weights; stops and sizing rules apply to the "
                         f"sleeve strategies only")
    return spec


def _position_model(config: Mapping[str, Any]) -> dict[str, Any]:
    if "position_model" not in config:
        if "position_threshold" in config:
            raise ValueError("strategy_config.position_threshold applies with position_model only")
        return {}
    from utils.engine.models.store import InvalidModelId, validate_model_id
    try:
        model_id = validate_model_id(config["position_model"])
    except InvalidModelId as exc:
        raise ValueError(f"strategy_config.position_model: {exc}") from None
    return {"position_model": model_id,
            "position_threshold": _number("position_threshold", config.get("position_threshold", 0.0), 0.0, 1.0)}


def _check_symbol_bounds(definition, params: dict[str, Any], grid, symbols: int) -> None:
    swept = dict(grid)
    for param in definition.params:
        if not param.at_most_symbols:
            continue
        values, field = (swept[param.name], f"param_grid.{param.name}") if param.name in swept else \
            ((params[param.name],), param.name)
        if max(values) > symbols:
            raise ValueError(f"strategy_config.{field} must be at most the number of symbols in the request "
                             f"({symbols}), got {max(values)}")


def _check_rules(params: dict[str, Any]) -> None:
    from utils.engine.backtest.signal_rules import RuleError
    from utils.engine.backtest.strategies import compiled_rules
    try:
        compiled_rules(params["entry"], params.get("exit"), params.get("short_entry"), params.get("short_exit"))
    except RuleError as exc:
        raise ValueError(str(exc)) from None


def warmup_bars(spec: StrategySpec) -> int:
    """Bars of history needed before the start date for the first signal to be defined (the
    largest over a parameter grid)."""
    definition = STRATEGIES[spec.strategy_type]
    need = max(int(definition.warmup(combo.param_values)) for combo in spec.combinations())
    if spec.sizing == "volatility_target":
        need = max(need, spec.vol_window)
    return max(need, spec.position_lookback)


def target_positions(xp: Any, spec: StrategySpec, bars: Mapping[str, Any], start: int = 0) -> np.ndarray:
    """Target directions (time x symbols; 1 long / -1 short / 0 flat), or rebalance weights for a
    portfolio strategy, for a validated spec without a grid. ``start`` is the first evaluated row:
    positions start flat there, whatever happened in the warm-up rows before it."""
    host = {field: np.ascontiguousarray(to_host(xp, values), dtype=np.float64) for field, values in bars.items()}
    return STRATEGIES[spec.strategy_type].signal(host, spec.allow_short, start, **spec.param_values)


def size_fractions(spec: StrategySpec, close: np.ndarray) -> np.ndarray | None:
    """Per-bar fraction of equity an entry deploys (None: the fill convention's all-in)."""
    if spec.sizing == "percent_equity":
        return np.full(close.shape, spec.size if spec.size < 1 else
                       (FULL_EQUITY if spec.fill == "next_open" else 1.0))
    if spec.sizing == "volatility_target":
        from utils.engine.indicators.features import compute_features
        name = f"volatility_{spec.vol_window}"
        volatility = compute_features(np, [name], close)[name]
        annual = volatility * math.sqrt(spec.periods_per_year)
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.minimum(spec.target_volatility / annual, 1.0)
        return np.where(np.isfinite(fraction), fraction, 0.0)
    return None


def list_strategies() -> list[dict[str, Any]]:
    """Names, descriptions and parameter defaults, for discovery RPCs."""
    return [{"name": name, "description": definition.description,
             "params": {param.name: param.default for param in definition.params}}
            for name, definition in STRATEGIES.items()]
