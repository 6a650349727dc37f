"""The CUDA sweep kernels (one thread per (combination, symbol), then the on-device reductions in
the CPU kernel's order), run in numba's CUDA simulator, give ``sweep_portfolios``' reductions bit
for bit (tolerance 0): each combination's portfolio equity curve, closed P&L in trade-table order,
exposed bars (or the held-bar mask) and traded value; and ``sweep_panels`` on the simulated GPU
ranks the same metrics table. 6 combinations x 3 symbols x 60 bars per case, in chunks of 4
(so two launches, the second partial) and in one chunk sized from the device's free memory."""
from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_backtest_sweep import make_bars
from utils.engine.backtest import validate_strategy_config
from utils.engine.backtest.sweep import sweep_panels
from utils.engine.backtest.sweep_batch import sweep_reductions, uses_crossover_lines
from utils.engine.cuda.sweep_kernels import chunk_size, combination_bytes

CAPITAL = 100_000.0
COMMISSION = 0.001
START = 14
CROSSOVER = {"strategy_type": "sma_crossover", "param_grid": {"fast": [2, 3, 5], "slow": [8, 13]}}

CASES = {
    "cross_next_open": {},
    "cross_close_long_short_costs_stops": {"fill": "close", "direction": "long_short", "commission_min": 1.0,
                                           "slippage_bps": 3, "borrow_rate": 0.2, "stop_loss": 0.03,
                                           "take_profit": 0.05, "trailing_stop": 0.04},
    "level_long_short_spread_fixed_cash": {"entry": "level", "direction": "long_short", "spread": 0.001,
                                           "sizing": "fixed_cash", "size": 20000},
    "given_targets_breakout": {"strategy": {"strategy_type": "breakout",
                                            "param_grid": {"entry_window": [3, 5, 8], "exit_window": [2, 4]}},
                               "direction": "long_short", "sizing": "percent_equity", "size": 0.6},
}


def _case(name):
    config = dict(CASES[name])
    strategy = config.pop("strategy", CROSSOVER)
    spec = validate_strategy_config({**strategy, **config})
    panels = make_bars(np.random.default_rng(len(name)), 60, 3)
    return spec, panels


@pytest.mark.parametrize("held_bars,chunk", [(False, 4), (True, None)])
@pytest.mark.parametrize("name", CASES)
def test_sweep_reductions_on_the_simulated_gpu_are_the_cpu_kernels(name, held_bars, chunk, simulated_gpu_backend):
    spec, panels = _case(name)
    combinations = spec.combinations()
    assert len(combinations) == 6
    assert uses_crossover_lines(spec, combinations, panels["close"]) == name.startswith(("cross", "level"))
    want = list(sweep_reductions(spec, combinations, panels, START, CAPITAL, COMMISSION, held_bars=held_bars))
    got = list(sweep_reductions(spec, combinations, panels, START, CAPITAL, COMMISSION, held_bars=held_bars,
                                backend=simulated_gpu_backend, chunk=chunk))
    assert len(got) == len(want)
    assert sum(len(row[1]) for row in want) >= 12  # the case closes trades
    for index, ((equity, closed, held, traded), (g_equity, g_closed, g_held, g_traded)) in enumerate(zip(want, got)):
        np.testing.assert_array_equal(g_equity, equity, err_msg=f"equity of combination {index}")
        np.testing.assert_array_equal(g_closed, closed, err_msg=f"closed P&L of combination {index}")
        np.testing.assert_array_equal(g_held, held, err_msg=f"exposure of combination {index}")
        assert g_traded == traded, index


def test_sweep_table_on_the_simulated_gpu_is_the_cpu_table(simulated_gpu_backend):
    spec, panels = _case("cross_close_long_short_costs_stops")
    seen = []
    want = sweep_panels(spec, panels, START, CAPITAL, COMMISSION)
    got = sweep_panels(spec, panels, START, CAPITAL, COMMISSION, progress=seen.append, backend=simulated_gpu_backend)
    assert got.table == want.table
    assert (want.device, got.device) == ("cpu", simulated_gpu_backend.label)
    assert seen[-1] == 1.0


def test_chunks_fit_the_free_memory():
    per_combination = combination_bytes(symbols=100, bars=2520, start=0, targets_given=False)
    assert 40e6 < per_combination < 60e6  # the trade regions dominate: 100 x 5,042 rows x 11 x 8 bytes
    assert chunk_size(1510, per_combination, chunk=64) == 64
    assert chunk_size(3, per_combination, chunk=64) == 3
    assert chunk_size(1510, per_combination) == 1510  # the simulator reports unbounded free memory


def test_walk_forward_on_the_simulated_gpu_is_the_cpu_walk_forward(simulated_gpu_backend):
    from utils.engine.backtest.sweep import walk_forward

    spec = validate_strategy_config({**CROSSOVER, "direction": "long_short", "stop_loss": 0.04,
                                     "walk_forward": {"splits": 2, "train_fraction": 0.6}})
    panels = make_bars(np.random.default_rng(11), 90, 3)
    want = walk_forward(spec, panels, START, CAPITAL, COMMISSION)
    got = walk_forward(spec, panels, START, CAPITAL, COMMISSION, backend=simulated_gpu_backend)
    assert len(want) == 2 and got == want
