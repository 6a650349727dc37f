"""Factor expressions: each operator equals its Qlib/pandas definition on panels with late listings,
gaps and ties; parse errors carry the column; the operator registry rejects half-declared entries."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from utils.engine.backtest.signal_rules import RuleError, parse_rule
from utils.engine.factors import expression_ops
from utils.engine.factors.expression_ops import OPERATORS, TIME_SERIES, check_operator
from utils.engine.factors.expressions import evaluate_factor, evaluate_factors, lookback, parse_factor
from utils.engine.indicators import kernels

ROWS, COLUMNS = 160, 6
LISTINGS = (0, 0, 7, 23, 41, 95)  # late listings: NaN before these rows


def _bars(seed: int = 3, gaps: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (ROWS, COLUMNS)), axis=0))
    open_ = close * (1 + rng.normal(0, 0.01, close.shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, close.shape))
    volume = rng.integers(1_000, 100_000, close.shape).astype(float)
    missing = np.arange(ROWS)[:, None] < np.array(LISTINGS)[None, :]
    if gaps:
        missing |= rng.random(close.shape) < 0.015
    bars = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    return {name: np.where(missing, np.nan, values) for name, values in bars.items()}


def _ties(seed: int = 5) -> dict[str, np.ndarray]:
    """Small integers: many equal values in every window and every row."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 5, (ROWS, COLUMNS)).astype(float)
    values[rng.random(values.shape) < 0.03] = np.nan
    values[:LISTINGS[-1], -1] = np.nan
    return {"close": values}


def _frame(bars, name="close") -> pd.DataFrame:
    return pd.DataFrame(bars[name])


def assert_matches(actual: np.ndarray, expected, rtol: float = 1e-12, scale: float = 0.0) -> None:
    """Same NaN cells; elsewhere equal to ``rtol`` relative to the panel's scale (or ``scale``)."""
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape and actual.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    assert np.isfinite(expected).sum() > expected.size // 4
    scale = max(scale, np.nanmax(np.abs(expected[np.isfinite(expected)])))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True)


def _window_apply(frame: pd.DataFrame, window: int, function) -> pd.DataFrame:
    return frame.rolling(window).apply(function, raw=True)


def _std(frame: pd.DataFrame, window: int) -> pd.DataFrame:
    """Each window's sample std from scratch: pandas' ``rolling().std()`` updates running moments
    and drifts ~1e-11 relative on price-level data; the test against it is below."""
    return _window_apply(frame, window, lambda w: np.std(w, ddof=1))


def _fit(window: np.ndarray):
    x = np.arange(1, len(window) + 1, dtype=float)
    slope, intercept = np.polyfit(x, window, 1)
    return slope, intercept, x


