"""Parity of the range/volume step kinds (reading high, low or volume) with TA-Lib, through run_panel.

NaN positions must be identical and values within 1e-9 * max(1, |ref|); on the TA-Lib build
the project pins (C library 0.8.x) every kind is also checked to be bit-identical. VWAP has no
TA-Lib function and is checked against pandas (session) and exact window sums (rolling).
"""
import numpy as np
import pandas as pd
import pytest

from tests.references import reference_unavailable, require_reference

talib = require_reference("talib")
from talib import abstract  # noqa: E402

from tests.indicator_helpers import (RANGE_KINDS, compute_panel, first_valid_rows,  # noqa: E402
                                     output_lookbacks, run_panel)
from utils.engine.indicators.kinds import KINDS as RANGE_KINDS_BY_NAME  # noqa: E402
from utils.engine.indicators.step_core import IndicatorKind  # noqa: E402
from tests.parity.tolerance import assert_matches  # noqa: E402

N_BARS = 10_000
TALIB_C_VERSION = getattr(talib, "__ta_version__", b"").decode(errors="replace")


# ----------------------------------------------------------------------------- data
def ohlcv(seed=7, length=N_BARS, drift=0.0001, vol=0.012, price=100.0):
    """Seeded random-walk close; open near the previous close; high/low bracket open and close."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(drift, vol, length)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0.0, vol / 5, length))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, vol / 3, length)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, vol / 3, length)))
    volume = rng.lognormal(10.0, 1.0, length)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def with_leading_nans(data, counts):
    out = {name: values.copy() for name, values in data.items()}
    for name, count in counts.items():
        out[name][:count] = np.nan
    return out


def tick_rounded(data, tick=0.25):
    """Prices on a tick grid (ties, repeated extremes), a flat stretch and zero volumes."""
    out = {name: np.round(values / tick) * tick for name, values in data.items() if name != "volume"}
    out["volume"] = np.round(data["volume"] / 1e4)
    out["volume"][::7] = 0.0
    for name in ("open", "high", "low", "close"):
        out[name][4000:4120] = 100.0
    out["volume"][6000:6100] = 0.0
    return out


BASE = ohlcv()
DATASETS = {
    "walk": BASE,
    "leading_nans": with_leading_nans(
        BASE, {"high": 30, "low": 25, "close": 41, "volume": 47}),
    "ticks_flat_zero_volume": tick_rounded(ohlcv(seed=11)),
    "small_prices": {name: (v * 1e-6 if name != "volume" else v) for name, v in BASE.items()},
}


@pytest.fixture(params=sorted(DATASETS))
def data(request):
    return DATASETS[request.param]


# ----------------------------------------------------------------------------- helpers
def run_kind(name, params, data, new_session=None):
    """The kind over one column via run_panel: (time, n_outputs)."""
    kind = RANGE_KINDS_BY_NAME[name]
    result = compute_panel(kind, params, open_=data["open"], high=data["high"], low=data["low"],
                           close=data["close"], volume=data["volume"], new_session=new_session)
    assert result.shape == (data["close"].shape[0], 1, kind.n_outputs)
    return result[:, 0, :]


def talib_reference(name, params, data):
    """TA-Lib's outputs for one of our kinds, in our output order."""
    h, l, c, v = data["high"], data["low"], data["close"], data["volume"]
    if name == "atr":
        return [talib.ATR(h, l, c, *params)]
    if name == "natr":
        return [talib.NATR(h, l, c, *params)]
    if name == "stoch":
        fastk, slowk, slowd = params
        return list(talib.STOCH(h, l, c, fastk, slowk, 0, slowd, 0))
    if name == "willr":
        return [talib.WILLR(h, l, c, *params)]
    if name == "cci":
        return [talib.CCI(h, l, c, *params)]
    if name == "adx":
        return [talib.ADX(h, l, c, *params), talib.PLUS_DI(h, l, c, *params),
                talib.MINUS_DI(h, l, c, *params)]
    if name == "obv":
        return [talib.OBV(c, v)]
    if name == "mfi":
        return [talib.MFI(h, l, c, v, *params)]
    raise KeyError(name)


