"""Volatility and bands: Bollinger bands, return volatility, z-score, ATR, NATR, as O(1) steps.

* Bollinger's deviation (like ``volatility`` and ``zscore``) slides Welford's update and redoes an
  exact two-pass over the window every ``period`` bars, so rounding cannot accumulate; the
  installed TA-Lib computes this variance accurately too, and the two agree to ~1e-13. A NaN
  that has entered the window keeps the deviation NaN from then on, as TA-Lib's middle band is.
  This step costs O(period) once every ``period`` bars: O(1) amortised.
* ATR/NATR: the true range starts from high-low and is replaced by |prevclose-high| and then
  |prevclose-low| when larger; the seed is the plain sum of the first ``period`` ranges divided
  by ``period``; later bars use the two-coefficient Wilder step ``fma(b, atr, a*tr)`` (one
  rounding for ``b*atr + a*tr``, as TA-Lib 0.8 compiles it) with ``b = (period-1)/period`` and
  ``a = 1-b``. NATR divides by the bar's own close (0.0 when the close is exactly 0) and, at
  period 1, is the raw true range (TA-Lib does not normalise it). A NaN true range poisons the
  Wilder recursion, as in TA-Lib.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from utils.engine.indicators.kinds.step_parts import (TALIB_EPSILON, declare, period_param,
                                                      period_state, true_range)
from utils.engine.indicators.step_core import (IndicatorKind, Param, fma, ring_index, sma_push, sma_put, sma_slots,
                                               sma_state_size)

# ------------------------------------------------------------------ moving window (Welford)
WINDOW_SLOTS = 5  # (values pushed, ring head, mean, sum of squared deviations, NaN seen) + ring


@njit(error_model="numpy", cache=True, inline="always")
def _window_slots(state, at):
    """Moving-window scalars kept at state[at:at+WINDOW_SLOTS] (its ring follows them)."""
    return int(state[at]), int(state[at + 1]), state[at + 2], state[at + 3], state[at + 4] != 0.0


@njit(error_model="numpy", cache=True, inline="always")
def _window_put(state, at, window):
    pushed, head, mean, squares, nan_seen = window
    state[at] = pushed
    state[at + 1] = head
    state[at + 2] = mean
    state[at + 3] = squares
    state[at + 4] = 1.0 if nan_seen else 0.0


@njit(error_model="numpy", cache=True, inline="always")
def _window_push(window, state, ring, period, x):
    """Push ``x`` into the moving window (its ring at state[ring:ring+period]); returns
    (window, full), full once it holds ``period`` values.

    Keeps the window's mean and sum of squared deviations: Welford's sliding update, re-synced by
    an exact two-pass (oldest to newest) on the first full window and every ``period`` bars after.
    """
    pushed, head, mean, squares, nan_seen = window
    leaving = state[ring_index(ring + head)]
    state[ring_index(ring + head)] = x
    head += 1
    if head == period:
        head = 0
    pushed += 1
    if pushed < period:
        return (pushed, head, mean, squares, nan_seen), False
    if head == 0:  # pushed is a multiple of period (head counts pushes modulo period): re-sync
        # head 0: the oldest value is in slot 0, so slot order is oldest to newest
        total = 0.0
        for slot in range(period):
            total += state[ring_index(ring + slot)]
        mean = total / period
        squares = 0.0
        for slot in range(period):
            deviation = state[ring_index(ring + slot)] - mean
            squares += deviation * deviation
    else:
        change = x - leaving
        new_mean = mean + change / period
        squares = squares + change * (x - new_mean + leaving - mean)
        mean = new_mean
    if math.isnan(squares):
        nan_seen = True
    return (pushed, head, mean, squares, nan_seen), True


@njit(error_model="numpy", cache=True, inline="always")
def _window_variance(window, period, ddof):
    """Variance of the full window (NaN for good once a NaN has been in it); never negative."""
    if window[4]:
        return np.nan
    variance = window[3] / (period - ddof)
    return variance if variance > 0.0 else 0.0


# ------------------------------------------------------------------ Bollinger bands
def bollinger_state_size(params: tuple) -> int:
    return sma_state_size(params) + WINDOW_SLOTS + int(params[0])


@njit(error_model="numpy", cache=True, inline="always")
def bollinger_load(state, params):
    """The SMA's scalars at state[0:3] (its ring follows), the window's after that ring."""
    return sma_slots(state, 0), _window_slots(state, 3 + int(params[0]))


@njit(error_model="numpy", cache=True, inline="always")
def bollinger_store(state, params, scalars):
    sma_put(state, 0, scalars[0])
    _window_put(state, 3 + int(params[0]), scalars[1])


@njit(error_model="numpy", cache=True, inline="always")
def bollinger_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib BBANDS with one ``nbdev`` both ways: the middle band is the SMA step itself (so it
    equals ``sma`` bit for bit); the deviation is the population standard deviation, 0 below
    TA-Lib's epsilon. Outputs (upper, middle, lower)."""
    period = int(params[0])
    sma, window = scalars
    sma, ready, middle = sma_push(sma, state, 3, period, close)
    window, full = _window_push(window, state, 3 + period + WINDOW_SLOTS, period, close)
    out[0] = np.nan
    out[1] = np.nan
    out[2] = np.nan
    if full:
        variance = _window_variance(window, period, 0)
        deviation = math.sqrt(variance) if not variance < TALIB_EPSILON else 0.0
        out[0] = middle + deviation * params[1]
        out[1] = middle
        out[2] = middle - deviation * params[1]
    return sma, window

