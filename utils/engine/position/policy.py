"""Train, store and run a position-sizing policy.

Files (the execution policy's formats, ``utils.engine.rl.storage``):
  * ``policy.json``  architecture, env config, features, observation names and the feature
                     normalisation (mean, std per observation column);
  * ``policy.pt``    the actor's torch ``state_dict`` (``torch.load(weights_only=True)``);
  * ``policy.onnx``  ``observation`` (batch, size) float32, RAW features + position ->
                     ``position`` (batch,) float32: normalise, clip to +-CLIP, the actor's mean
                     action, clipped to [low, 1] (SB3's deterministic Box action).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from utils.engine.rl.storage import (ACTIVATION_NAMES, InvalidPolicyFile, export_onnx, hidden_sizes_ok, load_weights,
                                     onnx_session, policy_directory)

from .env import CLIP, EnvConfig, PositionEnv, Series, step_reward
from .observations import POSITION, check_features, feature_lookback, observation_features

POLICY_FILE, WEIGHTS_FILE, ONNX_FILE = "policy.json", "policy.pt", "policy.onnx"
KIND, FORMAT_VERSION = "ppo_position", 1
ONNX_INPUT, ONNX_OUTPUT = "observation", "position"
HIDDEN_SIZES = (64, 64)
N_STEPS = 256        # PPO rollout length; training runs whole multiples of it
BATCH_SIZE = 64
MIN_TIMESTEPS = N_STEPS


@dataclass
class TrainedPositionPolicy:
    network: Any                  # utils.engine.rl.network.PolicyNetwork (one output: the mean action)
    config: EnvConfig
    features: list[str]           # requested feature names
    observation_names: list[str]  # lagged feature columns, then "position"
    history_bars: int
    mean: np.ndarray              # per lagged feature column (position excluded)
    std: np.ndarray
    timesteps: int = 0
    seed: int = 0
    training_seconds: float = 0.0
    model: Any = None             # the SB3 PPO object, in memory only: it is never saved

    def graph(self) -> Any:
        return PositionGraph(self.network, self.mean, self.std, self.config.low)


def _graph_class():
    import torch
    from torch import nn

    class Graph(nn.Module):
        def __init__(self, network, mean, std, low) -> None:
            super().__init__()
            self.network = network
            self.register_buffer("mean", torch.as_tensor(np.r_[mean, 0.0], dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(1.0 / np.r_[std, 1.0], dtype=torch.float32))
            self.low = float(low)

        def forward(self, observation):
            normalised = torch.clamp((observation - self.mean) * self.scale, -CLIP, CLIP)
            return torch.clamp(self.network(normalised)[:, 0], self.low, 1.0)

    return Graph


def PositionGraph(network: Any, mean: np.ndarray, std: np.ndarray, low: float) -> Any:  # noqa: N802 (a class)
    """RAW observations (batch, size) -> deterministic positions (batch,), as a torch module."""
    return _graph_class()(network, mean, std, low).eval()


# ------------------------------------------------------------------ data
def symbol_rows(bars: Mapping[str, Any], features: list[str], history_bars: int
                ) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """(observation names, [(raw lagged features, next returns)] per run of consecutive rows where
    both are finite) of one symbol's bars."""
    names, lagged = observation_features(bars, features, history_bars)
    close = np.asarray(bars["close"], dtype=np.float64)
    next_returns = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        next_returns[:-1] = close[1:] / close[:-1] - 1.0
    usable = np.isfinite(lagged).all(axis=1) & np.isfinite(next_returns)
    edges = np.flatnonzero(np.diff(np.r_[0, usable.astype(np.int8), 0]))
    runs = [(lagged[a:b], next_returns[a:b]) for a, b in zip(edges[::2], edges[1::2]) if b - a >= 2]
    return names, runs


