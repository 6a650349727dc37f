"""The factor language's operators: one declaration each, in ``OPERATORS``.

An ``Operator`` entry is everything the language knows about a name: its kind (element-wise,
time-series, cross-sectional), its series arguments, its literal parameters with their bounds
(``step_core.Param``), its kernel over (T, N) float64 panels, its warm-up and a line saying which
Qlib/pandas definition it equals. The parser's function table, the signatures in error messages,
``lookback`` and ``describe_operators`` are derived from the entries; ``check_operator`` rejects
a half-declared one when this module is imported.

Conventions (pandas ``rolling(n)`` with its default ``min_periods=n``): a time-series value is
NaN until the window holds ``n`` rows and wherever the window holds a NaN, so a late listing or a
gap leaves NaN for the next ``n - 1`` rows. Qlib's own rolling operators use ``min_periods=1``
(partial windows at the start and NaNs skipped); our values equal Qlib's wherever the window is full
and NaN-free, and are NaN where Qlib would average a partial window. Each window is computed
directly (no running sums), so the results do not drift over long series.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import njit, prange

from utils.engine.factors.ranks import rank_row, valid_columns
from utils.engine.indicators.step_core import Param

ELEMENTWISE = "elementwise"
TIME_SERIES = "time_series"
CROSS_SECTIONAL = "cross_sectional"
OPERATOR_KINDS = (ELEMENTWISE, TIME_SERIES, CROSS_SECTIONAL)
MAX_WINDOW = 10_000


# ------------------------------------------------------------------ time-series kernels
# Each takes C-contiguous float64 (T, N) panels and returns a new one; rows run in parallel and the
# inner loop walks a row (contiguous). ``window`` rows end at (and include) the current one.
@njit(parallel=True, cache=True)
def _ts_shift(values, rows):
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for t in prange(rows, n_rows):
        for j in range(n_cols):
            out[t, j] = values[t - rows, j]
    return out


@njit(parallel=True, cache=True)
def _ts_sum(values, window):
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for t in prange(window - 1, n_rows):
        for j in range(n_cols):
            total = 0.0
            for k in range(t - window + 1, t + 1):
                total += values[k, j]  # a NaN anywhere in the window makes the sum NaN
            out[t, j] = total
    return out


@njit(parallel=True, cache=True)
def _ts_std(values, window):
    """Sample standard deviation (ddof 1, pandas ``rolling(n).std()``); exactly 0 on a flat window."""
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for t in prange(window - 1, n_rows):
        for j in range(n_cols):
            first = values[t - window + 1, j]
            total = 0.0
            flat = True
            for k in range(t - window + 1, t + 1):
                total += values[k, j]
                flat = flat and values[k, j] == first
            if np.isnan(total):
                continue
            if flat:
                out[t, j] = 0.0
                continue
            mean = total / window
            squares = 0.0
            for k in range(t - window + 1, t + 1):
                squares += (values[k, j] - mean) ** 2
            out[t, j] = np.sqrt(squares / (window - 1))
    return out


@njit(parallel=True, cache=True)
def _ts_extreme(values, window, sign, position_wanted):
    """Rolling max (``sign`` 1) or min (-1), or with ``position_wanted`` the 1-based position of
    the window's first max/min (oldest row = 1); NaN if the window holds one."""
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for t in prange(window - 1, n_rows):
        for j in range(n_cols):
            start = t - window + 1
            best = values[start, j] * sign
            position = 1
            for k in range(start, t + 1):
                value = values[k, j] * sign
                if np.isnan(value):
                    position = 0
                    break
                if value > best:
                    best = value
                    position = k - start + 1
            if position > 0:
                out[t, j] = position if position_wanted else best * sign
    return out


@njit(parallel=True, cache=True)
def _ts_rank(values, window):
    """Percentile of the current value within its window, ties averaged (pandas
    ``rolling(n).rank(pct=True)``, Qlib's ``Rank``): (less + (equal + 1) / 2) / n."""
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for t in prange(window - 1, n_rows):
        for j in range(n_cols):
            current = values[t, j]
            less = 0
            equal = 0
            missing = np.isnan(current)
            for k in range(t - window + 1, t + 1):
                value = values[k, j]
                if np.isnan(value):
                    missing = True
                    break
                if value < current:
                    less += 1
                elif value == current:
                    equal += 1
            if not missing:
                out[t, j] = (less + (equal + 1) / 2.0) / window
    return out


