"""Streaming identity of the range/volume step kinds: chunks of a stream == the batch, bit for bit.

``run_series`` continuing one state over random-sized chunks (and one bar at a time) must give
exactly what ``run_panel`` gives over the whole series, for every kind that reads high, low or volume.
"""
import zlib

import numpy as np
import pytest

from utils.engine.indicators.step_core import run_series
from tests.indicator_helpers import RANGE_KINDS, compute_panel, first_valid_rows
from utils.engine.indicators.kinds import KINDS as RANGE_KINDS_BY_NAME

N_BARS = 10_000
PREFIX = 2_000


def make_data(seed=21, length=N_BARS, leading_nans=False):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, length)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0.0, 0.002, length))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, length)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, length)))
    volume = rng.lognormal(10.0, 1.0, length)
    volume[rng.random(length) < 0.02] = 0.0
    high[3000:3050] = low[3000:3050] = close[3000:3050] = open_[3000:3050] = 80.0  # flat
    session_lengths = rng.integers(150, 450, size=length // 150 + 1)
    starts = np.cumsum(np.concatenate([[0], session_lengths]))
    new_session = np.zeros(length, dtype=np.bool_)
    new_session[starts[starts < length]] = True
    data = {"open": open_, "high": high, "low": low, "close": close, "volume": volume,
            "new_session": new_session}
    if leading_nans:
        data["high"][:17] = np.nan
        data["close"][:23] = np.nan
        data["volume"][:29] = np.nan
    return data


DATA = {"clean": make_data(), "leading_nans": make_data(seed=5, leading_nans=True)}

CASES = [
    ("atr", (14,)), ("atr", (1,)), ("natr", (14,)), ("natr", (1,)),
    ("stoch", (14, 3, 3)), ("stoch", (1, 1, 1)), ("stoch", (9, 4, 2)),
    ("willr", (14,)), ("willr", (2,)),
    ("cci", (20,)), ("cci", (3,)),
    ("adx", (14,)), ("adx", (2,)),
    ("obv", ()),
    ("mfi", (14,)), ("mfi", (2,)),
    ("vwap", (0,)), ("vwap", (1,)), ("vwap", (20,)), ("vwap", (390,)),
]
CASE_IDS = [f"{name}{'_'.join(map(str, params))}" for name, params in CASES]


def test_every_kind_is_covered():
    assert {name for name, _ in CASES} == {kind.name for kind in RANGE_KINDS}


def batch(kind, params, data):
    result = compute_panel(kind, params, open_=data["open"], high=data["high"], low=data["low"],
                           close=data["close"], volume=data["volume"],
                           new_session=data["new_session"])
    return result[:, 0, :]


def fresh_state(kind, params):
    state = np.empty(kind.state_size(params))
    kind.init(state, np.asarray(params, dtype=np.float64))
    return state


def stream(kind, params, data, state, bounds):
    """run_series over consecutive [a, b) chunks, continuing ``state``; NaN before the start."""
    param_array = np.asarray(params, dtype=np.float64)
    total = bounds[-1]
    out = np.full((total, kind.n_outputs), np.nan)
    for a, b in zip(bounds[:-1], bounds[1:]):
        chunk = np.empty((b - a, kind.n_outputs))
        run_series(kind, state, param_array, data["open"][a:b], data["high"][a:b],
                   data["low"][a:b], data["close"][a:b], data["volume"][a:b],
                   data["new_session"][a:b], chunk)
        out[a:b] = chunk
    return out


def random_bounds(start, stop, rng, max_chunk=700):
    bounds = [start]
    while bounds[-1] < stop:
        bounds.append(min(stop, bounds[-1] + int(rng.integers(1, max_chunk))))
    return bounds


def first_row(kind, data):
    return int(first_valid_rows(kind, {name: data[name] for name in kind.inputs})[0])


@pytest.mark.parametrize("dataset", sorted(DATA))
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_random_chunks_equal_batch_bit_for_bit(dataset, name, params):
    kind = RANGE_KINDS_BY_NAME[name]
    data = DATA[dataset]
    expected = batch(kind, params, data)
    start = first_row(kind, data)
    rng = np.random.default_rng(zlib.crc32(f"{dataset}/{name}/{params}".encode()))
    for _ in range(3):
        got = stream(kind, params, data, fresh_state(kind, params),
                     random_bounds(start, N_BARS, rng))
        assert np.array_equal(got, expected, equal_nan=True)


@pytest.mark.parametrize("dataset", sorted(DATA))
@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_one_bar_at_a_time_equals_batch_bit_for_bit(dataset, name, params):
    kind = RANGE_KINDS_BY_NAME[name]
    data = {key: values[:PREFIX] for key, values in DATA[dataset].items()}
    expected = batch(kind, params, data)
    start = first_row(kind, data)
    got = stream(kind, params, data, fresh_state(kind, params), list(range(start, PREFIX + 1)))
    assert np.array_equal(got, expected, equal_nan=True)


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_state_snapshot_resumes_identically(name, params):
    """The state is a plain array: a copy taken mid-stream continues exactly like the original."""
    kind = RANGE_KINDS_BY_NAME[name]
    data = DATA["clean"]
    expected = batch(kind, params, data)
    state = fresh_state(kind, params)
    head = stream(kind, params, data, state, [0, 4321])
    snapshot = state.copy()
    tail = stream(kind, params, data, snapshot, [4321, N_BARS])
    assert np.array_equal(head[:4321], expected[:4321], equal_nan=True)
    assert np.array_equal(tail[4321:], expected[4321:], equal_nan=True)


def test_session_vwap_resets_on_new_session():
    kind = RANGE_KINDS_BY_NAME["vwap"]
    n = 6
    data = {"open": np.ones(n), "high": np.array([3.0, 6.0, 9.0, 3.0, 6.0, 9.0]),
            "low": np.array([3.0, 6.0, 9.0, 3.0, 6.0, 9.0]),
            "close": np.array([3.0, 6.0, 9.0, 3.0, 6.0, 9.0]),
            "volume": np.array([1.0, 1.0, 2.0, 0.0, 1.0, 1.0]),
            "new_session": np.array([True, False, False, True, False, False])}
    got = batch(kind, (0,), data)[:, 0]
    np.testing.assert_array_equal(got[:3], [3.0, 4.5, 6.75])
    assert np.isnan(got[3])
    np.testing.assert_array_equal(got[4:], [6.0, 7.5])
