"""Backtests against the libraries users come from, on real market data shipped with backtesting.py
(GOOG daily 2004-2013, EURUSD hourly 2017-2018).

* ``fill: next_open`` vs backtesting.py 0.6 (``exclusive_orders=True``, whole shares, commission on
  entry and exit, ``spread``, stop-loss / take-profit / trailing stop as contingent orders);
* ``fill: close`` vs vectorbt ``Portfolio.from_signals`` (fractional size, fees and slippage from
  cash) and, for the shared-cash rebalancing portfolio, ``Portfolio.from_orders`` with target
  percentages, cash sharing and sells first.

The signals are ours (their values are checked against TA-Lib/pandas elsewhere); each library
trades the very same targets, so equity curves, trade lists and metrics must agree to 1e-9
relative (``RTOL``). ``sma_crossover``'s own signals against backtesting.py's SmaCross, submitted
over gRPC: ``test_sma_crossover_grpc.py``.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

from utils.engine.backtest.config import target_positions, validate_strategy_config
from utils.engine.backtest.rebalance import simulate_rebalancing
from utils.engine.backtest.simulate import SimulationConfig, simulate_portfolio
from utils.engine.metrics import performance_metrics
from tests.references import require_reference

backtesting = require_reference("backtesting")
vbt = require_reference("vectorbt")
from backtesting.test import EURUSD, GOOG  # noqa: E402

RTOL = 1e-9
CASH = 100_000.0
DATASETS = {"GOOG": GOOG, "EURUSD": EURUSD.iloc[:3000]}
STRATEGIES = [
    {"strategy_type": "sma_crossover", "fast": 10, "slow": 30},                    # entry: cross
    {"strategy_type": "sma_crossover", "fast": 10, "slow": 30, "entry": "level"},
    {"strategy_type": "trend_following", "lookback_period": 20, "moving_average_window": 50},
    {"strategy_type": "mean_reversion", "indicator": "bollinger", "period": 20, "nbdev": 2.0},
    {"strategy_type": "breakout", "entry_window": 20, "exit_window": 10},
]
STRATEGY_IDS = [c["strategy_type"] + (f"-{c['entry']}" if "entry" in c else "") for c in STRATEGIES]


def bars_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name.lower(): frame[name].to_numpy(dtype=float) for name in ("Open", "High", "Low", "Close", "Volume")}


def targets_for(frame, config, direction="long_only"):
    spec = validate_strategy_config({**config, "direction": direction})
    target = target_positions(np, spec, bars_of(frame)).astype(float)
    target[0] = 0.0  # backtesting.py takes its first decision on the second bar
    return target


# ------------------------------------------------------------------ backtesting.py
def run_backtesting_py(frame, target, commission, spread=0.0, stop_loss=0.0, take_profit=0.0, trailing=0.0):
    class Follow(backtesting.Strategy):
        def init(self):
            self.blocked = 0
            self.seen_closed = 0
            self.expect = 0

        def next(self):
            row = len(self.data) - 1
            closed = self.closed_trades
            if len(closed) > self.seen_closed:  # a close we did not order came from a stop
                if self.expect == 0:
                    self.blocked = 1 if closed[-1].size > 0 else -1
                self.seen_closed = len(closed)
            self.expect = 0
            want = int(np.sign(target[row]))
            if self.blocked:
                if want == self.blocked:
                    want = 0
                else:
                    self.blocked = 0
            held = 1 if self.position.is_long else -1 if self.position.is_short else 0
            if want != held:
                self.expect = held
                if want > 0:
                    self.buy()
                elif want < 0:
                    self.sell()
                else:
                    self.position.close()
            for trade in self.trades:  # stops on fills of earlier bars, refreshed every close
                long = trade.size > 0
                since = self.data.High[trade.entry_bar:] if long else self.data.Low[trade.entry_bar:]
                if take_profit:
                    trade.tp = trade.entry_price * (1 + take_profit if long else 1 - take_profit)
                levels = []
                if stop_loss:
                    levels.append(trade.entry_price * (1 - stop_loss if long else 1 + stop_loss))
                if trailing:
                    levels.append(since.max() * (1 - trailing) if long else since.min() * (1 + trailing))
                if levels:
                    trade.sl = max(levels) if long else min(levels)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = backtesting.Backtest(frame, Follow, cash=CASH, commission=commission, spread=spread,
                                    exclusive_orders=True, finalize_trades=False)
        return test.run()


def assert_trades_match_backtesting_py(output, stats):
    ours = [trade for trade in output.trades if not trade.is_open]
    theirs = stats._trades
    assert len(ours) == len(theirs) > 0
    np.testing.assert_array_equal([t.entry_index for t in ours], theirs["EntryBar"].to_numpy())
    np.testing.assert_array_equal([t.exit_index for t in ours], theirs["ExitBar"].to_numpy())
    np.testing.assert_array_equal([t.size for t in ours], theirs["Size"].to_numpy())
    for ours_field, theirs_field in (("entry_price", "EntryPrice"), ("exit_price", "ExitPrice"),
                                     ("pnl", "PnL"), ("commission", "Commission")):
        np.testing.assert_allclose([getattr(t, ours_field) for t in ours], theirs[theirs_field].to_numpy(),
                                   rtol=RTOL, atol=1e-9 * CASH, err_msg=ours_field)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("config", STRATEGIES, ids=STRATEGY_IDS)
@pytest.mark.parametrize("direction", ["long_only", "long_short"])
def test_next_open_matches_backtesting_py(dataset, config, direction):
    frame = DATASETS[dataset]
    target = targets_for(frame, config, direction)
    bars = bars_of(frame)
    commission = 0.002
    output = simulate_portfolio(bars["open"], bars["close"], target, CASH, high=bars["high"], low=bars["low"],
                                config=SimulationConfig(fill="next_open", commission_rate=commission,
                                                        allow_short=direction == "long_short"))
    stats = run_backtesting_py(frame, target, commission)
    np.testing.assert_allclose(output.equity, stats._equity_curve["Equity"].to_numpy(), rtol=RTOL)
    assert_trades_match_backtesting_py(output, stats)
    metrics = performance_metrics(output.equity, output.trades, initial_capital=CASH)
    assert metrics["total_return"] == pytest.approx(stats["Return [%]"] / 100, rel=RTOL)
    assert metrics["max_drawdown"] == pytest.approx(-stats["Max. Drawdown [%]"] / 100, rel=RTOL)
    assert metrics["num_trades"] == stats["# Trades"]
    assert metrics["win_rate"] == pytest.approx(stats["Win Rate [%]"] / 100, rel=RTOL)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("stops", [dict(stop_loss=0.03), dict(take_profit=0.05), dict(trailing=0.04),
                                   dict(stop_loss=0.05, take_profit=0.08, trailing=0.03),
                                   dict(spread=0.001)],
                         ids=["stop_loss", "take_profit", "trailing", "all_stops", "spread"])
@pytest.mark.parametrize("direction", ["long_only", "long_short"])
def test_stops_and_spread_match_backtesting_py(dataset, stops, direction):
    frame = DATASETS[dataset]
    target = targets_for(frame, STRATEGIES[0], direction)
    bars = bars_of(frame)
    config = SimulationConfig(fill="next_open", commission_rate=0.001, allow_short=direction == "long_short",
                              spread=stops.get("spread", 0.0), stop_loss=stops.get("stop_loss", 0.0),
                              take_profit=stops.get("take_profit", 0.0), trailing_stop=stops.get("trailing", 0.0))
    output = simulate_portfolio(bars["open"], bars["close"], target, CASH, high=bars["high"], low=bars["low"],
                                config=config)
    stats = run_backtesting_py(frame, target, 0.001, **stops)
    np.testing.assert_allclose(output.equity, stats._equity_curve["Equity"].to_numpy(), rtol=RTOL)
    assert_trades_match_backtesting_py(output, stats)
    if set(stops) - {"spread"}:
        assert any(trade.exit_reason != "signal" for trade in output.trades)


# ------------------------------------------------------------------ vectorbt
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("config", STRATEGIES, ids=STRATEGY_IDS)
@pytest.mark.parametrize("costs", [dict(fees=0.001), dict(fees=0.002, slippage=0.0005)], ids=["fees", "slippage"])
def test_close_fill_matches_vectorbt(dataset, config, costs):
    frame = DATASETS[dataset]
    target = targets_for(frame, config)
    bars = bars_of(frame)
    output = simulate_portfolio(bars["open"], bars["close"], target, CASH, high=bars["high"], low=bars["low"],
                                config=SimulationConfig(fill="close", commission_rate=costs["fees"],
                                                        slippage=costs.get("slippage", 0.0)))
    close = frame["Close"]
    portfolio = vbt.Portfolio.from_signals(close, entries=pd.Series(target > 0, index=close.index),
                                           exits=pd.Series(target <= 0, index=close.index), init_cash=CASH,
                                           fees=costs["fees"], slippage=costs.get("slippage", 0.0), freq="1D")
    # Without fees the curves agree to RTOL. With fees, some rebalances differ by one cash-limited
    # buy (vectorbt ranks orders by an approximate value; ~1e-4 of equity): known, documented.
    np.testing.assert_allclose(output.equity, portfolio.value().to_numpy(), rtol=RTOL)
    records = portfolio.trades.records_readable
    assert len(records) == len(output.trades) > 0
    np.testing.assert_allclose([t.size for t in output.trades], records["Size"].to_numpy(), rtol=RTOL)
    np.testing.assert_allclose([t.entry_price for t in output.trades], records["Avg Entry Price"].to_numpy(),
                               rtol=RTOL)
    np.testing.assert_allclose([t.pnl for t in output.trades], records["PnL"].to_numpy(), rtol=RTOL,
                               atol=1e-9 * CASH)
    closed = ~records["Status"].eq("Open").to_numpy()
    np.testing.assert_allclose([t.exit_price for t, c in zip(output.trades, closed) if c],
                               records["Avg Exit Price"].to_numpy()[closed], rtol=RTOL)
    metrics = performance_metrics(output.equity, output.trades, initial_capital=CASH)
    assert metrics["total_return"] == pytest.approx(portfolio.total_return(), rel=RTOL)
    assert metrics["max_drawdown"] == pytest.approx(-portfolio.max_drawdown(), rel=RTOL)
    stats = portfolio.stats()
    assert metrics["num_trades"] == stats["Total Closed Trades"]
    if stats["Total Closed Trades"]:
        assert metrics["win_rate"] == pytest.approx(stats["Win Rate [%]"] / 100, rel=RTOL)
        if np.isfinite(stats["Profit Factor"]):
            assert metrics["profit_factor"] == pytest.approx(stats["Profit Factor"], rel=RTOL)


@pytest.mark.parametrize("fees", [0.0, 0.001])
def test_rebalancing_portfolio_matches_vectorbt_target_percent(fees):
    rng = np.random.default_rng(11)
    base = GOOG["Close"].to_numpy()[:600]
    close = np.column_stack([base * np.exp(np.cumsum(rng.normal(0, 0.01, len(base)))) for _ in range(5)])
    spec = validate_strategy_config({"strategy_type": "momentum", "lookback": 20, "top_k": 2, "rebalance": 10,
                                     "fill": "close"})
    weights = target_positions(np, spec, {"close": close})
    output = simulate_rebalancing(close, close, weights, CASH, SimulationConfig(fill="close", commission_rate=fees))
    index = pd.date_range("2020-01-01", periods=len(close))
    portfolio = vbt.Portfolio.from_orders(pd.DataFrame(close, index=index), size=pd.DataFrame(weights, index=index),
                                          size_type="targetpercent", group_by=True, cash_sharing=True,
                                          call_seq="auto", init_cash=CASH, fees=fees, freq="1D")
    # Without fees the curves agree to RTOL. With fees, some rebalances differ by one cash-limited
    # buy (vectorbt ranks orders by an approximate value; ~1e-4 of equity): known, documented.
    np.testing.assert_allclose(output.equity, portfolio.value().to_numpy(), rtol=RTOL if fees == 0 else 2e-4)
