"""Streaming state = batch, bit for bit: one tick at a time, in random chunks, across snapshots."""
import numpy as np
import pytest

from utils.engine.indicators import MissingInputError, compute_features
from tests.indicator_helpers import CLOSE_KINDS
from utils.engine.indicators.streaming import StreamState

LENGTH = 20_000
# Every close kind at its defaults, plus a second parameter set for the ones with state rings.
NAMES = [kind.name for kind in CLOSE_KINDS] + ["sma_7", "wma_5", "rsi_3", "macd_3_5_2", "bollinger_9_1.5",
                                               "roc_1", "volatility_3", "zscore_4", "dema_2", "tema_3"]


def series(seed=21, length=LENGTH, leading_nans=15):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0001, 0.01, length)))
    close[:leading_nans] = np.nan
    return close


def assert_bit_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, values in expected.items():
        assert np.array_equal(actual[key], values, equal_nan=True), key


@pytest.fixture(scope="module")
def close():
    return series()


@pytest.fixture(scope="module")
def batch(close):
    return compute_features(np, NAMES, close)


@pytest.mark.parametrize("name", NAMES)
def test_single_ticks_equal_batch(close, batch, name):
    state = StreamState.create([name])
    rows = [state.update(close=value) for value in close.tolist()]
    streamed = {key: np.array([row[key] for row in rows]) for key in state.output_keys}
    assert_bit_equal(streamed, {key: batch[key] for key in state.output_keys})
    assert state.ticks_seen == LENGTH


def test_random_chunks_and_snapshot_round_trips_equal_batch(close, batch):
    rng = np.random.default_rng(4)
    state = StreamState.create(NAMES)
    pieces: dict[str, list] = {key: [] for key in batch}
    at = 0
    while at < LENGTH:
        size = int(rng.choice([1, 2, 7, 100, 1000, 4999]))
        if rng.random() < 0.3:  # single-tick form in between chunks
            for key, value in state.update(close=float(close[at])).items():
                pieces[key].append(np.array([value]))
            at += 1
            continue
        chunk = close[at:at + size]
        for key, values in state.update_many(close=chunk).items():
            pieces[key].append(values)
        at += chunk.shape[0]
        if rng.random() < 0.2:
            state = StreamState.from_bytes(NAMES, state.to_bytes())
    assert_bit_equal({key: np.concatenate(parts) for key, parts in pieces.items()}, batch)
    assert state.ticks_seen == LENGTH


def test_snapshot_in_the_middle_continues_exactly(close, batch):
    state = StreamState.create(NAMES)
    first = state.update_many(close=close[:12_345])
    snapshot = state.to_bytes()
    assert b"pickle" not in snapshot and snapshot[:4] == b"IDXS"
    resumed = StreamState.from_bytes(NAMES, snapshot)
    assert resumed.ticks_seen == 12_345 and resumed.to_bytes() == snapshot  # states and last outputs
    second = resumed.update_many(close=close[12_345:])
    assert_bit_equal({key: np.concatenate([first[key], second[key]]) for key in batch}, batch)


def test_bad_snapshots_are_rejected():
    data = StreamState.create(["sma_5"]).to_bytes()
    for names, blob in [(["sma_6"], data), (["sma_5"], data[:-8]), (["sma_5"], b"nope" + data[4:]),
                        (["sma_5", "rsi"], data)]:
        with pytest.raises(ValueError):
            StreamState.from_bytes(names, blob)


def test_positional_bar_form_and_missing_inputs():
    state = StreamState.create(["sma_2"])
    assert np.isnan(state.update(1.0, 1.0, 1.0, 1.0, 10.0, True)["sma_2"])
    assert state.update(3.0, 3.0, 3.0, 3.0, 10.0, False)["sma_2"] == 2.0
    with pytest.raises(MissingInputError, match="close"):
        state.update(volume=5.0)
    with pytest.raises(MissingInputError, match="close"):
        state.update_many(volume=np.ones(3))
    empty = state.update_many(close=np.empty(0))
    assert empty["sma_2"].shape == (0,) and state.ticks_seen == 2
