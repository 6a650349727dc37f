"""``sma_crossover`` submitted over gRPC (server + queue + worker) against backtesting.py's own
SmaCross example on the same bars, read back through MarketDataService.

backtesting.py runs with the settings of ``test_backtest_parity`` (next-open fills, whole shares,
commission on entry and exit, no spread, margin 1, ``trade_on_close=False``, open trades left
open) but with the README's explicit ``position.close()`` instead of ``exclusive_orders``. It
calls ``next()`` from the first bar where both averages and their previous values exist; handing
it ``slow`` bars before our start makes that bar our first evaluated bar (the server keeps the
same history for the indicators). Trades must match bar for bar: dates and sizes exactly, prices,
P&L and commission to ``RTOL`` relative (``atol`` 1e-9 of the cash); the equity curve, final
equity and total return to ``RTOL``.
"""
from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc, market_data_pb2, market_data_pb2_grpc
from tests.parity.test_backtest_parity import CASH, RTOL, assert_trades_match_backtesting_py
from tests.references import require_reference

backtesting = require_reference("backtesting")
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import SMA  # noqa: E402

SYMBOL = "000001.SZ"
END = "2022-12-31"
COMMISSION = 0.002
TERMINAL = (backtest_pb2.COMPLETED, backtest_pb2.FAILED, backtest_pb2.CANCELLED)
# (fast, slow, start): from the first stored bar (no history before it), and from a later day
# where SMA(5) already stands above SMA(30) (entry "level" would be long at once; SmaCross waits)
CASES = [(10, 20, "2015-01-01"), (5, 30, "2018-04-02")]


class SmaCross(backtesting.Strategy):
    """backtesting.py's README example; ``short = False`` is the long-only variant (the sell side
    only closes the long)."""
    n1 = 10
    n2 = 20
    short = True

    def init(self):
        price = self.data.Close
        self.sma1 = self.I(SMA, price, self.n1)
        self.sma2 = self.I(SMA, price, self.n2)

    def next(self):
        if crossover(self.sma1, self.sma2):
            self.position.close()
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.position.close()
            if self.short:
                self.sell()


def stored_bars(channel) -> pd.DataFrame:
    response = market_data_pb2_grpc.MarketDataServiceStub(channel).GetBars(
        market_data_pb2.GetBarsRequest(symbol=SYMBOL, end_time=END))
    frame = pd.DataFrame([(bar.open, bar.high, bar.low, bar.close, bar.volume) for bar in response.bars],
                         columns=["Open", "High", "Low", "Close", "Volume"],
                         index=pd.DatetimeIndex([bar.time for bar in response.bars]))
    assert len(frame) > 1000
    return frame


def backtest_over_grpc(channel, config: dict, start: str):
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    submitted = stub.IntegratedBacktest(backtest_pb2.BacktestRequest(
        stock_codes=[SYMBOL], start_time=start, end_time=END, strategy_config=json.dumps(config),
        initial_capital=CASH, commission_rate=COMMISSION))
    last = None
    for last in stub.WatchBacktest(backtest_pb2.BacktestStatusRequest(backtest_id=submitted.backtest_id),
                                   timeout=120):
        if last.status in TERMINAL:
            break
    assert last is not None and last.status == backtest_pb2.COMPLETED, last
    pages, token = [], ""
    while True:  # a small page size walks the trade pages
        page = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(
            backtest_id=submitted.backtest_id, page_size=7, page_token=token))
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    trades = [trade for page in pages for trade in page.trades]
    assert len(trades) == pages[0].total_trades
    return pages[0], trades


def run_sma_cross(frame: pd.DataFrame, fast: int, slow: int, short: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": we compare the open one too
        test = backtesting.Backtest(frame, SmaCross, cash=CASH, commission=COMMISSION, spread=0.0, margin=1.0,
                                    trade_on_close=False, exclusive_orders=False, finalize_trades=False)
        return test.run(n1=fast, n2=slow, short=short)


@pytest.mark.parametrize("fast,slow,start", CASES, ids=[f"{f}-{s}-from-{d}" for f, s, d in CASES])
@pytest.mark.parametrize("direction", ["long_short", "long_only"])
def test_sma_crossover_over_grpc_matches_backtesting_py_sma_cross(channel, fast, slow, start, direction):
    history = stored_bars(channel)
    start_row = int(history.index.searchsorted(pd.Timestamp(start)))
    frame = history.iloc[max(0, start_row - slow):]
    first = start_row - max(0, start_row - slow)  # our first evaluated bar, as a row of `frame`
    config = {"strategy_type": "sma_crossover", "fast": fast, "slow": slow, "direction": direction}
    result, trades = backtest_over_grpc(channel, config, start)
    stats = run_sma_cross(frame, fast, slow, short=direction == "long_short")

    assert json.loads(result.strategy_config)["entry"] == "cross"  # the default
    rows = {day: row for row, day in enumerate(frame.index)}
    ours = SimpleNamespace(trades=[SimpleNamespace(
        entry_index=rows[pd.Timestamp(t.entry_time)], exit_index=rows.get(pd.Timestamp(t.exit_time or None)),
        size=t.size, entry_price=t.entry_price, exit_price=t.exit_price, pnl=t.pnl, commission=t.commission,
        is_open=t.is_open) for t in trades])
    assert_trades_match_backtesting_py(ours, stats)
    closed = stats._trades
    assert [t.entry_time for t in trades if not t.is_open] == [f"{d:%Y-%m-%d}" for d in closed["EntryTime"]]
    assert [t.exit_time for t in trades if not t.is_open] == [f"{d:%Y-%m-%d}" for d in closed["ExitTime"]]
    if direction == "long_short":
        assert {t.direction for t in trades} == {"long", "short"}
    else:
        assert all(t.size > 0 for t in trades)

    still_open = [t for t in trades if t.is_open]
    theirs_open = stats._strategy.trades
    assert len(still_open) == len(theirs_open) <= 1
    for mine, theirs in zip(still_open, theirs_open):
        assert (pd.Timestamp(mine.entry_time), mine.size) == (theirs.entry_time, theirs.size)
        assert mine.entry_price == pytest.approx(theirs.entry_price, rel=RTOL)

    equity = np.array([point.equity for point in result.equity_curve])
    assert [point.time for point in result.equity_curve] == [f"{d:%Y-%m-%d}" for d in frame.index[first:]]
    np.testing.assert_allclose(equity, stats._equity_curve["Equity"].to_numpy()[first:], rtol=RTOL)
    metrics = result.performance_metrics
    assert metrics.final_equity == pytest.approx(stats["Equity Final [$]"], rel=RTOL)
    assert metrics.total_return == pytest.approx(stats["Return [%]"] / 100, rel=RTOL)
    assert metrics.num_trades == stats["# Trades"] > 10


def test_level_entry_is_not_sma_cross(channel):
    """``entry: level`` (long from the first bar where fast > slow) is a different strategy: it is
    already long, or short, before the first crossing when the averages start apart."""
    config = {"strategy_type": "sma_crossover", "fast": 10, "slow": 20, "direction": "long_short"}
    _, crossing = backtest_over_grpc(channel, config, "2015-01-01")
    _, level = backtest_over_grpc(channel, {**config, "entry": "level"}, "2015-01-01")
    assert level[0].entry_time < crossing[0].entry_time
