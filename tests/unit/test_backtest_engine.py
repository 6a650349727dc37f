"""Closed-form checks of the simulator, metrics, strategies and runner."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from utils.engine.backend import cpu_backend
from utils.engine.backtest.runner import iso_time
from utils.engine.backtest import (NoDataInRange, UnknownStrategyError, run_backtest,
                                   simulate_portfolio, target_positions, validate_strategy_config,
                                   warmup_bars)
from utils.engine.metrics import (PROFIT_FACTOR_CAP, drawdown_curve, max_drawdown_duration,
                                  performance_metrics)
from tests.references import require_reference

DAY_NS = 86_400 * 10**9


# --- simulator -------------------------------------------------------------------------------

def test_constant_price_next_open_loses_exactly_two_commissions():
    price = np.full(10, 10.0)
    target = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    output = simulate_portfolio(price, price, target, 10_000.0, 0.001)
    size = math.floor(10_000 / (10 * 1.001))  # 999 whole shares
    fee = size * 10 * 0.001
    assert output.equity[0] == 10_000.0
    assert output.equity[-1] == pytest.approx(10_000 - 2 * fee, abs=1e-9)
    (trade,) = output.trades
    assert (trade.entry_index, trade.exit_index, trade.size) == (1, 5, size)
    assert trade.commission == pytest.approx(2 * fee)
    assert trade.pnl == pytest.approx(-2 * fee)


def test_constant_price_close_fill_loses_fractional_commissions():
    price = np.full(6, 10.0)
    target = np.array([1, 1, 0, 0, 0, 0], dtype=float)
    output = simulate_portfolio(price, price, target, 10_000.0, 0.001, fill="close")
    assert output.equity[-1] == pytest.approx(10_000 * 0.999 / 1.001, rel=1e-12)
    metrics = performance_metrics(output.equity, output.trades, initial_capital=10_000.0)
    assert metrics["total_return"] == pytest.approx(0.999 / 1.001 - 1, rel=1e-12)


def test_rising_prices_always_long_next_open():
    close = 100 * 1.01 ** np.arange(30)
    open_ = close * 0.995
    capital, rate = 50_000.0, 0.002
    output = simulate_portfolio(open_, close, np.ones(30), capital, rate)
    size = math.floor(capital / (open_[1] * (1 + rate)))
    cash = capital - size * open_[1] * (1 + rate)
    expected = np.concatenate([[capital], cash + size * close[1:]])
    np.testing.assert_allclose(output.equity, expected, rtol=1e-12)
    (trade,) = output.trades
    assert trade.is_open and trade.exit_index == 29 and trade.exit_price == close[-1]
    assert output.exposure == pytest.approx(29 / 30)


def test_rising_prices_always_long_close_fill():
    close = 100 * 1.01 ** np.arange(30)
    capital, rate = 50_000.0, 0.002
    output = simulate_portfolio(close * 0.99, close, np.ones(30), capital, rate, fill="close")
    expected = capital * close / (close[0] * (1 + rate))
    np.testing.assert_allclose(output.equity, expected, rtol=1e-12)
    assert output.exposure == 1.0


def test_one_round_trip_by_hand():
    open_ = np.array([10.0, 10.0, 11.0, 12.0, 12.5, 13.0])
    close = np.array([10.0, 10.5, 11.5, 12.0, 13.0, 13.0])
    target = np.array([1, 1, 0, 0, 0, 0], dtype=float)
    output = simulate_portfolio(open_, close, target, 1_000.0, 0.01)
    (trade,) = output.trades
    # decided at bar 0's close -> bought at bar 1's open; flat at bar 2's close -> sold at bar 3's open
    assert (trade.entry_index, trade.exit_index) == (1, 3)
    assert (trade.entry_price, trade.exit_price, trade.size) == (10.0, 12.0, 99.0)
    assert trade.commission == pytest.approx(9.9 + 11.88)
    assert trade.pnl == pytest.approx(99 * 2 - 9.9 - 11.88)
    assert trade.return_pct == pytest.approx(trade.pnl / (990 + 9.9))
    assert not trade.is_open
    assert output.equity[-1] == pytest.approx(1_000 + trade.pnl)
    metrics = performance_metrics(output.equity, output.trades)
    assert metrics["num_trades"] == 1 and metrics["win_rate"] == 1.0


def test_warmup_bars_are_not_traded_or_reported():
    price = np.linspace(10, 20, 20)
    output = simulate_portfolio(price, price, np.ones(20), 1_000.0, 0.0, start_index=5)
    assert len(output.equity) == 15 and output.equity[0] == 1_000.0
    assert output.trades[0].entry_index == 6  # first decision at bar 5's close


def test_nan_prices_before_listing_stay_flat():
    close = np.array([np.nan, np.nan, 10.0, 11.0, 12.0])
    output = simulate_portfolio(close, close, np.ones(5), 100.0, 0.0)
    assert output.trades[0].entry_index == 2
    assert np.all(output.equity[:3] == 100.0)


def test_equal_sleeves_split_capital():
    close = 100 * 1.02 ** np.arange(10)
    panel = np.column_stack([close, close])
    single = simulate_portfolio(close, close, np.ones(10), 1_000.0, 0.001, fill="close")
    double = simulate_portfolio(panel, panel, np.ones((10, 2)), 2_000.0, 0.001, fill="close")
    np.testing.assert_allclose(double.equity, 2 * single.equity, rtol=1e-12)
    assert double.positions.shape == (10, 2)


def test_progress_is_reported_and_can_abort():
    close = np.full((5, 25), 10.0)
    seen = []
    simulate_portfolio(close, close, np.ones_like(close), 1_000.0, 0.0, progress=seen.append)
    assert seen[-1] == 1.0 and len(seen) >= 10 and seen == sorted(seen)

    def cancel(fraction):
        raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        simulate_portfolio(close, close, np.ones_like(close), 1_000.0, 0.0, progress=cancel)


def test_simulator_rejects_bad_arguments():
    price = np.ones(5)
    with pytest.raises(ValueError, match="fill"):
        simulate_portfolio(price, price, price, 1.0, 0.0, fill="vwap")
    with pytest.raises(ValueError, match="shapes"):
        simulate_portfolio(price, price, np.ones(4), 1.0, 0.0)


# --- metrics ---------------------------------------------------------------------------------

EQUITY = np.array([100.0, 110.0, 99.0, 105.0, 120.0, 90.0, 95.0])


def test_metrics_on_hand_made_curve():
    trades = [{"pnl": 5.0}, {"pnl": -2.0}, {"pnl": 4.0}, {"pnl": 100.0, "is_open": True}]
    metrics = performance_metrics(EQUITY, trades, periods_per_year=252, exposure=0.5)
    # Volatility, Sharpe, Sortino and Calmar are checked against vectorbt in tests/parity/test_risk_ratios.py;
    # here only what this small curve gives in closed form.
    assert metrics["total_return"] == pytest.approx(-0.05)
    assert metrics["annualized_return"] == pytest.approx(0.95 ** (252 / 6) - 1)
    assert metrics["max_drawdown"] == pytest.approx(0.25)  # 120 -> 90
    assert metrics["max_drawdown_duration"] == 3  # peak 110 at bar 1, regained at bar 4
    assert metrics["num_trades"] == 3 and metrics["win_rate"] == pytest.approx(2 / 3)
    assert metrics["profit_factor"] == pytest.approx(9 / 2)
    assert metrics["exposure"] == 0.5 and metrics["final_equity"] == 95.0
    np.testing.assert_allclose(drawdown_curve(EQUITY), [0, 0, 0.1, 5 / 110, 0, 0.25, 25 / 120])


def test_drawdown_duration_runs_to_the_end_when_not_recovered():
    assert max_drawdown_duration(np.array([3.0, 2.0, 1.0])) == 2
    assert max_drawdown_duration(np.array([1.0, 2.0, 3.0])) == 0


def test_degenerate_metrics_are_finite_and_json_safe():
    flat = performance_metrics(np.full(5, 100.0), [])
    assert flat["sharpe_ratio"] == 0 and flat["sortino_ratio"] == 0 and flat["calmar_ratio"] == 0
    assert flat["profit_factor"] == 0 and flat["win_rate"] == 0 and flat["num_trades"] == 0
    no_losses = performance_metrics(np.array([1.0, 2.0]), [{"pnl": 1.0}])
    assert no_losses["profit_factor"] == PROFIT_FACTOR_CAP
    explosive = performance_metrics(np.array([1.0, 1e9]), [])
    for metrics in (flat, no_losses, explosive, performance_metrics(np.array([5.0]), [])):
        assert all(isinstance(value, float) and math.isfinite(value) for value in metrics.values())
        json.dumps(metrics, allow_nan=False)


# --- strategies ------------------------------------------------------------------------------

def random_closes(seed=5, shape=(600, 4)):
    rng = np.random.default_rng(seed)
    return 50 * np.exp(np.cumsum(rng.normal(0, 0.02, shape), axis=0))


def test_trend_following_matches_pandas_reference():
    close = random_closes()
    close[:40, 1] = np.nan  # a symbol listed later
    spec = validate_strategy_config({"strategy_type": "trend_following", "lookback_period": 15,
                                     "moving_average_window": 30})
    ours = target_positions(np, spec, {"close": close})
    frame = pd.DataFrame(close)
    reference = ((frame > frame.rolling(30).mean()) & (frame / frame.shift(15) - 1 > 0)).astype(float)
    np.testing.assert_array_equal(ours, reference.to_numpy())
    assert ours[:29].sum() == 0


def test_trend_following_cross_acts_where_its_conditions_start():
    close = random_closes()
    close[:40, 1] = np.nan  # a symbol listed later
    spec = validate_strategy_config({"strategy_type": "trend_following", "lookback_period": 15,
                                     "moving_average_window": 30, "entry": "cross", "direction": "long_short"})
    frame = pd.DataFrame(close)
    average, change = frame.rolling(30).mean(), frame / frame.shift(15) - 1
    known = average.notna() & change.notna()
    bullish, bearish = (frame > average) & (change > 0), (frame < average) & (change < 0)
    starts = [(now & ~now.shift(1, fill_value=False) & known & known.shift(1, fill_value=False)).to_numpy()
              for now in (bullish, bearish)]
    reference = np.zeros_like(close)
    for column in range(close.shape[1]):
        held = 0.0
        for row in range(close.shape[0]):
            held = 1.0 if starts[0][row, column] else -1.0 if starts[1][row, column] else held
            reference[row, column] = held
    ours = target_positions(np, spec, {"close": close})
    np.testing.assert_array_equal(ours, reference)
    assert set(np.unique(ours)) == {-1.0, 0.0, 1.0}


def test_sma_crossover_level_matches_pandas_reference():
    close = random_closes(seed=9)
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fast": 5, "slow": 20, "entry": "level"})
    frame = pd.DataFrame(close)
    reference = (frame.rolling(5).mean() > frame.rolling(20).mean()).astype(float)
    np.testing.assert_array_equal(target_positions(np, spec, {"close": close}), reference.to_numpy())


@pytest.mark.parametrize("direction", ["long_only", "long_short"])
def test_sma_crossover_cross_follows_backtesting_py_crossover(direction):
    crossover = require_reference("backtesting.lib").crossover
    close = random_closes(seed=9)
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fast": 5, "slow": 20,
                                     "direction": direction})
    fast, slow = (pd.DataFrame(close).rolling(n).mean().to_numpy() for n in (5, 20))
    reference = np.zeros_like(close)
    for column in range(close.shape[1]):
        held = 0.0  # SmaCross: flat until the first crossing, then held until the next one
        for row in range(1, close.shape[0]):
            if crossover(fast[:row + 1, column], slow[:row + 1, column]):
                held = 1.0
            elif crossover(slow[:row + 1, column], fast[:row + 1, column]):
                held = -1.0 if direction == "long_short" else 0.0
            reference[row, column] = held
    ours = target_positions(np, spec, {"close": close})
    np.testing.assert_array_equal(ours, reference)
    level = validate_strategy_config({"strategy_type": "sma_crossover", "fast": 5, "slow": 20, "entry": "level"})
    assert not np.array_equal(ours, target_positions(np, level, {"close": close}))


@pytest.mark.parametrize("config", [
    {"strategy_type": "sma_crossover", "fast": 5, "slow": 20, "direction": "long_short"},
    {"strategy_type": "trend_following", "lookback_period": 10, "moving_average_window": 20, "entry": "cross"},
    {"strategy_type": "breakout", "entry_window": 5, "exit_window": 30, "direction": "long_short"},
])
def test_event_targets_start_flat_at_the_start_row(config):
    """Events before ``start`` are warm-up: the target there is flat and, from ``start`` on, the
    same as over only the strategy's own warm-up; a crossing on the start row itself counts."""
    close = random_closes(seed=9)
    spec = validate_strategy_config(config)
    warmup = warmup_bars(spec)
    full = target_positions(np, spec, {"close": close})[:, 0]
    opens = np.flatnonzero((np.diff(full) != 0) & (full[1:] != 0)) + 1
    starts = [45, 200, 333, int(opens[opens > warmup][3])]  # the last one opens on its event
    for start in starts:
        ours = target_positions(np, spec, {"close": close}, start)
        assert not ours[:start].any()
        own = target_positions(np, spec, {"close": close[start - warmup:]}, warmup)
        np.testing.assert_array_equal(ours[start:], own[warmup:])
    assert ours[starts[-1], 0] != 0


