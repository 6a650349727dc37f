"""The array-module sleeve simulator (GPU sweep path) against the numba reference kernel."""
import itertools
import zlib

import numpy as np
import pytest

from utils.engine.backend import cpu_backend
from utils.engine.backtest import validate_strategy_config
from utils.engine.backtest.simulate import (FULL_EQUITY, T_PNL, T_REASON, TRADE_COLUMNS, SimulationConfig,
                                            simulate_sleeve)
from utils.engine.backtest.sweep import sweep_panels
from utils.engine.backtest.vector_sim import curve_metrics, simulate_columns
from utils.engine.metrics import performance_metrics

try:  # a GPU run of the same checks where CuPy and a device are present
    import cupy
    cupy.cuda.runtime.getDeviceCount()
except Exception:  # not installed, or no usable device
    cupy = None

MODULES = [pytest.param(np, id="numpy"),
           pytest.param(cupy, id="cupy", marks=pytest.mark.skipif(cupy is None, reason="CuPy/GPU not available"))]


def make_bars(rng, bars, columns, nan_lead=True):
    """GBM closes, opens near the previous close, highs/lows around both; NaN leading gaps on some
    columns and a few scattered NaN bars."""
    returns = rng.normal(0.0003, 0.02, (bars, columns))
    close = 50.0 * np.exp(np.cumsum(returns, axis=0)) * rng.uniform(0.5, 2.0, columns)
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.01, (bars, columns)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, (bars, columns)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, (bars, columns)))
    if nan_lead:
        for column in range(0, columns, 3):
            lead = rng.integers(1, bars // 3)
            for panel in (open_, high, low, close):
                panel[:lead, column] = np.nan
        holes = rng.random((bars, columns)) < 0.01
        open_[holes] = np.nan
        high[rng.random((bars, columns)) < 0.005] = np.nan
        low[rng.random((bars, columns)) < 0.005] = np.nan
        close[rng.random((bars, columns)) < 0.005] = np.nan
    return open_, high, low, close


def make_targets(rng, bars, columns, change=0.12):
    """-1/0/1 levels held for random spells, with a few NaN."""
    draws = rng.choice([-1.0, 0.0, 1.0], size=(bars, columns))
    switch = rng.random((bars, columns)) < change
    switch[0] = True
    index = np.where(switch, np.arange(bars)[:, None], 0)
    np.maximum.accumulate(index, axis=0, out=index)
    target = np.take_along_axis(draws, index, axis=0)
    target[rng.random((bars, columns)) < 0.01] = np.nan
    return target


def reference(open_, high, low, close, target, fraction, capital, costs, fill_at_close, allow_short, start):
    """``simulate_sleeve`` per column and the statistics ``simulate_columns`` reports."""
    bars, columns = close.shape
    reported = bars - start
    out = {key: [] for key in ("equity", "num_trades", "wins", "gross_profit", "gross_loss", "traded",
                               "exposure_bars", "has_open", "shares")}
    trades = np.empty((reported * 2 + 2, TRADE_COLUMNS))
    for c in range(columns):
        equity, shares = np.empty(reported), np.empty(reported)
        col = [np.ascontiguousarray(panel[:, c]) for panel in (open_, high, low, close, target, fraction)]
        n, has_open, traded = simulate_sleeve(*col, capital, costs, fill_at_close, allow_short, start, equity,
                                              shares, trades, c)
        table = trades[:n]
        pnl = table[table[:, T_REASON] != 4, T_PNL]
        positive, negative = pnl[pnl > 0], -pnl[pnl < 0]
        out["equity"].append(equity)
        out["num_trades"].append(len(pnl))
        out["wins"].append(len(positive))
        out["gross_profit"].append(np.cumsum(positive)[-1] if len(positive) else 0.0)  # in trade order
        out["gross_loss"].append(np.cumsum(negative)[-1] if len(negative) else 0.0)
        out["traded"].append(traded)
        out["exposure_bars"].append(int((shares != 0).sum()))
        out["has_open"].append(bool(has_open))
        out["shares"].append(shares[-1])
    return {key: np.array(value).T if key == "equity" else np.array(value) for key, value in out.items()}


def to_host(values):
    return values.get() if hasattr(values, "get") else np.asarray(values)


def assert_matches(got, want, exact=False):
    got = {key: to_host(value) for key, value in got.items()}
    for key in ("num_trades", "wins", "exposure_bars", "has_open"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    for key in ("equity", "gross_profit", "gross_loss", "traded", "shares"):
        if exact:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-9, err_msg=key)


COSTS = {
    "free": {},
    "rate": {"commission_rate": 0.001},
    "rate_min": {"commission_rate": 0.0005, "commission_min": 4.0},
    "min_only": {"commission_min": 2.5},
    "slip_spread_borrow": {"commission_rate": 0.0008, "slippage": 0.0007, "spread": 0.0012, "borrow_rate": 0.5},
}
STOPS = {
    "none": {},
    "stop_loss": {"stop_loss": 0.03},
    "take_profit": {"take_profit": 0.04},
    "trailing": {"trailing_stop": 0.05},
    "all": {"stop_loss": 0.04, "take_profit": 0.06, "trailing_stop": 0.03},
}
SIZINGS = ("all_in", "percent", "fixed_cash", "varying")
CAPITAL = 10_000.0


def fractions_for(sizing, fill, rng, shape):
    if sizing == "percent":
        return np.full(shape, 0.5)
    if sizing == "varying":  # volatility-target-like: per bar, some zero or NaN
        fraction = rng.uniform(0.05, 1.0, shape)
        fraction[rng.random(shape) < 0.05] = 0.0
        fraction[rng.random(shape) < 0.02] = np.nan
        return fraction
    return np.full(shape, FULL_EQUITY if fill == "next_open" else 1.0)


def run_case(xp, fill, short, costs, stops, sizing, seed, bars=160, columns=24, start=7, exact=False):
    rng = np.random.default_rng(seed)
    open_, high, low, close = make_bars(rng, bars, columns)
    target = make_targets(rng, bars, columns)
    fraction = fractions_for(sizing, fill, rng, close.shape)
    config = SimulationConfig(fill=fill, allow_short=short, fixed_cash=3_000.0 if sizing == "fixed_cash" else 0.0,
                              **COSTS[costs], **STOPS[stops])
    vector = config.cost_vector()
    want = reference(open_, high, low, close, target, fraction, CAPITAL, vector, fill == "close", short, start)
    assert want["num_trades"].sum() > columns  # the case trades
    device = [xp.asarray(panel) for panel in (open_, high, low, close, target, fraction)]
    got = simulate_columns(xp, *device, CAPITAL, vector, fill == "close", short, start)
    assert_matches(got, want, exact=exact)
    return got, want


@pytest.mark.parametrize("xp", MODULES)
@pytest.mark.parametrize("fill,short,costs,stops",
                         list(itertools.product(("next_open", "close"), (False, True), COSTS, STOPS)))
def test_matches_numba_kernel(xp, fill, short, costs, stops):
    seed = zlib.crc32(repr((fill, short, costs, stops)).encode())
    sizing = SIZINGS[seed % len(SIZINGS)]
    run_case(xp, fill, short, costs, stops, sizing, seed)


@pytest.mark.parametrize("xp", MODULES)
@pytest.mark.parametrize("fill,short,sizing", list(itertools.product(("next_open", "close"), (False, True), SIZINGS)))
def test_sizing_with_all_costs_and_stops(xp, fill, short, sizing):
    rng_seed = 1000 + SIZINGS.index(sizing) * 4 + (fill == "close") * 2 + short
    for costs in ("rate_min", "slip_spread_borrow"):
        run_case(xp, fill, short, costs, "all", sizing, rng_seed)


@pytest.mark.parametrize("fill", ("next_open", "close"))
def test_numpy_route_is_bit_equal(fill):
    """Same operations in the same order: on NumPy the curves are identical, not just close."""
    run_case(np, fill, True, "slip_spread_borrow", "all", "varying", 99, exact=True)
    run_case(np, fill, False, "rate_min", "trailing", "fixed_cash", 98, exact=True)


@pytest.mark.parametrize("xp", MODULES)
def test_group_layout_broadcasts_bars_and_sums_groups(xp):
    rng = np.random.default_rng(5)
    bars, symbols, groups = 120, 7, 5
    open_, high, low, close = make_bars(rng, bars, symbols)
    targets = np.stack([make_targets(rng, bars, symbols) for _ in range(groups)], axis=1)  # (T, G, S)
    fraction = np.full((bars, symbols), FULL_EQUITY)
    costs = SimulationConfig(commission_rate=0.001, stop_loss=0.05, allow_short=True).cost_vector()
    start = 3
    got = simulate_columns(xp, *(xp.asarray(p) for p in (open_, high, low, close)), xp.asarray(np.sign(
        np.nan_to_num(targets)).astype(np.int8)), xp.asarray(fraction), CAPITAL, costs, False, True, start,
        groups=symbols, keep_columns=True)
    flat = lambda panel: np.repeat(panel[:, None, :], groups, axis=1).reshape(bars, -1)  # noqa: E731
    want = reference(flat(open_), flat(high), flat(low), flat(close), targets.reshape(bars, -1),
                     flat(fraction), CAPITAL, costs, False, True, start)
    shaped = {key: to_host(got[key]).reshape(want[key].shape) for key in want}
    assert_matches(shaped, want)
    per_symbol = want["equity"].reshape(-1, groups, symbols)
    np.testing.assert_allclose(to_host(got["group_equity"]), per_symbol.sum(axis=2), rtol=1e-12)
    any_held = np.zeros(groups, dtype=int)
    for g in range(groups):
        shares = np.empty((symbols, bars - start))
        for s in range(symbols):
            buffer = np.empty(bars - start)
            simulate_sleeve(*(np.ascontiguousarray(p[:, s]) for p in (open_, high, low, close)),
                            np.ascontiguousarray(targets[:, g, s]), np.ascontiguousarray(fraction[:, s]), CAPITAL,
                            costs, False, True, start, buffer, shares[s], np.empty((2 * bars, TRADE_COLUMNS)), s)
        any_held[g] = int((shares != 0).any(axis=0).sum())
    np.testing.assert_array_equal(to_host(got["group_exposure_bars"]), any_held)


def test_curve_metrics_match_performance_metrics():
    rng = np.random.default_rng(11)
    bars = 300
    curves = 1e4 * np.cumprod(1 + rng.normal(0.0005, 0.01, (bars, 6)), axis=0)
    curves[:, 1] = 1e4                      # flat: zero volatility and drawdown
    curves[150:, 2] = 0.0                   # wiped out
    curves[:, 3] *= np.linspace(1, 40, bars) ** 8  # huge growth (caps)
    pnls = [rng.normal(10, 50, n) for n in (0, 1, 5, 40, 7, 3)]
    pnls[4] = np.abs(pnls[4])               # winners only
    pnls[5] = -np.abs(pnls[5])              # losers only
    exposure = rng.random(6)
    for capital in (None, 1e4):
        for length in (1, 2, 3, bars):
            got = curve_metrics(curves[:length], [len(p) for p in pnls], [(p > 0).sum() for p in pnls],
                                [p[p > 0].sum() for p in pnls], [-p[p < 0].sum() for p in pnls], exposure,
                                252, capital)
            for k in range(6):
                want = performance_metrics(curves[:length, k], pnls[k], 252, float(exposure[k]), capital)
                assert list(got[k]) == list(want)
                assert got[k] == want, (k, length, capital)


def sweep_case(seed=3, bars=260, symbols=9, **config):
    rng = np.random.default_rng(seed)
    open_, high, low, close = make_bars(rng, bars, symbols, nan_lead=False)
    close[: rng.integers(5, 40), 0] = np.nan  # a late listing
    panels = {"open": open_, "high": high, "low": low, "close": close, "volume": np.ones_like(close)}
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "param_grid": {"fast": [3, 5, 8, 13],
                                                                                      "slow": [10, 21, 34]},
                                     **config})
    return spec, panels