# operator -> (expression, pandas reference over the bars); every operator has one (test below)
REFERENCES = {
    "log": ("log(volume)", lambda b: np.log(_frame(b, "volume"))),
    "abs": ("abs(close - open)", lambda b: (_frame(b) - _frame(b, "open")).abs()),
    "sign": ("sign(close - open)", lambda b: np.sign(_frame(b) - _frame(b, "open"))),
    "greater": ("greater(open, close)", lambda b: np.maximum(_frame(b, "open"), _frame(b))),
    "less": ("less(open, close)", lambda b: np.minimum(_frame(b, "open"), _frame(b))),
    "ref": ("ref(close, {n})", lambda b, n: _frame(b).shift(n)),
    "delta": ("delta(close, {n})", lambda b, n: _frame(b) - _frame(b).shift(n)),
    "ts_sum": ("ts_sum(close - open, {n})", lambda b, n: (_frame(b) - _frame(b, "open")).rolling(n).sum()),
    "ts_mean": ("ts_mean(close, {n})", lambda b, n: _frame(b).rolling(n).mean()),
    "ts_std": ("ts_std(close, {n})", lambda b, n: _std(_frame(b), n)),  # pandas' online std below
    "ts_min": ("ts_min(low, {n})", lambda b, n: _frame(b, "low").rolling(n).min()),
    "ts_max": ("ts_max(high, {n})", lambda b, n: _frame(b, "high").rolling(n).max()),
    "ts_argmin": ("ts_argmin(close, {n})", lambda b, n: _window_apply(_frame(b), n, lambda w: w.argmin() + 1)),
    "ts_argmax": ("ts_argmax(close, {n})", lambda b, n: _window_apply(_frame(b), n, lambda w: w.argmax() + 1)),
    "ts_rank": ("ts_rank(close, {n})", lambda b, n: _frame(b).rolling(n).rank(pct=True)),
    "ts_quantile": ("ts_quantile(close, {n}, 0.8)", lambda b, n: _frame(b).rolling(n).quantile(0.8)),
    "ts_corr": ("ts_corr(close, volume, {n})",  # per-window np.corrcoef; pandas' one-pass corr below
                lambda b, n: _rolling_pairs(b, n, lambda x, y: np.corrcoef(x, y)[0, 1])),
    "ts_slope": ("ts_slope(close, {n})", lambda b, n: _window_apply(_frame(b), n, lambda w: _fit(w)[0])),
    "ts_rsquare": ("ts_rsquare(close, {n})",
                   lambda b, n: _window_apply(_frame(b), n, lambda w: np.corrcoef(np.arange(len(w)), w)[0, 1] ** 2)),
    "ts_resi": ("ts_resi(close, {n})",
                lambda b, n: _window_apply(_frame(b), n, lambda w: w[-1] - (_fit(w)[1] + _fit(w)[0] * len(w)))),
    "cs_rank": ("cs_rank(close / open)", lambda b: (_frame(b) / _frame(b, "open")).rank(axis=1, pct=True)),
    "cs_demean": ("cs_demean(close)", lambda b: _frame(b).sub(_frame(b).mean(axis=1), axis=0)),
    "cs_zscore": ("cs_zscore(close)",
                  lambda b: _frame(b).sub(_frame(b).mean(axis=1), axis=0).div(_frame(b).std(axis=1), axis=0)),
}
# polyfit's own rounding (a Vandermonde least-squares solve) is ~1e-11 of the slope's scale
LOOSER = {"ts_slope": 1e-9, "ts_resi": 1e-9, "ts_rsquare": 1e-10}


def _rolling_pairs(bars, window: int, function) -> np.ndarray:
    x, y = bars["close"], bars["volume"]
    out = np.full(x.shape, np.nan)
    for t in range(window - 1, x.shape[0]):
        for j in range(x.shape[1]):
            wx, wy = x[t - window + 1:t + 1, j], y[t - window + 1:t + 1, j]
            if not (np.isnan(wx).any() or np.isnan(wy).any()):
                out[t, j] = function(wx, wy)
    return out


def test_every_operator_has_a_reference_here():
    assert set(REFERENCES) == set(OPERATORS)


@pytest.mark.parametrize("name, window", [(name, window) for name in sorted(REFERENCES)
                                          for window in ((2, 5, 20) if OPERATORS[name].kind == TIME_SERIES else (0,))])
def test_operator_equals_its_pandas_definition(name, window):
    text, reference = REFERENCES[name]
    bars = _bars()
    if window:
        text, expected = text.format(n=window), reference(bars, window)
    else:
        expected = reference(bars)
    # a residual is in price units: at n = 2 it is 0 and polyfit's is rounding noise
    scale = np.nanmax(bars["close"]) if name == "ts_resi" else 0.0
    assert_matches(evaluate_factor(text, bars), expected, LOOSER.get(name, 1e-12), scale)


@pytest.mark.parametrize("text, reference", [
    ("ts_rank(close, 7)", lambda f: f.rolling(7).rank(pct=True)),
    ("cs_rank(close)", lambda f: f.rank(axis=1, pct=True)),
    ("ts_argmax(close, 6)", lambda f: f.rolling(6).apply(lambda w: w.argmax() + 1, raw=True)),
    ("ts_argmin(close, 6)", lambda f: f.rolling(6).apply(lambda w: w.argmin() + 1, raw=True)),
    ("ts_quantile(close, 6, 0.3)", lambda f: f.rolling(6).quantile(0.3)),
    ("ts_std(close, 4)", lambda f: f.rolling(4).std()),
    ("cs_zscore(close)", lambda f: f.sub(f.mean(axis=1), axis=0).div(f.std(axis=1), axis=0)),
])
def test_ties_follow_pandas(text, reference):
    bars = _ties()
    assert_matches(evaluate_factor(text, bars), reference(_frame(bars)))


def test_flat_windows_give_zero_std_and_nan_correlation():
    close = np.ones((30, 2)) * 7.1
    close[:, 1] += np.arange(30)
    bars = {"close": close, "volume": np.arange(60.0).reshape(30, 2)}
    np.testing.assert_array_equal(evaluate_factor("ts_std(close, 5)", bars)[4:, 0], 0.0)
    corr = evaluate_factor("ts_corr(close, volume, 5)", bars)
    assert np.isnan(corr[:, 0]).all() and np.allclose(corr[4:, 1], 1.0)


