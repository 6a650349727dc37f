"""The CUDA sleeve kernel (one thread per symbol, ``simulate_sleeve`` compiled as a device
function), run in numba's CUDA simulator, equals the CPU single run bit for bit (tolerance 0):
equity, positions, sleeve curves, the trade table, exposure and turnover, for both fills, every
cost (commission with a minimum, slippage, spread, borrow on shorts), each stop kind, the sizing
rules and both directions. Small panels: the simulator runs the kernel as Python."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from tests.unit.test_backtest_sweep import assert_same_output, make_bars, make_targets
from utils.engine.backtest import validate_strategy_config
from utils.engine.backtest.runner import simulate_panels
from utils.engine.backtest.simulate import SimulationConfig, simulate_portfolio
from utils.engine.backtest.sleeve_kernel import EXIT_REASONS, T_REASON
from utils.engine.cuda.sleeve_kernels import simulate_portfolio_on_device

CAPITAL = 100_000.0
COMMISSION = 0.001
BARS, SYMBOLS, START = 60, 3, 5

CASES = {  # name: (strategy config, exit reason the case must produce)
    "next_open_all_in": ({}, None),
    "close_long_short_rate_min_percent": ({"fill": "close", "direction": "long_short", "commission_min": 4.0,
                                           "sizing": "percent_equity", "size": 0.5}, None),
    "slippage_spread_borrow_fixed_cash": ({"direction": "long_short", "slippage_bps": 7, "spread": 0.0012,
                                           "borrow_rate": 0.5, "sizing": "fixed_cash", "size": 3000}, None),
    "min_only_stop_loss": ({"fill": "close", "commission_min": 2.5, "stop_loss": 0.01}, "stop_loss"),
    "take_profit": ({"direction": "long_short", "take_profit": 0.015}, "take_profit"),
    "trailing_stop": ({"fill": "close", "direction": "long_short", "trailing_stop": 0.01}, "trailing_stop"),
    "all_stops_volatility_sizing": ({"direction": "long_short", "stop_loss": 0.02, "take_profit": 0.03,
                                     "trailing_stop": 0.015, "slippage_bps": 5, "borrow_rate": 0.3,
                                     "sizing": "volatility_target", "target_volatility": 0.1, "vol_window": 10},
                                    None),
}


@pytest.mark.parametrize("name", CASES)
def test_single_run_on_the_simulated_gpu_is_the_cpu_run(name, simulated_gpu_backend):
    config, reason = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    panels = make_bars(rng, BARS, SYMBOLS)
    target = make_targets(rng, BARS, SYMBOLS, change=0.2)
    spec = validate_strategy_config({"strategy_type": "sma_crossover", **config})
    want = simulate_panels(spec, panels, START, CAPITAL, COMMISSION, targets=target)
    got = simulate_panels(spec, panels, START, CAPITAL, COMMISSION, targets=target, backend=simulated_gpu_backend)
    assert len(want.trade_table) >= 6  # the case trades
    if reason is not None:
        assert EXIT_REASONS.index(reason) in want.trade_table[:, T_REASON], "the case should hit its stop"
    assert_same_output(got, want)
    assert want.device == "cpu" and got.device == simulated_gpu_backend.label


def test_open_trade_and_no_trade_symbols():
    """A position still held at the end (the open-trade row), a symbol that never trades and one
    with no prices at all come back as on the CPU."""
    rng = np.random.default_rng(7)
    panels = make_bars(rng, 40, 3, holes=False)
    panels["close"][:, 2] = np.nan
    target = np.ones((40, 3))
    target[:, 1] = 0.0
    config = SimulationConfig(commission_rate=COMMISSION)
    want = simulate_portfolio(panels["open"], panels["close"], target, CAPITAL, start_index=3, high=panels["high"],
                              low=panels["low"], config=config)
    got = simulate_portfolio_on_device(panels["open"], panels["high"], panels["low"], panels["close"], target,
                                       CAPITAL, config, 3)
    assert want.trades and want.trades[-1].is_open
    assert_same_output(got, want)


def test_bad_input_is_refused_before_any_launch():
    panel = np.ones((10, 2))
    with pytest.raises(ValueError, match="shape"):
        simulate_portfolio_on_device(panel, panel, panel, panel, np.ones((9, 2)), CAPITAL, SimulationConfig(), 0)
    with pytest.raises(ValueError, match="initial_capital"):
        simulate_portfolio_on_device(panel, panel, panel, panel, panel, 0.0, SimulationConfig(), 0)
