"""Safe files for a trained actor: a torch ``state_dict`` and an ONNX graph, described by JSON.

Never an SB3 ``.zip``: its ``data`` entry is cloudpickle, so loading one runs whatever code it
names. A policy is a directory; a path to a file (a ``.zip`` or anything else) is refused.
The policy modules own their JSON (what the network means); these helpers own the formats.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

ONNX_OPSET = 17
MAX_HIDDEN_LAYERS, MAX_WIDTH = 8, 4096
ACTIVATION_NAMES = ("tanh", "relu")  # network.ACTIVATIONS; imported lazily (torch) by save/load only


class InvalidPolicyFile(ValueError):
    """A policy directory that is missing, not ours, or not in the safe formats."""


def policy_directory(directory: str | Path, policy_file: str, weights_file: str, onnx_file: str) -> Path:
    directory = Path(directory)
    if directory.suffix == ".zip" or directory.is_file():
        raise InvalidPolicyFile(f"{directory.name} is a file; a policy is a directory with {policy_file}, "
                                f"{weights_file} and {onnx_file} (SB3 .zip archives are never loaded: they "
                                f"unpickle arbitrary objects)")
    if not (directory / policy_file).is_file():
        raise InvalidPolicyFile(f"no {policy_file} in {directory}")
    return directory


def hidden_sizes_ok(hidden: list[int]) -> bool:
    return len(hidden) <= MAX_HIDDEN_LAYERS and all(1 <= width <= MAX_WIDTH for width in hidden)


def export_onnx(module: Any, observation_size: int, path: Path, input_name: str, output_names: list[str]) -> None:
    """``module`` (observation (batch, size) float32 -> ``output_names``) as an ONNX graph with a
    dynamic batch axis."""
    import torch

    example = torch.zeros(1, observation_size, dtype=torch.float32)
    with warnings.catch_warnings():
        # torch >= 2.9 defaults to the dynamo exporter, which needs onnxscript; the TorchScript
        # exporter (dynamo=False) is deprecated but complete for an MLP.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[input_name],
                          output_names=output_names,
                          dynamic_axes={name: {0: "batch"} for name in (input_name, *output_names)},
                          opset_version=ONNX_OPSET)


def load_weights(network: Any, path: Path) -> Any:
    """``network`` with the ``state_dict`` at ``path`` (``weights_only=True``: tensors and plain
    containers only), in eval mode."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, OSError) as exc:
        raise InvalidPolicyFile(f"{path.name} is not this architecture's state_dict (refused: "
                                f"{str(exc).splitlines()[0][:200]})") from None
    return network.eval()


def onnx_session(path: Path, input_name: str, observation_size: int, providers: list[str] | None = None) -> Any:
    """An onnxruntime session on ``path`` taking (``input_name``, ``observation_size``).
    ``providers``: default CUDA first when onnxruntime has it, then the CPU; one intra-op thread
    (a tiny MLP is fastest without thread hand-offs)."""
    import onnxruntime

    if providers is None:
        available = onnxruntime.get_available_providers()
        providers = [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [input_name] or inputs[0].shape[1] != observation_size:
        raise InvalidPolicyFile(f"{path.name} does not take ({input_name}, {observation_size})")
    return session
