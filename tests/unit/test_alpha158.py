"""The Alpha158 library: every expression equals Qlib's own text evaluated with pandas operators
(Qlib's ops are pandas rolling calls), on panels with late listings and gaps."""
from __future__ import annotations

import ast
import operator

import numpy as np
import pandas as pd
import pytest

from utils.engine.factors.alpha158 import ALPHA158, LIBRARIES, QLIB_ALPHA158, SKIPPED, WINDOWS
from utils.engine.factors.expressions import evaluate_factors, parse_factor

ROWS, COLUMNS = 240, 5
LISTINGS = (0, 0, 13, 50, 120)


def _bars(seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, (ROWS, COLUMNS)), axis=0))
    open_ = close * (1 + rng.normal(0, 0.01, close.shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, close.shape))
    volume = rng.integers(1_000, 100_000, close.shape).astype(float)
    missing = (np.arange(ROWS)[:, None] < np.array(LISTINGS)[None, :]) | (rng.random(close.shape) < 0.003)
    bars = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    return {name: np.where(missing, np.nan, values) for name, values in bars.items()}


# --- Qlib's operators as pandas calls (qlib/data/ops.py), full windows as our NaN warm-up -------
def _apply(frame, n, function):
    return frame.rolling(n).apply(function, raw=True)


def _fit(window):
    return np.polyfit(np.arange(1, len(window) + 1, dtype=float), window, 1)


def _corr(left, right, n):
    result = left.rolling(n).corr(right)
    flat = np.isclose(left.rolling(n).std(), 0, atol=2e-05) | np.isclose(right.rolling(n).std(), 0, atol=2e-05)
    return result.mask(flat)


QLIB_OPS = {
    "Ref": lambda x, n: x.shift(n),
    "Mean": lambda x, n: x.rolling(n).mean(),
    "Std": lambda x, n: x.rolling(n).std(),
    "Sum": lambda x, n: x.rolling(n).sum(),
    "Max": lambda x, n: x.rolling(n).max(),
    "Min": lambda x, n: x.rolling(n).min(),
    "IdxMax": lambda x, n: _apply(x, n, lambda w: w.argmax() + 1),
    "IdxMin": lambda x, n: _apply(x, n, lambda w: w.argmin() + 1),
    "Quantile": lambda x, n, q: x.rolling(n).quantile(q),
    "Rank": lambda x, n: x.rolling(n).rank(pct=True),
    "Corr": _corr,
    "Slope": lambda x, n: _apply(x, n, lambda w: _fit(w)[0]),
    "Rsquare": lambda x, n: _apply(x, n, lambda w: np.corrcoef(np.arange(len(w)), w)[0, 1] ** 2),
    "Resi": lambda x, n: _apply(x, n, lambda w: w[-1] - (_fit(w)[1] + _fit(w)[0] * len(w))),
    "Greater": np.maximum,
    "Less": np.minimum,
    "Abs": np.abs,
    "Log": np.log,
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_COMPARE = {ast.Gt: operator.gt, ast.Lt: operator.lt}


def qlib_pandas(text: str, frames: dict[str, pd.DataFrame]):
    """Qlib's expression text run with the pandas operators above: the text is parsed by Python's
    ``ast`` and walked over this fixed table (nothing is eval'd)."""
    return _run(ast.parse(text.replace("$", "field_"), mode="eval").body, frames)


def _run(node, frames):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return frames[node.id.removeprefix("field_")]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_run(node.left, frames), _run(node.right, frames))
    if isinstance(node, ast.Compare):  # ours is NaN where a side is NaN; pandas says False there
        left, right = _run(node.left, frames), _run(node.comparators[0], frames)
        return _COMPARE[type(node.ops[0])](left, right).astype(float).where(left.notna() & right.notna())
    if isinstance(node, ast.Call):
        return QLIB_OPS[node.func.id](*(_run(arg, frames) for arg in node.args))
    raise TypeError(f"unexpected {ast.dump(node)}")


# two-pass per window (ours) vs pandas' running moments / one-pass corr / polyfit: see
# test_factor_expressions for the exact per-window comparisons at 1e-12
_LOOSER = ("Std(", "Corr(", "Slope(", "Rsquare(", "Resi(")


@pytest.fixture(scope="module")
def computed():
    bars = _bars()
    return bars, evaluate_factors(ALPHA158, bars)


def test_library_covers_alpha158():
    assert len(ALPHA158) + len(SKIPPED) == 158
    assert set(ALPHA158) | set(SKIPPED) == set(QLIB_ALPHA158) | set(SKIPPED)
    assert LIBRARIES["alpha158"] is ALPHA158
    for name, text in ALPHA158.items():
        expression = parse_factor(text, name)
        assert expression.lookback() <= max(WINDOWS) + 1, name


@pytest.mark.parametrize("name", sorted(QLIB_ALPHA158))
def test_expression_equals_qlib_definition(name, computed):
    bars, values = computed
    frames = {field: pd.DataFrame(panel) for field, panel in bars.items()}
    expected = np.asarray(qlib_pandas(QLIB_ALPHA158[name], frames), dtype=np.float64)
    actual = values[name]
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    finite = np.isfinite(expected)
    assert finite.sum() > 100
    rtol = 1e-8 if any(op in QLIB_ALPHA158[name] for op in _LOOSER) else 1e-12
    scale = np.abs(expected[finite]).max()
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True)
