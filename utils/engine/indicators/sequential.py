"""Sequential loops (running sums, EMA, Wilder's RSI) in numba, mirroring TA-Lib's C code.

TA-Lib parity is the contract, and TA-Lib's running sums drift in a way a cumulative sum does not
reproduce (visible where a Bollinger variance is near zero and the square root amplifies it), so
even the moving sums are the same add-then-subtract loop, in the same order. They run on the host:
on the GPU backend ``kernels.py`` copies the panel to host memory, runs them and copies back.
Each loop walks one column from its first valid row; an interior NaN propagates onwards.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# TA-Lib's TA_IS_ZERO threshold, used by RSI when gains and losses are both (almost) zero.
TALIB_EPSILON = 1e-14


@njit(cache=True)
def sma_columns(values, period, first_valid_rows):
    """TA-Lib TA_INT_SMA per column: a running total, added to before it is subtracted from."""
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for col in range(n_cols):
        trailing = first_valid_rows[col]
        first = trailing + period - 1
        if first >= n_rows:
            continue
        total = 0.0
        for row in range(trailing, first):
            total += values[row, col]
        for row in range(first, n_rows):
            total += values[row, col]
            window_total = total
            total -= values[trailing, col]
            trailing += 1
            out[row, col] = window_total / period
    return out


@njit(cache=True)
def _window_moments(values, col, last_row, period):
    """Two-pass mean and sum of squared deviations of the window ending at ``last_row``."""
    total = 0.0
    for row in range(last_row - period + 1, last_row + 1):
        total += values[row, col]
    mean = total / period
    squares = 0.0
    for row in range(last_row - period + 1, last_row + 1):
        squares += (values[row, col] - mean) ** 2
    return mean, squares


@njit(cache=True)
def std_columns(values, period, first_valid_rows):
    """Rolling population standard deviation, 0 where the variance is below TA_EPSILON.

    The installed TA-Lib computes this variance accurately (it agrees with a two-pass formula to
    ~1e-14), not with the classic ``mean(x^2) - mean^2`` running sums, whose drift would show
    through the square root where the variance is near zero. We slide Welford's update and redo
    an exact two-pass every ``period`` rows so the error cannot accumulate. A NaN that has entered
    the series keeps every later value NaN, as TA-Lib's middle band does.
    """
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for col in range(n_cols):
        first = first_valid_rows[col] + period - 1
        if first >= n_rows:
            continue
        mean = 0.0
        squares = 0.0
        seen_nan = False
        for row in range(first, n_rows):
            if (row - first) % period == 0:
                mean, squares = _window_moments(values, col, row, period)
            else:
                entering = values[row, col]
                leaving = values[row - period, col]
                new_mean = mean + (entering - leaving) / period
                squares += (entering - leaving) * (entering - new_mean + leaving - mean)
                mean = new_mean
            seen_nan = seen_nan or np.isnan(squares)
            variance = squares / period
            if seen_nan:
                out[row, col] = np.nan
            elif variance < TALIB_EPSILON:
                out[row, col] = 0.0
            else:
                out[row, col] = np.sqrt(variance)
    return out


@njit(cache=True)
def ema_columns(values, period, first_output_rows):
    """EMA per column, seeded with the SMA of the ``period`` values ending at the first output row.

    TA-Lib's MACD seeds its fast EMA at the slow EMA's start, so the first output row is a
    parameter rather than always ``first_valid + period - 1``.
    """
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    k = 2.0 / (period + 1)
    for col in range(n_cols):
        first = first_output_rows[col]
        if first >= n_rows:
            continue
        total = 0.0
        for row in range(first - period + 1, first + 1):
            total += values[row, col]
        previous = total / period
        out[first, col] = previous
        for row in range(first + 1, n_rows):
            previous = (values[row, col] - previous) * k + previous
            out[row, col] = previous
    return out


@njit(cache=True)
def _rsi_value(average_gain, average_loss):
    total = average_gain + average_loss
    if np.isnan(total):
        # TA-Lib emits 0.0 here (its zero test is false for NaN); we keep the NaN so a gap in the
        # input never reads as "maximally oversold".
        return np.nan
    if -TALIB_EPSILON < total < TALIB_EPSILON:
        return 0.0
    return 100.0 * (average_gain / total)


@njit(cache=True)
def rsi_columns(values, period, first_valid_rows):
    """Wilder RSI per column: simple averages over the first ``period`` changes, then smoothing."""
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    for col in range(n_cols):
        begin = first_valid_rows[col]
        first = begin + period
        if first >= n_rows:
            continue
        gain = 0.0
        loss = 0.0
        previous = values[begin, col]
        for row in range(begin + 1, first + 1):
            change = values[row, col] - previous
            previous = values[row, col]
            if change < 0:
                loss -= change
            else:
                gain += change
        gain /= period
        loss /= period
        out[first, col] = _rsi_value(gain, loss)
        for row in range(first + 1, n_rows):
            change = values[row, col] - previous
            previous = values[row, col]
            loss *= period - 1
            gain *= period - 1
            if change < 0:
                loss -= change
            else:
                gain += change
            loss /= period
            gain /= period
            out[row, col] = _rsi_value(gain, loss)
    return out