def test_strategy_config_defaults_and_warmup():
    spec = validate_strategy_config({"strategy_type": "trend_following"})
    assert spec.param_values == {"lookback_period": 20, "moving_average_window": 50, "entry": "level"}
    assert spec.fill == "next_open" and warmup_bars(spec) == 49
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fast": 3.0, "slow": "12",
                                     "fill": "close"})
    # a crossing compares with the previous bar: one bar more than the level needs
    assert spec.param_values == {"fast": 3, "slow": 12, "entry": "cross"} and warmup_bars(spec) == 12
    level = validate_strategy_config({"strategy_type": "sma_crossover", "fast": 3, "slow": 12, "entry": "level"})
    assert warmup_bars(level) == 11 and level.normalised()["entry"] == "level"


@pytest.mark.parametrize("config,message", [
    ({"strategy_type": "trend_following", "moving_average_window": -3},
     "strategy_config.moving_average_window must be an integer in [1, 5000], got -3"),
    ({"strategy_type": "trend_following", "lookback_period": 2.5}, "strategy_config.lookback_period"),
    ({"strategy_type": "trend_following", "lookback_period": True}, "strategy_config.lookback_period"),
    ({"strategy_type": "sma_crossover", "fast": 30, "slow": 10}, "strategy_config.fast"),
    ({"strategy_type": "sma_crossover", "window": 3}, "unknown keys for sma_crossover: window"),
    ({"strategy_type": "sma_crossover", "fill": "vwap"}, "strategy_config.fill"),
    ({"strategy_type": "sma_crossover", "entry": "both"},
     "strategy_config.entry must be one of cross, level, got 'both'"),
    ({"strategy_type": "trend_following", "entry": 1}, "strategy_config.entry must be one of cross, level"),
    ({"strategy_type": "sma_crossover", "param_grid": {"entry": ["cross", "edge"]}},
     "strategy_config.param_grid.entry must be one of cross, level, got 'edge'"),
])
def test_strategy_config_errors_name_the_field(config, message):
    with pytest.raises(ValueError) as caught:
        validate_strategy_config(config)
    assert message in str(caught.value)


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(UnknownStrategyError, match="breakout, mean_reversion, momentum, signals, "
                                                   "sma_crossover, top_k, trend_following"):
        validate_strategy_config({"strategy_type": "pairs_trading"})


