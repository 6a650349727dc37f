"""Signal rules: parsed into a tree (never eval'd), evaluated with the indicator engine's numbers."""
from __future__ import annotations

import ast as python_ast
import inspect

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from utils.engine.backtest import rule_syntax, signal_rules
from utils.engine.backtest.rule_syntax import FUNCTIONS, MAX_DEPTH
from utils.engine.backtest.signal_rules import RuleError, evaluate_rules, parse_rule
from utils.engine.indicators import kernels
from utils.engine.indicators.features import KINDS, compute_features

ROWS = 300


def _bars(columns: int = 3, seed: int = 7, rows: int = ROWS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, (rows, columns)), axis=0)
    spread = rng.uniform(0.1, 2.0, (rows, columns))
    return {"open": close + rng.normal(0, 0.5, (rows, columns)), "high": close + spread,
            "low": close - spread, "close": close, "volume": rng.uniform(1e3, 1e4, (rows, columns)),
            "time": np.arange(rows, dtype=np.int64) * 3_600 * 10**9}  # hourly: several VWAP sessions


def _crossed_above(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    expected = np.zeros(fast.shape, dtype=bool)
    expected[1:] = (fast[1:] > slow[1:]) & (fast[:-1] <= slow[:-1])
    return expected  # NaN comparisons are False on either row


# --- evaluation against direct computations ---------------------------------------------------

def test_sma_crossover_equals_hand_computed_crossing():
    bars = _bars()
    fast, slow = kernels.sma(np, bars["close"], 10), kernels.sma(np, bars["close"], 20)
    signal = parse_rule("sma(close,10) crosses_above sma(close,20)").evaluate(bars)
    assert signal.dtype == np.bool_ and signal.shape == bars["close"].shape
    np.testing.assert_array_equal(signal, _crossed_above(fast, slow))
    assert signal.any() and not signal[:20].any()


def test_crosses_below_mirrors_crosses_above():
    bars = _bars()
    above = parse_rule("ema(close, 5) crosses_above ema(close, 12)").evaluate(bars)
    below = parse_rule("ema(close, 12) crosses_below ema(close, 5)").evaluate(bars)
    np.testing.assert_array_equal(above, below)


def test_rsi_or_bollinger_breakout():
    bars = _bars()
    close = bars["close"]
    rsi = kernels.rsi(np, close, 14)
    upper, _, _ = kernels.bollinger(np, close, 20, 2.0, 2.0)
    signal = parse_rule("rsi(close,14) < 30 or close > bb_upper(close,20,2)").evaluate(bars)
    np.testing.assert_array_equal(signal, (rsi < 30) | (close > upper))


@pytest.mark.parametrize("name", sorted(name for name, entry in FUNCTIONS.items() if not isinstance(entry, str)))
def test_every_indicator_function_sees_the_compute_features_numbers(name):
    function = FUNCTIONS[name]
    kind = function.kind
    bars = _bars()
    params = [5 if param.is_integer else 1.5 for param in kind.params]
    if kind.name == "macd":
        params = [5, 13, 4]
    if kind.name == "vwap":
        params = [0]  # session VWAP: resets where the UTC date in bars["time"] changes
    feature = "_".join([kind.name, *(f"{value:g}" for value in params)])
    values = compute_features(np, [feature], bars)
    key = list(values)[function.output]
    reference = values[key]
    threshold = float(np.nanmedian(reference))
    args = (["close"] if function.takes_series else []) + [f"{value:g}" for value in params]
    signal = parse_rule(f"{name}({', '.join(args)}) > {threshold!r}").evaluate(bars)
    np.testing.assert_array_equal(signal, reference > threshold)
    assert signal.any() and not signal.all()


def test_omitted_parameters_take_the_registry_defaults():
    assert parse_rule("sma(close) > 1").ast == parse_rule("sma(close, 20) > 1").ast
    assert parse_rule("macd_hist(close, 12) > 0").ast == parse_rule("macd_hist(close,12,26,9) > 0").ast
    assert parse_rule("stoch_k() > 80").ast == parse_rule("stoch_k(14, 3, 3) > 80").ast


def test_arithmetic_precedence_and_unary_minus():
    bars = _bars()
    close, open_, high, low = bars["close"], bars["open"], bars["high"], bars["low"]
    signal = parse_rule("close - 2 * open / 4 > -close + 100 - 3 * (high - low)").evaluate(bars)
    np.testing.assert_array_equal(signal, close - 2 * open_ / 4 > -close + 100 - 3 * (high - low))
    signal = parse_rule("(close - open) * 2 >= high - low - -1").evaluate(bars)
    np.testing.assert_array_equal(signal, (close - open_) * 2 >= high - low + 1)
    signal = parse_rule("close / open / 2 < 0.5").evaluate(bars)
    np.testing.assert_array_equal(signal, close / open_ / 2 < 0.5)


def test_boolean_precedence_or_below_and_below_not():
    bars = _bars()
    close, open_ = bars["close"], bars["open"]
    a, b, c = close > open_, close > 100, open_ < 95
    signal = parse_rule("close > open or close > 100 and not open < 95").evaluate(bars)
    np.testing.assert_array_equal(signal, a | (b & ~c))
    signal = parse_rule("(close > open or close > 100) and not open < 95").evaluate(bars)
    np.testing.assert_array_equal(signal, (a | b) & ~c)
    signal = parse_rule("not not close > open").evaluate(bars)
    np.testing.assert_array_equal(signal, a)


def test_not_keeps_warm_up_bars_false():
    bars = _bars()
    rsi = kernels.rsi(np, bars["close"], 14)
    signal = parse_rule("not rsi(close, 14) > 70").evaluate(bars)
    assert not signal[:14].any()
    np.testing.assert_array_equal(signal[14:], rsi[14:] <= 70)
    # Kleene: a known False decides 'and', a known True decides 'or', whatever the NaN side is
    np.testing.assert_array_equal(parse_rule("not (close < 0 and rsi(close) > 70)").evaluate(bars),
                                  np.ones_like(signal))
    np.testing.assert_array_equal(parse_rule("close > 0 or not rsi(close) > 70").evaluate(bars),
                                  np.ones_like(signal))
    assert not parse_rule("not (close > 0 and rsi(close) > 101)").evaluate(bars)[:14].any()


def test_nan_comparisons_are_false_including_not_equal():
    close = np.array([1.0, np.nan, 3.0, 4.0])
    assert parse_rule("close != 3").evaluate({"close": close}).tolist() == [True, False, False, True]
    assert parse_rule("close == 3").evaluate({"close": close}).tolist() == [False, False, True, False]
    assert parse_rule("close crosses_above 2").evaluate({"close": close}).tolist() == [False] * 4


@pytest.mark.parametrize("window", [1, 2, 5, 7, 13, 20])
def test_shift_highest_lowest_match_pandas(window):
    bars = _bars()
    close = bars["close"].copy()
    close[[3, 50, 51, 120], [0, 1, 1, 2]] = np.nan  # a NaN inside a window makes it NaN, as pandas
    frame = pd.DataFrame(close)
    high = frame.rolling(window).max().to_numpy()
    low = frame.rolling(window).min().to_numpy()
    past = frame.shift(window).to_numpy()
    evaluation = signal_rules._Evaluation({"close": close}, {"close"})
    for text, expected in [(f"highest(close, {window})", high), (f"lowest(close, {window})", low),
                           (f"shift(close, {window})", past)]:
        node = parse_rule(f"{text} > 0").ast.left
        np.testing.assert_array_equal(evaluation.number(node), expected)
    signal = parse_rule(f"close >= highest(close, {window}) and shift(close, {window}) > lowest(close, {window})"
                        ).evaluate({"close": close})
    np.testing.assert_array_equal(signal, (close >= high) & (past > low))


def test_abs_and_series_expressions_feed_indicators():
    bars = _bars()
    close, open_ = bars["close"], bars["open"]
    spread = kernels.sma(np, np.abs(close - open_), 5)
    signal = parse_rule("sma(abs(close - open), 5) > 0.4").evaluate(bars)
    np.testing.assert_array_equal(signal, spread > 0.4)
    signal = parse_rule("rsi(high, 7) > 50").evaluate(bars)
    np.testing.assert_array_equal(signal, kernels.rsi(np, bars["high"], 7) > 50)


def test_panel_equals_per_column_series_and_series_stays_one_dimensional():
    bars = _bars(columns=3)
    rule = parse_rule("sma(close,10) crosses_above sma(close,20) and rsi(close,14) < 70 or atr(14) > 1.5")
    panel = rule.evaluate(bars)
    assert panel.shape == (ROWS, 3)
    for column in range(3):
        series = rule.evaluate({key: (value[:, column] if key != "time" else value)
                                for key, value in bars.items()})
        assert series.shape == (ROWS,)
        np.testing.assert_array_equal(panel[:, column], series)


def test_evaluate_rules_computes_each_indicator_once(monkeypatch):
    calls = []
    real_run_kind = signal_rules.run_kind

    def counting(kind, params, panels, new_session=None):
        calls.append((kind.name, params))
        return real_run_kind(kind, params, panels, new_session)

    monkeypatch.setattr(signal_rules, "run_kind", counting)
    rules = {"entry": parse_rule("sma(close) < close and macd(close) > macd_signal(close)", "entry"),
             "exit": parse_rule("close < sma(close, 20) or macd_hist(close, 12, 26, 9) < 0", "exit")}
    signals = evaluate_rules(rules, _bars())
    assert sorted(calls) == [("macd", (12, 26, 9)), ("sma", (20,))]
    assert set(signals) == {"entry", "exit"}


def test_warmup_and_inputs():
    rule = parse_rule("sma(close,10) crosses_above sma(close,20) and rsi(close,14) < 70")
    assert rule.warmup() == 20 and rule.inputs() == {"close"}
    assert parse_rule("atr(14) > shift(close, 30)").warmup() == 30
    assert parse_rule("sma(highest(high, 10), 5) > 1").warmup() == 9 + 4
    assert parse_rule("macd_signal(close) > 0").warmup() == 33
    assert parse_rule("stoch_k() > 80 and volume > 0").inputs() == {"high", "low", "close", "volume"}
    assert parse_rule("1 < 2").warmup() == 0 and parse_rule("1 < 2").inputs() == frozenset()


def test_warmup_is_the_first_row_the_rule_can_hold():
    bars = _bars()
    for text in ["close > sma(close, 20) - 1000", "shift(close, 7) > 0", "highest(close, 9) > 0",
                 "ema(close, 5) crosses_above 0 - 1 or ema(close, 5) crosses_below 1000",
                 "not (close > ema(sma(close, 6), 4) + 1000)"]:
        rule = parse_rule(text)
        signal = rule.evaluate({"close": np.linspace(100, 200, ROWS) + np.sin(np.arange(ROWS)) * 50})
        assert not signal[:rule.warmup()].any(), text
    constant = parse_rule("1 < 2").evaluate(bars)
    assert constant.shape == (ROWS, 3) and constant.all()


def test_keywords_and_names_are_case_insensitive():
    bars = _bars()
    lower = parse_rule("sma(close,10) crosses_above sma(close,20) and not rsi(close) > 70").evaluate(bars)
    upper = parse_rule("SMA(Close,10) CROSSES_ABOVE Sma(CLOSE,20) AND NOT RSI(close) > 70").evaluate(bars)
    np.testing.assert_array_equal(lower, upper)


def test_division_by_zero_and_constants_do_not_raise():
    bars = _bars(columns=2)
    assert parse_rule("close / 0 > 1 and 1 / 0 > 1 and -1 / 0 < 0").evaluate(bars).all()
    assert not parse_rule("not 0 / 0 > 1").evaluate(bars).any()  # NaN: unknown, and so is its negation
    assert parse_rule("sma(2, 5) == 2").evaluate(bars)[4:].all()


def test_missing_bar_field_is_named():
    with pytest.raises(ValueError, match="volume"):
        parse_rule("obv() > 0").evaluate({"close": np.arange(10.0)})


def test_nesting_limit_and_long_flat_chains():
    nested = "(" * MAX_DEPTH + "close" + ")" * MAX_DEPTH + " > 1"
    assert parse_rule(nested).evaluate({"close": np.arange(5.0)}).tolist() == [False, False, True, True, True]
    with pytest.raises(RuleError, match="deeper than"):
        parse_rule("(" + nested + ")")
    calls = "abs(" * MAX_DEPTH + "close" + ")" * MAX_DEPTH + " > 1"
    assert parse_rule(calls).evaluate({"close": np.arange(3.0)}).tolist() == [False, False, True]
    chain = "close" + " + 1" * 250 + " > 0 and " + " and ".join(["close > 0"] * 60)
    assert len(chain) <= 2000 and parse_rule(chain).evaluate({"close": np.arange(1.0, 4.0)}).all()


def test_functions_are_derived_from_the_registry():
    for kind in KINDS.values():
        for output, name in enumerate(kind.outputs or (kind.name,)):
            assert FUNCTIONS[name].kind is kind and FUNCTIONS[name].output == output
    for name in ("macd_signal", "bb_upper", "bb_lower", "bb_middle", "stoch_k", "stoch_d", "plus_di", "minus_di"):
        assert name in FUNCTIONS
    assert "bollinger" not in FUNCTIONS and "stoch" not in FUNCTIONS


# --- errors -----------------------------------------------------------------------------------

# "^" marks the column the error must point at (it is removed before parsing)
@pytest.mark.parametrize("marked, message", [
    ("close > ^smaa(close, 5)", "unknown function 'smaa' (did you mean 'sma'?); known functions: abs"),
    ("close > ^clos", "unknown name 'clos' (did you mean 'close'?)"),
    ("(close > 1 and open < 2^", "missing ')' to close '(' at column 1"),
    ("sma(close, 10 > 1^", "missing ')' to close 'sma(' at column 4"),
    ("sma(close, 10 ^20) > 1", "missing ')' to close 'sma(' at column 4; found '20'"),
    ("close > 1 ^2", "unexpected '2' after a complete expression"),
    ("close > 1 ^)", "unexpected ')'"),
    ("sma(close, 10, ^3) > 1", "sma takes at most 2 arguments: sma(series, period=20); got 3"),
    ("^shift(close) > 1", "shift takes 2 arguments: shift(x, n); got 1"),
    ("obv(^5) > 1", "obv takes at most 0 arguments"),
    ("^sma() > 1", "sma needs at least 1 argument: sma(series, period=20); got 0"),
    ("atr(^close, 14) > 1", "atr reads high, low, close from the bars itself"),
    ("rsi(close, ^0) < 30", "period must be in [1, 10000], got 0"),
    ("sma(close, ^10001) > 1", "period must be in [1, 10000]"),
    ("bb_upper(close, 20, ^0) > close", "nbdev must be in (0, 100], got 0"),
    ("highest(close, ^-3) > close", "n must be in [1, 10000], got -3"),
    ("sma(close, ^2.5) > 1", "period must be an integer"),
    ("sma(close, ^open) > 1", "period must be a number literal"),
    ("^macd(close, 26, 12) > 0", "fast (26) must be smaller than slow (12)"),
    ("^close + 1", "must be a condition"),
    ("^sma(close, 5)", "must be a condition"),
    ("(close > 1) ^< (open > 2)", "cannot compare conditions with '<'"),
    ("(close > 1) ^crosses_above open", "cannot compare conditions with 'crosses_above'"),
    ("close > 1 ^crosses_above open", "comparisons cannot be chained"),
    ("close < open ^< high", "comparisons cannot be chained"),
    ("close > 1 and ^5", "'and' needs a condition here, got a number"),
    ("^(close > 1) + 1 > 0", "'+' needs a number here, got a condition"),
    ("not ^close", "'not' needs a condition"),
    ("^bollinger(close) > 1", "'bollinger' has several outputs; call one of bb_upper"),
    ("^sma > 1", "'sma' is a function; call it as sma(series, period=20)"),
    ("^close(1) > 1", "'close' is a bar field, not a function"),
    ("close ^= 1", "use '=='"),
    ("close > ^1e400", "out of range"),
    ("close > 1 and^", "unexpected end of rule"),
])
def test_errors_point_at_the_mistake(marked, message):
    column = marked.index("^") + 1
    text = marked.replace("^", "", 1)
    with pytest.raises(RuleError) as caught:
        parse_rule(text, "entry")
    error = caught.value
    assert error.field == "entry" and error.column == column, str(error)
    assert str(error).startswith(f"entry, column {column}: ")
    assert message in str(error)


@pytest.mark.parametrize("text", ["", "   \t\n"])
def test_empty_rule(text):
    with pytest.raises(RuleError, match=r"^exit, column 1: empty rule") as caught:
        parse_rule(text, "exit")
    assert caught.value.column == 1


def test_too_long_rule():
    text = "close > 1 and " * 150 + "close > 1"
    assert len(text) > 2000
    with pytest.raises(RuleError, match="at most 2000") as caught:
        parse_rule(text)
    assert caught.value.column == 2001


# --- security ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "__import__('os')", "__import__('os').system('true') > 0", "close.__class__", "close.__class__ > 1",
    "eval('1') > 0", "exec('x')", "open('/etc/passwd')", "getattr(close, 'x') > 1", "close[0] > 1",
    "lambda: 1", "[c for c in close]", "{}", "close if 1 else 2", "close > 1; import os", "close @ 1 > 0",
    "close ** 2 > 1", "\x00", "sma(close, 5)\n.__class__",
])
def test_python_syntax_is_rejected(text):
    with pytest.raises(RuleError):
        parse_rule(text)


