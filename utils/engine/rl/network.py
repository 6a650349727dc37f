"""The policy network as a plain, known torch architecture (rebuilt from JSON metadata on load).

SB3's ``MlpPolicy`` for a Box observation is: flatten -> policy MLP (``net_arch`` layers, tanh)
-> ``action_net`` (logits for a Discrete action, the Gaussian's mean for a Box action). The value
head is only needed for training, so this copy of the actor is all that is stored.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class PolicyNetwork(nn.Module):
    def __init__(self, observation_size: int, hidden_sizes: tuple[int, ...], n_actions: int,
                 activation: str = "tanh") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = observation_size
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, n_actions))
        self.layers = nn.Sequential(*layers)
        self.observation_size, self.hidden_sizes, self.n_actions = observation_size, tuple(hidden_sizes), n_actions
        self.activation = activation

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        """Action logits (Discrete) or the action mean (Box)."""
        return self.layers(observation)

    def act(self, observation: torch.Tensor) -> torch.Tensor:
        return self.layers(observation).argmax(dim=-1)

    def architecture(self) -> dict[str, Any]:
        return {"observation_size": self.observation_size, "hidden_sizes": list(self.hidden_sizes),
                "n_actions": self.n_actions, "activation": self.activation}


def from_sb3_policy(policy: Any, hidden_sizes: tuple[int, ...], activation: str = "tanh") -> PolicyNetwork:
    """A ``PolicyNetwork`` holding the actor weights of an SB3 ``ActorCriticPolicy`` (copied)."""
    linear_layers = [module for module in policy.mlp_extractor.policy_net if isinstance(module, nn.Linear)]
    linear_layers.append(policy.action_net)
    network = PolicyNetwork(linear_layers[0].in_features, hidden_sizes, policy.action_net.out_features, activation)
    targets = [module for module in network.layers if isinstance(module, nn.Linear)]
    if len(targets) != len(linear_layers):
        raise ValueError(f"the SB3 policy has {len(linear_layers)} linear layers, the architecture {len(targets)}")
    with torch.no_grad():
        for target, source in zip(targets, linear_layers):
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)
    return network.eval()