# ------------------------------------------------------------------ volatility, z-score
@njit(error_model="numpy", cache=True, inline="always")
def volatility_load(state, params):
    """(bars seen, previous close, the window's scalars at state[2:7]); its ring at state[7:]."""
    return int(state[0]), state[1], _window_slots(state, 2)


@njit(error_model="numpy", cache=True, inline="always")
def volatility_store(state, params, scalars):
    count, previous, window = scalars
    state[0] = count
    state[1] = previous
    _window_put(state, 2, window)


@njit(error_model="numpy", cache=True, inline="always")
def volatility_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """Sample (ddof 1) standard deviation of the last ``period`` simple returns, not annualised:
    ``close / previous - 1`` as pandas' ``pct_change``."""
    period = int(params[0])
    count, previous, window = scalars
    out[0] = np.nan
    if count > 0:
        window, full = _window_push(window, state, 2 + WINDOW_SLOTS, period, close / previous - 1.0)
        if full:
            out[0] = math.sqrt(_window_variance(window, period, 1))
    return count + 1, close, window


@njit(error_model="numpy", cache=True, inline="always")
def zscore_load(state, params):
    return _window_slots(state, 0)


@njit(error_model="numpy", cache=True, inline="always")
def zscore_store(state, params, window):
    _window_put(state, 0, window)


@njit(error_model="numpy", cache=True, inline="always")
def zscore_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """(close - mean) / population std over the last ``period`` closes; NaN where the window is
    flat (variance below TA-Lib's epsilon), the z-score being undefined there."""
    period = int(params[0])
    out[0] = np.nan
    window, full = _window_push(scalars, state, WINDOW_SLOTS, period, close)
    if full:
        variance = _window_variance(window, period, 0)
        if variance >= TALIB_EPSILON:
            out[0] = (close - window[2]) / math.sqrt(variance)
    return window


# ------------------------------------------------------------------ ATR / NATR
# state: count (saturating at period+1), previous close, running TR sum then the ATR
def atr_state_size(params: tuple) -> int:
    return 3


@njit(error_model="numpy", cache=True, inline="always")
def atr_load(state, params):
    return int(state[0]), state[1], state[2]


@njit(error_model="numpy", cache=True, inline="always")
def atr_store(state, params, scalars):
    count, prev_close, atr = scalars
    state[0] = count
    state[1] = prev_close
    state[2] = atr


@njit(error_model="numpy", cache=True, inline="always")
def _atr_update(scalars, period, high, low, close):
    """Advance the ATR scalars by one bar; returns (scalars, ready, atr)."""
    count, prev_close, total = scalars
    if count > period:  # the Wilder step (checked first: the seed's division stays off its path)
        tr = true_range(high, low, prev_close)
        w_beta = (period - 1) / period
        w_alpha = 1.0 - w_beta
        atr = fma(w_beta, total, w_alpha * tr)  # TA-Lib 0.8 fuses this step
        return (count, close, atr), True, atr
    if count == 0:
        return (1, close, total), False, np.nan
    tr = true_range(high, low, prev_close)
    if count < period:  # seed: accumulate from 0.0 in input order
        return (count + 1, close, total + tr), False, np.nan
    atr = (total + tr) / period
    return (period + 1, close, atr), True, atr


@njit(error_model="numpy", cache=True, inline="always")
def atr_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib ATR: SMA-seeded Wilder average of the true range; lookback = period."""
    scalars, ready, atr = _atr_update(scalars, int(params[0]), high, low, close)
    out[0] = atr if ready else np.nan
    return scalars


@njit(error_model="numpy", cache=True, inline="always")
def natr_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib NATR: ATR / close * 100 (0 on a zero close; raw true range at period 1)."""
    period = int(params[0])
    scalars, ready, atr = _atr_update(scalars, period, high, low, close)
    if not ready:
        out[0] = np.nan
    elif period <= 1:
        out[0] = atr
    elif close != 0.0:
        out[0] = (atr / close) * 100.0
    else:
        out[0] = 0.0
    return scalars


VOLATILITY_KINDS: list[IndicatorKind] = [
    declare("bollinger", "Bollinger bands: SMA +/- nbdev population standard deviations (TA-Lib BBANDS)",
            (Param("period", 20), Param("nbdev", 2.0, is_integer=False, low=0.0, high=100.0)),
            (bollinger_step, bollinger_load, bollinger_store), bollinger_state_size, lambda p: p[0] - 1, "period - 1",
            outputs=("bb_upper", "bb_middle", "bb_lower")),
    declare("volatility", "sample standard deviation of the last period simple returns (not annualised)",
            period_param(20, low=2), (volatility_step, volatility_load, volatility_store),
            period_state(2 + WINDOW_SLOTS), lambda p: p[0], "period"),
    declare("zscore", "(close - mean) / population standard deviation over the last period closes",
            period_param(20, low=2), (zscore_step, zscore_load, zscore_store), period_state(WINDOW_SLOTS),
            lambda p: p[0] - 1, "period - 1"),
    declare("atr", "Average True Range (Wilder), TA-Lib ATR", period_param(14, low=1),
            (atr_step, atr_load, atr_store), atr_state_size, lambda p: int(p[0]), "period",
            inputs=("high", "low", "close")),
    declare("natr", "Normalized ATR (ATR / close * 100), TA-Lib NATR", period_param(14, low=1),
            (natr_step, atr_load, atr_store), atr_state_size, lambda p: int(p[0]), "period",
            inputs=("high", "low", "close")),
]