def normalisation(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([features for features, _ in runs])
    std = rows.std(axis=0)
    return rows.mean(axis=0), np.where(std > 1e-12, std, 1.0)


# ------------------------------------------------------------------ training
def train_position_policy(runs: list[tuple[np.ndarray, np.ndarray]], *, features: list[str],
                          observation_names: list[str], history_bars: int, timesteps: int, seed: int,
                          config: EnvConfig | None = None,
                          progress: Callable[[float, float | None], None] | None = None,
                          hidden_sizes: tuple[int, ...] = HIDDEN_SIZES) -> TrainedPositionPolicy:
    """PPO (MlpPolicy, tanh) on ``runs`` (raw lagged features, next returns); ``progress(fraction,
    mean episode reward)`` as it goes (it may raise to abort). ``timesteps`` is rounded up to
    whole rollouts of ``N_STEPS``."""
    from stable_baselines3 import PPO

    from utils.engine.rl.network import from_sb3_policy
    from utils.engine.rl.sb3 import isolated_training, mean_episode_reward, progress_callback

    if timesteps < MIN_TIMESTEPS:
        raise ValueError(f"timesteps must be >= {MIN_TIMESTEPS}, got {timesteps}")
    config = config or EnvConfig()
    mean, std = normalisation(runs)
    series = [Series(np.clip((rows - mean) / std, -CLIP, CLIP).astype(np.float32), returns) for rows, returns in runs]
    started = time.perf_counter()
    with isolated_training():
        env = PositionEnv(series, config)
        model = PPO("MlpPolicy", env, n_steps=N_STEPS, batch_size=BATCH_SIZE, n_epochs=5, gamma=0.99,
                    gae_lambda=0.95, ent_coef=0.0, learning_rate=3e-4, seed=seed, device="cpu", verbose=0,
                    policy_kwargs={"net_arch": {"pi": list(hidden_sizes), "vf": list(hidden_sizes)},
                                   "log_std_init": -0.5})
        model.learn(total_timesteps=timesteps, callback=progress_callback(progress, timesteps) if progress else None)
    if progress is not None:
        progress(1.0, mean_episode_reward(model))
    network = from_sb3_policy(model.policy, tuple(hidden_sizes))
    return TrainedPositionPolicy(network, config, list(features), list(observation_names), history_bars, mean, std,
                                 int(model.num_timesteps), seed, time.perf_counter() - started, model)


def evaluate(act: Callable[[np.ndarray], np.ndarray], runs: list[tuple[np.ndarray, np.ndarray]],
             config: EnvConfig, periods_per_year: int = 252) -> dict[str, float]:
    """The deterministic policy (``act(raw observations (n, size)) -> positions (n,)``) rolled over
    ``runs`` (held-out rows), each starting flat, against buy-and-hold (position 1) on the same
    rows: summed per-bar net returns, the policy's annualised Sharpe, mean |position| and turnover."""
    rewards, held, turnover, hold = [], [], 0.0, 0.0
    for rows, returns in runs:
        position = 0.0
        observation = np.zeros((1, rows.shape[1] + 1), dtype=np.float32)
        for row, next_return in zip(rows, returns):
            observation[0, :-1], observation[0, -1] = row, position
            target = float(act(observation)[0])
            rewards.append(step_reward(target, position, float(next_return), config.commission))
            turnover += abs(target - position)
            held.append(abs(target))
            position = target
        hold += float(returns.sum()) - config.commission
    rewards = np.asarray(rewards)
    spread = rewards.std(ddof=1) if rewards.size > 1 else 0.0
    return {"policy_return": float(rewards.sum()), "buy_and_hold_return": hold,
            "policy_sharpe": float(rewards.mean() / spread * np.sqrt(periods_per_year)) if spread > 0 else 0.0,
            "policy_mean_abs_position": float(np.mean(held)) if held else 0.0, "policy_turnover": turnover,
            "held_out_bars": float(rewards.size)}


# ------------------------------------------------------------------ storage
def save_position_policy(policy: TrainedPositionPolicy, directory: str | Path) -> Path:
    """Write ``policy`` into an existing ``directory`` (JSON + state_dict + ONNX)."""
    import torch

    directory = Path(directory)
    network = policy.network.eval()
    torch.save(network.state_dict(), directory / WEIGHTS_FILE)
    export_onnx(policy.graph(), network.observation_size, directory / ONNX_FILE, ONNX_INPUT, [ONNX_OUTPUT])
    metadata = {"kind": KIND, "format_version": FORMAT_VERSION, **network.architecture(),
                "env": policy.config.to_dict(), "features": policy.features, "history_bars": policy.history_bars,
                "observation_names": policy.observation_names, "mean": policy.mean.tolist(),
                "std": policy.std.tolist(), "weights_file": WEIGHTS_FILE, "onnx_file": ONNX_FILE,
                "onnx_input": ONNX_INPUT, "onnx_output": ONNX_OUTPUT, "timesteps": policy.timesteps,
                "seed": policy.seed}
    (directory / POLICY_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False))
    return directory


