"""Stable-Baselines3 training helpers shared by the PPO policies.

Determinism: PPO runs on the CPU with one torch thread and a seed (SB3 seeds python, numpy,
torch and the env); ``isolated_training`` restores the process-wide generators afterwards, so
the same data, config, timesteps and seed give bit-identical weights.
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterator

import numpy as np
import torch

PROGRESS_EVERY = 0.01


def progress_callback(progress: Callable[[float, float | None], None], total: int,
                      every: float = PROGRESS_EVERY) -> Any:
    """An SB3 callback calling ``progress(fraction of timesteps done, mean episode reward)`` at most
    every ``every`` of the run; the reward is the mean over SB3's episode buffer (its ``Monitor``
    wrapper's last 100 episodes), None before the first episode ends. ``progress`` may raise to
    abort training."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ProgressCallback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.reported = -1.0

        def _on_step(self) -> bool:
            fraction = min(self.num_timesteps / total, 1.0)
            if fraction - self.reported >= every:
                progress(fraction, mean_episode_reward(self.model))
                self.reported = fraction
            return True

    return ProgressCallback()


def mean_episode_reward(model: Any) -> float | None:
    episodes = getattr(model, "ep_info_buffer", None)
    if not episodes:
        return None
    return float(np.mean([episode["r"] for episode in episodes]))


@contextlib.contextmanager
def isolated_training() -> Iterator[None]:
    """One torch thread (a 64-wide MLP loses time to thread hand-offs) and the process-wide
    random generators restored after SB3 seeds them."""
    threads, python_state, numpy_state = torch.get_num_threads(), random.getstate(), np.random.get_state()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
