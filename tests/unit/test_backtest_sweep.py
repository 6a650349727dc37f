"""The sweep and walk-forward give, row for row, the single backtest's numbers (one simulator, one
reduction, one metrics function), and the parallel sleeve launcher matches the sequential one."""
import itertools
import zlib

import numpy as np
import pytest

from utils.engine.backend import cpu_backend
from utils.engine.backtest import validate_strategy_config
from utils.engine.backtest.runner import align_bars, run_backtest, simulate_panels
from utils.engine.backtest.simulate import FULL_EQUITY, SimulationConfig, simulate_portfolio
from utils.engine.backtest.sweep import SleeveBatch, best_spec, sweep_panels, walk_forward

CAPITAL = 100_000.0
COMMISSION = 0.001


def make_bars(rng, bars, columns, holes=True):
    """GBM closes, opens near the previous close, highs/lows around both; NaN leading gaps on some
    columns and a few scattered NaN bars."""
    returns = rng.normal(0.0003, 0.02, (bars, columns))
    close = 50.0 * np.exp(np.cumsum(returns, axis=0)) * rng.uniform(0.5, 2.0, columns)
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.01, (bars, columns)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, (bars, columns)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, (bars, columns)))
    if holes:
        for column in range(0, columns, 3):
            lead = rng.integers(1, bars // 3)
            for panel in (open_, high, low, close):
                panel[:lead, column] = np.nan
        open_[rng.random((bars, columns)) < 0.01] = np.nan
        high[rng.random((bars, columns)) < 0.005] = np.nan
        low[rng.random((bars, columns)) < 0.005] = np.nan
        close[rng.random((bars, columns)) < 0.005] = np.nan
    return {"open": open_, "high": high, "low": low, "close": close, "volume": np.ones_like(close)}


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


def assert_same_output(got, want):
    """Bit for bit: curves, positions, trade table, exposure, turnover."""
    for field in ("equity", "positions", "sleeve_equity", "trade_table"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    assert (got.exposure, got.turnover, got.start_index) == (want.exposure, want.turnover, want.start_index)


COSTS = {
    "free": {},
    "rate_min": {"commission_min": 4.0},
    "min_only": {"commission_min": 2.5},
    "slip_spread_borrow": {"slippage_bps": 7, "spread": 0.0012, "borrow_rate": 0.5},
}
STOPS = {
    "none": {},
    "stop_loss": {"stop_loss": 0.03},
    "take_profit": {"take_profit": 0.04},
    "trailing": {"trailing_stop": 0.05},
    "all": {"stop_loss": 0.04, "take_profit": 0.06, "trailing_stop": 0.03},
}
SIZINGS = {
    "all_in": {},
    "percent": {"sizing": "percent_equity", "size": 0.5},
    "fixed_cash": {"sizing": "fixed_cash", "size": 3000},
    "volatility": {"sizing": "volatility_target", "target_volatility": 0.1, "vol_window": 10},
}


@pytest.mark.parametrize("fill,direction,costs,stops",
                         list(itertools.product(("next_open", "close"), ("long_only", "long_short"), COSTS, STOPS)))
def test_parallel_batch_is_the_single_run(fill, direction, costs, stops):
    """``SleeveBatch`` (symbols in parallel, reused buffers) and ``simulate_portfolio`` (one symbol
    after the other) run the same kernel and reduction: identical outputs, run after run."""
    seed = zlib.crc32(repr((fill, direction, costs, stops)).encode())
    rng = np.random.default_rng(seed)
    panels = make_bars(rng, 160, 12)
    sizing = list(SIZINGS)[seed % len(SIZINGS)]
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fill": fill, "direction": direction,
                                     **COSTS[costs], **STOPS[stops], **SIZINGS[sizing]})
    batch = SleeveBatch(spec, panels, 7)
    for _ in range(2):  # the second run reuses the first one's buffers
        target = make_targets(rng, 160, 12)
        want = simulate_panels(spec, panels, 7, CAPITAL, COMMISSION, targets=target)
        assert len(want.trade_table) > 12  # the case trades
        assert_same_output(batch.run(spec, target, CAPITAL, COMMISSION), want)


