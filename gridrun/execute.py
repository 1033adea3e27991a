"""Run a grid: prepare its data, skip cells already finished, train the rest, record every outcome.

This is the seam between training (`gridrun.train`, which knows nothing of MLflow) and tracking
(`gridrun.tracking`, which knows nothing of training loops). Today cells run one after another in
this process; other executors (worker processes, Ray) replace `run_cells` and keep the rest.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Protocol

from .data import ImageSet, check_sizes, load_dataset
from .grid import Cell, Grid
from .tracking import Tracker
from .train import CellResult, EpochStats, select_device, train_cell


class Progress(Protocol):
    """What a launch reports as it goes; `gridrun.progress` draws it in the terminal."""

    def launch_started(self, grid: Grid, todo: int, skipped: int) -> None: ...
    def cell_started(self, position: int, todo: int, cell: Cell) -> None: ...
    def epoch_done(self, cell: Cell, stats: EpochStats) -> None: ...
    def cell_done(self, cell: Cell, outcome: str, detail: str) -> None: ...


class SilentProgress:
    def launch_started(self, grid, todo, skipped): pass
    def cell_started(self, position, todo, cell): pass
    def epoch_done(self, cell, stats): pass
    def cell_done(self, cell, outcome, detail): pass


@dataclass
class LaunchReport:
    experiment_id: str
    parent_run_id: str | None  # None when every cell was already finished
    planned: int  # cells in the grid
    skipped: int  # already finished before this launch
    outcomes: dict[str, str] = field(default_factory=dict)  # run_id -> outcome, for this launch

    @property
    def failed(self) -> int:
        return sum(o == "failed" for o in self.outcomes.values())

    @property
    def ran(self) -> int:
        return len(self.outcomes)


def prepare_data(grid: Grid, cells: list[Cell], data_dir: str | None) -> dict[str, ImageSet]:
    """Load every dataset the grid uses and check every subset size, before any run exists."""
    images: dict[str, ImageSet] = {}
    for cell in cells:
        name = cell.config["data.dataset"]
        if name not in images:
            images[name] = load_dataset(name, data_dir)
        check_sizes(images[name], cell.config["data.val_fraction"], cell.config["data.train_size"],
                    cell.config["data.test_size"], grid.path)
    return images


def launch(grid: Grid, data_dir: str | None = None, tracking_uri: str | None = None,
           rerun: bool = False, progress: Progress | None = None) -> LaunchReport:
    """Train every cell of `grid` not yet finished in its experiment; record each as a child run."""
    progress = progress or SilentProgress()
    cells = grid.cells()
    images = prepare_data(grid, cells, data_dir)  # data errors come before the store is touched
    tracker = Tracker(tracking_uri)
    existing = tracker.experiment_id(grid.name, create=False)
    finished = set() if rerun or existing is None else tracker.finished_cells(existing)
    todo = [c for c in cells if c.id not in finished]

    experiment_id = existing or tracker.experiment_id(grid.name)
    report = LaunchReport(experiment_id, None, len(cells), len(cells) - len(todo))
    progress.launch_started(grid, len(todo), report.skipped)
    if not todo:
        return report
    report.parent_run_id = tracker.start_launch(experiment_id, grid, len(todo))
    status = "FINISHED"
    try:
        run_cells(tracker, experiment_id, report, grid, todo, images, progress)
    except BaseException:
        status = "KILLED"
        raise
    finally:
        counts = {"planned": report.planned, "skipped": report.skipped, "ran": report.ran,
                  "failed": report.failed}
        tracker.end_launch(report.parent_run_id,
                           "FAILED" if status == "FINISHED" and report.failed else status, counts)
    return report


def run_cells(tracker: Tracker, experiment_id: str, report: LaunchReport, grid: Grid,
              cells: list[Cell], images: dict[str, ImageSet], progress: Progress) -> None:
    """Train cells one after another in this process; a failing cell is recorded and skipped."""
    for position, cell in enumerate(cells, 1):
        progress.cell_started(position, len(cells), cell)
        run_id = tracker.start_cell(experiment_id, report.parent_run_id, cell, grid)
        device = str(select_device(cell.config["train.device"]))
        tracker.client.set_tag(run_id, "gridrun.device", device)
        dataset = images[cell.config["data.dataset"]]
        tracker.client.set_tag(run_id, "gridrun.data_source", dataset.source)

        def on_epoch(stats: EpochStats, run_id=run_id, cell=cell) -> None:
            tracker.log_epoch(run_id, stats)
            progress.epoch_done(cell, stats)

        try:
            result = train_cell(cell.config, dataset, on_epoch)
        except KeyboardInterrupt as e:
            tracker.fail_cell(run_id, e, status="KILLED")
            raise
        except Exception as e:  # noqa: BLE001 - one broken cell must not end the grid
            tracker.fail_cell(run_id, e)
            tracker.log_artifact_text(run_id, traceback.format_exc(), "error.txt")
            report.outcomes[run_id] = "failed"
            progress.cell_done(cell, "failed", f"{e.__class__.__name__}: {e}")
            continue
        record_result(tracker, run_id, result)
        report.outcomes[run_id] = result.outcome
        progress.cell_done(cell, result.outcome, _describe(result))


def record_result(tracker: Tracker, run_id: str, result: CellResult) -> None:
    """Final metrics and outcome of a cell that trained to the end."""
    tracker.finish_cell(run_id, result)


def _describe(result: CellResult) -> str:
    return (f"test_acc {result.test_acc:.4f}, best epoch {result.epochs_needed}/"
            f"{result.epochs_run}, {result.duration_s:.1f}s")

