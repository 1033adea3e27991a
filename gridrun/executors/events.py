"""What an executor yields while it runs cells: one event per cell start, epoch, end or failure.

`cell` is the gridrun Cell the event is about; `worker` names the process (its pid) or 0 for the
launching process itself. The launch consumes them and is the one writer to the tracking
store, whichever executor produced them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..spec.grid import Cell
from ..train.records import CellResult, EpochStats

# Where a cell's checkpoint lives and what the launch stores in it (the run it belongs to):
# given to an executor per cell, passed to `gridrun.train.epochs`.
Checkpoint = tuple[str, dict]


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
