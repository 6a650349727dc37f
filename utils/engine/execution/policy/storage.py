"""Save and load a trained execution policy in safe formats only.

A model directory holds:
  * ``policy.json``  architecture (observation size, hidden sizes, activation, action
                     multiples), the environment config and the observation names;
  * ``policy.pt``    the actor's torch ``state_dict`` (``torch.save``), loaded with
                     ``torch.load(weights_only=True)`` into the architecture built from the JSON:
                     tensors and plain containers only, never arbitrary objects;
  * ``policy.onnx``  the deterministic action graph: ``observation`` (batch, size) float32 ->
                     ``action`` (batch,) int64 (argmax of the logits) and ``logits``.

Never an SB3 ``.zip``: its ``data`` entry is cloudpickle, so loading one runs whatever code it
names. ``load_*`` refuse a path to a file (a ``.zip`` or anything else) instead of a directory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from utils.engine.rl.storage import (ACTIVATION_NAMES, MAX_HIDDEN_LAYERS, MAX_WIDTH, ONNX_OPSET, InvalidPolicyFile,
                                     export_onnx, hidden_sizes_ok, load_weights, policy_directory)
from utils.engine.rl.storage import onnx_session as _onnx_session

from .env import ACTION_MULTIPLES, EnvConfig, observation_names, observation_size

POLICY_FILE, WEIGHTS_FILE, ONNX_FILE = "policy.json", "policy.pt", "policy.onnx"
FORMAT_VERSION = 1
ONNX_INPUT, ONNX_ACTION, ONNX_LOGITS = "observation", "action", "logits"


def save_policy(policy: Any, directory: str | Path) -> Path:
    """Write ``policy`` (a ``training.TrainedPolicy``) into an existing ``directory``."""
    import torch

    from .network import ArgmaxAction

    class ActionAndLogits(ArgmaxAction):
        def forward(self, observation):
            logits = self.network(observation)
            return logits.argmax(dim=-1), logits

    directory = Path(directory)
    network = policy.network.eval()
    torch.save(network.state_dict(), directory / WEIGHTS_FILE)
    export_onnx(ActionAndLogits(network), network.observation_size, directory / ONNX_FILE, ONNX_INPUT,
                [ONNX_ACTION, ONNX_LOGITS])
    metadata = {"format_version": FORMAT_VERSION, **network.architecture(),
                "action_multiples": list(ACTION_MULTIPLES), "env": policy.config.to_dict(),
                "observation_names": observation_names(policy.config.history_bars),
                "weights_file": WEIGHTS_FILE, "onnx_file": ONNX_FILE, "onnx_input": ONNX_INPUT,
                "onnx_action": ONNX_ACTION, "timesteps": policy.timesteps, "seed": policy.seed}
    (directory / POLICY_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False))
    return directory


def _directory(directory: str | Path) -> Path:
    return policy_directory(directory, POLICY_FILE, WEIGHTS_FILE, ONNX_FILE)


def read_policy_metadata(directory: str | Path) -> dict[str, Any]:
    """``policy.json``, checked: every number in range, the known action set and activation."""
    directory = _directory(directory)
    try:
        metadata = json.loads((directory / POLICY_FILE).read_text())
        hidden = [int(width) for width in metadata["hidden_sizes"]]
        config = EnvConfig.from_dict(metadata["env"])
        checks = [metadata["format_version"] == FORMAT_VERSION,
                  metadata["activation"] in ACTIVATION_NAMES,
                  metadata["action_multiples"] == list(ACTION_MULTIPLES),
                  metadata["n_actions"] == len(ACTION_MULTIPLES),
                  metadata["observation_size"] == observation_size(config.history_bars),
                  hidden_sizes_ok(hidden)]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidPolicyFile(f"{POLICY_FILE} is not a policy description: {exc}") from None
    if not all(checks):
        raise InvalidPolicyFile(f"{POLICY_FILE} describes an architecture or format this version does not build")
    return {**metadata, "hidden_sizes": hidden, "config": config}


def load_network(directory: str | Path) -> Any:
    """The actor rebuilt from ``policy.json`` with the weights of ``policy.pt`` (no unpickling of
    anything but tensors)."""
    from .network import PolicyNetwork

    metadata = read_policy_metadata(directory)
    network = PolicyNetwork(metadata["observation_size"], tuple(metadata["hidden_sizes"]), metadata["n_actions"],
                            metadata["activation"])
    return load_weights(network, Path(directory) / WEIGHTS_FILE)


def onnx_session(directory: str | Path, providers: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """(onnxruntime InferenceSession on ``policy.onnx``, checked metadata). ``providers``: default
    CUDA first when onnxruntime has it, then the CPU; one intra-op thread (a tiny MLP is fastest
    without thread hand-offs)."""
    metadata = read_policy_metadata(directory)
    return _onnx_session(Path(directory) / ONNX_FILE, ONNX_INPUT, metadata["observation_size"], providers), metadata


__all__ = ["ACTIVATION_NAMES", "FORMAT_VERSION", "InvalidPolicyFile", "MAX_HIDDEN_LAYERS", "MAX_WIDTH", "ONNX_FILE",
           "ONNX_OPSET", "POLICY_FILE", "WEIGHTS_FILE", "load_network", "onnx_session", "read_policy_metadata",
           "save_policy"]