@njit(parallel=True, cache=True)
def _ts_quantile(values, window, quantile):
    """pandas ``rolling(n).quantile(q)`` (linear interpolation between order statistics)."""
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    position = quantile * (window - 1)
    low = int(np.floor(position))
    fraction = position - low
    for t in prange(window - 1, n_rows):
        sorted_window = np.empty(window)
        for j in range(n_cols):
            missing = False
            for k in range(window):
                sorted_window[k] = values[t - window + 1 + k, j]
                missing = missing or np.isnan(sorted_window[k])
            if missing:
                continue
            sorted_window.sort()
            if fraction == 0.0:
                out[t, j] = sorted_window[low]
            else:
                below = sorted_window[low]
                out[t, j] = below + (sorted_window[low + 1] - below) * fraction
    return out


@njit(parallel=True, cache=True)
def _ts_corr(left, right, window):
    """Pearson correlation of the two windows (two-pass); NaN where either window is flat (Qlib
    sets those to NaN too) or holds a NaN."""
    n_rows, n_cols = left.shape
    out = np.full((n_rows, n_cols), np.nan)
    for t in prange(window - 1, n_rows):
        for j in range(n_cols):
            sum_x = 0.0
            sum_y = 0.0
            for k in range(t - window + 1, t + 1):
                sum_x += left[k, j]
                sum_y += right[k, j]
            if np.isnan(sum_x) or np.isnan(sum_y):
                continue
            mean_x = sum_x / window
            mean_y = sum_y / window
            sxx = 0.0
            syy = 0.0
            sxy = 0.0
            for k in range(t - window + 1, t + 1):
                dx = left[k, j] - mean_x
                dy = right[k, j] - mean_y
                sxx += dx * dx
                syy += dy * dy
                sxy += dx * dy
            if sxx > 0.0 and syy > 0.0:
                out[t, j] = sxy / np.sqrt(sxx * syy)
    return out


@njit(parallel=True, cache=True)
def _ts_regression(values, window, what):
    """Least squares of the window on x = 1..n (Qlib's ``Slope``/``Rsquare``/``Resi``):
    ``what`` 0: slope, 1: R², 2: residual of the current (last) row."""
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    mean_x = (window + 1) / 2.0
    sxx = window * (window * window - 1) / 12.0  # sum of (x - mean_x)^2 for x = 1..n
    for t in prange(window - 1, n_rows):
        for j in range(n_cols):
            total = 0.0
            for k in range(t - window + 1, t + 1):
                total += values[k, j]
            if np.isnan(total):
                continue
            mean_y = total / window
            sxy = 0.0
            syy = 0.0
            for k in range(t - window + 1, t + 1):
                dy = values[k, j] - mean_y
                sxy += (k - t + window - mean_x) * dy
                syy += dy * dy
            slope = sxy / sxx
            if what == 0:
                out[t, j] = slope
            elif what == 1:
                out[t, j] = sxy * sxy / (sxx * syy) if syy > 0.0 else np.nan
            else:
                out[t, j] = values[t, j] - (mean_y + slope * (window - mean_x))
    return out


# ------------------------------------------------------------------ cross-sectional kernels
@njit(parallel=True, cache=True)
def _cs_rank(values):
    """Per row: average rank of each non-NaN cell / the row's non-NaN count; NaN stays NaN."""
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for t in prange(n_rows):
        cols = valid_columns(~np.isnan(values[t]))
        row = np.empty(cols.size)
        for k in range(cols.size):
            row[k] = values[t, cols[k]]
        ranks = np.empty(cols.size)
        rank_row(row, ranks)
        for k in range(cols.size):
            out[t, cols[k]] = ranks[k] / cols.size
    return out


def cs_rank(values: np.ndarray) -> np.ndarray:
    return _cs_rank(values)


def _row_deviations(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values minus their row's mean over the non-NaN cells, the non-NaN mask)."""
    valid = ~np.isnan(values)
    counts = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(valid, values, 0.0).sum(axis=1) / counts
    return values - means[:, None], valid


def cs_demean(values: np.ndarray) -> np.ndarray:
    return _row_deviations(values)[0]


def cs_zscore(values: np.ndarray) -> np.ndarray:
    deviations, valid = _row_deviations(values)
    degrees = valid.sum(axis=1) - 1.0
    squares = np.where(valid, deviations * deviations, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stds = np.sqrt(np.where(degrees > 0, squares / degrees, np.nan))
        return deviations / stds[:, None]


# ------------------------------------------------------------------ the registry
@dataclass(frozen=True)
class Operator:
    name: str
    kind: str                          # one of OPERATOR_KINDS
    series: tuple[str, ...]            # names of the series arguments, in order
    params: tuple[Param, ...]          # number-literal arguments after the series (all required)
    kernel: Callable[..., np.ndarray]  # kernel(*series, *params) -> values; series are (T, N) panels
                                       # (element-wise kernels may also get scalars)
    lookback: Callable[[tuple], int]   # rows of NaN it adds after its inputs' first valid row
    description: str
    reference: str                     # the Qlib / pandas definition it equals

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join([*self.series, *(param.name for param in self.params)])})"

    @property
    def arity(self) -> int:
        return len(self.series) + len(self.params)