@pytest.mark.parametrize("window", [5, 20])
def test_std_and_correlation_close_to_pandas_running_moments(window):
    """pandas updates running moments as the window slides (std) or computes mean(xy) - mean(x)
    mean(y) in one pass (corr), which loses digits on price-level data; ours computes each window
    two-pass and equals np.std / np.corrcoef per window to 1e-12 (above)."""
    bars = _bars()
    close, volume = _frame(bars), _frame(bars, "volume")
    assert_matches(evaluate_factor(f"ts_std(close, {window})", bars), close.rolling(window).std(), 1e-10)
    assert_matches(evaluate_factor(f"ts_corr(close, volume, {window})", bars),
                   close.rolling(window).corr(volume), 1e-9)


def test_series_in_series_out():
    bars = {name: values[:, 0] for name, values in _bars(gaps=False).items()}
    values = evaluate_factor("ts_mean(close, 5) / close", bars)
    assert values.shape == (ROWS,)
    assert_matches(values, pd.Series(bars["close"]).rolling(5).mean() / bars["close"])


# --- composition, indicators, lookback, sharing ----------------------------------------------

def test_nested_expression_equals_pandas_formula():
    bars = _bars()
    close, volume = _frame(bars), _frame(bars, "volume")
    returns = close / close.shift(1) - 1
    expected = (returns.rolling(10).std() * -1 + np.log(volume + 1).rolling(5).mean()).rank(axis=1, pct=True)
    text = "cs_rank(-ts_std(close / ref(close, 1) - 1, 10) + ts_mean(log(volume + 1), 5))"
    assert_matches(evaluate_factor(text, bars), expected)


def test_indicators_start_at_each_columns_first_valid_row():
    bars = _bars(gaps=False)
    values = evaluate_factor("sma(close, 10) / close", bars)
    for j, start in enumerate(LISTINGS):
        close = bars["close"][start:, j]
        assert np.isnan(values[:start, j]).all()
        assert_matches(values[start:, j], kernels.sma(np, close, 10) / close)
        assert_matches(values[start:, j], pd.Series(close).rolling(10).mean() / close)
    rsi = evaluate_factor("rsi(ts_mean(close, 3), 5)", bars)
    assert np.isnan(rsi[:LISTINGS[2] + 7, 2]).all() and np.isfinite(rsi[LISTINGS[2] + 7:, 2]).all()


@pytest.mark.parametrize("text, rows", [
    ("close", 0), ("ts_mean(close, 5)", 4), ("ref(close, 3)", 3), ("delta(ts_sum(close, 4), 2)", 5),
    ("ts_corr(close, ref(volume, 2), 10)", 11), ("cs_rank(ts_std(close, 20))", 19),
    ("sma(ts_mean(close, 3), 4) - ema(close, 30)", 29), ("shift(ts_max(high, 5), 2)", 6),
    ("ts_mean(close crosses_above sma(close, 3), 2)", 4), ("rsi(close, 14) + ts_rank(close, 5)", 14),
])
def test_lookback_is_the_leading_nan_rows(text, rows):
    expression = parse_factor(text)
    assert lookback(expression) == expression.lookback() == rows
    values = evaluate_factor(expression, _bars(gaps=False))
    assert np.isnan(values[:rows, 0]).all() and not np.isnan(values[rows:, 0]).any()


def test_comparison_counts_one_zero_or_nan_inside_an_operator():
    bars = _bars()
    close = _frame(bars)
    up = (close > close.shift(1)).astype(float).where(close.notna() & close.shift(1).notna())
    assert_matches(evaluate_factor("ts_mean(close > ref(close, 1), 5)", bars), up.rolling(5).mean())


def test_equal_sub_expressions_run_once(monkeypatch):
    calls = []
    operator = OPERATORS["ts_std"]

    def counting(x, n):
        calls.append(n)
        return operator.kernel(x, n)

    monkeypatch.setitem(OPERATORS, "ts_std", replace(operator, kernel=counting))
    bars = _bars()
    results = evaluate_factors({"a": "ts_std(close, 5) / close", "b": "cs_rank(TS_STD(close,5)) + ts_std(close, 5)",
                                "c": "ts_std(close, 6)"}, bars)
    assert sorted(calls) == [5, 6]
    assert_matches(results["a"], _std(_frame(bars), 5) / _frame(bars))
    results["a"][:] = 0  # results never alias each other or the bars
    assert np.isfinite(results["b"]).any() and np.isfinite(bars["close"]).any()


