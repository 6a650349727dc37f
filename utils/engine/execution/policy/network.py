"""The execution policy's network: the shared actor (``utils.engine.rl.network``) with a Discrete
action, so the deterministic action is ``argmax(logits)``."""
from __future__ import annotations

import torch
from torch import nn

from utils.engine.rl.network import ACTIVATIONS, PolicyNetwork, from_sb3_policy


class ArgmaxAction(nn.Module):
    """What the ONNX graph computes: observation (batch, size) float32 -> action index (batch,) int64."""

    def __init__(self, network: PolicyNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.network.act(observation)


__all__ = ["ACTIVATIONS", "ArgmaxAction", "PolicyNetwork", "from_sb3_policy"]