def _window(low: int = 1) -> Param:
    return Param("n", low, True, low, MAX_WINDOW)


def _rows(params: tuple) -> int:
    return int(params[0])


def _window_rows(params: tuple) -> int:
    return int(params[0]) - 1


def _none(params: tuple) -> int:
    return 0


_DECLARED = [
    # element-wise
    Operator("log", ELEMENTWISE, ("x",), (), lambda x: np.log(x), _none,
             "natural logarithm (log 0 = -inf, log of a negative = NaN)", "Qlib Log = np.log"),
    Operator("abs", ELEMENTWISE, ("x",), (), lambda x: np.abs(x), _none, "absolute value", "Qlib Abs = np.abs"),
    Operator("sign", ELEMENTWISE, ("x",), (), lambda x: np.sign(x), _none, "-1, 0 or 1 (NaN stays NaN)",
             "Qlib Sign = np.sign"),
    Operator("greater", ELEMENTWISE, ("x", "y"), (), lambda x, y: np.maximum(x, y), _none,
             "the larger of x and y (NaN if either is NaN)", "Qlib Greater = np.maximum"),
    Operator("less", ELEMENTWISE, ("x", "y"), (), lambda x, y: np.minimum(x, y), _none,
             "the smaller of x and y (NaN if either is NaN)", "Qlib Less = np.minimum"),
    # time-series
    Operator("ref", TIME_SERIES, ("x",), (_window(),), _ts_shift, _rows,
             "x n rows earlier (n >= 1: no look-ahead)", "Qlib Ref(x, n) = x.shift(n)"),
    Operator("delta", TIME_SERIES, ("x",), (_window(),), lambda x, n: x - _ts_shift(x, n), _rows,
             "x minus x n rows earlier", "Qlib Delta(x, n) = x - x.shift(n)"),
    Operator("ts_sum", TIME_SERIES, ("x",), (_window(),), _ts_sum, _window_rows,
             "sum over the last n rows", "Qlib Sum = x.rolling(n).sum()"),
    Operator("ts_mean", TIME_SERIES, ("x",), (_window(),), lambda x, n: _ts_sum(x, n) / n, _window_rows,
             "mean over the last n rows", "Qlib Mean = x.rolling(n).mean()"),
    Operator("ts_std", TIME_SERIES, ("x",), (_window(2),), _ts_std, _window_rows,
             "sample standard deviation (ddof 1) over the last n rows", "Qlib Std = x.rolling(n).std()"),
    Operator("ts_min", TIME_SERIES, ("x",), (_window(),), lambda x, n: _ts_extreme(x, n, -1.0, False),
             _window_rows, "minimum over the last n rows", "Qlib Min = x.rolling(n).min()"),
    Operator("ts_max", TIME_SERIES, ("x",), (_window(),), lambda x, n: _ts_extreme(x, n, 1.0, False),
             _window_rows, "maximum over the last n rows", "Qlib Max = x.rolling(n).max()"),
    Operator("ts_argmin", TIME_SERIES, ("x",), (_window(),), lambda x, n: _ts_extreme(x, n, -1.0, True),
             _window_rows, "1-based position of the window's (first) minimum, oldest row = 1",
             "Qlib IdxMin = x.rolling(n).apply(lambda w: w.argmin() + 1)"),
    Operator("ts_argmax", TIME_SERIES, ("x",), (_window(),), lambda x, n: _ts_extreme(x, n, 1.0, True),
             _window_rows, "1-based position of the window's (first) maximum, oldest row = 1",
             "Qlib IdxMax = x.rolling(n).apply(lambda w: w.argmax() + 1)"),
    Operator("ts_rank", TIME_SERIES, ("x",), (_window(2),), _ts_rank, _window_rows,
             "percentile of the current value within the last n rows, ties averaged",
             "Qlib Rank = x.rolling(n).rank(pct=True)"),
    Operator("ts_quantile", TIME_SERIES, ("x",), (_window(2), Param("q", 0.5, False, 0.0, 1.0)), _ts_quantile,
             _window_rows, "q-quantile of the last n rows, linear interpolation",
             "Qlib Quantile = x.rolling(n).quantile(q)"),
    Operator("ts_corr", TIME_SERIES, ("x", "y"), (_window(2),), _ts_corr, _window_rows,
             "Pearson correlation of x and y over the last n rows (NaN where either is flat)",
             "Qlib Corr = x.rolling(n).corr(y)"),
    Operator("ts_slope", TIME_SERIES, ("x",), (_window(2),), lambda x, n: _ts_regression(x, n, 0), _window_rows,
             "least-squares slope of the last n rows against 1..n", "Qlib Slope"),
    Operator("ts_rsquare", TIME_SERIES, ("x",), (_window(2),), lambda x, n: _ts_regression(x, n, 1),
             _window_rows, "R² of the last n rows regressed on 1..n (NaN on a flat window)", "Qlib Rsquare"),
    Operator("ts_resi", TIME_SERIES, ("x",), (_window(2),), lambda x, n: _ts_regression(x, n, 2), _window_rows,
             "residual of the current row from the least-squares line of the last n rows on 1..n",
             "Qlib Resi"),
    # cross-sectional
    Operator("cs_rank", CROSS_SECTIONAL, ("x",), (), cs_rank, _none,
             "per-row percentile rank across symbols, ties averaged, NaN kept NaN",
             "df.rank(axis=1, pct=True)"),
    Operator("cs_demean", CROSS_SECTIONAL, ("x",), (), cs_demean, _none,
             "x minus the row's mean over its non-NaN cells", "df.sub(df.mean(axis=1), axis=0)"),
    Operator("cs_zscore", CROSS_SECTIONAL, ("x",), (), cs_zscore, _none,
             "(x - row mean) / row sample std (ddof 1) over the non-NaN cells",
             "df.sub(df.mean(axis=1), axis=0).div(df.std(axis=1), axis=0) (Qlib CSZScoreNorm)"),
]

