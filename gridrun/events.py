"""What flows from training to the rest of gridrun: epoch statistics, a cell's result, and the
events an executor yields while it runs a grid.

Nothing here imports torch at run time, so the tracking and summary code can name these types
without loading a training library. An executor (`gridrun.executors`) turns cells into a stream
of events; the launch (`gridrun.execute`) consumes them and is the one writer to the tracking
store, whichever executor produced them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .grid import Cell, Grid


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    epoch_seconds: float

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "epoch"}


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
                "epochs_run": self.epochs_run, "duration_s": self.duration_s,
                "params_total": self.params_total, "params_trainable": self.params_trainable}


# Where a cell's checkpoint lives and what the launch stores in it (the run it belongs to):
# given to an executor per cell, passed to `gridrun.train.epochs`.
Checkpoint = tuple[str, dict]


@dataclass(frozen=True)
class Stop:
    """A planner's answer to an epoch: end the cell now with this outcome (Ray Tune's STOP).
    `None` means go on (CONTINUE)."""
    outcome: str
    reason: str


# --- what an executor yields -----------------------------------------------------------------
# `cell` is the gridrun Cell the event is about; `worker` names the process (its pid) or 0 for
# the launching process itself.

@dataclass
class CellStarted:
    cell: Cell
    worker: int


@dataclass
class EpochDone:
    cell: Cell
    stats: EpochStats
    worker: int


@dataclass
class CellFinished:
    cell: Cell
    result: CellResult
    worker: int


@dataclass
class CellFailed:
    cell: Cell
    error: str  # "ExceptionClass: message", or what happened to the worker
    traceback: str
    worker: int


Event = CellStarted | EpochDone | CellFinished | CellFailed


class Progress(Protocol):
    """What a launch reports as it goes; `gridrun.progress` draws it in the terminal."""

    def launch_started(self, grid: Grid, todo: int, skipped: int, workers: int) -> None: ...
    def cell_started(self, position: int, cell: Cell, worker: int,
                     resumed_after: int = 0) -> None: ...  # epochs an earlier launch trained
    def epoch_done(self, cell: Cell, stats: EpochStats, worker: int) -> None: ...
    def cell_done(self, cell: Cell, outcome: str, detail: str) -> None: ...


class SilentProgress:
    def launch_started(self, grid, todo, skipped, workers): pass
    def cell_started(self, position, cell, worker, resumed_after=0): pass
    def epoch_done(self, cell, stats, worker): pass
    def cell_done(self, cell, outcome, detail): pass


@dataclass
class LaunchReport:
    experiment_id: str
    parent_run_id: str | None  # None when every cell was already finished
    planned: int  # cells in the grid
    skipped: int  # already finished before this launch
    elsewhere: int = 0  # being trained (or finished meanwhile) by another launch
    resumed: int = 0  # continued from a dead or interrupted launch's checkpoint
    state_dir: str = ""  # where this launch keeps its checkpoints
    outcomes: dict[str, str] = field(default_factory=dict)  # run_id -> outcome, for this launch
    tracking_uri: str = ""
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. recording seconds per cell

    @property
    def failed(self) -> int:
        return sum(o == "failed" for o in self.outcomes.values())

    @property
    def ran(self) -> int:
        return len(self.outcomes)