def test_results_never_alias_the_bars():
    bars = _bars()
    values = evaluate_factor("close", bars)
    values[:] = 0
    assert np.nanmax(bars["close"]) > 0


def test_constant_expression_takes_the_bars_shape():
    values = evaluate_factor("log(2) * 3", _bars())
    assert values.shape == (ROWS, COLUMNS) and np.allclose(values, 3 * np.log(2))


# --- parsing errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, column, fragment", [
    ("ts_men(close, 5)", 1, "did you mean 'ts_mean'"),
    ("close / cs_rnk(close)", 9, "did you mean 'cs_rank'"),
    ("ts_mean(close)", 1, "ts_mean takes 2 arguments: ts_mean(x, n); got 1"),
    ("ts_corr(close, volume, 5, 1)", 27, "ts_corr takes 3 arguments"),
    ("ts_mean(close, 2.5)", 16, "n must be an integer"),
    ("ts_std(close, 1)", 15, "n must be in [2, 10000]"),
    ("ref(close, 0)", 12, "n must be in [1, 10000]"),
    ("ts_mean(close, volume)", 16, "n must be a number literal"),
    ("ts_quantile(close, 5, 1.5)", 23, "q must be in (0, 1]"),
    ("close > open", 1, "a factor must be a number, not a condition"),
    ("ts_mean + 1", 1, "'ts_mean' is a function; call it as ts_mean(x, n)"),
    ("clsoe / open", 1, "did you mean 'close'"),
    ("(close - open", 14, "missing ')'"),
    ("close - ", 9, "expected a number"),
    ("", 1, "empty expression"),
    ("bollinger(close, 20)", 1, "has several outputs"),
    ("close(5)", 1, "is a bar field, not a function"),
    ("ts_mean(close, 5) close", 19, "after a complete expression"),
    ("close = open", 7, "use '=='"),
])
def test_parse_errors_name_the_column(text, column, fragment):
    with pytest.raises(RuleError) as caught:
        parse_factor(text, "factor")
    assert caught.value.field == "factor" and caught.value.column == column, str(caught.value)
    assert fragment in caught.value.reason


def test_names_are_case_insensitive_and_defaults_fill_in():
    assert parse_factor("TS_MEAN(Close, 5) + rsi(close)").ast == parse_factor("ts_mean(close,5)+rsi(close,14)").ast


def test_rule_language_is_unchanged():
    with pytest.raises(RuleError, match="unknown function 'ts_mean'"):
        parse_rule("ts_mean(close, 5) > close")
    with pytest.raises(RuleError, match="must be a condition"):
        parse_rule("close - open")
    assert parse_rule("abs(close - open) > 1").ast != parse_factor("abs(close - open)").ast


# --- the registry ------------------------------------------------------------------------------

def test_every_operator_is_fully_declared():
    for operator in OPERATORS.values():
        assert check_operator(operator) == [], operator.name
        assert operator.signature.startswith(f"{operator.name}(") and operator.arity >= 1
    described = expression_ops.describe_operators()
    assert [entry["name"] for entry in described] == list(OPERATORS)


@pytest.mark.parametrize("change, problem", [
    ({"kernel": None}, "kernel must be callable"),
    ({"kernel": lambda x: x}, "kernel must take 2 positional arguments"),
    ({"lookback": None}, "lookback must be callable"),
    ({"lookback": lambda params: -1}, "non-negative int"),
    ({"description": ""}, "description is empty"),
    ({"reference": ""}, "reference"),
    ({"kind": "rolling"}, "kind 'rolling'"),
    ({"params": ()}, "integer window n >= 1"),
    ({"series": ()}, "at least one series"),
    ({"name": "Ts Mean"}, "lower-case identifier"),
])
def test_a_half_declared_operator_is_rejected(change, problem):
    broken = replace(OPERATORS["ts_mean"], **change)
    assert any(problem in text for text in check_operator(broken)), check_operator(broken)
    with pytest.raises(RuntimeError, match="half-declared"):
        expression_ops._registry([broken])


def test_an_operator_declared_twice_is_rejected():
    with pytest.raises(RuntimeError, match="declared twice"):
        expression_ops._registry([OPERATORS["ts_mean"], OPERATORS["ts_mean"]])
