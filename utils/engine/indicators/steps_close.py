"""Close-only indicator kinds as O(1) steps (see ``step_core`` for the convention).

Where TA-Lib defines the indicator, each step does TA-Lib's floating-point operations in TA-Lib's
order (EMA ``((x - prev) * k) + prev`` with ``k = 2 / (period + 1)``, seeds summed from 0.0 in
input order, WMA's running sums, Wilder's RSI, MACD's fast EMA seeded at the slow one's start),
so the outputs agree with TA-Lib bit for bit or within a few ulps. The exceptions, by design:

* RSI stays NaN after a NaN input where TA-Lib reports 0.0 ("maximally oversold") forever.
* Bollinger's deviation (like ``volatility`` and ``zscore``) slides Welford's update and redoes an
  exact two-pass over the window every ``period`` bars, so rounding cannot accumulate; the
  installed TA-Lib computes this variance accurately too, and the two agree to ~1e-13. A NaN
  that has entered the window keeps the deviation NaN from then on, as TA-Lib's middle band is.
  This step costs O(period) once every ``period`` bars: O(1) amortised.
* WMA: the installed TA-Lib (0.8) recomputes its running sums from the window every
  ``8 * period`` outputs (so they cannot drift, and a NaN leaves the output once a re-sync
  window is clean); the step does the same, bit for bit. O(period) once per ``8 * period`` bars.
* RSI agrees to ~1e-15 relative, not bit for bit (the installed build's Wilder step rounds
  differently somewhere; TA-Lib's published C order is kept).

State slots are float64 (counts included) so a state is one plain array to snapshot; the steps get
their scalars as a tuple (counts as ints) and return it (see ``step_core``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from utils.engine.indicators.step_core import (IndicatorKind, Param, fma, ring_index, sma_init, sma_load, sma_push,
                                               sma_put, sma_slots, sma_state_size, sma_step, sma_store)

# TA-Lib's TA_IS_ZERO threshold: RSI with no movement, a Bollinger deviation that is "zero".
TALIB_EPSILON = 1e-14


# ------------------------------------------------------------------ shared pieces
@njit(error_model="numpy", cache=True)
def zero_init(state, params):
    state[:] = 0.0


@njit(error_model="numpy", cache=True, inline="always")
def _ema_slots(state, at):
    """EMA scalars kept at state[at:at+3]: (count fed, seed sum, value)."""
    return int(state[at]), state[at + 1], state[at + 2]


@njit(error_model="numpy", cache=True, inline="always")
def _ema_put(state, at, ema):
    count, total, value = ema
    state[at] = count
    state[at + 1] = total
    state[at + 2] = value


@njit(error_model="numpy", cache=True, inline="always")
def _ema_feed(ema, period, x):
    """EMA of the values fed so far; ``ema`` = (count, seed sum, value). Returns (ema, output).

    NaN until ``period`` values have been fed; the seed is their sum from 0.0 in order, divided by
    ``period`` (TA-Lib's default compatibility), then ``((x - prev) * k) + prev`` with the
    multiply-add fused, as the TA-Lib build we test against computes it.
    """
    count, total, value = ema
    if count >= period:
        value = fma(x - value, 2.0 / (period + 1), value)
        return (count, total, value), value
    total = total + x
    count += 1
    if count < period:
        return (count, total, value), np.nan
    value = total / period
    return (count, total, value), value


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
    if np.isnan(squares):
        nan_seen = True
    return (pushed, head, mean, squares, nan_seen), True


@njit(error_model="numpy", cache=True, inline="always")
def _window_variance(window, period, ddof):
    """Variance of the full window (NaN for good once a NaN has been in it); never negative."""
    if window[4]:
        return np.nan
    variance = window[3] / (period - ddof)
    return variance if variance > 0.0 else 0.0


@njit(error_model="numpy", cache=True, inline="always")
def _lag_push(head, state, ring, period, x):
    """Store ``x`` in the ring of the last ``period`` values at state[ring:ring+period] and return
    (next head, the value it replaces: the input ``period`` bars ago, 0.0 while the ring fills)."""
    older = state[ring_index(ring + head)]
    state[ring_index(ring + head)] = x
    head += 1
    return (head if head < period else 0), older


def _period_state(extra: int):
    return lambda params: extra + int(params[0])


def _fixed_state(size: int):
    return lambda params: size


def _period(default: int, low: float = 1) -> tuple[Param, ...]:
    return (Param("period", default, low=low),)


# ------------------------------------------------------------------ EMA, DEMA, TEMA
@njit(error_model="numpy", cache=True, inline="always")
def ema_load(state, params):
    return _ema_slots(state, 0)


@njit(error_model="numpy", cache=True, inline="always")
def ema_store(state, params, ema):
    _ema_put(state, 0, ema)


@njit(error_model="numpy", cache=True, inline="always")
def ema_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    scalars, value = _ema_feed(scalars, int(params[0]), close)
    out[0] = value
    return scalars


@njit(error_model="numpy", cache=True, inline="always")
def dema_load(state, params):
    """DEMA's two EMAs, at state[0:3] and [3:6]."""
    return _ema_slots(state, 0), _ema_slots(state, 3)


@njit(error_model="numpy", cache=True, inline="always")
def dema_store(state, params, emas):
    _ema_put(state, 0, emas[0])
    _ema_put(state, 3, emas[1])


@njit(error_model="numpy", cache=True, inline="always")
def tema_load(state, params):
    """TEMA's three EMAs, at state[0:3], [3:6] and [6:9]."""
    return _ema_slots(state, 0), _ema_slots(state, 3), _ema_slots(state, 6)


@njit(error_model="numpy", cache=True, inline="always")
def tema_store(state, params, emas):
    _ema_put(state, 0, emas[0])
    _ema_put(state, 3, emas[1])
    _ema_put(state, 6, emas[2])


@njit(error_model="numpy", cache=True, inline="always")
def dema_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib DEMA: 2*EMA1 - EMA2, EMA2 being the EMA of EMA1 (seeded on its first ``period``)."""
    period = int(params[0])
    if period == 1:  # TA-Lib copies the input rather than leave k=1 rounding residue
        out[0] = close
        return scalars
    ema1, ema2 = scalars
    ema1, first = _ema_feed(ema1, period, close)
    out[0] = np.nan
    if ema1[0] >= period:
        ema2, second = _ema_feed(ema2, period, first)
        if ema2[0] >= period:
            out[0] = 2.0 * first - second
    return ema1, ema2


@njit(error_model="numpy", cache=True, inline="always")
def tema_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib TEMA: EMA3 + (3*EMA1 - 3*EMA2), each EMA fed by the one before it."""
    period = int(params[0])
    if period == 1:
        out[0] = close
        return scalars
    ema1, ema2, ema3 = scalars
    out[0] = np.nan
    ema1, first = _ema_feed(ema1, period, close)
    if ema1[0] >= period:
        ema2, second = _ema_feed(ema2, period, first)
        if ema2[0] >= period:
            ema3, third = _ema_feed(ema3, period, second)
            if ema3[0] >= period:
                out[0] = third + (3.0 * first - 3.0 * second)
    return ema1, ema2, ema3


# ------------------------------------------------------------------ WMA
@njit(error_model="numpy", cache=True, inline="always")
def wma_load(state, params):
    """(count, period sub-sum, weighted sum, trailing value, ring head, re-sync phase); the phase,
    ``(count - period + 2) mod 8 * period``, is derived from the count (not stored): 0 on the
    bars that re-sync, so the step needs no integer division."""
    count = int(state[0])
    cycle = 8 * int(params[0])
    phase = (count - int(params[0]) + 2) % cycle
    if phase < 0:
        phase += cycle
    return count, state[1], state[2], state[3], int(state[4]), phase


@njit(error_model="numpy", cache=True, inline="always")
def wma_store(state, params, scalars):
    count, period_sub, period_sum, trailing, head, _ = scalars
    state[0] = count
    state[1] = period_sub
    state[2] = period_sum
    state[3] = trailing
    state[4] = head


@njit(error_model="numpy", cache=True, inline="always")
def wma_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib WMA's running sums, recomputed from the window every ``8 * period`` outputs.

    Scalars = (count, period sub-sum, weighted sum, trailing value, ring head, re-sync phase); the
    ring of the last ``period`` closes is at state[5:]. Between re-syncs: the sub-sum gains the close and
    loses the trailing value, the weighted sum gains close * period, the output is weighted sum /
    divider, then the weighted sum loses the sub-sum (TA-Lib's order).
    """
    period = int(params[0])
    if period == 1:  # TA-Lib copies the input
        out[0] = close
        return scalars
    count, period_sub, period_sum, trailing, head, phase = scalars
    state[ring_index(5 + head)] = close
    head += 1
    if head == period:
        head = 0
    next_phase = phase + 1
    if next_phase == 8 * period:
        next_phase = 0
    if count < period - 1:
        out[0] = np.nan
        return count + 1, period_sub + close, period_sum + close * (count + 1.0), trailing, head, next_phase
    divider = (period * (period + 1)) >> 1
    if phase == 0:  # (count - (period - 1) + 1) % (8 * period) == 0: the installed TA-Lib's re-sync points
        period_sub = 0.0
        period_sum = 0.0
        slot = head  # oldest close of the window
        for weight in range(1, period + 1):
            value = state[ring_index(5 + slot)]
            period_sub += value
            period_sum += value * weight
            slot = slot + 1 if slot + 1 < period else 0
    else:
        period_sub = period_sub + close
        period_sub -= trailing
        period_sum = period_sum + close * period
    trailing = state[ring_index(5 + head)]  # oldest close of this window: leaves period_sub on the next bar
    out[0] = period_sum / divider
    return count + 1, period_sub, period_sum - period_sub, trailing, head, next_phase


# ------------------------------------------------------------------ RSI
@njit(error_model="numpy", cache=True, inline="always")
def _rsi_value(average_gain, average_loss):
    total = average_gain + average_loss
    if np.isnan(total):
        # TA-Lib emits 0.0 here (its zero test is false for NaN); we keep the NaN so a gap in the
        # input never reads as "maximally oversold".
        return np.nan
    if -TALIB_EPSILON < total < TALIB_EPSILON:
        return 0.0
    return 100.0 * (average_gain / total)


@njit(error_model="numpy", cache=True, inline="always")
def rsi_load(state, params):
    return int(state[0]), state[1], state[2], state[3]


@njit(error_model="numpy", cache=True, inline="always")
def rsi_store(state, params, scalars):
    count, previous, gain, loss = scalars
    state[0] = count
    state[1] = previous
    state[2] = gain
    state[3] = loss


@njit(error_model="numpy", cache=True, inline="always")
def rsi_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """Wilder RSI, TA-Lib seeding: simple averages of the first ``period`` changes, then smoothing.
    Scalars = (bars seen, previous close, average gain, average loss)."""
    period = int(params[0])
    count, previous, gain, loss = scalars
    change = close - previous
    out[0] = np.nan
    if count == 0:
        return count + 1, close, gain, loss
    if count <= period:
        if change < 0:
            loss -= change
        else:
            gain += change
        if count == period:
            gain /= period
            loss /= period
            out[0] = _rsi_value(gain, loss)
    else:
        loss *= period - 1
        gain *= period - 1
        if change < 0:
            loss -= change
        else:
            gain += change
        loss /= period
        gain /= period
        out[0] = _rsi_value(gain, loss)
    return count + 1, close, gain, loss


# ------------------------------------------------------------------ MACD
@njit(error_model="numpy", cache=True, inline="always")
def macd_load(state, params):
    """Bars seen, then the slow, fast and signal EMAs at state[1:4], [4:7], [7:10]."""
    return int(state[0]), _ema_slots(state, 1), _ema_slots(state, 4), _ema_slots(state, 7)


@njit(error_model="numpy", cache=True, inline="always")
def macd_store(state, params, scalars):
    count, slow_ema, fast_ema, signal_ema = scalars
    state[0] = count
    _ema_put(state, 1, slow_ema)
    _ema_put(state, 4, fast_ema)
    _ema_put(state, 7, signal_ema)


@njit(error_model="numpy", cache=True, inline="always")
def macd_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib MACD. The fast EMA starts at the slow EMA's first row, seeded with the SMA of the
    ``fast`` closes ending there; the signal EMA is seeded on the first ``signal`` MACD values."""
    fast = int(params[0])
    slow = int(params[1])
    signal = int(params[2])
    count, slow_ema, fast_ema, signal_ema = scalars
    out[0] = np.nan
    out[1] = np.nan
    out[2] = np.nan
    slow_ema, slow_value = _ema_feed(slow_ema, slow, close)
    if count >= slow - fast:
        fast_ema, fast_value = _ema_feed(fast_ema, fast, close)
        if count >= slow - 1:
            line = fast_value - slow_value
            signal_ema, signal_value = _ema_feed(signal_ema, signal, line)
            if count >= slow - 1 + signal - 1:
                out[0] = line
                out[1] = signal_value
                out[2] = line - signal_value
    return count + 1, slow_ema, fast_ema, signal_ema


def _macd_check(params: tuple) -> str | None:
    fast, slow, _ = params
    return None if fast < slow else f"fast ({fast}) must be smaller than slow ({slow})"


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
        deviation = np.sqrt(variance) if not variance < TALIB_EPSILON else 0.0
        out[0] = middle + deviation * params[1]
        out[1] = middle
        out[2] = middle - deviation * params[1]
    return sma, window


# ------------------------------------------------------------------ ROC, MOM
@njit(error_model="numpy", cache=True, inline="always")
def lag_load(state, params):
    """(bars seen, ring head); the ring of the last ``period`` closes is at state[2:]."""
    return int(state[0]), int(state[1])


@njit(error_model="numpy", cache=True, inline="always")
def lag_store(state, params, scalars):
    state[0] = scalars[0]
    state[1] = scalars[1]


@njit(error_model="numpy", cache=True, inline="always")
def roc_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib ROC: ((close / close[-period]) - 1) * 100, and 0.0 where close[-period] is 0."""
    period = int(params[0])
    count, head = scalars
    head, older = _lag_push(head, state, 2, period, close)
    if count < period:
        out[0] = np.nan
    elif older != 0.0:
        out[0] = ((close / older) - 1.0) * 100.0
    else:
        out[0] = 0.0
    return count + 1, head


@njit(error_model="numpy", cache=True, inline="always")
def mom_step(scalars, state, params, open_, high, low, close, volume, new_session, out):
    """TA-Lib MOM: close - close[-period]."""
    period = int(params[0])
    count, head = scalars
    head, older = _lag_push(head, state, 2, period, close)
    out[0] = close - older if count >= period else np.nan
    return count + 1, head


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
            out[0] = np.sqrt(_window_variance(window, period, 1))
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
            out[0] = (close - window[2]) / np.sqrt(variance)
    return window


# ------------------------------------------------------------------ the registry entries
def _kind(name, description, params, functions, state_size, lookback, formula, outputs=(), init=zero_init,
          check=None):
    """``functions`` = (step, load, store)."""
    step, load, store = functions
    extra = {"check": check} if check else {}
    return IndicatorKind(name=name, description=description, params=params, outputs=outputs,
                         inputs=("close",), state_size=state_size, init=init, load=load, store=store,
                         step=step, lookback=lookback, lookback_formula=formula, **extra)


CLOSE_KINDS: list[IndicatorKind] = [
    _kind("sma", "simple moving average (TA-Lib SMA)", _period(20), (sma_step, sma_load, sma_store), sma_state_size,
          lambda p: p[0] - 1, "period - 1", init=sma_init),
    _kind("ema", "exponential moving average seeded with an SMA (TA-Lib EMA)", _period(12),
          (ema_step, ema_load, ema_store),
          _fixed_state(3), lambda p: p[0] - 1, "period - 1"),
    _kind("wma", "linearly weighted moving average (TA-Lib WMA)", _period(20), (wma_step, wma_load, wma_store),
          _period_state(5), lambda p: p[0] - 1, "period - 1"),
    _kind("dema", "double exponential moving average (TA-Lib DEMA)", _period(20),
          (dema_step, dema_load, dema_store),
          _fixed_state(6), lambda p: 2 * (p[0] - 1), "2 * (period - 1)"),
    _kind("tema", "triple exponential moving average (TA-Lib TEMA)", _period(20),
          (tema_step, tema_load, tema_store),
          _fixed_state(9), lambda p: 3 * (p[0] - 1), "3 * (period - 1)"),
    _kind("rsi", "Wilder relative strength index, 0..100 (TA-Lib RSI)", _period(14),
          (rsi_step, rsi_load, rsi_store),
          _fixed_state(4), lambda p: p[0], "period"),
    _kind("macd", "MACD line, signal line and histogram (TA-Lib MACD)",
          (Param("fast", 12), Param("slow", 26), Param("signal", 9)), (macd_step, macd_load, macd_store), _fixed_state(10),
          lambda p: p[1] - 1 + p[2] - 1, "slow - 1 + signal - 1",
          outputs=("macd", "macd_signal", "macd_hist"), check=_macd_check),
    _kind("bollinger", "Bollinger bands: SMA +/- nbdev population standard deviations (TA-Lib BBANDS)",
          (Param("period", 20), Param("nbdev", 2.0, is_integer=False, low=0.0, high=100.0)),
          (bollinger_step, bollinger_load, bollinger_store), bollinger_state_size, lambda p: p[0] - 1, "period - 1",
          outputs=("bb_upper", "bb_middle", "bb_lower")),
    _kind("roc", "rate of change in percent, ((close / close[-period]) - 1) * 100 (TA-Lib ROC)",
          _period(10), (roc_step, lag_load, lag_store), _period_state(2), lambda p: p[0], "period"),
    _kind("mom", "momentum, close - close[-period] (TA-Lib MOM)", _period(10), (mom_step, lag_load, lag_store),
          _period_state(2), lambda p: p[0], "period"),
    _kind("volatility", "sample standard deviation of the last period simple returns (not annualised)",
          _period(20, low=2), (volatility_step, volatility_load, volatility_store),
          _period_state(2 + WINDOW_SLOTS), lambda p: p[0], "period"),
    _kind("zscore", "(close - mean) / population standard deviation over the last period closes",
          _period(20, low=2), (zscore_step, zscore_load, zscore_store), _period_state(WINDOW_SLOTS), lambda p: p[0] - 1, "period - 1"),
]
