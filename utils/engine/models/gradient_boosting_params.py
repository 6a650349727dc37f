"""Allow-list of gradient-boosting hyper-parameters (scikit-learn style names) and their
translation to LightGBM's native parameters."""
from __future__ import annotations

import os
from typing import Any, Mapping

from .param_rules import Rule, boolean, clean_params, count, n_jobs, nullable, real

RULES: dict[str, Rule] = {
    "n_estimators": Rule(count(1, 10_000), "integer 1..10000 (boosting rounds)"),
    "learning_rate": Rule(real(0.0, 1.0, low_open=True), "number in (0, 1]"),
    "num_leaves": Rule(count(2, 131_072), "integer 2..131072"),
    "max_depth": Rule(nullable(count(1, 64)), "null (no limit) or integer 1..64"),
    "min_child_samples": Rule(count(1), "integer >= 1"),
    "subsample": Rule(real(0.0, 1.0, low_open=True), "fraction in (0, 1]"),
    "colsample_bytree": Rule(real(0.0, 1.0, low_open=True), "fraction in (0, 1]"),
    "reg_lambda": Rule(real(0.0), "number >= 0"),
    "reg_alpha": Rule(real(0.0), "number >= 0"),
    "min_split_gain": Rule(real(0.0), "number >= 0"),
    "max_bin": Rule(count(2, 65_535), "integer 2..65535"),
    "early_stopping_rounds": Rule(nullable(count(1, 10_000)),
                                  "null (off) or integer 1..10000; needs validation rows"),
    "deterministic": Rule(boolean, "true or false"),
    "n_jobs": Rule(n_jobs, "null, -1 (all cores) or integer 1..1024"),
    "random_state": Rule(count(0, 2**31 - 1), "integer 0..2**31-1"),
}
ALLOWED_PARAMS = tuple(RULES)


def validate_params(params: Mapping[str, Any] | None, random_state: int) -> dict[str, Any]:
    """Cleaned params with every default filled in."""
    defaults = {"n_estimators": 100, "learning_rate": 0.1, "num_leaves": 31, "max_depth": None,
                "min_child_samples": 20, "subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 0.0,
                "reg_alpha": 0.0, "min_split_gain": 0.0, "max_bin": 255, "early_stopping_rounds": None,
                "deterministic": True, "n_jobs": -1, "random_state": random_state}
    return clean_params("gradient_boosting", params, RULES, defaults)


def thread_count(n_jobs_param: int) -> int:
    if n_jobs_param > 0:
        return n_jobs_param
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


def lightgbm_params(params: Mapping[str, Any], objective: str, n_classes: int) -> dict[str, Any]:
    """Native LightGBM parameters (booster and dataset) for cleaned ``params``."""
    native = {
        "objective": objective,
        "learning_rate": params["learning_rate"],
        "num_leaves": params["num_leaves"],
        "max_depth": -1 if params["max_depth"] is None else params["max_depth"],
        "min_data_in_leaf": params["min_child_samples"],
        "feature_fraction": params["colsample_bytree"],
        "bagging_fraction": params["subsample"],
        "bagging_freq": 1 if params["subsample"] < 1.0 else 0,  # LightGBM bags only with a frequency
        "lambda_l2": params["reg_lambda"],
        "lambda_l1": params["reg_alpha"],
        "min_gain_to_split": params["min_split_gain"],
        "max_bin": params["max_bin"],
        "num_threads": thread_count(params["n_jobs"]),
        "seed": params["random_state"],
        # deterministic + a fixed histogram layout: same data, seed and threads -> same trees
        "deterministic": params["deterministic"],
        "force_row_wise": params["deterministic"],
        "verbosity": -1,
    }
    if objective == "multiclass":
        native["num_class"] = n_classes
    return native