@pytest.mark.parametrize("module", [rule_syntax, signal_rules])
def test_the_modules_never_evaluate_text(module):
    tree = python_ast.parse(inspect.getsource(module))
    calls = [node.func for node in python_ast.walk(tree) if isinstance(node, python_ast.Call)]
    builtins = {func.id for func in calls if isinstance(func, python_ast.Name)}
    methods = {func.attr for func in calls if isinstance(func, python_ast.Attribute)}
    assert not builtins & {"eval", "exec", "compile", "__import__", "getattr", "globals", "vars"}
    assert not methods & {"literal_eval", "import_module"}


# --- fuzzing ----------------------------------------------------------------------------------

_TOKENS = ["close", "open", "high", "low", "volume", "sma(", "rsi(", "bb_upper(", "atr(", "stoch_d(",
           "vwap(", "shift(", "highest(", "lowest(", "abs(", "macd_hist(", "(", ")", ",", "+", "-", "*",
           "/", "<", ">=", "==", "!=", "crosses_above", "crosses_below", "and", "or", "not", "1", "14",
           "2.5", "0", "1e3", "-1", "10000"]
_SMALL_BARS = {key: value[:40, :2] for key, value in _bars().items() if key != "time"}


@settings(max_examples=400, deadline=1000)
@given(st.one_of(st.text(max_size=300), st.text(alphabet="()<>=!+-*/.,_ 0123456789eE'\"[]:close", max_size=80)))
def test_garbage_only_raises_rule_error(text):
    try:
        rule = parse_rule(text)
    except RuleError as error:
        assert 1 <= error.column <= len(text) + 1
    else:
        assert rule.inputs() <= {"open", "high", "low", "close", "volume"}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=25).map(" ".join))
def test_token_soup_parses_to_a_rule_or_raises_rule_error_and_rules_evaluate(text):
    try:
        rule = parse_rule(text)
    except RuleError as error:
        assert 1 <= error.column <= len(text) + 1
        return
    signal = rule.evaluate(_SMALL_BARS)
    assert signal.dtype == np.bool_ and signal.shape == (40, 2)
    assert rule.warmup() >= 0
