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
import pickle
import warnings
from pathlib import Path
from typing import Any

from .env import ACTION_MULTIPLES, EnvConfig, observation_names, observation_size

POLICY_FILE, WEIGHTS_FILE, ONNX_FILE = "policy.json", "policy.pt", "policy.onnx"
FORMAT_VERSION = 1
ONNX_INPUT, ONNX_ACTION, ONNX_LOGITS = "observation", "action", "logits"
ONNX_OPSET = 17
MAX_HIDDEN_LAYERS, MAX_WIDTH = 8, 4096
ACTIVATION_NAMES = ("tanh", "relu")  # network.ACTIVATIONS; imported lazily (torch) by save/load only


class InvalidPolicyFile(ValueError):
    """A policy directory that is missing, not ours, or not in the safe formats."""


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
    example = torch.zeros(1, network.observation_size, dtype=torch.float32)
    with warnings.catch_warnings():
        # torch >= 2.9 defaults to the dynamo exporter, which needs onnxscript; the TorchScript
        # exporter (dynamo=False) is deprecated but complete for an MLP + ArgMax.
        warnings.simplefilter("ignore")
        torch.onnx.export(ActionAndLogits(network), (example,), str(directory / ONNX_FILE), dynamo=False,
                          input_names=[ONNX_INPUT], output_names=[ONNX_ACTION, ONNX_LOGITS],
                          dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_ACTION: {0: "batch"},
                                        ONNX_LOGITS: {0: "batch"}}, opset_version=ONNX_OPSET)
    metadata = {"format_version": FORMAT_VERSION, **network.architecture(),
                "action_multiples": list(ACTION_MULTIPLES), "env": policy.config.to_dict(),
                "observation_names": observation_names(policy.config.history_bars),
                "weights_file": WEIGHTS_FILE, "onnx_file": ONNX_FILE, "onnx_input": ONNX_INPUT,
                "onnx_action": ONNX_ACTION, "timesteps": policy.timesteps, "seed": policy.seed}
    (directory / POLICY_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False))
    return directory


def _directory(directory: str | Path) -> Path:
    directory = Path(directory)
    if directory.suffix == ".zip" or directory.is_file():
        raise InvalidPolicyFile(f"{directory.name} is a file; a policy is a directory with {POLICY_FILE}, "
                                f"{WEIGHTS_FILE} and {ONNX_FILE} (SB3 .zip archives are never loaded: they "
                                f"unpickle arbitrary objects)")
    if not (directory / POLICY_FILE).is_file():
        raise InvalidPolicyFile(f"no {POLICY_FILE} in {directory}")
    return directory


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
                  len(hidden) <= MAX_HIDDEN_LAYERS and all(1 <= width <= MAX_WIDTH for width in hidden)]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidPolicyFile(f"{POLICY_FILE} is not a policy description: {exc}") from None
    if not all(checks):
        raise InvalidPolicyFile(f"{POLICY_FILE} describes an architecture or format this version does not build")
    return {**metadata, "hidden_sizes": hidden, "config": config}


def load_network(directory: str | Path) -> Any:
    """The actor rebuilt from ``policy.json`` with the weights of ``policy.pt`` (no unpickling of
    anything but tensors)."""
    import torch

    from .network import PolicyNetwork

    metadata = read_policy_metadata(directory)
    network = PolicyNetwork(metadata["observation_size"], tuple(metadata["hidden_sizes"]), metadata["n_actions"],
                            metadata["activation"])
    try:
        state = torch.load(Path(directory) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, OSError) as exc:
        raise InvalidPolicyFile(f"{WEIGHTS_FILE} is not this architecture's state_dict (refused: "
                                f"{str(exc).splitlines()[0][:200]})") from None
    return network.eval()


def onnx_session(directory: str | Path, providers: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """(onnxruntime InferenceSession on ``policy.onnx``, checked metadata). ``providers``: default
    CUDA first when onnxruntime has it, then the CPU; one intra-op thread (a tiny MLP is fastest
    without thread hand-offs)."""
    import onnxruntime

    metadata = read_policy_metadata(directory)
    if providers is None:
        available = onnxruntime.get_available_providers()
        providers = [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(str(Path(directory) / ONNX_FILE), options, providers=providers)
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [ONNX_INPUT] or inputs[0].shape[1] != metadata["observation_size"]:
        raise InvalidPolicyFile(f"{ONNX_FILE} does not take ({ONNX_INPUT}, {metadata['observation_size']})")
    return session, metadata

