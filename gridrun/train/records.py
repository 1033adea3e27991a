"""What training hands to the rest of gridrun: each epoch's statistics, a cell's result, and a
planner's answer to an epoch. Plain dataclasses that import no torch at run time, so tracking,
planning and results code name them without loading a training library.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

OUTCOMES = ("early_stopped", "max_epochs", "not_converging", "pruned")  # how a trained cell ends


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    epoch_seconds: float
    val_images: int = 0  # how many images val_acc is a share of (0: not known), for its error

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k not in ("epoch", "val_images")}


@dataclass
class CellResult:
    outcome: str  # early_stopped | max_epochs | not_converging | pruned
    reason: str
    epochs_run: int
    epochs_needed: int  # epoch of the best monitored value (0: never improved on the start)
    best_val_acc: float
    test_acc: float
    test_loss: float
    duration_s: float
    params_total: int
    params_trainable: int
    history: list[EpochStats] = field(default_factory=list)
    test_predictions: torch.Tensor | None = None  # predicted class per test image
    test_targets: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    model: nn.Module | None = None  # best weights, on the CPU; takes float images in [0, 1]
    example_input: torch.Tensor | None = None  # two test images, as the model takes them
    device: str = ""  # where it trained, e.g. "cpu" or "cuda:0"

    def final_metrics(self) -> dict[str, float]:
        return {"test_acc": self.test_acc, "test_loss": self.test_loss,
                "best_val_acc": self.best_val_acc, "epochs_needed": self.epochs_needed,
                "epochs_run": self.epochs_run, "duration_s": self.duration_s}


@dataclass(frozen=True)
class Stop:
    """A planner's answer to an epoch: end the cell now with this outcome (Ray Tune's STOP).
    `None` means go on (CONTINUE). With outcome `PAUSED` the cell does not end: it stops
    training, its checkpoint keeps it, and its worker takes another cell (Ray Tune's PAUSE;
    ASHA's promotion waits this way). `epoch`: the epoch the answer is for, when it is given
    before the cell resumes from that epoch's checkpoint (0: the epoch just reported)."""
    outcome: str
    reason: str
    epoch: int = 0

    @property
    def pauses(self) -> bool:
        return self.outcome == PAUSED


PAUSED = "paused"


@dataclass(frozen=True)
class Paused:
    """What a cell's training returns instead of a `CellResult` when a planner paused it: the
    epoch its checkpoint holds, and the planner's reason."""
    epoch: int
    reason: str