def talib_lookbacks(name, params):
    """TA-Lib's own *_Lookback for every output of our kind."""
    if name == "stoch":
        fastk, slowk, slowd = params
        fn = abstract.Function("STOCH", fastk_period=fastk, slowk_period=slowk, slowk_matype=0,
                               slowd_period=slowd, slowd_matype=0)
        return (fn.lookback,) * 2
    if name == "adx":
        return tuple(abstract.Function(f, timeperiod=params[0]).lookback
                     for f in ("ADX", "PLUS_DI", "MINUS_DI"))
    if name == "obv":
        return (abstract.Function("OBV").lookback,)
    return (abstract.Function(name.upper(), timeperiod=params[0]).lookback,)


CASES = [
    ("atr", (14,)), ("atr", (1,)), ("atr", (2,)), ("atr", (50,)),
    ("natr", (14,)), ("natr", (1,)), ("natr", (5,)),
    ("stoch", (14, 3, 3)), ("stoch", (5, 3, 3)), ("stoch", (1, 1, 1)), ("stoch", (20, 5, 7)),
    ("stoch", (3, 1, 4)),
    ("willr", (14,)), ("willr", (2,)), ("willr", (60,)),
    ("cci", (20,)), ("cci", (2,)), ("cci", (14,)), ("cci", (100,)),
    ("adx", (14,)), ("adx", (2,)), ("adx", (5,)), ("adx", (40,)),
    ("obv", ()),
    ("mfi", (14,)), ("mfi", (2,)), ("mfi", (30,)),
]
CASE_IDS = [f"{name}{'_'.join(map(str, params))}" for name, params in CASES]


# ----------------------------------------------------------------------------- TA-Lib parity
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_matches_talib(data, name, params):
    ours = run_kind(name, params, data)
    for k, reference in enumerate(talib_reference(name, params, data)):
        assert_matches(ours[:, k], reference)


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_bit_identical_to_talib(data, name, params):
    if not TALIB_C_VERSION.startswith("0.8"):  # requirements-test.txt pins it: in CI another build is a failure
        reference_unavailable(f"bit-exactness is pinned to TA-Lib C 0.8.x, found {TALIB_C_VERSION!r}")
    ours = run_kind(name, params, data)
    for k, reference in enumerate(talib_reference(name, params, data)):
        np.testing.assert_array_equal(ours[:, k], reference)


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_lookback_matches_talib_and_nan_prefix(name, params):
    kind = RANGE_KINDS_BY_NAME[name]
    per_output = output_lookbacks(kind, params)
    assert per_output == talib_lookbacks(name, params)
    assert kind.lookback(params) == max(per_output)
    data = DATASETS["leading_nans"]
    first = int(first_valid_rows(kind, data)[0])
    ours = run_kind(name, params, data)
    for k, lookback in enumerate(per_output):
        valid = np.flatnonzero(~np.isnan(ours[:, k]))
        assert valid[0] == first + lookback


def test_panel_columns_start_at_their_own_first_valid_row():
    """Several symbols at once: each column equals TA-Lib run on that column alone."""
    columns = [DATASETS["walk"], DATASETS["leading_nans"], ohlcv(seed=99),
               with_leading_nans(ohlcv(seed=5), {"close": 500, "volume": 3})]
    panel = {name: np.column_stack([c[name] for c in columns]) for name in BASE}
    for name, params in [("adx", (14,)), ("stoch", (14, 3, 3)), ("mfi", (14,)), ("obv", ()),
                         ("cci", (20,)), ("natr", (14,))]:
        kind = RANGE_KINDS_BY_NAME[name]
        result = compute_panel(kind, params, open_=panel["open"], high=panel["high"],
                               low=panel["low"], close=panel["close"], volume=panel["volume"])
        for col, column in enumerate(columns):
            for k, reference in enumerate(talib_reference(name, params, column)):
                assert_matches(result[:, col, k], reference)


