"""Train a PPO execution policy (Stable-Baselines3) and score it against TWAP on held-out orders.

Determinism: PPO runs on the CPU with one torch thread and ``seed`` (SB3 seeds python, numpy,
torch and the env); the process-wide generators are restored afterwards. The same windows,
config, timesteps and seed give bit-identical weights.

What to expect: the sample data (and most real daily data) is close to a random walk, so the
only thing an execution policy can reliably win is impact, and TWAP already minimises the
square-root impact of a fixed-horizon order. A policy that merely matches TWAP is a good result;
``evaluate`` reports the difference with its standard error so a "beat" is not read into noise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from utils.engine.rl.sb3 import isolated_training, progress_callback

from ..simulator import simulate_order
from .env import TWAP_ACTION, EnvConfig, ExecutionEnv, rollout
from .network import PolicyNetwork, from_sb3_policy
from .windows import OrderWindow

HIDDEN_SIZES = (64, 64)
N_STEPS = 512        # PPO rollout length; training runs whole multiples of it
BATCH_SIZE = 64
MIN_TIMESTEPS = N_STEPS


@dataclass
class TrainedPolicy:
    network: PolicyNetwork        # the actor, on the CPU, in eval mode
    config: EnvConfig
    timesteps: int
    seed: int
    training_seconds: float
    model: Any = None             # the SB3 PPO object, in memory only: it is never saved

    def act(self, observation: np.ndarray) -> int:
        with torch.no_grad():
            return int(self.network.act(torch.as_tensor(observation, dtype=torch.float32)).item())


def train_policy(order_windows: list[OrderWindow], *, timesteps: int, seed: int,
                 progress: Callable[[float], None] | None = None, config: EnvConfig | None = None,
                 hidden_sizes: tuple[int, ...] = HIDDEN_SIZES) -> TrainedPolicy:
    """PPO (MlpPolicy, tanh, ``hidden_sizes``) on ``order_windows``; ``progress(fraction)`` as it
    goes (it may raise to abort training). ``timesteps`` is rounded up to whole rollouts of 512."""
    from stable_baselines3 import PPO

    if timesteps < MIN_TIMESTEPS:
        raise ValueError(f"timesteps must be >= {MIN_TIMESTEPS}, got {timesteps}")
    config = config or EnvConfig()
    started = time.perf_counter()
    with isolated_training():
        env = ExecutionEnv(order_windows, config)
        model = PPO("MlpPolicy", env, n_steps=N_STEPS, batch_size=BATCH_SIZE, n_epochs=5, gamma=1.0,
                    gae_lambda=0.95, ent_coef=0.01, learning_rate=3e-4, seed=seed, device="cpu", verbose=0,
                    policy_kwargs={"net_arch": {"pi": list(hidden_sizes), "vf": list(hidden_sizes)}})
        callback = progress_callback(lambda fraction, _reward: progress(fraction), timesteps) if progress else None
        model.learn(total_timesteps=timesteps, callback=callback)
    if progress is not None:
        progress(1.0)
    network = from_sb3_policy(model.policy, tuple(hidden_sizes))
    return TrainedPolicy(network, config, int(model.num_timesteps), seed, time.perf_counter() - started, model)


# ------------------------------------------------------------------ evaluation
def order_outcome(window: OrderWindow, filled: np.ndarray, fill_prices: np.ndarray) -> dict[str, float]:
    """One order's execution quality (Qlib's indicators): ``pa_bps`` price advantage of the
    average fill vs the window's TWAP price (positive = better), ``ffr`` fill rate, ``pos`` 1 when
    PA > 0, ``shortfall_bps`` cost vs the first order bar's price (positive = worse)."""
    done = float(filled.sum())
    if done <= 0:
        return {"pa_bps": 0.0, "ffr": 0.0, "pos": 0.0, "shortfall_bps": 0.0}
    average = float((filled * fill_prices).sum() / done)
    pa = -window.side * (average / window.twap_price - 1.0) * 1e4
    return {"pa_bps": pa, "ffr": done / window.quantity, "pos": float(pa > 0),
            "shortfall_bps": window.side * (average / window.order_prices[0] - 1.0) * 1e4}


def _schedule_outcome(window: OrderWindow, schedule: np.ndarray, config: EnvConfig) -> dict[str, float]:
    result = simulate_order(window.side, window.quantity, schedule, window.order_prices, window.order_volumes,
                            window.order_sigmas, config.impact)
    return order_outcome(window, result.filled, result.fill_prices)


def evaluate(policy: Any, order_windows: list[OrderWindow], config: EnvConfig | None = None) -> dict[str, Any]:
    """Mean PA (bps), FFR, POS and shortfall over ``order_windows`` (held-out orders) for the
    policy (``policy.act(observation) -> int``: a ``TrainedPolicy`` or a ``PolicyPlanner``), TWAP
    (equal slices) and all-at-once (the whole order in the first bar), on the same simulator.

    ``policy_vs_twap_pa_bps`` is the mean per-order PA difference and ``..._se`` its standard
    error: a difference within ~2 standard errors is no evidence the policy beats TWAP.
    """
    config = config or getattr(policy, "config", None) or EnvConfig()
    env = ExecutionEnv(order_windows, config)
    actions: list[int] = []  # the policy's choices, sweep bars excluded

    def act(observation: np.ndarray) -> int:
        actions.append(policy.act(observation))
        return actions[-1]

    outcomes: dict[str, list[dict[str, float]]] = {"policy": [], "twap": [], "all_at_once": []}
    for index, window in enumerate(order_windows):
        rollout(env, index, act)
        actions.pop()  # the last bar always sweeps the remainder, whatever was chosen
        outcomes["policy"].append(order_outcome(window, env.filled, env.fill_prices))
        outcomes["twap"].append(_schedule_outcome(window, np.full(window.n_bars, window.quantity / window.n_bars),
                                                  config))
        outcomes["all_at_once"].append(_schedule_outcome(window, np.r_[window.quantity, np.zeros(window.n_bars - 1)],
                                                         config))
    summary: dict[str, Any] = {"orders": len(order_windows)}
    for name, rows in outcomes.items():
        summary[name] = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    difference = np.array([p["pa_bps"] - t["pa_bps"] for p, t in zip(outcomes["policy"], outcomes["twap"])])
    summary["policy_vs_twap_pa_bps"] = float(difference.mean())
    summary["policy_vs_twap_pa_bps_se"] = (float(difference.std(ddof=1) / np.sqrt(difference.size))
                                           if difference.size > 1 else 0.0)
    summary["policy_twap_action_share"] = float(np.mean(np.equal(actions, TWAP_ACTION))) if actions else 1.0
    return summary