def sweep_case(seed=3, bars=260, symbols=14, strategy=None, **config):
    rng = np.random.default_rng(seed)
    panels = make_bars(rng, bars, symbols, holes=False)
    panels["close"][: rng.integers(5, 40), 0] = np.nan  # a late listing
    strategy = strategy or {"strategy_type": "sma_crossover", "param_grid": {"fast": [3, 5, 8, 13],
                                                                            "slow": [10, 21, 34]}}
    return validate_strategy_config({**strategy, **config}), panels


SWEEP_CONFIGS = [
    {},
    {"fill": "close", "direction": "long_short", "commission_min": 1.0, "slippage_bps": 3, "borrow_rate": 0.2},
    {"direction": "long_short", "stop_loss": 0.03, "take_profit": 0.08, "trailing_stop": 0.05, "spread": 0.001,
     "rank_by": "max_drawdown"},
    {"sizing": "percent_equity", "size": 0.4, "fill": "close", "rank_by": "total_return", "entry": "level"},
    {"sizing": "fixed_cash", "size": 4000, "commission_min": 3.0, "rank_by": "profit_factor"},
    {"sizing": "volatility_target", "target_volatility": 0.1, "vol_window": 10, "rank_by": "win_rate"},
    {"strategy": {"strategy_type": "momentum", "rebalance": 10,
                  "param_grid": {"lookback": [10, 20, 40], "top_k": [1, 3, 5]}}},
]


