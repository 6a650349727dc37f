"""The sweep's chunk_scale (the GPU out-of-memory retry's smaller shards, utils/gpu/oom.py): fewer
combinations per CUDA launch, the same table, in numba's CUDA simulator."""
from __future__ import annotations

import numpy as np

from utils.engine.backend import Backend
from utils.engine.backtest.config import validate_strategy_config
from utils.engine.backtest.sweep import sweep_panels


def test_smaller_chunks_give_the_same_sweep():
    rng = np.random.default_rng(9)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, (50, 2)), axis=0))
    panels = {"open": close * 1.001, "high": close * 1.01, "low": close * 0.99, "close": close,
              "volume": np.full(close.shape, 1e5)}
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fill": "close", "entry": "level",
                                     "param_grid": {"fast": [2, 3, 4], "slow": [10, 20]}})
    gpu = Backend(name="gpu", xp=np, device_id=0, simulated=True)
    whole = sweep_panels(spec, panels, 0, 1e6, 0.001, backend=gpu)
    for scale in (0.5, 0.2):
        assert sweep_panels(spec, panels, 0, 1e6, 0.001, backend=gpu, chunk_scale=scale).table == whole.table
