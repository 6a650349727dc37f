"""Time-ordered rows -> fixed-length windows, their aligned targets, the split and the scaler.

Window ``i`` holds rows ``i .. i + window - 1`` and is labelled with the target of its LAST row,
so n rows give ``n - window + 1`` windows and row ``r >= window - 1`` is predicted from itself
and the ``window - 1`` rows before it. Windows are an ``unfold`` view of the rows: a batch
copies only its own windows, so 100k rows x window 20 never materialise 20x the data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..evaluation import time_split

if TYPE_CHECKING:
    import torch


def window_count(n_rows: int, window: int) -> int:
    return max(n_rows - window + 1, 0)


def window_targets(target: np.ndarray, window: int) -> np.ndarray:
    """The target of each window: the value at its last row."""
    return np.asarray(target)[window - 1:]


class WindowedRows:
    """(n, features) rows on a device, read as (n - window + 1, window, features) windows."""

    def __init__(self, rows: np.ndarray, window: int, device: torch.device | str = "cpu") -> None:
        import torch  # lazily, like every torch use reachable from the package import (predictor.py)

        self.rows = torch.as_tensor(np.ascontiguousarray(rows, dtype=np.float32), device=device)
        if self.rows.ndim != 2 or self.rows.shape[0] < window:
            raise ValueError(f"need (n, features) rows with n >= window={window}, got {tuple(self.rows.shape)}")
        self.windows = self.rows.unfold(0, window, 1)  # (n_windows, features, window), no copy

    def __len__(self) -> int:
        return self.windows.shape[0]

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """(len(indices), window, features) float32, time ascending along axis 1."""
        return self.windows[indices].transpose(1, 2).contiguous()


def split_windows(n_windows: int, validation_fraction: float,
                  classification_target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) window indices: the tail ``validation_fraction`` validates (the rules of
    ``evaluation.time_split``), so every training window ends before the first validation window."""
    split = time_split(n_windows, validation_fraction, classification_target)
    return split.train, split.validation


@dataclass(frozen=True)
class Standardiser:
    """Per-column (x - mean) / scale with statistics from the training rows only."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> "Standardiser":
        values = np.asarray(values, dtype=np.float64)
        mean, scale = values.mean(axis=0), values.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)  # a constant column stays at 0 instead of NaN
        return cls(np.atleast_1d(mean), np.atleast_1d(scale))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.scale + self.mean

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, stats: Mapping[str, Any]) -> "Standardiser":
        return cls(np.asarray(stats["mean"], dtype=np.float64), np.asarray(stats["scale"], dtype=np.float64))
