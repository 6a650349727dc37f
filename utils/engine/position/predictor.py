"""``ppo_position`` in the model registry: TrainModel trains it (a queued job on stored bars),
the model store keeps it, ListModels / GetModelMetrics describe it, and Predict serves it: the
input columns are the observation (``feature_columns``: each feature column at the bar and its
lags, then ``position``, the position currently held) and each prediction is the target position
fraction. Backtests use it through ``strategy_config.position_model``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from utils.engine.models.base import BasePredictor, ModelConfig, ProgressInfo, TrainingResult, report_progress
from utils.engine.models.errors import InvalidInputData, InvalidTrainingData
from utils.engine.models.param_rules import INVALID, Rule, boolean, clean_params, count, real
from utils.engine.models.registry import register_model
from utils.engine.models.trainer import TrainingReport

from .env import EnvConfig
from .observations import DEFAULT_FEATURES, check_features, column_names, observation_names
from .policy import MIN_TIMESTEPS, ONNX_FILE, POLICY_FILE, WEIGHTS_FILE, PositionPolicy, save_position_policy

MODEL_TYPE = "ppo_position"
TARGET = "target_position"  # the output; "position" (the input) is the current one
TRAINING_SHARE = 0.9  # of the job's progress; scoring the held-out bars takes the rest
REWARD_NAME = "mean_episode_reward"  # reported in the progress's validation_loss slot


def _features(value: Any) -> Any:
    try:
        return check_features(value)
    except ValueError:
        return INVALID


PARAM_RULES = {
    "timesteps": Rule(count(MIN_TIMESTEPS, 2_000_000), f"an integer in [{MIN_TIMESTEPS}, 2000000] (PPO steps)"),
    "features": Rule(_features, "a non-empty list of engine feature names (rsi_14, macd, zscore_20...) or "
                                "return_<n>, sma_ratio_<n>"),
    "history_bars": Rule(count(1, 60), "an integer in [1, 60] (bars of features the policy observes)"),
    "long_only": Rule(boolean, "true or false (positions in [0, 1] instead of [-1, 1])"),
    "commission": Rule(real(0.0, 0.1), "a number in [0, 0.1] (cost per unit of position traded)"),
    "episode_bars": Rule(count(8, 100_000), "an integer in [8, 100000] (bars per training episode)"),
    "seed": Rule(count(0, 2**31 - 1), "an integer >= 0"),
    "held_out_fraction": Rule(real(0.05, 0.5), "a number in [0.05, 0.5] (last bars of each symbol kept for scoring)"),
}
DEFAULTS = {"timesteps": 20_000, "features": list(DEFAULT_FEATURES), "history_bars": 1, "long_only": False,
            "commission": 0.001, "episode_bars": 128, "seed": 0, "held_out_fraction": 0.2}


@register_model(MODEL_TYPE)
class PositionPolicyPredictor(BasePredictor):
    supported_tasks = ("regression",)  # a position fraction per observation

    def __init__(self, config: ModelConfig, backend: Any = None) -> None:
        super().__init__(config, backend)
        self.policy: Any = None    # a policy.TrainedPositionPolicy once trained
        self.runtime: PositionPolicy | None = None  # once loaded

    @classmethod
    def validated_params(cls, config: ModelConfig) -> dict[str, Any]:
        return clean_params(MODEL_TYPE, config.params, PARAM_RULES, DEFAULTS)

    def fit(self, features: np.ndarray, target: np.ndarray, progress: Any = None) -> TrainingResult:
        raise InvalidTrainingData(f"{MODEL_TYPE} trains by reinforcement learning on market_data bars, not on "
                                  f"feature columns (use TrainModel with market_data)")

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.runtime is None:
            raise InvalidInputData(f"{MODEL_TYPE}: no trained policy loaded")
        positions = np.asarray(features, dtype=np.float64)[:, -1]
        if np.any(np.abs(positions) > 1) or (self.runtime.config.long_only and np.any(positions < 0)):
            raise InvalidInputData(f"column 'position' must lie in [{self.runtime.config.low:g}, 1]")
        return self.runtime.act(features)

    def predict_proba(self, features: np.ndarray) -> np.ndarray | None:
        return None

    def feature_importance(self) -> dict[str, float]:
        return {}

    def _write_model(self, directory: Path) -> None:
        if self.policy is None:
            raise ValueError(f"{MODEL_TYPE}: nothing trained to save")
        save_position_policy(self.policy, directory)

    def _read_model(self, directory: Path, metadata: dict[str, Any]) -> None:
        self.runtime = PositionPolicy(directory)

    def metadata(self) -> dict[str, Any]:
        columns = column_names(self.params["features"])
        return {"model_type": MODEL_TYPE, "task": "regression",
                "feature_columns": observation_names(columns, self.params["history_bars"]),
                "target_column": TARGET, "params": self.params, "random_state": self.config.random_state,
                "device": "cpu", "format": "torch_state_dict",
                "files": {"policy": POLICY_FILE, "weights": WEIGHTS_FILE, "onnx": ONNX_FILE}}


def env_config(params: Mapping[str, Any]) -> EnvConfig:
    return EnvConfig(episode_bars=params["episode_bars"], commission=params["commission"],
                     long_only=params["long_only"])


def train_position_model(bars_by_symbol: Mapping[str, Mapping[str, np.ndarray]], config: ModelConfig,
                         progress: Callable[..., None] | None = None
                         ) -> tuple[PositionPolicyPredictor, TrainingReport]:
    """Each symbol's usable bars, its last ``held_out_fraction`` kept for scoring; PPO on the rest
    with progress in timesteps (and the mean episode reward); the held-out comparison with
    buy-and-hold as the model's metrics."""
    from .policy import evaluate, symbol_rows, train_position_policy

    started = time.perf_counter()
    predictor = PositionPolicyPredictor(config)
    params = predictor.params
    names, training, held_out = None, [], []
    for symbol, bars in bars_by_symbol.items():
        names, runs = symbol_rows(bars, params["features"], params["history_bars"])
        rows = sum(len(returns) for _, returns in runs)
        cut = rows - int(round(rows * params["held_out_fraction"]))
        if cut < 2 or rows - cut < 2:
            raise InvalidTrainingData(f"{symbol}: {rows} usable bars (after the features' warm-up) cannot be split "
                                      f"for training and scoring; widen the time range")
        seen = 0
        for features, returns in runs:  # the cut falls in one run; later runs are held out whole
            split = min(max(cut - seen, 0), len(returns))
            if split >= 2:
                training.append((features[:split], returns[:split]))
            if len(returns) - split >= 2:
                held_out.append((features[split:], returns[split:]))
            seen += len(returns)
    timesteps = params["timesteps"]
    last_reward: list[float | None] = [None]

    def report(fraction: float, reward: float | None) -> None:
        last_reward[0] = reward if reward is not None else last_reward[0]
        report_progress(progress, TRAINING_SHARE * fraction,
                        ProgressInfo(done=int(fraction * timesteps), total=timesteps, unit="timesteps",
                                     validation_loss=reward, loss_name=REWARD_NAME))

    try:
        predictor.policy = train_position_policy(
            training, features=params["features"], observation_names=names, history_bars=params["history_bars"],
            timesteps=timesteps, seed=params["seed"], config=env_config(params), progress=report)
    except ValueError as exc:
        raise InvalidTrainingData(str(exc)) from None
    graph = predictor.policy.graph()

    def act(observations: np.ndarray) -> np.ndarray:
        import torch
        with torch.no_grad():
            return graph(torch.as_tensor(observations, dtype=torch.float32)).numpy()

    scores = evaluate(act, held_out, predictor.policy.config)
    report_progress(progress, 1.0, ProgressInfo(done=timesteps, total=timesteps, unit="timesteps",
                                                validation_loss=last_reward[0], loss_name=REWARD_NAME))
    return predictor, TrainingReport(
        task="regression", metrics=scores, metrics_scope="validation",
        n_train=sum(len(returns) for _, returns in training), n_validation=int(scores["held_out_bars"]),
        n_final_fit=sum(len(returns) for _, returns in training), feature_importance={},
        training_seconds=time.perf_counter() - started, device="cpu")


__all__ = ["MODEL_TYPE", "PositionPolicyPredictor", "train_position_model"]