@pytest.mark.parametrize("config", SWEEP_CONFIGS)
def test_every_sweep_row_is_the_single_run_of_its_parameters(config):
    spec, panels = sweep_case(**config)
    seen = []
    result = sweep_panels(spec, panels, 30, CAPITAL, COMMISSION, progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert result.combinations == len(spec.combinations()) == len(result.table)
    assert [row["rank"] for row in result.table] == list(range(1, result.combinations + 1))
    ranked = [row["metrics"][spec.rank_by] for row in result.table]
    assert ranked == sorted(ranked, reverse=spec.rank_by != "max_drawdown")
    names = [name for name, _ in spec.param_grid]
    by_params = {tuple(c.param_values[name] for name in names): c for c in spec.combinations()}
    for row in result.table:
        combination = by_params[tuple(row["params"][name] for name in names)]
        single = simulate_panels(combination, panels, 30, CAPITAL, COMMISSION)
        assert row["metrics"] == single.metrics(spec.periods_per_year, CAPITAL), row["params"]


DAY_NS = 86_400 * 10**9
# Grids whose longest window warms up bars where shorter combinations see entry events: each row
# must still be the single run of its parameters (own warm-up), which starts flat. (Not RSI: its
# Wilder smoothing is seeded at the first row, so its values themselves depend on the warm-up.)
FLAT_START_GRIDS = {
    "sma_cross": {"strategy_type": "sma_crossover", "param_grid": {"fast": [5, 10], "slow": [20, 60]}},
    "sma_cross_short": {"strategy_type": "sma_crossover", "direction": "long_short", "fill": "close",
                        "param_grid": {"fast": [5, 10], "slow": [20, 60]}},
    "trend_cross": {"strategy_type": "trend_following", "entry": "cross", "direction": "long_short",
                    "param_grid": {"lookback_period": [5, 30], "moving_average_window": [10, 50]}},
    "bollinger": {"strategy_type": "mean_reversion", "direction": "long_short",
                  "param_grid": {"period": [5, 40], "nbdev": [1.0, 2.0]}},
    "breakout": {"strategy_type": "breakout", "direction": "long_short",
                 "param_grid": {"entry_window": [5, 40], "exit_window": [3, 50]}},
    "momentum": {"strategy_type": "momentum", "rebalance": 7, "param_grid": {"lookback": [5, 10, 40]}},
}


def symbol_bars(panels):
    """Per-symbol bars (``run_backtest``'s input) of aligned panels, a NaN close meaning no bar."""
    bars = {}
    for column in range(panels["close"].shape[1]):
        listed = np.isfinite(panels["close"][:, column])
        bars[f"S{column}"] = {"time": (19_000 + np.flatnonzero(listed)) * DAY_NS,
                              **{field: panel[listed, column] for field, panel in panels.items()}}
    return bars


@pytest.mark.parametrize("name", FLAT_START_GRIDS)
def test_sweep_rows_are_single_runs_with_their_own_warmup(name):
    """The sweep warms up for its longest window; a combination still starts flat at the first
    evaluated bar, as its single run (warmed up for its own windows) does."""
    spec, panels = sweep_case(seed=11, bars=300, symbols=10, strategy=FLAT_START_GRIDS[name])
    bars = symbol_bars(panels)
    start_ns, end_ns = (19_000 + 80) * DAY_NS, (19_000 + 299) * DAY_NS
    aligned = align_bars(spec, bars, start_ns, end_ns)
    result = sweep_panels(spec, aligned.panels, aligned.start_index, CAPITAL, COMMISSION)
    names = [name for name, _ in spec.param_grid]
    for combination in spec.combinations():
        params = {name: combination.param_values[name] for name in names}
        (row,) = [row for row in result.table if row["params"] == params]
        single = run_backtest(cpu_backend(), combination, bars, start_ns, end_ns, CAPITAL, COMMISSION)
        assert row["metrics"] == single.metrics, params


def test_limit_keeps_the_best_rows_and_a_backend_changes_nothing():
    spec, panels = sweep_case(seed=8, direction="long_short")
    full = sweep_panels(spec, panels, 25, 50_000.0, 0.0005)
    top = sweep_panels(spec, panels, 25, 50_000.0, 0.0005, limit=4, backend=cpu_backend())
    assert top.table == full.table[:4]
    assert top.cells == full.cells == full.combinations * 14 * (260 - 25)


def test_walk_forward_windows_are_single_runs_of_the_chosen_parameters():
    spec, panels = sweep_case(seed=5, bars=400, direction="long_short", stop_loss=0.05,
                              walk_forward={"splits": 3, "train_fraction": 0.6})
    windows = walk_forward(spec, panels, 40, CAPITAL, COMMISSION)
    assert [window["window"] for window in windows] == [1, 2, 3]
    for window in windows:
        (train_start, test_start), (_, test_end) = window["train_rows"], window["test_rows"]
        train = {field: panel[:test_start] for field, panel in panels.items()}
        in_sample = sweep_panels(spec, train, train_start, CAPITAL, COMMISSION, limit=1)
        assert window["best_params"] == in_sample.best["params"]
        assert window["in_sample"] == in_sample.best["metrics"]
        chosen = best_spec(spec, in_sample)
        test = {field: panel[:test_end] for field, panel in panels.items()}
        out = simulate_panels(chosen, test, test_start, CAPITAL, COMMISSION)
        assert window["out_of_sample"] == out.metrics(spec.periods_per_year, CAPITAL)
        assert len(out.equity) == test_end - test_start
        assert out.equity[0] == pytest.approx(CAPITAL, rel=1e-12)  # starts flat


def test_whole_share_sizing_keeps_backtesting_py_rounding():
    """``(fraction * quoted * rate) / fraction`` is not ``quoted * rate`` in floating point; at this
    capital the difference decides the last share (2057, not 2058)."""
    price, rate, capital = 141.61, 0.003, 292307.68014000007
    bars = np.full((5, 1), price)
    output = simulate_portfolio(bars, bars, np.ones((5, 1)), capital, config=SimulationConfig(commission_rate=rate),
                                size_fraction=np.full((5, 1), FULL_EQUITY))
    assert output.positions[-1, 0] == 2057.0
