"""Run a grid: prepare its data, skip cells already finished, train the rest, record every outcome.

This is the seam between training (`gridrun.train`, which knows nothing of MLflow) and tracking
(`gridrun.tracking`, which knows nothing of training loops). Today cells run one after another in
this process; other executors (worker processes, Ray) replace `run_cells` and keep the rest.
"""
from __future__ import annotations

import tempfile
import traceback
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Protocol

from .data import ImageSet, check_sizes, load_dataset
from .grid import Cell, Grid
from .reports import cell_reports, grid_plots
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
        try:
            record_grid(tracker, report.parent_run_id, grid)
        except Exception as e:  # noqa: BLE001 - the cells are recorded; the plots are extras
            warnings.warn(f"could not log the grid's summary plots: {e}")
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
        try:
            record_result(tracker, experiment_id, run_id, cell, result)
        except Exception as e:  # noqa: BLE001 - e.g. a full disk: this cell fails, others go on
            tracker.fail_cell(run_id, e)
            report.outcomes[run_id] = "failed"
            progress.cell_done(cell, "failed", f"recording the result: {e}")
            continue
        report.outcomes[run_id] = result.outcome
        progress.cell_done(cell, result.outcome, _describe(result))


def record_result(tracker: Tracker, experiment_id: str, run_id: str, cell: Cell,
                  result: CellResult) -> None:
    """A trained cell's figures, reports and model, then its final metrics and outcome.

    The run is marked FINISHED last, so a crash while logging leaves it unfinished and a
    relaunch trains the cell again rather than trusting half its artifacts.
    """
    with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
        cell_reports(result, Path(folder), title=cell.name)
        tracker.log_files(run_id, Path(folder))
    if result.model is not None and result.example_input is not None:
        tracker.log_model(experiment_id, run_id, result.model, result.example_input)
    tracker.finish_cell(run_id, result)


def record_grid(tracker: Tracker, parent_run_id: str, grid: Grid) -> None:
    """The grid-level figures and the results table, on the launch's parent run."""
    from .summary import cells_frame, factor_levels, factors, render, table

    cells = cells_frame(grid=grid, tracking_uri=tracker.tracking_uri)
    levels = {f: factor_levels(cells, f) for f in factors(cells)}
    with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
        grid_plots(cells, levels, Path(folder))
        (Path(folder) / "summary.md").write_text(
            render(table(grid=grid, tracking_uri=tracker.tracking_uri), "markdown"))
        tracker.log_files(parent_run_id, Path(folder))


def _describe(result: CellResult) -> str:
    return (f"test_acc {result.test_acc:.4f}, best epoch {result.epochs_needed}/"
            f"{result.epochs_run}, {result.duration_s:.1f}s")