_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")


def check_operator(operator: Operator) -> list[str]:
    """What is missing or inconsistent in one declaration (empty when it is complete)."""
    problems = []
    if not isinstance(operator.name, str) or not _NAME.match(operator.name):
        problems.append(f"name {operator.name!r} must be a lower-case identifier")
    if operator.kind not in OPERATOR_KINDS:
        problems.append(f"kind {operator.kind!r} is not one of {', '.join(OPERATOR_KINDS)}")
    if not operator.series or not all(isinstance(name, str) and name for name in operator.series):
        problems.append("it must name at least one series argument")
    if not all(isinstance(param, Param) for param in operator.params):
        problems.append("params must be step_core.Param entries")
    elif operator.kind == TIME_SERIES and not (operator.params and operator.params[0].is_integer
                                               and operator.params[0].low >= 1):
        problems.append("a time-series operator takes an integer window n >= 1 as its first parameter")
    elif operator.kind != TIME_SERIES and operator.params:
        problems.append("only time-series operators take parameters")
    if not callable(operator.kernel):
        problems.append("kernel must be callable")
    else:
        try:
            inspect.signature(operator.kernel).bind(*range(operator.arity))
        except TypeError:
            problems.append(f"kernel must take {operator.arity} positional arguments (series, then params)")
        except ValueError:
            pass  # a compiled dispatcher without a Python signature
    if not callable(operator.lookback):
        problems.append("lookback must be callable")
    elif all(isinstance(param, Param) for param in operator.params):
        lowest = tuple(int(p.low) if p.is_integer else p.high for p in operator.params)
        try:
            rows = operator.lookback(lowest)
        except Exception as error:  # noqa: BLE001 - any failure means the entry is inconsistent
            rows = f"{type(error).__name__}: {error}"
        if not isinstance(rows, int) or rows < 0:
            problems.append(f"lookback must return a non-negative int for {lowest}, got {rows!r}")
    if not operator.description:
        problems.append("description is empty")
    if not operator.reference:
        problems.append("reference (the Qlib/pandas definition it equals) is empty")
    return problems


def _registry(entries: list[Operator]) -> dict[str, Operator]:
    registry: dict[str, Operator] = {}
    for operator in entries:
        problems = check_operator(operator)
        if problems:
            raise RuntimeError(f"factor operator {operator.name!r} is half-declared: {'; '.join(problems)}")
        if operator.name in registry:
            raise RuntimeError(f"factor operator {operator.name!r} is declared twice")
        registry[operator.name] = operator
    return registry


OPERATORS: dict[str, Operator] = _registry(_DECLARED)


def describe_operators() -> list[dict]:
    """One description per operator (for a listing RPC and the docs)."""
    return [{"name": op.name, "signature": op.signature, "kind": op.kind, "description": op.description,
             "reference": op.reference,
             "params": [{"name": p.name, "type": "int" if p.is_integer else "float", "low": p.low, "high": p.high}
                        for p in op.params]}
            for op in OPERATORS.values()]
