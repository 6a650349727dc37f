"""The sweep kernel's own pieces: sma_crossover targets built in the kernel are the strategy's, grids
that span several kernel calls (and sweep ``entry``) are still row-for-row single runs, and the
alignment's stacked fast path is the scatter it replaces."""
import itertools

import numpy as np
import pytest

from tests.unit.test_backtest_sweep import CAPITAL, COMMISSION, make_bars
from utils.engine.backtest import validate_strategy_config
from utils.engine.backtest.runner import raw_panels, scattered_panels, simulate_panels
from utils.engine.backtest.strategies import sma_crossover
from utils.engine.backtest.sweep import sweep_panels
from utils.engine.backtest.sweep_batch import CHUNK
from utils.engine.backtest.sweep_kernel import CROSS, LEVEL, crossover_target
from utils.engine.indicators import kernels


@pytest.mark.parametrize("entry,allow_short,start", list(itertools.product(("cross", "level"), (False, True),
                                                                           (0, 1, 37))))
def test_kernel_crossover_targets_are_the_strategy_targets(entry, allow_short, start):
    rng = np.random.default_rng(start + 2 * allow_short)
    panels = make_bars(rng, 240, 9)  # NaN leading gaps and scattered NaN closes
    for fast, slow in ((2, 3), (3, 17), (8, 30)):
        want = sma_crossover(panels, allow_short, start, fast, slow, entry)
        fast_line, slow_line = kernels.sma(np, panels["close"], fast), kernels.sma(np, panels["close"], slow)
        got = np.empty(240)
        for column in range(9):
            crossover_target(np.ascontiguousarray(fast_line[:, column]), np.ascontiguousarray(slow_line[:, column]),
                             CROSS if entry == "cross" else LEVEL, allow_short, start, got)
            np.testing.assert_array_equal(got, want[:, column], err_msg=f"{fast}/{slow} column {column}")


@pytest.mark.parametrize("config", [
    {"strategy_type": "sma_crossover", "param_grid": {"fast": list(range(2, 11)), "slow": [12, 15, 21, 30, 41]}},
    {"strategy_type": "sma_crossover", "direction": "long_short", "fill": "close", "stop_loss": 0.04,
     "param_grid": {"entry": ["cross", "level"], "fast": [2, 3, 5, 9], "slow": [6, 10, 20, 33, 50]}},
    {"strategy_type": "breakout", "direction": "long_short",
     "param_grid": {"entry_window": [3, 5, 8, 13, 21], "exit_window": [2, 4, 6, 9, 14, 20, 30, 45]}},
])
def test_grids_over_several_kernel_calls_are_single_runs(config):
    spec = validate_strategy_config(config)
    combinations = spec.combinations()
    assert len(combinations) > CHUNK  # more than one kernel call (given targets: many more)
    rng = np.random.default_rng(len(combinations))
    panels = make_bars(rng, 200, 7)
    result = sweep_panels(spec, panels, 50, CAPITAL, COMMISSION)
    names = [name for name, _ in spec.param_grid]
    rows = {tuple(row["params"][name] for name in names): row["metrics"] for row in result.table}
    assert len(rows) == len(combinations)
    for combination in combinations:
        single = simulate_panels(combination, panels, 50, CAPITAL, COMMISSION)
        key = tuple(combination.param_values[name] for name in names)
        assert rows[key] == single.metrics(spec.periods_per_year, CAPITAL), key


def test_stacked_alignment_is_the_scatter():
    """Symbols that share every bar are stacked column by column; the result is the per-symbol
    scatter's, NaN values and a missing optional field included."""
    rng = np.random.default_rng(4)
    panels = make_bars(rng, 50, 4)
    times = np.arange(50, dtype=np.int64) * 86_400 * 10**9
    bars = {f"S{c}": {"time": times, **{field: panel[:, c] for field, panel in panels.items()}} for c in range(4)}
    del bars["S2"]["volume"]
    symbols = list(bars)
    stamps = {symbol: times for symbol in symbols}
    stacked = raw_panels(symbols, bars, stamps, times)
    scattered = scattered_panels(symbols, bars, stamps, times, {symbol: 50 for symbol in symbols})
    assert stacked.keys() == scattered.keys()
    for field in stacked:
        np.testing.assert_array_equal(stacked[field], scattered[field], err_msg=field)
    assert np.isnan(stacked["volume"][:, 2]).all()


def test_a_grid_whose_lines_exceed_the_budget_runs_from_the_signal_function(monkeypatch):
    from utils.engine.backtest import sweep_batch
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "direction": "long_short",
                                     "param_grid": {"fast": [2, 4, 7], "slow": [9, 16]}})
    panels = make_bars(np.random.default_rng(12), 150, 5)
    in_budget = sweep_panels(spec, panels, 30, CAPITAL, COMMISSION)
    monkeypatch.setattr(sweep_batch, "LINES_BUDGET_BYTES", 0)
    assert sweep_panels(spec, panels, 30, CAPITAL, COMMISSION).table == in_budget.table
