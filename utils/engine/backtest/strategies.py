"""Strategy registry: names clients may request, their parameters, and their signal functions.

A signal function maps bar panels (``{"open", "high", "low", "close", "volume"}``, each time x
symbols, host float64) and ``start``, the first evaluated row (rows before it are warm-up), to a
target panel: for sleeve strategies a direction (1 long, -1 short, 0 flat; flat wherever an
indicator is still NaN), for portfolio strategies (``momentum``, ``top_k``) target weights on rebalance bars
and NaN elsewhere. The indicator kernels are the ones that serve features, so a backtest and a
feature request see identical values. Names map to known functions only; nothing is looked up
dynamically, and ``signals`` rules are parsed, never evaluated as code.

``trend_following`` and ``sma_crossover`` take ``entry``: ``"level"`` holds the position while
the condition holds (with ``direction: long_short`` the opposite condition holds the short);
``"cross"`` acts only where the condition starts (backtesting.py's ``crossover`` for the two
averages): a crossing up goes long (covering a short), a crossing down closes the long and goes
short (``long_short``) or stays flat, the position is held in between and flat before the first
crossing. ``sma_crossover`` defaults to ``cross``, ``trend_following`` to ``level``. Event strategies
(``mean_reversion``, ``breakout``, ``signals``) have entry and exit conditions, turned into a
held direction by ``events_to_target``; with ``long_short`` and no explicit short rules, the long
exit is the short entry and the long entry the short exit (a sell signal reverses).

Positions start flat at row ``start``: only events on or after it count (a crossing on it still
looks at the bar before), and ``momentum`` rebalances from it. So a parameter set gives the same
targets from ``start`` on whatever warm-up precedes it: its own (single run), the largest of a
grid (sweep), or a longer one for volatility sizing. A level target needs no such rule: it
depends only on the indicator values at its bar.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from numba import njit

from utils.engine.indicators import kernels

MAX_WINDOW = 5000
ENTRIES = ("cross", "level")  # act where a condition starts, or hold while it holds
_MEMO: contextvars.ContextVar[dict | None] = contextvars.ContextVar("indicator_memo", default=None)


@contextlib.contextmanager
def indicator_memo() -> Iterator[None]:
    """Within the block, an indicator over the same input array and parameters is computed once
    (a sweep's combinations share their SMA panels...). Keys hold the input's id, so the inputs
    must stay alive and unchanged inside the block."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def _indicator(name: str, values: np.ndarray, *params: Any) -> Any:
    memo = _MEMO.get()
    compute = getattr(kernels, name)
    if memo is None:
        return compute(np, values, *params)
    key = (name, id(values), params)
    if key not in memo:
        memo[key] = compute(np, values, *params)
    return memo[key]


def sma(xp: Any, close: np.ndarray, period: int) -> np.ndarray:
    return _indicator("sma", close, period)


def rsi(xp: Any, close: np.ndarray, period: int) -> np.ndarray:
    return _indicator("rsi", close, period)


def bollinger(xp: Any, close: np.ndarray, period: int, nbdev_up: float, nbdev_dn: float) -> Any:
    return _indicator("bollinger", close, period, nbdev_up, nbdev_dn)


class UnknownStrategyError(ValueError):
    def __init__(self, name: Any):
        super().__init__(f"strategy_config.strategy_type must be one of "
                         f"{', '.join(sorted(STRATEGIES))}, got {name!r}")


@dataclass(frozen=True)
class ParamDef:
    name: str
    default: Any
    kind: str = "int"             # int | float | choice | rule | factor (an expression, parsed at submit) | name
    low: float = 1
    high: float = MAX_WINDOW
    choices: tuple[str, ...] = ()
    optional: bool = False        # rule parameters that may be left out
    at_most_symbols: bool = False  # checked against the request's symbol count at submit


@dataclass(frozen=True)
class StrategyDef:
    signal: Callable[..., np.ndarray]       # (bars, allow_short, start, **params) -> target
    params: tuple[ParamDef, ...]
    warmup: Callable[[dict[str, Any]], int]
    check: Callable[[dict[str, Any]], str | None] = lambda params: None
    portfolio: bool = False                 # returns rebalance weights, not directions
    long_only: bool = False                 # direction long_short is refused
    description: str = ""


# ------------------------------------------------------------------ helpers
@njit(cache=True)
def _events_to_target(long_entry, long_exit, short_entry, short_exit, start):
    rows, cols = long_entry.shape
    target = np.zeros((rows, cols))
    for col in range(cols):
        held = 0
        for row in range(start, rows):
            if held == 0:
                if long_entry[row, col]:
                    held = 1
                elif short_entry[row, col]:
                    held = -1
            elif held > 0:
                if short_entry[row, col]:
                    held = -1
                elif long_exit[row, col]:
                    held = 0
            else:
                if long_entry[row, col]:
                    held = 1
                elif short_exit[row, col]:
                    held = 0
            target[row, col] = held
    return target


def events_to_target(long_entry: np.ndarray, long_exit: np.ndarray,
                     short_entry: np.ndarray | None = None, short_exit: np.ndarray | None = None,
                     allow_short: bool = False, start: int = 0) -> np.ndarray:
    """Held direction from entry/exit events (an entry while flat opens; an exit while held closes;
    the opposite entry reverses), flat before row ``start`` and from there until the first event
    on or after it. Without shorts, short events are ignored."""
    long_entry = np.ascontiguousarray(long_entry, dtype=np.bool_)
    long_exit = np.ascontiguousarray(long_exit, dtype=np.bool_)
    if allow_short:
        short_entry = long_exit if short_entry is None else short_entry
        short_exit = long_entry if short_exit is None else short_exit
    else:
        short_entry = short_exit = np.zeros_like(long_entry)
    squeeze = long_entry.ndim == 1
    arrays = [np.ascontiguousarray(a, dtype=np.bool_).reshape(len(a), -1)
              for a in (long_entry, long_exit, short_entry, short_exit)]
    target = _events_to_target(*arrays, max(int(start), 0))
    return target[:, 0] if squeeze else target


def _levels(long_condition: np.ndarray, short_condition: np.ndarray, allow_short: bool) -> np.ndarray:
    target = np.where(long_condition, 1.0, 0.0)
    if allow_short:
        target = np.where(short_condition, -1.0, target)
    return target


def _past(values: np.ndarray, bars: int) -> np.ndarray:
    past = np.full(values.shape, np.nan)
    past[bars:] = values[:-bars]
    return past


def crossings(line: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(up, down)``: bars where ``line`` crosses above ``other`` (strictly below on the previous
    bar, strictly above now: backtesting.py's ``crossover``) and below it (mirrored). A NaN on
    either bar is no crossing."""
    line_before, other_before = _past(line, 1), _past(other, 1)
    up = (line_before < other_before) & (line > other)
    down = (line_before > other_before) & (line < other)
    return up, down


def _onsets(condition: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Bars where ``condition`` holds and did not on the previous bar, both bars ``known``
    (the first bar with defined indicators is never an onset)."""
    def previous(flags: np.ndarray) -> np.ndarray:
        before = np.zeros_like(flags)
        before[1:] = flags[:-1]
        return before
    return condition & ~previous(condition) & known & previous(known)


def _held(long_condition: np.ndarray, short_condition: np.ndarray, allow_short: bool, entry: str,
          events: Callable[[], tuple[np.ndarray, np.ndarray]], start: int) -> np.ndarray:
    """Target of a two-sided condition: held while it holds (``level``), or switched only on the
    ``(up, down)`` events from row ``start`` (``cross``: a down event closes a long, or reverses it)."""
    if entry == "level":
        return _levels(long_condition, short_condition, allow_short)
    up, down = events()
    return events_to_target(up, down, allow_short=allow_short, start=start)


def rolling_extreme(values: np.ndarray, window: int, highest: bool) -> np.ndarray:
    """Max (or min) of the last ``window`` rows including the current one; NaN before that."""
    from numpy.lib.stride_tricks import sliding_window_view
    out = np.full(values.shape, np.nan)
    if len(values) >= window:
        windows = sliding_window_view(values, window, axis=0)
        out[window - 1:] = windows.max(axis=-1) if highest else windows.min(axis=-1)
    return out


# ------------------------------------------------------------------ strategies
def trend_following(bars: Mapping[str, np.ndarray], allow_short: bool, start: int, lookback_period: int,
                    moving_average_window: int, entry: str = "level") -> np.ndarray:
    """Long while close > SMA(close, window) and the ``lookback_period`` return is positive
    (short while close < SMA and that return is negative). ``cross``: long where that condition
    starts, closed (or reversed) where the short condition starts."""
    close = bars["close"]
    average = sma(np, close, moving_average_window)
    with np.errstate(invalid="ignore", divide="ignore"):
        momentum = close / _past(close, lookback_period) - 1.0
    # NaN comparisons are False, so warm-up bars come out flat.
    bullish, bearish = (close > average) & (momentum > 0), (close < average) & (momentum < 0)
    known = np.isfinite(average) & np.isfinite(momentum)
    return _held(bullish, bearish, allow_short, entry,
                 lambda: (_onsets(bullish, known), _onsets(bearish, known)), start)


def sma_crossover(bars: Mapping[str, np.ndarray], allow_short: bool, start: int, fast: int, slow: int,
                  entry: str = "cross") -> np.ndarray:
    """``cross`` (backtesting.py's SmaCross): long where SMA(close, fast) crosses above
    SMA(close, slow), closed (or reversed to short) where it crosses below. ``level``: long while
    SMA(fast) > SMA(slow) (short while below)."""
    close = bars["close"]
    fast_line, slow_line = sma(np, close, fast), sma(np, close, slow)
    return _held(fast_line > slow_line, fast_line < slow_line, allow_short, entry,
                 lambda: crossings(fast_line, slow_line), start)


def mean_reversion(bars: Mapping[str, np.ndarray], allow_short: bool, start: int, indicator: str,
                   period: int, nbdev: float, lower: float, upper: float, exit_level: float) -> np.ndarray:
    """Bollinger: buy a close below the lower band, sell it back above the middle band (short above
    the upper band, cover below the middle). RSI: buy RSI < lower, exit RSI > exit_level (short
    RSI > upper, cover RSI < exit_level)."""
    close = bars["close"]
    if indicator == "bollinger":
        upper_band, middle, lower_band = bollinger(np, close, period, nbdev, nbdev)
        long_entry, long_exit = close < lower_band, close > middle
        short_entry, short_exit = close > upper_band, close < middle
    else:
        strength = rsi(np, close, period)
        long_entry, long_exit = strength < lower, strength > exit_level
        short_entry, short_exit = strength > upper, strength < exit_level
    return events_to_target(long_entry, long_exit, short_entry, short_exit, allow_short, start)


def breakout(bars: Mapping[str, np.ndarray], allow_short: bool, start: int, entry_window: int,
             exit_window: int) -> np.ndarray:
    """Donchian: buy a close above the highest high of the previous ``entry_window`` bars, exit
    below the lowest low of the previous ``exit_window`` bars (short/cover mirrored)."""
    close, high, low = bars["close"], bars.get("high", bars["close"]), bars.get("low", bars["close"])
    entry_high = _past(rolling_extreme(high, entry_window, True), 1)
    entry_low = _past(rolling_extreme(low, entry_window, False), 1)
    exit_low = _past(rolling_extreme(low, exit_window, False), 1)
    exit_high = _past(rolling_extreme(high, exit_window, True), 1)
    return events_to_target(close > entry_high, close < exit_low, close < entry_low, close > exit_high,
                            allow_short, start)


def momentum(bars: Mapping[str, np.ndarray], allow_short: bool, start: int, lookback: int, top_k: int,
             rebalance: int) -> np.ndarray:
    """Every ``rebalance`` bars, hold the ``top_k`` symbols with the best ``lookback`` return in
    equal weights (and short the ``top_k`` worst with ``long_short``, half the book each side).
    Weights on rebalance bars, NaN elsewhere; symbols without a return yet are not ranked. The
    schedule starts at ``start`` (or at the first defined return), not at the warm-up's first row,
    so a longer warm-up does not shift it."""
    close = bars["close"]
    with np.errstate(invalid="ignore", divide="ignore"):
        past_return = close / _past(close, lookback) - 1.0
    weights = np.full(close.shape, np.nan)
    for row in range(max(start, lookback), close.shape[0], rebalance):
        returns = past_return[row]
        valid = np.flatnonzero(np.isfinite(returns))
        if len(valid) == 0:
            continue
        order = valid[np.argsort(-returns[valid], kind="stable")]
        k = min(top_k, len(order) // 2 if allow_short else len(order))
        weights[row] = 0.0
        if k == 0:
            continue
        side = 0.5 if allow_short else 1.0
        weights[row, order[:k]] = side / k
        if allow_short:
            weights[row, order[-k:]] = -side / k
    return weights


def factor_values(bars: Mapping[str, np.ndarray], text: str) -> np.ndarray:
    """The factor expression ``text`` over the (time x symbols) bar panels, NaN where a symbol has
    no close (not listed yet); computed once per panel inside ``indicator_memo`` (a sweep)."""
    from utils.engine.factors.expressions import evaluate_factor, parse_factor
    memo = _MEMO.get()
    key = ("factor", text, id(bars["close"]))
    if memo is not None and key in memo:
        return memo[key]
    values = evaluate_factor(parse_factor(text, "strategy_config.factor"), bars)
    values = np.where(np.isfinite(bars["close"]), values, np.nan)
    if memo is not None:
        memo[key] = values
    return values


def topk_dropout(score: np.ndarray, held: np.ndarray, k: int, n_drop: int) -> np.ndarray:
    """One rebalance of Qlib's ``TopkDropoutStrategy`` (method_sell="bottom", method_buy="top";
    qlib/contrib/strategy/signal_strategy.py) on one row of scores; ``held`` (bool per symbol) is
    the current holding, the result the new one. NaN scores are not eligible to buy, and a held
    name without a score ranks below every scored one (Qlib's ``reindex``: NaN sorts last). Ties
    rank by symbol order (a stable sort; Qlib's default quicksort leaves them arbitrary).

    Held names sorted by score (``last``); candidates: the best non-held scored names, at most
    ``n_drop + k - len(last)``; of the combined list ranked by score, the held names among the
    bottom ``n_drop`` are sold; the best ``len(sell) + k - len(last)`` candidates are bought.
    ``n_drop = 0`` sells nothing (Qlib's ``list(l)[-0:]`` would take the whole list)."""
    n = score.shape[0]
    missing = ~np.isfinite(score)
    order = np.lexsort((np.arange(n), np.where(missing, 0.0, -score), missing))  # best first
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    last = order[held[order]]
    candidates = order[~held[order] & ~missing[order]][:max(n_drop + k - len(last), 0)]
    new = held.copy()
    sold = 0
    if n_drop > 0:
        combined = np.concatenate([last, candidates])
        bottom = combined[np.argsort(rank[combined], kind="stable")][-n_drop:]
        sell = bottom[held[bottom]]
        new[sell] = False
        sold = len(sell)
    new[candidates[:max(sold + k - len(last), 0)]] = True
    return new


STORED_FACTOR = "stored_factor"  # bars key of top_k's stored factor panel (factor_set_id + factor_name)


def stored_factor_values(bars: Mapping[str, np.ndarray]) -> np.ndarray:
    """``top_k``'s stored factor: the (time x symbols) panel the caller placed under
    ``bars[STORED_FACTOR]``, already aligned to the bars' calendar and symbols (the backtest handler
    reads it from the factor set; the engine never reads storage). NaN where a symbol has no close."""
    if STORED_FACTOR not in bars:
        raise ValueError(f"top_k with factor_set_id needs the stored factor panel in bars[{STORED_FACTOR!r}], "
                         f"aligned to the bars (the backtest handler passes it)")
    values = np.asarray(bars[STORED_FACTOR], dtype=np.float64)
    if values.shape != np.shape(bars["close"]):
        raise ValueError(f"bars[{STORED_FACTOR!r}] is {values.shape}, the bars are {np.shape(bars['close'])}")
    return np.where(np.isfinite(bars["close"]), values, np.nan)


def top_k(bars: Mapping[str, np.ndarray], allow_short: bool, start: int, factor: str | None,
          factor_set_id: str | None, factor_name: str | None, k: int, n_drop: int, rebalance: int) -> np.ndarray:
    """Qlib's TopkDropout driven by a factor (higher = better): an expression (``factor``) or a
    stored factor (``factor_set_id`` + ``factor_name``, passed in as ``bars[STORED_FACTOR]``). On
    rows ``start``, ``start + rebalance``... decided at that bar's close, hold ``k`` names, replacing
    at most ``n_drop`` per rebalance (``topk_dropout``), each at ``1 / k`` of equity (no cash reserve:
    Qlib's ``risk_degree`` 0.95 is not applied). A rebalance row without any scored symbol is
    skipped (holdings kept, no trades). Weights on rebalance rows, NaN elsewhere."""
    score = factor_values(bars, factor) if factor else stored_factor_values(bars)
    weights = np.full(score.shape, np.nan)
    held = np.zeros(score.shape[1], dtype=np.bool_)
    for row in range(max(int(start), 0), score.shape[0], rebalance):
        if not np.isfinite(score[row]).any():
            continue
        held = topk_dropout(score[row], held, k, n_drop)
        weights[row] = np.where(held, 1.0 / k, 0.0)
    return weights


def _factor_warmup(params: dict[str, Any]) -> int:
    """The expression's lookback; 0 for a stored factor (its own warm-up rows are NaN in the set)."""
    if not params.get("factor"):
        return 0
    from utils.engine.factors.expressions import parse_factor
    return parse_factor(params["factor"], "strategy_config.factor").lookback()


def top_k_source_problem(params: dict[str, Any]) -> str | None:
    """Exactly one factor source: ``factor`` (an expression) or ``factor_set_id`` + ``factor_name``."""
    stored = params.get("factor_set_id") is not None or params.get("factor_name") is not None
    if params.get("factor") is not None and stored:
        return ("strategy_config: top_k takes one factor source: factor (an expression) or factor_set_id + "
                "factor_name (a stored factor), not both")
    if not stored and params.get("factor") is None:
        return ("strategy_config.factor is required for top_k (a factor expression), or give factor_set_id + "
                "factor_name (a stored factor of FactorService.ComputeFactors)")
    if stored and (params.get("factor_set_id") is None or params.get("factor_name") is None):
        missing = "factor_name" if params.get("factor_name") is None else "factor_set_id"
        return f"strategy_config.{missing} is required with a stored factor (factor_set_id + factor_name)"
    return None


def _top_k_check(params: dict[str, Any]) -> str | None:
    if params["n_drop"] > params["k"]:
        return (f"strategy_config.n_drop must be at most strategy_config.k, "
                f"got n_drop={params['n_drop']}, k={params['k']}")
    return None


def signals(bars: Mapping[str, np.ndarray], allow_short: bool, start: int, entry: str, exit: str | None,
            short_entry: str | None, short_exit: str | None) -> np.ndarray:
    """User rules in the signal rule language (``signal_rules``); ``exit`` defaults to
    ``not (entry)``."""
    from utils.engine.backtest.signal_rules import evaluate_rules
    rules = compiled_rules(entry, exit, short_entry, short_exit)
    values = evaluate_rules(rules, bars)
    long_entry = values["entry"]
    long_exit = values["exit"] if "exit" in values else ~long_entry
    return events_to_target(long_entry, long_exit, values.get("short_entry"), values.get("short_exit"),
                            allow_short, start)


def compiled_rules(entry: str, exit: str | None, short_entry: str | None, short_exit: str | None):
    from utils.engine.backtest.signal_rules import parse_rule
    texts = {"entry": entry, "exit": exit, "short_entry": short_entry, "short_exit": short_exit}
    return {name: parse_rule(text, f"strategy_config.{name}") for name, text in texts.items() if text}


def _signals_warmup(params: dict[str, Any]) -> int:
    rules = compiled_rules(params["entry"], params.get("exit"), params.get("short_entry"),
                           params.get("short_exit"))
    return max(rule.warmup() for rule in rules.values())


def _crossover_check(params: dict[str, Any]) -> str | None:
    if params["fast"] >= params["slow"]:
        return (f"strategy_config.fast must be smaller than strategy_config.slow, "
                f"got fast={params['fast']}, slow={params['slow']}")
    return None


def _mean_reversion_check(params: dict[str, Any]) -> str | None:
    if params["indicator"] == "rsi" and not params["lower"] < params["exit_level"] < params["upper"]:
        return (f"strategy_config needs lower < exit_level < upper for RSI, got lower={params['lower']}, "
                f"exit_level={params['exit_level']}, upper={params['upper']}")
    if params["indicator"] == "bollinger" and params["period"] < 2:
        return "strategy_config.period must be at least 2 for Bollinger bands"
    return None


def _entry_param(default: str) -> ParamDef:
    return ParamDef("entry", default, "choice", choices=ENTRIES)


def _with_entry(warmup: Callable[[dict[str, Any]], int]) -> Callable[[dict[str, Any]], int]:
    """A crossing compares with the previous bar, so ``cross`` needs one bar more of history."""
    return lambda p: warmup(p) + (p["entry"] == "cross")


STRATEGIES: dict[str, StrategyDef] = {
    "trend_following": StrategyDef(
        trend_following,
        (ParamDef("lookback_period", 20), ParamDef("moving_average_window", 50), _entry_param("level")),
        _with_entry(lambda p: max(p["moving_average_window"] - 1, p["lookback_period"])),
        description="long while close > SMA(window) and the lookback return is positive "
                    "(entry: level; cross acts where that starts)"),
    "sma_crossover": StrategyDef(
        sma_crossover, (ParamDef("fast", 10), ParamDef("slow", 30), _entry_param("cross")),
        _with_entry(lambda p: p["slow"] - 1), _crossover_check,
        description="long where SMA(fast) crosses above SMA(slow) (entry: cross; level holds while above)"),
    "mean_reversion": StrategyDef(
        mean_reversion,
        (ParamDef("indicator", "bollinger", "choice", choices=("bollinger", "rsi")), ParamDef("period", 20),
         ParamDef("nbdev", 2.0, "float", 0.0, 100.0), ParamDef("lower", 30.0, "float", 0.0, 100.0),
         ParamDef("upper", 70.0, "float", 0.0, 100.0), ParamDef("exit_level", 50.0, "float", 0.0, 100.0)),
        lambda p: p["period"] - 1 if p["indicator"] == "bollinger" else p["period"],
        _mean_reversion_check, description="Bollinger-band or RSI threshold reversion"),
    "breakout": StrategyDef(
        breakout, (ParamDef("entry_window", 20), ParamDef("exit_window", 10)),
        lambda p: max(p["entry_window"], p["exit_window"]),
        description="Donchian channel breakout"),
    "momentum": StrategyDef(
        momentum, (ParamDef("lookback", 60), ParamDef("top_k", 1, high=10_000), ParamDef("rebalance", 21)),
        lambda p: p["lookback"], portfolio=True,
        description="cross-sectional top-k by lookback return, rebalanced every `rebalance` bars"),
    "top_k": StrategyDef(
        top_k, (ParamDef("factor", None, "factor", optional=True), ParamDef("factor_set_id", None, "name", optional=True),
                ParamDef("factor_name", None, "name", optional=True),
                ParamDef("k", 50, high=100_000, at_most_symbols=True),
                ParamDef("n_drop", 5, low=0, high=100_000), ParamDef("rebalance", 1)),
        _factor_warmup, _top_k_check, portfolio=True, long_only=True,
        description="Qlib's TopkDropout: hold the k best names by a factor expression (or a stored "
                    "factor: factor_set_id + factor_name), replacing at "
                    "most n_drop per rebalance, 1/k of equity each"),
    "signals": StrategyDef(
        signals, (ParamDef("entry", None, "rule"), ParamDef("exit", None, "rule", optional=True),
                  ParamDef("short_entry", None, "rule", optional=True),
                  ParamDef("short_exit", None, "rule", optional=True)),
        _signals_warmup, description="entry/exit rules in the signal rule language"),
}
