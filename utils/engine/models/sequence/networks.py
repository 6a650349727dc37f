"""The torch networks: (batch, window, features) -> (batch, outputs).

``outputs`` is the number of classes (logits) or 1 (a standardised regression value).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn


class RecurrentNet(nn.Module):
    """LSTM or GRU; the last time step's hidden state goes through dropout and a linear head."""

    def __init__(self, cell: str, n_features: int, n_outputs: int, hidden_size: int, num_layers: int,
                 dropout: float) -> None:
        super().__init__()
        recurrent_class = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        # torch applies dropout only between stacked layers (and warns when there is one layer)
        self.recurrent = recurrent_class(n_features, hidden_size, num_layers, batch_first=True,
                                         dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_outputs)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        states, _ = self.recurrent(windows)
        return self.head(self.dropout(states[:, -1]))


class PositionalEncoding(nn.Module):
    """Fixed sinusoidal encoding (Vaswani et al.), added to the projected inputs."""

    def __init__(self, d_model: int, max_length: int) -> None:
        super().__init__()
        position = torch.arange(max_length, dtype=torch.float32).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        encoding = torch.zeros(max_length, d_model)
        encoding[:, 0::2] = torch.sin(position * frequency)
        encoding[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
        # a buffer, not a parameter: rebuilt on load, so it is not part of the saved state_dict
        self.register_buffer("encoding", encoding, persistent=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs + self.encoding[: inputs.shape[1]]


class TransformerNet(nn.Module):
    """Linear projection, positional encoding, a small encoder; the last position feeds the head."""

    def __init__(self, n_features: int, n_outputs: int, window: int, hidden_size: int, num_layers: int,
                 num_heads: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Linear(n_features, hidden_size)
        self.position = PositionalEncoding(hidden_size, window)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, dim_feedforward=2 * hidden_size,
                                           dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden_size, n_outputs)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(self.position(self.project(windows)))
        return self.head(encoded[:, -1])


class MovingAverage(nn.Module):
    """Centred moving average over time with edge replication, so the length is unchanged."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.pool = nn.AvgPool1d(kernel_size, stride=1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:  # (batch, window, features)
        half = (self.kernel_size - 1) // 2
        padded = torch.cat([windows[:, :1].expand(-1, half, -1), windows,
                            windows[:, -1:].expand(-1, half, -1)], dim=1)
        return self.pool(padded.transpose(1, 2)).transpose(1, 2)


class DLinearNet(nn.Module):
    """DLinear (Zeng et al. 2023): window = trend (moving average) + remainder; one linear map over
    time per feature for each part, then a linear head from those 2 x features summaries."""

    def __init__(self, n_features: int, n_outputs: int, window: int, kernel_size: int) -> None:
        super().__init__()
        self.trend = MovingAverage(kernel_size)
        # weight[f, t]: how time step t of feature f enters that feature's summary
        self.trend_weight = nn.Parameter(torch.full((n_features, window), 1.0 / window))
        self.remainder_weight = nn.Parameter(torch.full((n_features, window), 1.0 / window))
        self.summary_bias = nn.Parameter(torch.zeros(2 * n_features))
        self.head = nn.Linear(2 * n_features, n_outputs)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        trend = self.trend(windows)
        remainder = windows - trend
        summaries = torch.cat([torch.einsum("bwf,fw->bf", trend, self.trend_weight),
                               torch.einsum("bwf,fw->bf", remainder, self.remainder_weight)], dim=1)
        return self.head(summaries + self.summary_bias)


def build_network(architecture: str, n_features: int, n_outputs: int, params: Mapping[str, Any]) -> nn.Module:
    if architecture in ("lstm", "gru"):
        return RecurrentNet(architecture, n_features, n_outputs, params["hidden_size"], params["num_layers"],
                            params["dropout"])
    if architecture == "transformer":
        return TransformerNet(n_features, n_outputs, params["window"], params["hidden_size"],
                              params["num_layers"], params["num_heads"], params["dropout"])
    if architecture == "dlinear":
        return DLinearNet(n_features, n_outputs, params["window"], params["kernel_size"])
    raise ValueError(f"unknown sequence architecture {architecture!r}")
