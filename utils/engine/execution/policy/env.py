"""A gymnasium environment that executes one parent order per episode, bar by bar.

Design choices (Qlib's ``qlib.rl.order_execution`` is the model):

* Fills come from ``simulator.step_fill`` with the same ``ImpactModel`` that evaluates the
  policy, so training and scoring share one market model.
* Action: DISCRETE, a multiple of the TWAP slice (remaining quantity / remaining bars) from
  ``ACTION_MULTIPLES``. Discrete because (a) the TWAP schedule is exactly one action (1x), so the
  policy can always fall back to the benchmark; (b) PPO with a categorical head learns reliably
  from few samples where a Gaussian head over a bounded fraction needs clipping and tuning; (c)
  the exported deterministic action is an argmax, identical in torch and ONNX.
* Observation (``observation_names``): elapsed time fraction, remaining quantity fraction,
  deviation from the linear TWAP schedule (filled fraction - elapsed fraction, > 0 = ahead), the
  favourable price move since arrival, then the last ``history_bars`` bars' favourable returns
  and log volume ratios. "Favourable" = ``-side * return``: a falling price is good for a buy, a
  rising one for a sell, so one network serves both sides. Returns are in units of the arrival
  volatility, volumes relative to the mean volume before the order; all clipped to +-CLIP. Only
  bars BEFORE the decision bar are seen (its own price is what the child fills at).
* Reward per bar: the price advantage of that bar's fill vs the order's TWAP price,
  ``-side * (fill_price / twap_price - 1) * 1e4`` bps, weighted by the filled share of the order
  and multiplied by ``reward_scale``; over an episode it sums to the order's PA x fill rate.
* End of the order: the LAST bar always asks for the whole remainder (a market sweep of that
  bar, as Qlib's simulator does); what the participation cap still leaves unfilled is counted
  unfilled and penalised ``unfilled_penalty_bps`` per unit of unfilled fraction.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from ..simulator import ImpactModel, step_fill
from .windows import OrderWindow

ACTION_MULTIPLES = (0.0, 0.5, 1.0, 1.5, 2.0)
TWAP_ACTION = ACTION_MULTIPLES.index(1.0)
CLIP = 8.0
STATE_NAMES = ("elapsed", "remaining", "twap_deviation", "move_since_arrival")


@dataclass(frozen=True)
class EnvConfig:
    history_bars: int = 5
    reward_scale: float = 0.01           # bps -> reward units (keeps PPO's value targets near 1)
    unfilled_penalty_bps: float = 1000.0  # per unit of the order left unfilled at the end
    impact: ImpactModel = field(default_factory=ImpactModel)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EnvConfig":
        return cls(history_bars=int(values["history_bars"]), reward_scale=float(values["reward_scale"]),
                   unfilled_penalty_bps=float(values["unfilled_penalty_bps"]),
                   impact=ImpactModel(**values["impact"]))


def observation_names(history_bars: int) -> list[str]:
    return [*STATE_NAMES, *(f"return_{lag}" for lag in range(1, history_bars + 1)),
            *(f"volume_ratio_{lag}" for lag in range(1, history_bars + 1))]


def observation_size(history_bars: int) -> int:
    return len(STATE_NAMES) + 2 * history_bars


def fill_observation(out: np.ndarray, side: int, prices: np.ndarray, volumes: np.ndarray, decision_bar: int,
                     arrival_bar: int, elapsed: float, filled_fraction: float, sigma: float,
                     reference_volume: float) -> np.ndarray:
    """Write the observation for placing the child of bar ``decision_bar`` into ``out``: it reads
    bars before it only; ``arrival_bar`` is the last bar before the order, ``elapsed`` the fraction
    of the order's horizon gone."""
    history = (out.shape[0] - len(STATE_NAMES)) // 2
    scale = -side / max(sigma, 1e-12)
    out[0] = elapsed
    out[1] = 1.0 - filled_fraction
    out[2] = filled_fraction - elapsed
    out[3] = scale * np.log(prices[decision_bar - 1] / prices[arrival_bar])
    for lag in range(1, history + 1):
        bar = decision_bar - lag
        out[3 + lag] = scale * np.log(prices[bar] / prices[bar - 1]) if bar >= 1 else 0.0
        out[3 + history + lag] = np.log(max(volumes[bar], 1e-12) / reference_volume) if bar >= 0 else 0.0
    np.clip(out, -CLIP, CLIP, out=out)
    return out


class ExecutionEnv(gym.Env):
    """One parent order per episode, drawn from ``windows`` with the env's seeded generator (or
    given as ``reset(options={"window": index})``)."""

    metadata = {"render_modes": []}

    def __init__(self, windows: list[OrderWindow], config: EnvConfig | None = None) -> None:
        if not windows:
            raise ValueError("need at least one order window")
        self.windows = list(windows)
        self.config = config or EnvConfig()
        size = observation_size(self.config.history_bars)
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTION_MULTIPLES))
        self._observation = np.zeros(size, dtype=np.float64)
        self.window = self.windows[0]
        self._start_episode(self.window)

    def _start_episode(self, window: OrderWindow) -> None:
        self.window = window
        self.bar = 0  # order bar about to be traded
        self.remaining = window.quantity
        self.shift = 0.0
        self.filled = np.zeros(window.n_bars)
        self.fill_prices = np.zeros(window.n_bars)

    def _obs(self) -> np.ndarray:
        window = self.window
        fill_observation(self._observation, window.side, window.prices, window.volumes, window.lookback + self.bar,
                         window.lookback - 1, self.bar / window.n_bars, 1.0 - self.remaining / window.quantity,
                         window.sigmas[window.lookback], window.reference_volume)
        return self._observation.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        index = (options or {}).get("window")
        if index is None:
            index = int(self.np_random.integers(len(self.windows)))
        self._start_episode(self.windows[index])
        return self._obs(), {"window": index}

    def wanted(self, action: int) -> float:
        """Shares the child of the current bar asks for under ``action``."""
        bars_left = self.window.n_bars - self.bar
        if bars_left == 1:
            return self.remaining
        return min(self.remaining, ACTION_MULTIPLES[int(action)] * self.remaining / bars_left)

    def step(self, action):
        window, config = self.window, self.config
        bar = window.lookback + self.bar
        filled, fill_price, self.shift = step_fill(window.side, self.wanted(action), window.prices[bar],
                                                   window.volumes[bar], window.sigmas[bar], config.impact, self.shift)
        self.filled[self.bar], self.fill_prices[self.bar] = filled, fill_price
        self.remaining = max(self.remaining - filled, 0.0)
        reward_bps = -window.side * (fill_price / window.twap_price - 1.0) * 1e4 * filled / window.quantity
        self.bar += 1
        terminated = self.bar == window.n_bars
        if terminated:
            reward_bps -= config.unfilled_penalty_bps * self.remaining / window.quantity
            observation = self._observation.astype(np.float32)  # terminal: the last one, never read
        else:
            observation = self._obs()
        return observation, float(reward_bps * config.reward_scale), terminated, False, {
            "filled": filled, "fill_price": fill_price}


def rollout(env: ExecutionEnv, index: int, act) -> ExecutionEnv:
    """Run order ``index`` to its end choosing actions with ``act(observation) -> int``; the env
    then holds its per-bar fills (``filled``, ``fill_prices``, ``remaining``, ``shift``)."""
    observation, _ = env.reset(options={"window": index})
    terminated = False
    while not terminated:
        observation, _, terminated, _, _ = env.step(act(observation))
    return env