# --- runner ----------------------------------------------------------------------------------

def make_bars(close, first_day):
    days = np.arange(first_day, first_day + len(close))
    return {"time": days * DAY_NS, "open": close, "high": close, "low": close, "close": close,
            "volume": np.ones(len(close))}


def test_run_backtest_aligns_symbols_and_reports():
    closes = random_closes(seed=2, shape=(300, 2))
    bars = {"AAA": make_bars(closes[:, 0], 19_000), "BBB": make_bars(closes[100:, 1], 19_100)}
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fast": 5, "slow": 20})
    report = run_backtest(cpu_backend(), spec, bars, 19_050 * DAY_NS, 19_299 * DAY_NS,
                          100_000.0, 0.001)
    assert report.equity_times[0] == 19_050 * DAY_NS and len(report.equity) == 250
    assert report.equity[0] == 100_000.0
    assert report.per_symbol["BBB"]["exposure"] <= 150 / 250
    assert all(trade.entry_time > iso_time(19_100 * DAY_NS) for trade in report.trades
               if trade.symbol == "BBB")
    assert {trade.symbol for trade in report.trades} == {"AAA", "BBB"}
    assert report.metrics["final_equity"] == pytest.approx(report.equity[-1])
    assert len(report.trades[0].entry_time) == 10  # daily bars print as ISO dates, like the equity curve
    json.dumps(report.metrics, allow_nan=False)
    np.testing.assert_allclose(report.drawdown, drawdown_curve(report.equity))


