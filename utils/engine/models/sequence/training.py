"""Torch runtime for the sequence models: seeding, threads, the epoch loop (the device comes
from the worker's ``Backend.torch_device``).

Determinism: the network is built and trained inside ``torch.random.fork_rng`` seeded with
``random_state`` (so the process's global RNG is untouched), and mini-batch order comes from a
seeded CPU ``torch.Generator``; on the CPU the same seed and thread count give bit-identical
weights. CUDA runs are seeded too but not bit-identical (cuDNN kernels, float16 autocast).
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional

from ..base import ProgressCallback, ProgressInfo, report_progress
from .windows import WindowedRows

EVAL_CHUNK = 4096  # windows per forward pass when scoring (bounds memory, not results)


def device_label(device: torch.device) -> str:
    """The engine's names: "cpu" or "gpu:<index>" (as ``Backend.label``)."""
    return "cpu" if device.type == "cpu" else f"gpu:{device.index or 0}"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


def default_threads() -> int:
    """Half the cores we may use (at least 1): the worker shares the host with the services, and
    torch's OpenMP threads slow down many-fold (measured 3-30x on 2 cores) when they must wait
    for a busy core, while small recurrent nets gain little from a second thread anyway."""
    return max(1, available_cores() // 2)


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Intra-op threads for one fit, restored after: never more than the cores we may use."""
    previous = torch.get_num_threads()
    torch.set_num_threads(min(n_threads or default_threads(), available_cores()))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def seeded(random_state: int, device: torch.device) -> Iterator[None]:
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(random_state)
        yield


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int | None
    mixed_precision: bool


@dataclass(frozen=True)
class LoopResult:
    epochs_run: int
    best_epoch: int  # the epoch whose weights were kept
    best_validation_loss: float | None
    stopped_early: bool


def loss_function(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if task == "classification":
        return functional.cross_entropy
    return lambda outputs, target: functional.mse_loss(outputs.squeeze(1), target)


def network_outputs(network: nn.Module, windows: WindowedRows, indices: torch.Tensor) -> torch.Tensor:
    """Raw outputs (logits or standardised values), float32, for the given windows."""
    network.eval()
    with torch.no_grad():
        return torch.cat([network(windows.batch(indices[start:start + EVAL_CHUNK])).float()
                          for start in range(0, len(indices), EVAL_CHUNK)])


def train_network(network: nn.Module, windows: WindowedRows, targets: torch.Tensor, train: torch.Tensor,
                  validation: torch.Tensor, task: str, settings: LoopSettings, random_state: int,
                  progress: ProgressCallback | None) -> LoopResult:
    """Adam(W) over shuffled mini-batches of the ``train`` windows; after each epoch the
    ``validation`` windows (never shuffled in, never stepped on) give the early-stopping loss.
    With patience, the best epoch's weights are restored."""
    device = windows.rows.device
    use_amp = settings.mixed_precision and device.type == "cuda"
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    compute_loss = loss_function(task)
    loss_name = "cross_entropy" if task == "classification" else "mse"
    order_generator = torch.Generator().manual_seed(random_state)
    early_stopping = settings.patience is not None and validation.numel() > 0
    best_loss, best_epoch, best_state, stale_epochs = float("inf"), settings.epochs, None, 0
    validation_loss: float | None = None
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        network.train()
        order = train[torch.randperm(train.numel(), generator=order_generator).to(device)]
        for start in range(0, order.numel(), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = compute_loss(network(windows.batch(batch)), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if validation.numel():
            validation_loss = float(compute_loss(network_outputs(network, windows, validation),
                                                 targets[validation]))
        report_progress(progress, epoch / settings.epochs,
                        ProgressInfo(done=epoch, total=settings.epochs, validation_loss=validation_loss,
                                     loss_name=loss_name, unit="epochs"))
        if not early_stopping:
            continue
        if validation_loss < best_loss:
            best_loss, best_epoch, stale_epochs = validation_loss, epoch, 0
            best_state = {name: value.detach().clone() for name, value in network.state_dict().items()}
        else:
            stale_epochs += 1
            if stale_epochs >= settings.patience:
                break
    stopped_early = early_stopping and epoch < settings.epochs
    if best_state is not None:
        network.load_state_dict(best_state)
    if stopped_early:
        report_progress(progress, 1.0, ProgressInfo(done=epoch, total=settings.epochs,
                                                    validation_loss=best_loss, loss_name=loss_name,
                                                    unit="epochs"))
    if not early_stopping:
        best_epoch, best_loss = epoch, validation_loss
    return LoopResult(epochs_run=epoch, best_epoch=best_epoch,
                      best_validation_loss=None if best_loss is None or not math.isfinite(best_loss)
                      else float(best_loss),
                      stopped_early=stopped_early)
