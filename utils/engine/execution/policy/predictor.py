"""``ppo_execution`` in the model registry: TrainModel trains it, the model store keeps it,
ListModels / GetModelMetrics describe it; Predict does not serve it (ExecutionService does).

The registry entry is a thin ``BasePredictor`` so the store's atomic save, metadata and listing
work unchanged; its ``fit``/``predict`` refuse, because a policy is trained from order windows
(``train_execution_model``) and acts on execution state, not on feature rows.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from utils.engine.models.base import BasePredictor, ModelConfig, ProgressInfo, TrainingResult, report_progress
from utils.engine.models.errors import InvalidInputData, InvalidTrainingData
from utils.engine.models.param_rules import INVALID, Rule, clean_params, count, real
from utils.engine.models.registry import register_model
from utils.engine.models.trainer import TrainingReport

from ..simulator import ImpactModel
from .env import ACTION_MULTIPLES, EnvConfig, observation_names
from .storage import POLICY_FILE, read_policy_metadata, save_policy
from .windows import SIDES, order_windows_from_bars, split_held_out

MODEL_TYPE = "ppo_execution"
SERVED_BY = (f"{MODEL_TYPE} models are served by ExecutionService.PlanExecution, not Predict "
             f"(a policy acts on an order's execution state, not on feature rows)")
TARGET = "action"
TRAINING_SHARE = 0.9  # of the job's progress; scoring the held-out orders takes the rest


def _side(value: Any) -> Any:
    return value if isinstance(value, str) and value in SIDES else INVALID


PARAM_RULES = {
    "timesteps": Rule(count(512, 2_000_000), "an integer in [512, 2000000] (PPO environment steps)"),
    "window_bars": Rule(count(2, 500), "an integer in [2, 500] (bars per parent order)"),
    "side": Rule(_side, "'buy', 'sell' or 'both'"),
    "seed": Rule(count(0, 2**31 - 1), "an integer >= 0"),
    "history_bars": Rule(count(1, 60), "an integer in [1, 60] (past bars the policy observes)"),
    "participation": Rule(real(0.0, 1.0, low_open=True), "a number in (0, 1] (order size / expected volume)"),
    "impact_coefficient": Rule(real(0.0, 10.0), "a number in [0, 10] (square-root impact coefficient)"),
    "participation_cap": Rule(real(0.0, 1.0, low_open=True), "a number in (0, 1] (max share of a bar's volume)"),
    "held_out_fraction": Rule(real(0.05, 0.5), "a number in [0.05, 0.5] (last orders kept for scoring)"),
}
DEFAULTS = {"timesteps": 20_000, "window_bars": 10, "side": "both", "seed": 0, "history_bars": 5,
            "participation": 0.1, "impact_coefficient": 0.1, "participation_cap": 1.0, "held_out_fraction": 0.2}


@register_model(MODEL_TYPE)
class ExecutionPolicyPredictor(BasePredictor):
    supported_tasks = ("classification",)  # the policy picks one of the discrete action multiples

    def __init__(self, config: ModelConfig, backend: Any = None) -> None:
        super().__init__(config, backend)
        self.policy: Any = None  # a training.TrainedPolicy once trained
        self.policy_metadata: dict[str, Any] | None = None

    @classmethod
    def validated_params(cls, config: ModelConfig) -> dict[str, Any]:
        return clean_params(MODEL_TYPE, config.params, PARAM_RULES, DEFAULTS)

    def fit(self, features: np.ndarray, target: np.ndarray, progress: Any = None) -> TrainingResult:
        raise InvalidTrainingData(f"{MODEL_TYPE} trains on market_data bars cut into orders, not on "
                                  f"feature columns (use TrainModel with market_data)")

    def predict(self, features: np.ndarray) -> np.ndarray:
        raise InvalidInputData(SERVED_BY)

    def predict_proba(self, features: np.ndarray) -> np.ndarray | None:
        raise InvalidInputData(SERVED_BY)

    def feature_importance(self) -> dict[str, float]:
        return {}

    def _write_model(self, directory: Path) -> None:
        if self.policy is None:
            raise ValueError(f"{MODEL_TYPE}: nothing trained to save")
        save_policy(self.policy, directory)

    def _read_model(self, directory: Path, metadata: dict[str, Any]) -> None:
        policy_metadata = read_policy_metadata(directory)
        self.policy_metadata = {key: value for key, value in policy_metadata.items() if key != "config"}

    def metadata(self) -> dict[str, Any]:
        history = self.params["history_bars"]
        return {"model_type": MODEL_TYPE, "task": "classification", "feature_columns": observation_names(history),
                "target_column": TARGET, "classes": list(ACTION_MULTIPLES), "params": self.params,
                "random_state": self.config.random_state, "device": "cpu", "format": "torch_state_dict",
                "files": {"policy": POLICY_FILE, "weights": "policy.pt", "onnx": "policy.onnx"}}


def env_config(params: Mapping[str, Any]) -> EnvConfig:
    return EnvConfig(history_bars=params["history_bars"],
                     impact=ImpactModel(coefficient=params["impact_coefficient"],
                                        participation_cap=params["participation_cap"]))


def train_execution_model(bars_by_symbol: Mapping[str, Mapping[str, np.ndarray]], config: ModelConfig,
                          progress: Callable[..., None] | None = None
                          ) -> tuple[ExecutionPolicyPredictor, TrainingReport]:
    """Cut each symbol's bars (``high``, ``low``, ``close``, ``volume``) into parent orders, keep
    each symbol's last ``held_out_fraction`` for scoring, train PPO on the rest, and report the
    held-out comparison with TWAP as the model's metrics."""
    from .training import evaluate, train_policy

    started = time.perf_counter()
    predictor = ExecutionPolicyPredictor(config)
    params = predictor.params
    lookback = max(20, params["history_bars"] + 1)
    training, held_out = [], []
    for symbol, bars in bars_by_symbol.items():
        try:
            windows = order_windows_from_bars(bars["high"], bars["low"], bars["close"], bars["volume"],
                                              window_bars=params["window_bars"], lookback=lookback,
                                              side=params["side"], participation=params["participation"])
            head, tail = split_held_out(windows, params["held_out_fraction"])
        except ValueError as exc:
            raise InvalidTrainingData(f"{symbol}: {exc}") from None
        training += head
        held_out += tail
    timesteps = params["timesteps"]

    def report(fraction: float) -> None:
        report_progress(progress, TRAINING_SHARE * fraction,
                        ProgressInfo(done=int(fraction * timesteps), total=timesteps, unit="timesteps"))

    predictor.policy = train_policy(training, timesteps=timesteps, seed=params["seed"], progress=report,
                                    config=env_config(params))
    scores = evaluate(predictor.policy, held_out)
    report_progress(progress, 1.0, ProgressInfo(done=timesteps, total=timesteps, unit="timesteps"))
    metrics = {f"{strategy}_{name}": value for strategy in ("policy", "twap", "all_at_once")
               for name, value in scores[strategy].items()}
    metrics.update({name: scores[name] for name in ("policy_vs_twap_pa_bps", "policy_vs_twap_pa_bps_se",
                                                    "policy_twap_action_share")})
    return predictor, TrainingReport(
        task="classification", metrics=metrics, metrics_scope="validation", n_train=len(training),
        n_validation=len(held_out), n_final_fit=len(training), feature_importance={},
        training_seconds=time.perf_counter() - started, device="cpu")


__all__ = ["MODEL_TYPE", "SERVED_BY", "ExecutionPolicyPredictor", "train_execution_model"]
