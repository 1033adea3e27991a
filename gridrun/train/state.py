"""`TrainState`: everything one cell's training holds between two epochs.

The loop (`loop.py`) builds and advances it; a checkpoint (`checkpoint.py`) is its changing part
on disk. It lives apart from both so neither imports the other for its type.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..data.splits import Splits
from ..models.layers import Standardized
from .recipe import EarlyStopping
from .records import EpochStats


@dataclass
class TrainState:
    """Everything one cell's training holds between epochs."""
    cfg: dict
    device: torch.device
    splits: Splits  # on the device
    model: Standardized  # the weights being trained
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, or its torch.compile'd form
    inputs: Callable[[torch.Tensor], torch.Tensor]  # uint8 batch -> float batch as the model takes
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    per_batch: bool  # the scheduler steps every batch (one-cycle)
    train_loss_fn: nn.Module
    loss_fn: nn.Module
    rng: torch.Generator  # shuffling and augmentation
    stopper: EarlyStopping
    best_state: dict[str, torch.Tensor]
    params_total: int
    params_trainable: int
    started: float
    best_val_acc: float = 0.0
    history: list[EpochStats] = field(default_factory=list)
    outcome: str = "max_epochs"
    reason: str = ""
    done: bool = False

    @property
    def epoch(self) -> int:
        """Epochs completed so far."""
        return len(self.history)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