@pytest.mark.parametrize("config", [
    {},
    {"fill": "close", "direction": "long_short", "commission_min": 1.0, "slippage_bps": 3, "borrow_rate": 0.2},
    {"direction": "long_short", "stop_loss": 0.03, "take_profit": 0.08, "trailing_stop": 0.05, "spread": 0.001,
     "rank_by": "max_drawdown"},
    {"sizing": "percent_equity", "size": 0.4, "fill": "close", "rank_by": "total_return"},
    {"sizing": "fixed_cash", "size": 4000, "commission_min": 3.0, "rank_by": "profit_factor"},
    {"sizing": "volatility_target", "target_volatility": 0.1, "vol_window": 10, "rank_by": "win_rate"},
])
def test_vectorised_sweep_ranks_like_the_numba_sweep(config):
    spec, panels = sweep_case(**config)
    want = sweep_panels(spec, panels, 30, 100_000.0, 0.001)
    chunks = []
    got = sweep_panels(spec, panels, 30, 100_000.0, 0.001, backend=cpu_backend(), vectorised=True,
                       progress=chunks.append)
    assert got.combinations == want.combinations and got.cells == want.cells and got.rank_by == want.rank_by
    assert chunks[-1] == 1.0
    assert [row["params"] for row in got.table] == [row["params"] for row in want.table]
    for mine, theirs in zip(got.table, want.table):
        assert mine["rank"] == theirs["rank"]
        assert list(mine["metrics"]) == list(theirs["metrics"])
        for key, value in theirs["metrics"].items():
            assert mine["metrics"][key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_vectorised_sweep_in_small_chunks_and_limit():
    spec, panels = sweep_case(seed=8, direction="long_short")
    want = sweep_panels(spec, panels, 25, 50_000.0, 0.0005, limit=4)
    got = sweep_panels(spec, panels, 25, 50_000.0, 0.0005, limit=4, vectorised=True, memory_budget=1)
    assert len(got.table) == 4
    assert [row["params"] for row in got.table] == [row["params"] for row in want.table]
    for mine, theirs in zip(got.table, want.table):
        assert mine["metrics"] == pytest.approx(theirs["metrics"], rel=1e-9, abs=1e-9)


@pytest.mark.skipif(cupy is None, reason="CuPy/GPU not available")
def test_gpu_sweep_ranks_like_the_numba_sweep():
    from utils.engine.backend import resolve_backend
    spec, panels = sweep_case(direction="long_short", stop_loss=0.04, commission_min=1.0)
    want = sweep_panels(spec, panels, 30, 100_000.0, 0.001)
    got = sweep_panels(spec, panels, 30, 100_000.0, 0.001, backend=resolve_backend("gpu"))
    assert [row["params"] for row in got.table] == [row["params"] for row in want.table]
    for mine, theirs in zip(got.table, want.table):
        assert mine["metrics"] == pytest.approx(theirs["metrics"], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("xp", MODULES)
def test_whole_share_sizing_keeps_backtesting_py_rounding(xp):
    """``(fraction * quoted * rate) / fraction`` is not ``quoted * rate`` in floating point; at this
    capital the difference decides the last share (2057, not 2058)."""
    price, rate, capital = 141.61, 0.003, 292307.68014000007
    bars = np.full((5, 1), price)
    target = np.ones((5, 1))
    fraction = np.full((5, 1), FULL_EQUITY)
    costs = SimulationConfig(commission_rate=rate).cost_vector()
    want = reference(bars, bars, bars, bars, target, fraction, capital, costs, False, False, 0)
    got = simulate_columns(xp, *(xp.asarray(p) for p in (bars, bars, bars, bars, target, fraction)), capital, costs,
                           False, False, 0)
    assert want["shares"][0] == 2057.0
    assert_matches(got, want, exact=xp is np)
