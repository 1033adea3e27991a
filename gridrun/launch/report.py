"""What a launch reports as it goes (`Progress`: `ConsoleProgress` draws it in the terminal) and
what it returns (`LaunchReport`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..spec.grid import Cell, Grid
    from ..tracking.checkpoints import UploadStats
    from ..tracking.launch_run import Best
    from ..train.records import EpochStats

class Progress(Protocol):
    """What a launch reports as it goes; `progress.ConsoleProgress` draws it in the terminal."""

    def launch_started(self, grid: Grid, todo: int, skipped: int, workers: int) -> None: ...
    def cell_started(self, position: int, cell: Cell, worker: int,
                     resumed_after: int = 0) -> None: ...  # epochs an earlier launch trained
    def epoch_done(self, cell: Cell, stats: EpochStats, worker: int) -> None: ...
    def cell_paused(self, cell: Cell, reason: str) -> None: ...  # waits at a rung (ASHA)
    def cell_done(self, cell: Cell, outcome: str, detail: str) -> None: ...
    def note(self, line: str) -> None: ...  # what the launch itself has to say (an outage)


class SilentProgress:
    def launch_started(self, grid, todo, skipped, workers): pass
    def cell_started(self, position, cell, worker, resumed_after=0): pass
    def epoch_done(self, cell, stats, worker): pass
    def cell_paused(self, cell, reason): pass
    def cell_done(self, cell, outcome, detail): pass
    def note(self, line): pass


@dataclass
class LaunchReport:
    """What a launch did: where it recorded, how many cells it ran, skipped, resumed or left to
    another launch (`failed` and `ran` count its outcomes), and the grid's best cell."""
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
    best: Best | None = None  # the grid's best finished cell when the launch ended
    ui_url: str = ""  # where `mlflow ui` (or the tracking server) shows the results
    ui_command: str | None = None  # what serves that page for a local store
    checkpoint_uploads: UploadStats | None = None  # with a tracking server: what they cost

    @property
    def failed(self) -> int:
        return sum(o == "failed" for o in self.outcomes.values())

    @property
    def ran(self) -> int:
        return len(self.outcomes)
