"""A symbol shard's memory: ``align_bars(consume=True)`` and ``sweep_reductions(consume_panels=True)``
hand the read columns and the panels over as they copy them, with the same numbers."""
from __future__ import annotations

import numpy as np
import pytest

from utils.engine.backtest import validate_strategy_config
from utils.engine.backtest.runner import align_bars
from utils.engine.backtest.sweep_batch import sweep_reductions
from utils.tasks.shards import release_freed_memory

DAY = 86_400 * 10**9
SPEC = validate_strategy_config({"strategy_type": "sma_crossover", "param_grid": {"fast": [3, 5], "slow": [10, 20]}})


def columns(ragged: bool) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    found = {}
    for index, symbol in enumerate(["A", "B", "C"]):
        count = 120 - (index * 7 if ragged else 0)  # ragged: symbols end on different days (scattered path)
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.01, count)))
        found[symbol] = {"time": np.arange(count, dtype=np.int64) * DAY + (index * 2 * DAY if ragged else 0),
                         "open": close * (1 + rng.normal(0, 0.002, count)), "high": close * 1.01,
                         "low": close * 0.99, "close": close, "volume": rng.integers(100, 1000, count).astype(float)}
    return found


@pytest.mark.parametrize("ragged", [False, True])
def test_consumed_alignment_equals_the_plain_one_and_empties_the_columns(ragged):
    plain = align_bars(SPEC, columns(ragged), 0, 200 * DAY)
    given = columns(ragged)
    calls = []
    consumed = align_bars(SPEC, given, 0, 200 * DAY, consume=True, released=lambda: calls.append(1))
    assert np.array_equal(plain.calendar, consumed.calendar) and plain.start_index == consumed.start_index
    for field, panel in plain.panels.items():
        np.testing.assert_array_equal(consumed.panels[field], panel)
    assert all(set(fields) == {"time"} for fields in given.values()) and len(calls) == 5


def test_consumed_sweep_equals_the_plain_one_and_empties_the_panels():
    aligned = align_bars(SPEC, columns(False), 0, 200 * DAY)
    combinations = SPEC.combinations()
    plain = list(sweep_reductions(SPEC, combinations, dict(aligned.panels), aligned.start_index, 1e5, 0.001,
                                  held_bars=True))
    panels = dict(aligned.panels)
    consumed = list(sweep_reductions(SPEC, combinations, panels, aligned.start_index, 1e5, 0.001, held_bars=True,
                                     consume_panels=True))
    assert panels == {}
    for (equity, closed, held, traded), (equity2, closed2, held2, traded2) in zip(plain, consumed, strict=True):
        np.testing.assert_array_equal(equity, equity2)
        np.testing.assert_array_equal(closed, closed2)
        np.testing.assert_array_equal(held, held2)
        assert traded == traded2


def test_releasing_freed_memory_is_safe_to_call_any_time():
    release_freed_memory()
    release_freed_memory()


def test_a_consuming_sleeve_batch_equals_the_plain_one_and_empties_the_panels():
    from utils.engine.backtest.config import target_positions
    from utils.engine.backtest.sweep import SleeveBatch
    single = validate_strategy_config({"strategy_type": "sma_crossover", "fast": 3, "slow": 10})
    aligned = align_bars(single, columns(False), 0, 200 * DAY)
    target = target_positions(np, single, aligned.panels, aligned.start_index)
    plain = SleeveBatch(single, dict(aligned.panels), aligned.start_index).run(single, target, 1e5, 0.001)
    panels = dict(aligned.panels)
    consumed = SleeveBatch(single, panels, aligned.start_index, consume=True).run(single, target, 1e5, 0.001)
    assert panels == {}
    np.testing.assert_array_equal(plain.equity, consumed.equity)
    np.testing.assert_array_equal(plain.trade_table, consumed.trade_table)
