"""Every indicator kind's CUDA panel kernel, run in numba's CUDA simulator, equals the CPU
``run_kind`` bit for bit (NaN positions included): default parameters and one other set, on a
small panel with a leading-NaN column, an interior NaN and a VWAP session reset."""
from __future__ import annotations

import numpy as np
import pytest

from utils.engine.cuda import target
from utils.engine.cuda.indicator_kernels import panel_kernel, run_kind_on_device
from utils.engine.indicators.kernels import run_kind
from utils.engine.indicators.kinds import KINDS

ROWS, COLS = 40, 3


def _panels() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(19)
    close = 100 + np.cumsum(rng.normal(size=(ROWS, COLS)), axis=0)
    high = close + rng.random((ROWS, COLS))
    low = close - rng.random((ROWS, COLS))
    open_ = close + rng.normal(scale=0.3, size=(ROWS, COLS))
    volume = rng.integers(100, 1000, size=(ROWS, COLS)).astype(np.float64)
    panels = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    for values in panels.values():
        values[:5, 1] = np.nan  # column 1 starts late: its first valid row is 5
    close[25, 2] = np.nan  # an interior NaN reaches the steps of column 2
    new_session = np.zeros(ROWS, dtype=np.bool_)
    new_session[[0, 20]] = True  # VWAP resets at row 20
    return panels, new_session


def _other_params(kind) -> tuple:
    """Shorter windows than the defaults (so 40 rows leave values), a different width."""
    params = tuple(max(int(p.low), 2, int(p.default) // 3 + 2) if p.is_integer else p.default * 0.75
                   for p in kind.params)
    assert kind.check(params) is None, (kind.name, params)
    return params


CASES = [(name, tuple(p.default for p in kind.params)) for name, kind in KINDS.items()]
CASES += [(name, _other_params(kind)) for name, kind in KINDS.items() if kind.params]


def test_the_simulator_is_on():
    assert target.simulated()


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}{list(p)}" for n, p in CASES])
def test_panel_kernel_is_bit_identical_to_the_cpu(name, params):
    kind = KINDS[name]
    panels, new_session = _panels()
    expected = run_kind(kind, params, panels, new_session).transpose(2, 0, 1)
    device = run_kind_on_device(kind, params, {k: target.to_device(v) for k, v in panels.items()},
                                target.to_device(new_session))
    got = target.to_host(device)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if kind.lookback(params) < ROWS - 5:  # (tema's default warm-up is longer than the panel)
        assert np.isfinite(got[:, -1, :]).any(), "the case should leave values, not only warm-up NaN"


def test_kernels_are_cached_per_kind():
    assert panel_kernel(KINDS["sma"]) is panel_kernel(KINDS["sma"])
    assert target.device_function(KINDS["sma"].step) is target.device_function(KINDS["sma"].step)


def test_more_columns_than_a_block():
    """Columns spread over several blocks (the bounds check of the last one)."""
    kind, params = KINDS["ema"], (3,)
    close = np.cumsum(np.random.default_rng(3).normal(size=(6, 5)), axis=0)
    expected = run_kind(kind, params, {"close": close}).transpose(2, 0, 1)
    blocks, threads = target.launch_config(5, threads_per_block=2)
    assert (blocks, threads) == (3, 2)
    got = target.to_host(run_kind_on_device(kind, params, {"close": close}))
    np.testing.assert_array_equal(got, expected)


def test_launch_config():
    assert target.launch_config(1) == (1, 1)
    assert target.launch_config(1000) == (8, 128)
    assert target.launch_config(0) == (1, 1)


def _degenerate_panels() -> dict[str, np.ndarray]:
    """Flat prices, zero prices and volumes, a fall to zero, alternating zeros: the steps'
    zero-range, zero-volume and division-by-zero branches."""
    close = np.full((30, 4), 5.0)
    close[:, 1] = 0.0
    close[10:, 2] = np.linspace(1.0, 0.0, 20)
    close[:, 3] = np.where(np.arange(30) % 2, 0.0, 3.0)
    volume = np.zeros_like(close)
    volume[:, 3] = 1.0
    return {"open": close.copy(), "high": close.copy(), "low": close.copy(), "close": close, "volume": volume}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy scalars in the simulator's threads: 0/0
@pytest.mark.parametrize("name", list(KINDS))
def test_degenerate_inputs_are_bit_identical(name):
    kind = KINDS[name]
    params = tuple(max(2, int(p.default) // 4) if p.is_integer else p.default for p in kind.params)
    panels = _degenerate_panels()
    with np.errstate(all="ignore"):
        expected = run_kind(kind, params, panels).transpose(2, 0, 1)
        got = target.to_host(run_kind_on_device(kind, params, panels))
    np.testing.assert_array_equal(got, expected)


def test_launches_from_several_threads_take_turns():
    """A worker runs jobs in threads; the simulator runs one kernel at a time (launches queue)."""
    from concurrent.futures import ThreadPoolExecutor

    panels, new_session = _panels()
    kinds = [KINDS[name] for name in ("sma", "rsi", "atr", "vwap")]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda kind: target.to_host(run_kind_on_device(
            kind, tuple(p.default for p in kind.params), panels, new_session)), kinds))
    for kind, got in zip(kinds, results):
        expected = run_kind(kind, tuple(p.default for p in kind.params), panels, new_session).transpose(2, 0, 1)
        np.testing.assert_array_equal(got, expected)