def test_volatility_sizing_warmup_does_not_open_positions_before_the_start():
    """``vol_window`` 60 warms up 60 bars, more than SMA(20) needs; a crossing in those extra bars
    is not an entry: the sized run trades exactly when the all-in run does."""
    closes = random_closes(seed=4, shape=(400, 6))
    bars = {f"S{column}": make_bars(closes[:, column], 19_000) for column in range(closes.shape[1])}
    config = {"strategy_type": "sma_crossover", "fast": 5, "slow": 20, "direction": "long_short"}
    runs = [run_backtest(cpu_backend(), validate_strategy_config({**config, **sizing}), bars,
                         19_100 * DAY_NS, 19_399 * DAY_NS, 100_000.0, 0.001)
            for sizing in ({}, {"sizing": "volatility_target", "target_volatility": 0.5, "vol_window": 60})]
    assert [report.warmup_bars for report in runs] == [20, 60]
    sized, all_in = ([(t.symbol, t.entry_time, t.exit_time, t.direction) for t in report.trades]
                     for report in reversed(runs))
    assert len(all_in) > 12 and sized == all_in


def test_run_backtest_raises_for_symbol_without_bars_in_range():
    bars = {"AAA": make_bars(np.linspace(1, 2, 50), 19_000), "OLD": make_bars(np.ones(10), 18_000)}
    spec = validate_strategy_config({"strategy_type": "sma_crossover"})
    with pytest.raises(NoDataInRange, match="OLD"):
        run_backtest(cpu_backend(), spec, bars, 19_000 * DAY_NS, 19_049 * DAY_NS, 1_000.0, 0.0)