def test_run_panel_directly_with_explicit_first_rows():
    """The raw step_core panel driver with explicit first rows gives the same answer."""
    kind = RANGE_KINDS_BY_NAME["atr"]
    data = DATASETS["leading_nans"]
    arrays = {name: np.ascontiguousarray(data[name][:, None]) for name in BASE}
    first_rows = first_valid_rows(kind, arrays)
    assert first_rows.tolist() == [41]
    out = run_panel(kind, kind.state_size((14,)), np.array([14.0]),
                    arrays["open"], arrays["high"], arrays["low"], arrays["close"],
                    arrays["volume"], np.zeros(N_BARS, dtype=np.bool_), first_rows, 1)
    assert_matches(out[:, 0, 0], talib.ATR(data["high"], data["low"], data["close"], 14))


@pytest.mark.parametrize("length", [1, 5, 14, 27, 28])
def test_short_inputs_like_talib(length):
    data = {name: values[:length] for name, values in BASE.items()}
    for name, params in [("atr", (14,)), ("natr", (14,)), ("stoch", (14, 3, 3)),
                         ("willr", (14,)), ("cci", (20,)), ("adx", (14,)), ("obv", ()),
                         ("mfi", (14,))]:
        ours = run_kind(name, params, data)
        for k, reference in enumerate(talib_reference(name, params, data)):
            assert_matches(ours[:, k], reference)


def test_all_nan_inputs_give_all_nan():
    data = {name: np.full(50, np.nan) for name in BASE}
    for kind in RANGE_KINDS:
        params = tuple(p.default for p in kind.params)
        assert np.isnan(run_kind(kind.name, params, data)).all()


def test_flat_window_and_zero_volume_read_like_talib():
    """A constant price: STOCH/WILLR/CCI read 0 on a flat window, MFI 0 with no money flow."""
    n = 200
    flat = {"open": np.full(n, 50.0), "high": np.full(n, 50.0), "low": np.full(n, 50.0),
            "close": np.full(n, 50.0), "volume": np.zeros(n)}
    for name, params in [("stoch", (14, 3, 3)), ("willr", (14,)), ("cci", (20,)),
                         ("mfi", (14,)), ("adx", (14,)), ("natr", (14,)), ("atr", (14,))]:
        ours = run_kind(name, params, flat)
        for k, reference in enumerate(talib_reference(name, params, flat)):
            np.testing.assert_array_equal(ours[:, k], reference)
    assert np.isnan(run_kind("vwap", (0,), flat)).all()  # no volume: no VWAP


@pytest.mark.parametrize("kind", RANGE_KINDS, ids=lambda k: k.name)
def test_param_bounds_are_accepted_by_talib(kind):
    """The lowest parameter values we allow are ones TA-Lib accepts (and gives our result)."""
    if kind.name == "vwap" or not kind.params:
        return
    params = tuple(int(p.low) for p in kind.params)
    data = {name: values[:300] for name, values in BASE.items()}
    ours = run_kind(kind.name, params, data)
    for k, reference in enumerate(talib_reference(kind.name, params, data)):
        assert_matches(ours[:, k], reference)


