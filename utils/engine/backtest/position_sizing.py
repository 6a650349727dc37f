"""Model-driven position size: a ``ppo_position`` policy scales each entry of a sleeve strategy.

The strategy's own signal decides direction and timing. The policy's output at bar t (its
target position in [-1, 1], computed by the job from bars up to t before the simulation, under
``POLICY_POSITIONS`` in the panels) sizes an entry decided at bar t: the fraction of the sleeve's
equity deployed is ``output x direction`` when the two agree and ``|output| >=
position_threshold``, else 0, which vetoes the entry (the sleeve stays flat and the entry is
retried on the next bar while the strategy still wants it). That fraction multiplies the
``sizing`` rule's own fraction (all-in = 1, so a constant output of 0.5 is ``percent_equity``
0.5 exactly).
"""
from __future__ import annotations

import numpy as np

from utils.engine.backtest.simulate import FULL_EQUITY

POLICY_POSITIONS = "policy_positions"  # panels key: the job's (time x symbols) policy outputs


def policy_fractions(outputs: np.ndarray, targets: np.ndarray, threshold: float) -> np.ndarray:
    """(time x symbols) fraction of the sleeve an entry at each bar deploys (0 = vetoed)."""
    direction = np.sign(np.nan_to_num(np.asarray(targets, dtype=np.float64)))
    agreed = np.maximum(outputs * direction, 0.0)
    return np.where(np.abs(outputs) >= threshold, agreed, 0.0)


def scaled_size_fractions(spec, base: np.ndarray | None, outputs: np.ndarray | None,
                          targets: np.ndarray) -> np.ndarray | None:
    """``base`` (``config.size_fractions``: None = the fill convention's all-in) scaled by the
    policy; ``base`` itself without a policy."""
    if outputs is None or not spec.position_model:
        return base
    scale = policy_fractions(outputs, targets, spec.position_threshold)
    if base is None:  # all-in deploys everything: 1 is backtesting.py's "all of the equity"
        return np.where(scale >= 1.0, FULL_EQUITY if spec.fill == "next_open" else 1.0, scale)
    return base * scale