def test_run_backtest_forward_fills_a_missing_bar_as_a_flat_bar():
    close = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])
    gappy = make_bars(close, 19_000)
    keep = np.array([True, True, True, False, True, True])  # no bar on day 3
    gappy = {field: values[keep] for field, values in gappy.items()}
    bars = {"FULL": make_bars(close, 19_000), "GAP": gappy}
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fast": 1, "slow": 2,
                                     "fill": "close", "entry": "level"})
    report = run_backtest(cpu_backend(), spec, bars, 19_000 * DAY_NS, 19_005 * DAY_NS, 2_000.0, 0.0)
    # Both sleeves buy at day 1's close. GAP's missing day 3 is a flat bar at 12, so its
    # SMA(1) equals its SMA(2): it sells there at 12 and buys back at day 4's close (14).
    full_sleeve = 1_000.0 * close / close[1]
    gap_sleeve = report.equity - np.concatenate([[1_000.0], full_sleeve[1:]])
    after_sale = 1_000.0 * 12 / 11
    np.testing.assert_allclose(gap_sleeve, [1_000, 1_000, after_sale, after_sale, after_sale,
                                            after_sale * 15 / 14])
    gap_trades = [trade for trade in report.trades if trade.symbol == "GAP"]
    assert [(trade.exit_time, trade.exit_price) for trade in gap_trades][0] == (iso_time(19_003 * DAY_NS), 12.0)


# --- sizing, minimum commission, borrow (closed forms) ---------------------------------------

from utils.engine.backtest import SimulationConfig  # noqa: E402
from utils.engine.backtest.config import size_fractions  # noqa: E402


