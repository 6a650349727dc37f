"""Small backtest jobs run their numba kernels on one thread; the worker thread's setting is restored."""
import numba
import numpy as np

from utils.engine.backtest import validate_strategy_config
from utils.tasks.backtest import SMALL_JOB_CELLS, job_cells, kernel_threads


def test_job_cells_count_combinations_symbols_and_bars():
    bars = {"A": {"time": np.arange(300)}, "B": {"time": np.arange(250)}}
    single = validate_strategy_config({"strategy_type": "sma_crossover"})
    grid = validate_strategy_config({"strategy_type": "sma_crossover",
                                     "param_grid": {"fast": [2, 3, 5], "slow": [10, 20]}})
    assert job_cells(single, bars) == 2 * 300
    assert job_cells(grid, bars) == 6 * 2 * 300
    assert job_cells(single, {f"S{i}": {"time": np.arange(1000)} for i in range(100)}) < SMALL_JOB_CELLS


def test_kernel_threads_sets_and_restores():
    before = numba.get_num_threads()
    with kernel_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with kernel_threads(None):
        assert numba.get_num_threads() == before
