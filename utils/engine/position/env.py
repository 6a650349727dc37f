"""A gymnasium environment that holds a position in one symbol, bar by bar.

* Observation: the symbol's normalised lagged features at bar t (``observations``; bars up to t
  only) followed by the position held coming into the bar.
* Action: Box, the target position fraction in [-1, 1] ([0, 1] with ``long_only``), clipped.
* Reward per bar: ``position x next return - commission x |position - previous position|``
  (the return from t's close to t+1's close; the trade is at t's close), times ``reward_scale``
  (100: rewards in percent, which keeps PPO's value targets near 1).
* Episode: ``episode_bars`` consecutive bars of one series (a random series and start, or the
  whole of a shorter series), starting flat.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

CLIP = 10.0  # normalised features are clipped to +-CLIP (outliers, a level the training never saw)


@dataclass(frozen=True)
class EnvConfig:
    episode_bars: int = 128
    commission: float = 0.001
    long_only: bool = False
    reward_scale: float = 100.0

    @property
    def low(self) -> float:
        return 0.0 if self.long_only else -1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EnvConfig":
        return cls(episode_bars=int(values["episode_bars"]), commission=float(values["commission"]),
                   long_only=bool(values["long_only"]), reward_scale=float(values["reward_scale"]))


@dataclass(frozen=True)
class Series:
    """One symbol's consecutive usable bars: normalised features (rows, k) and each row's next return."""

    features: np.ndarray
    next_returns: np.ndarray


def step_reward(position: float, previous: float, next_return: float, commission: float) -> float:
    return position * next_return - commission * abs(position - previous)


class PositionEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, series: list[Series], config: EnvConfig | None = None) -> None:
        if not series:
            raise ValueError("need at least one series of bars")
        self.series = list(series)
        self.config = config or EnvConfig()
        size = self.series[0].features.shape[1] + 1
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Box(self.config.low, 1.0, shape=(1,), dtype=np.float32)
        self._observation = np.zeros(size, dtype=np.float32)
        self._start(0, 0)

    def _start(self, index: int, start: int) -> None:
        self.current = self.series[index]
        self.row = start
        self.end = min(start + self.config.episode_bars, self.current.features.shape[0])
        self.position = 0.0

    def _obs(self) -> np.ndarray:
        self._observation[:-1] = self.current.features[self.row]
        self._observation[-1] = self.position
        return self._observation.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        index = int(self.np_random.integers(len(self.series)))
        rows = self.series[index].features.shape[0]
        start = int(self.np_random.integers(max(rows - self.config.episode_bars, 0) + 1))
        self._start(index, start)
        return self._obs(), {"series": index, "start": start}

    def step(self, action):
        position = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], self.config.low, 1.0))
        reward = step_reward(position, self.position, float(self.current.next_returns[self.row]),
                             self.config.commission)
        self.position = position
        self.row += 1
        terminated = self.row >= self.end
        observation = self._observation.copy() if terminated else self._obs()  # terminal: never read
        return observation, reward * self.config.reward_scale, terminated, False, {"position": position}