def test_percent_equity_sizing_buys_that_fraction_at_the_close():
    price = np.full(5, 20.0)
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fill": "close", "sizing": "percent_equity",
                                     "size": 0.25})
    output = simulate_portfolio(price, price, np.ones(5), 10_000.0, config=spec.simulation_config(0.0),
                                size_fraction=size_fractions(spec, price))
    (trade,) = output.trades
    assert trade.size == pytest.approx(0.25 * 10_000 / 20.0, rel=1e-15)


def test_fixed_cash_sizing_is_capped_by_cash():
    price = np.full(4, 10.0)
    config = SimulationConfig(fill="next_open", fixed_cash=2_500.0)
    output = simulate_portfolio(price, price, np.ones(4), 10_000.0, config=config)
    assert output.trades[0].size == 249  # int((2500 * (1 - 2**-52)) // 10): backtesting.py's rounding
    capped = simulate_portfolio(price, price, np.ones(4), 1_000.0, config=config)
    assert capped.trades[0].size == 99


def test_commission_minimum_applies_per_fill():
    price = np.full(6, 10.0)
    target = np.array([1, 1, 0, 0, 0, 0], dtype=float)
    config = SimulationConfig(fill="close", commission_rate=0.0001, commission_min=5.0)
    output = simulate_portfolio(price, price, target, 10_000.0, config=config)
    (trade,) = output.trades
    assert trade.commission == pytest.approx(10.0)  # 5 on entry + 5 on exit; the rate alone gives ~1
    assert output.equity[-1] == pytest.approx(10_000.0 - 10.0, rel=1e-12)


def test_short_pays_borrow_per_bar_on_its_market_value():
    price = np.full(11, 50.0)
    config = SimulationConfig(fill="close", allow_short=True, borrow_rate=0.252, periods_per_year=252)
    output = simulate_portfolio(price, price, -np.ones(11), 10_000.0, config=config)
    (trade,) = output.trades
    assert trade.direction == "short" and trade.size == pytest.approx(-200.0)
    # 0.1 % of 10,000 per bar, for the 11 bars held
    assert trade.borrow_cost == pytest.approx(11 * 10.0, rel=1e-12)
    assert output.equity[-1] == pytest.approx(10_000.0 - 110.0, rel=1e-12)


def test_volatility_target_scales_the_entry_by_realised_volatility():
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 80)))
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "sizing": "volatility_target",
                                     "target_volatility": 0.1, "vol_window": 20, "fill": "close"})
    fractions = size_fractions(spec, close)
    returns = pd.Series(close).pct_change()
    realised = returns.rolling(20).std().to_numpy() * math.sqrt(252)
    expected = np.where(np.isfinite(realised), np.minimum(0.1 / realised, 1.0), 0.0)
    np.testing.assert_allclose(fractions, expected, rtol=1e-9)
    assert 0 < fractions[-1] < 1


def test_stop_loss_fills_at_the_level_or_the_gapped_open():
    close = np.array([100, 100, 100, 98, 90, 90], dtype=float)
    open_ = np.array([100, 100, 100, 99, 93, 90], dtype=float)
    low = np.array([100, 100, 99, 94, 89, 90], dtype=float)
    config = SimulationConfig(fill="next_open", stop_loss=0.05)
    target = np.ones(6)
    output = simulate_portfolio(open_, close, target, 10_000.0, high=np.maximum(open_, close), low=low, config=config)
    first = output.trades[0]
    # entry at bar 1's open 100 -> level 95; bar 3's low 94 reaches it: filled at 95
    assert (first.entry_index, first.exit_index, first.exit_price, first.exit_reason) == (1, 3, 95.0, "stop_loss")
    assert len(output.trades) == 1  # the target stays long: no re-entry after a stop
    gap = simulate_portfolio(np.array([100, 100, 100, 90, 90.0]), np.array([100, 100, 100, 90, 90.0]), np.ones(5),
                             10_000.0, low=np.array([100, 100, 100, 88, 90.0]), config=config)
    assert gap.trades[0].exit_price == 90.0  # gapped through 95: filled at the open
