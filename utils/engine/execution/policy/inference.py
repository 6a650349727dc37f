"""Serve a saved execution policy: one action per call (closed loop) or a whole schedule (plan).

``act`` is the latency-critical path: the ONNX session, its input buffer and output name are
built once; a call copies the observation into the preallocated buffer and runs the session.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .env import fill_observation
from .storage import ONNX_ACTION, ONNX_INPUT, onnx_session


@dataclass(frozen=True)
class PlanState:
    """A parent order (about to start, or part-way through) and the bars just before now."""

    side: int                         # +1 buy, -1 sell
    quantity: float                   # the parent order, shares
    n_bars: int                       # bars left to execute over
    prices: np.ndarray                # recent typical prices, oldest first; the last is the latest bar
    volumes: np.ndarray               # their volumes (the mean is the reference for volume ratios)
    sigma: float | None = None        # per-bar return volatility; None = the std of ``prices``' log returns
    elapsed_fraction: float = 0.0     # of the order's horizon already gone, in [0, 1)
    remaining: float | None = None    # shares still to trade; None = quantity


class PolicyPlanner:
    """``PolicyPlanner(model_dir)``: loads ``policy.onnx`` once (CUDA first when onnxruntime has
    it, else the CPU; pass ``providers=["CPUExecutionProvider"]`` for the lowest single-call
    latency: a 64-wide MLP does not amortise host-device copies)."""

    def __init__(self, model_dir: str | Path, providers: list[str] | None = None) -> None:
        self.session, self.metadata = onnx_session(model_dir, providers)
        self.config = self.metadata["config"]
        self.multiples = tuple(self.metadata["action_multiples"])
        self._input = np.zeros((1, self.metadata["observation_size"]), dtype=np.float32)
        self._feed = {ONNX_INPUT: self._input}
        self._outputs = [ONNX_ACTION]
        self._observation = np.zeros(self.metadata["observation_size"], dtype=np.float64)

    def act(self, observation: np.ndarray) -> int:
        """The deterministic action index (into ``action_multiples``) for one observation."""
        self._input[0] = observation
        return int(self.session.run(self._outputs, self._feed)[0][0])

    def plan(self, state: PlanState) -> np.ndarray:
        """(n_bars,) shares per bar, summing to the remaining quantity: the policy rolled forward
        assuming every child fills and the coming bars are quiet (price unchanged, reference
        volume). Part-way through an order the "move since arrival" is measured from the latest
        bar (the arrival price is not in the state). The closed-loop use (``act`` each bar on the
        bars seen) reacts to what actually happens."""
        prices, volumes = np.asarray(state.prices, dtype=np.float64), np.asarray(state.volumes, dtype=np.float64)
        remaining = float(state.quantity if state.remaining is None else state.remaining)
        if prices.ndim != 1 or prices.shape != volumes.shape or prices.shape[0] < 1:
            raise ValueError("prices and volumes must be equally long 1-D arrays of at least one bar")
        if not (np.isfinite(prices).all() and (prices > 0).all() and np.isfinite(volumes).all()):
            raise ValueError("prices must be finite and > 0, volumes finite")
        if state.side not in (1, -1) or not state.quantity > 0 or not 0 <= remaining <= state.quantity:
            raise ValueError("need side +1 or -1, quantity > 0 and 0 <= remaining <= quantity")
        if state.n_bars < 1 or not 0.0 <= state.elapsed_fraction < 1.0:
            raise ValueError("need n_bars >= 1 and elapsed_fraction in [0, 1)")
        sigma = state.sigma if state.sigma is not None else (
            float(np.diff(np.log(prices)).std(ddof=1)) if prices.shape[0] > 2 else 0.0)
        lookback = prices.shape[0]
        reference = max(float(volumes.mean()), 1e-12)
        prices = np.r_[prices, np.full(state.n_bars, prices[-1])]
        volumes = np.r_[volumes, np.full(state.n_bars, reference)]
        schedule = np.zeros(state.n_bars)
        for bar in range(state.n_bars):
            bars_left = state.n_bars - bar
            if bars_left == 1:
                schedule[bar] = remaining
                break
            elapsed = state.elapsed_fraction + (1.0 - state.elapsed_fraction) * bar / state.n_bars
            fill_observation(self._observation, state.side, prices, volumes, lookback + bar, lookback - 1, elapsed,
                             1.0 - remaining / state.quantity, sigma, reference)
            wanted = min(remaining, self.multiples[self.act(self._observation)] * remaining / bars_left)
            schedule[bar] = wanted
            remaining -= wanted
        return schedule
