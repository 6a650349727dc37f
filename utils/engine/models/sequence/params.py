"""Allow-list and validation of sequence-model hyper-parameters (lstm, gru, transformer, dlinear).

Rules come from ``param_rules`` (integral JSON doubles accepted for counts; every error names
the parameter, what it expects and the allowed parameters of that architecture).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import InvalidModelParams
from ..param_rules import INVALID, Rule, boolean, clean_params, count, nullable, real

ARCHITECTURES = ("lstm", "gru", "transformer", "dlinear")
MAX_DLINEAR_KERNEL = 25  # the DLinear paper's moving-average length


def _dropout(value: Any) -> Any:
    probability = real(0.0, 1.0)(value)
    return INVALID if probability is INVALID or probability >= 1.0 else probability


def _odd_kernel(value: Any) -> Any:
    length = count(1, 999)(value)
    return length if length is INVALID or length % 2 else INVALID


COMMON_RULES: dict[str, Rule] = {
    "window": Rule(count(2, 1000), "integer 2..1000 (rows of history per prediction)"),
    "epochs": Rule(count(1, 10_000), "integer 1..10000"),
    "batch_size": Rule(count(1, 65_536), "integer 1..65536"),
    "learning_rate": Rule(real(0.0, 1.0, low_open=True), "number in (0, 1]"),
    "weight_decay": Rule(real(0.0, 1.0), "number in [0, 1]"),
    "patience": Rule(nullable(count(1, 10_000)),
                     "null (no early stopping) or integer 1..10000 epochs without a better validation loss"),
    "n_threads": Rule(nullable(count(1, 256)), "null (half the cores this process may use) or integer 1..256"),
    "mixed_precision": Rule(boolean, "true or false (float16 autocast, used on CUDA only)"),
}
COMMON_DEFAULTS: dict[str, Any] = {"window": 20, "epochs": 50, "batch_size": 256, "learning_rate": 1e-3,
                                   "weight_decay": 0.0, "patience": 5, "n_threads": None,
                                   "mixed_precision": True}
_NETWORK_RULES: dict[str, Rule] = {
    "hidden_size": Rule(count(1, 4096), "integer 1..4096"),
    "num_layers": Rule(count(1, 16), "integer 1..16"),
    "dropout": Rule(_dropout, "number in [0, 1)"),
}
RULES: dict[str, dict[str, Rule]] = {
    "lstm": {**COMMON_RULES, **_NETWORK_RULES},
    "gru": {**COMMON_RULES, **_NETWORK_RULES},
    "transformer": {**COMMON_RULES, **_NETWORK_RULES,
                    "num_heads": Rule(count(1, 64), "integer 1..64 that divides hidden_size")},
    "dlinear": {**COMMON_RULES, "kernel_size": Rule(_odd_kernel, "odd integer 1..999, at most window")},
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "lstm": {**COMMON_DEFAULTS, "hidden_size": 64, "num_layers": 1, "dropout": 0.1},
    "gru": {**COMMON_DEFAULTS, "hidden_size": 64, "num_layers": 1, "dropout": 0.1},
    "transformer": {**COMMON_DEFAULTS, "hidden_size": 64, "num_layers": 2, "dropout": 0.1, "num_heads": 4},
    "dlinear": {**COMMON_DEFAULTS, "kernel_size": None},  # None: derived from window below
}


def validate_params(architecture: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Cleaned params for ``architecture`` with every default filled in; raises ``InvalidModelParams``."""
    cleaned = clean_params(architecture, params, RULES[architecture], DEFAULTS[architecture])
    if architecture == "transformer" and cleaned["hidden_size"] % cleaned["num_heads"]:
        raise InvalidModelParams(f"invalid value for parameter 'num_heads' of transformer: {cleaned['num_heads']} "
                                 f"does not divide hidden_size={cleaned['hidden_size']}")
    if architecture == "dlinear":
        if cleaned["kernel_size"] is None:
            longest = min(MAX_DLINEAR_KERNEL, cleaned["window"])
            cleaned["kernel_size"] = longest if longest % 2 else longest - 1
        elif cleaned["kernel_size"] > cleaned["window"]:
            raise InvalidModelParams(f"invalid value for parameter 'kernel_size' of dlinear: "
                                     f"{cleaned['kernel_size']} is longer than window={cleaned['window']}")
    return cleaned
