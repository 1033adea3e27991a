"""What an executor yields while it runs cells: one event per cell start, epoch, pause, end or
failure.

`cell` is the gridrun Cell the event is about; `worker` names the process (its pid) or 0 for the
launching process itself. The launch consumes them and is the one writer to the tracking
store, whichever executor produced them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..spec.grid import Cell
from ..train.checkpoint import Saved
from ..train.records import CellResult, EpochStats, Paused


@dataclass
class CellStarted:
    cell: Cell
    worker: int
    where: str = ""  # the worker, for people: "process 123 on host", "Ray node ..."


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
class CellPaused:
    """The planner paused the cell at a rung: its checkpoint (saved just before) holds it, and
    its worker is free. The cell comes back to some worker later, to train on or to end."""
    cell: Cell
    paused: Paused
    worker: int


@dataclass
class CellFailed:
    cell: Cell
    error: str  # "ExceptionClass: message", or what happened to the worker
    traceback: str
    worker: int


@dataclass
class CheckpointSaved:
    """The cell's checkpoint after `saved.epoch`, written by its worker: in the launch's
    state directory (`saved.path`) or handed back as bytes (`saved.blob`, from a Ray actor)."""
    cell: Cell
    saved: Saved
    worker: int


Event = CellStarted | EpochDone | CheckpointSaved | CellPaused | CellFinished | CellFailed