def read_position_metadata(directory: str | Path) -> dict[str, Any]:
    """``policy.json``, checked: the architecture, the features and the normalisation agree."""
    directory = policy_directory(directory, POLICY_FILE, WEIGHTS_FILE, ONNX_FILE)
    try:
        metadata = json.loads((directory / POLICY_FILE).read_text())
        hidden = [int(width) for width in metadata["hidden_sizes"]]
        config = EnvConfig.from_dict(metadata["env"])
        features = check_features(metadata["features"])
        names, size = metadata["observation_names"], int(metadata["observation_size"])
        mean, std = np.asarray(metadata["mean"], dtype=np.float64), np.asarray(metadata["std"], dtype=np.float64)
        checks = [metadata["kind"] == KIND, metadata["format_version"] == FORMAT_VERSION,
                  metadata["activation"] in ACTIVATION_NAMES, metadata["n_actions"] == 1, hidden_sizes_ok(hidden),
                  len(names) == size, names[-1] == POSITION, mean.shape == std.shape == (size - 1,),
                  bool(np.isfinite(mean).all() and (std > 0).all()), 1 <= int(metadata["history_bars"]) <= 60]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InvalidPolicyFile(f"{POLICY_FILE} is not a position policy description: {exc}") from None
    if not all(checks):
        raise InvalidPolicyFile(f"{POLICY_FILE} describes an architecture or format this version does not build")
    return {**metadata, "hidden_sizes": hidden, "config": config, "features": features, "mean": mean, "std": std}


def load_position_network(directory: str | Path) -> Any:
    """The torch graph (``PositionGraph``) rebuilt from ``policy.json`` and ``policy.pt``."""
    from utils.engine.rl.network import PolicyNetwork

    metadata = read_position_metadata(directory)
    network = PolicyNetwork(metadata["observation_size"], tuple(metadata["hidden_sizes"]), 1, metadata["activation"])
    load_weights(network, Path(directory) / WEIGHTS_FILE)
    return PositionGraph(network, metadata["mean"], metadata["std"], metadata["config"].low)


# ------------------------------------------------------------------ inference
class PositionPolicy:
    """``PositionPolicy(model_dir)``: ``policy.onnx`` in an onnxruntime session, loaded once (CPU
    by default: a 64-wide MLP does not amortise host-device copies)."""

    def __init__(self, directory: str | Path, providers: list[str] | None = None) -> None:
        self.metadata = read_position_metadata(directory)
        self.session = onnx_session(Path(directory) / ONNX_FILE, ONNX_INPUT, self.metadata["observation_size"],
                                    providers or ["CPUExecutionProvider"])
        self.features: list[str] = self.metadata["features"]
        self.history_bars = int(self.metadata["history_bars"])
        self.observation_names: list[str] = list(self.metadata["observation_names"])
        self.config: EnvConfig = self.metadata["config"]

    @property
    def lookback(self) -> int:
        """Bars of history before the first bar with a full observation."""
        return feature_lookback(self.features) + self.history_bars - 1

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Positions (n,) float64 for raw observations (n, size): features in ``observation_names``
        order, the current position last."""
        batch = np.ascontiguousarray(observations, dtype=np.float32)
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0].astype(np.float64)

    def rolled_positions(self, bars: Mapping[str, Any], start: int = 0) -> np.ndarray:
        """The policy's target position at every bar of (time x symbols) ``bars`` (``close`` and
        whatever the features need; ``time`` optional), from row ``start``: each bar's features
        (bars up to it) and the policy's own previous output as its current position, starting
        flat. A bar without a full observation (warm-up, a symbol not listed yet) gives 0 and
        resets the position; rows before ``start`` are 0."""
        names, lagged = observation_features(bars, self.features, self.history_bars)
        if names != self.observation_names:
            raise InvalidPolicyFile(f"the policy's observation columns {self.observation_names} differ from the "
                                    f"features computed now {names}")
        rows, symbols = lagged.shape[:2]
        usable = np.isfinite(lagged).all(axis=2)
        positions = np.zeros((rows, symbols))
        observation = np.zeros((symbols, lagged.shape[2] + 1), dtype=np.float32)
        current = np.zeros(symbols)
        for row in range(start, rows):
            observation[:, :-1] = np.nan_to_num(lagged[row])
            observation[:, -1] = current
            current = np.where(usable[row], self.act(observation), 0.0)
            positions[row] = current
        return positions