def test_kind_metadata():
    names = [kind.name for kind in RANGE_KINDS]
    assert names == ["atr", "natr", "stoch", "willr", "cci", "adx", "obv", "mfi", "vwap"]
    kinds = RANGE_KINDS_BY_NAME
    assert kinds["stoch"].outputs == ("stoch_k", "stoch_d")
    assert kinds["adx"].outputs == ("adx", "plus_di", "minus_di")
    for name in ("atr", "natr", "willr", "cci", "obv", "mfi", "vwap"):
        assert kinds[name].outputs == () and kinds[name].n_outputs == 1
    assert kinds["obv"].inputs == ("close", "volume")
    assert kinds["mfi"].inputs == ("high", "low", "close", "volume")
    assert kinds["vwap"].inputs == ("high", "low", "close", "volume")
    for kind in RANGE_KINDS:
        assert isinstance(kind, IndicatorKind)
        defaults = tuple(p.default for p in kind.params)
        assert kind.check(defaults) is None
        for p in kind.params:
            assert p.low <= p.default <= p.high
    assert [p.default for p in kinds["stoch"].params] == [14, 3, 3]
    assert kinds["cci"].params[0].default == 20
    assert kinds["vwap"].params[0].default == 0 and kinds["vwap"].params[0].low == 0


# ----------------------------------------------------------------------------- VWAP
def sessions_for(length, seed=3):
    """Minute bars with irregular sessions (days of 200..500 bars), as a day label per bar."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(200, 500, size=length // 200 + 1)
    day = np.repeat(np.arange(lengths.shape[0]), lengths)[:length]
    stamps = pd.Timestamp("2024-01-02 09:30") + pd.to_timedelta(day, unit="D") \
        + pd.to_timedelta(np.arange(length) - np.searchsorted(day, day), unit="min")
    return pd.DatetimeIndex(stamps)


def session_vwap_reference(data, stamps):
    frame = pd.DataFrame({"pv": (data["high"] + data["low"] + data["close"]) / 3.0 * data["volume"],
                          "v": data["volume"]}, index=stamps)
    grouped = frame.groupby(frame.index.normalize())
    cum_pv = grouped["pv"].cumsum()
    cum_v = grouped["v"].cumsum()
    return (cum_pv / cum_v.where(cum_v != 0.0)).to_numpy()


def new_session_flags(stamps):
    day = stamps.normalize().to_numpy()
    return np.concatenate([[True], day[1:] != day[:-1]])


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_session_vwap_matches_pandas_groupby(dataset):
    data = {name: values.copy() for name, values in DATASETS[dataset].items()}
    stamps = sessions_for(N_BARS)
    flags = new_session_flags(stamps)
    starts = np.flatnonzero(flags)
    data["volume"][starts[3]:starts[3] + 5] = 0.0  # a session opening without volume
    ours = run_kind("vwap", (0,), data, new_session=flags)[:, 0]
    reference = session_vwap_reference(data, stamps)
    assert_matches(ours, reference)
    assert np.isnan(ours[starts[3]:starts[3] + 5]).all()
    assert not np.isnan(ours[starts[3] + 5])


@pytest.mark.parametrize("window", [1, 2, 20, 390, 2000])
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_rolling_vwap_matches_window_sums(dataset, window):
    data = DATASETS[dataset]
    typical = (data["high"] + data["low"] + data["close"]) / 3.0
    pv = np.lib.stride_tricks.sliding_window_view(typical * data["volume"], window).sum(axis=1)
    v = np.lib.stride_tricks.sliding_window_view(data["volume"], window).sum(axis=1)
    reference = np.full(N_BARS, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        reference[window - 1:] = np.where(v != 0.0, pv / v, np.nan)
    flags = new_session_flags(sessions_for(N_BARS))  # rolling VWAP ignores sessions
    ours = run_kind("vwap", (window,), data, new_session=flags)[:, 0]
    assert_matches(ours, reference, 1e-12)


def test_rolling_vwap_is_nan_on_an_all_zero_volume_window():
    data = {name: values.copy() for name, values in BASE.items()}
    data["volume"][1000:1100] = 0.0
    ours = run_kind("vwap", (20,), data)[:, 0]
    assert np.isnan(ours[1019:1100]).all()
    assert not np.isnan(ours[1018]) and not np.isnan(ours[1100])
    assert ours[1100] == pytest.approx((data["high"][1100] + data["low"][1100]
                                        + data["close"][1100]) / 3.0, rel=1e-12)
