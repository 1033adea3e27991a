"""Run a grid: prepare its data, skip cells already finished, train the rest, record every outcome.

This is the seam between training (`gridrun.train`, which knows nothing of MLflow) and tracking
(`gridrun.tracking`, which knows nothing of training loops). Today cells run one after another in
this process (`run_cell`); other executors (worker processes, Ray) replace that loop and keep the
rest.
"""
from __future__ import annotations

import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from mlflow.entities import RunTag

from .backbones import check_weights
from .data import ImageSet, check_sizes, load_dataset
from .errors import GridError
from .grid import Cell, Grid
from .models import count_params
from .reports import cell_reports, grid_plots
from .tracking import Tracker
from .train import CellResult, EpochStats, build_cell_model, select_device, train_cell


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
    tracking_uri: str = ""

    @property
    def failed(self) -> int:
        return sum(o == "failed" for o in self.outcomes.values())

    @property
    def ran(self) -> int:
        return len(self.outcomes)


def prepare_data(grid: Grid, cells: list[Cell], data_dir: str | None) -> dict[tuple, ImageSet]:
    """Load every dataset the grid uses and check every subset size, before any run exists."""
    images: dict[tuple, ImageSet] = {}
    for cell in cells:
        key = dataset_key(cell.config)
        if key not in images:
            images[key] = load_dataset(key[0], data_dir, key[1])
        check_sizes(images[key], cell.config["data.val_fraction"], cell.config["data.train_size"],
                    cell.config["data.test_size"], grid.path)
    return images


def check_models(grid: Grid, cells: list[Cell], images: dict[tuple, ImageSet]) -> None:
    """Pretrained weights present and `model.max_params` respected, for every cell, before any
    run exists: each distinct model is built once on the CPU to count its parameters."""
    counted: dict[str, int] = {}
    for cell in cells:
        cfg = cell.config
        if cfg.get("model.pretrained"):
            try:
                check_weights(cfg["model.name"])
            except GridError as e:
                raise GridError(f"cell {cell.name}: {e}", grid.path) from None
        if cfg.get("model.max_params") is None:
            continue
        dataset = images[dataset_key(cfg)]
        channels, stored, _ = dataset.image_shape
        model_keys = {k: v for k, v in cfg.items() if k.startswith("model.")}
        key = repr(sorted(model_keys.items())) + repr((dataset.num_classes, channels))
        if key not in counted:
            without_weights = {**cfg, "model.pretrained": False} if cfg.get("model.pretrained") \
                else cfg  # the count does not depend on the weights
            net = build_cell_model(without_weights, dataset.num_classes, channels,
                                   cfg["data.image_size"] or stored)
            counted[key] = count_params(net)[0]
        if counted[key] > cfg["model.max_params"]:
            raise GridError(f"cell {cell.name}: {cfg['model.name']} has {counted[key]:,} "
                            f"parameters, more than model.max_params={cfg['model.max_params']:,}",
                            grid.path)


def dataset_key(cfg: dict) -> tuple:
    """Which stored dataset a cell reads: photo datasets are stored at the cell's image size."""
    name = cfg["data.dataset"]
    return (name, cfg["data.image_size"] if name in ("imagefolder", "cub200") else None)


def launch(grid: Grid, data_dir: str | None = None, tracking_uri: str | None = None,
           rerun: bool = False, progress: Progress | None = None) -> LaunchReport:
    """Train every cell of `grid` not yet finished in its experiment; record each as a child run.

    A grid with `search:` runs an Optuna study instead (`gridrun.search`): each trial is a child
    run like a cell, and every launch runs `n_trials` new trials.
    """
    progress = progress or SilentProgress()
    if grid.search is not None:
        from .search import probe_cells
        cells = probe_cells(grid)  # the space's corners: enough to check data and model sizes
    else:
        cells = grid.cells()
    images = prepare_data(grid, cells, data_dir)  # data errors come before the store is touched
    check_models(grid, cells, images)
    tracker = Tracker(tracking_uri)
    existing = tracker.experiment_id(grid.name, create=False)
    if grid.search is not None:
        todo, planned, to_run = [], grid.search.n_trials, grid.search.n_trials
    else:
        finished = set() if rerun or existing is None else tracker.finished_cells(existing)
        todo = [c for c in cells if c.id not in finished]
        planned, to_run = len(cells), len(todo)

    experiment_id = existing or tracker.experiment_id(grid.name)
    report = LaunchReport(experiment_id, None, planned, planned - to_run,
                          tracking_uri=tracker.tracking_uri)
    progress.launch_started(grid, to_run, report.skipped)
    if not to_run:
        return report
    report.parent_run_id = tracker.start_launch(experiment_id, grid, to_run)
    status = "FINISHED"
    try:
        if grid.search is not None:
            from .search import run_trials
            run_trials(tracker, experiment_id, report, grid, images, progress)
        else:
            for position, cell in enumerate(todo, 1):
                run_cell(tracker, experiment_id, report, grid, cell, images, progress,
                         position, len(todo))
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


def run_cell(tracker: Tracker, experiment_id: str, report: LaunchReport, grid: Grid, cell: Cell,
             images: dict[tuple, ImageSet], progress: Progress, position: int, total: int,
             epoch_hook: Callable[[EpochStats], None] | None = None) -> CellResult | None:
    """Train one cell in this process and record it; a failure is recorded, not raised.

    `epoch_hook` sees each epoch after it is logged and may raise `StopTraining` (a pruner).
    Returns the result, or None when the cell failed.
    """
    progress.cell_started(position, total, cell)
    run_id = tracker.start_cell(experiment_id, report.parent_run_id, cell, grid)
    dataset = images[dataset_key(cell.config)]
    tracker.client.log_batch(run_id, tags=[
        RunTag("gridrun.device", str(select_device(cell.config["train.device"]))),
        RunTag("gridrun.data_source", dataset.source)])

    def on_epoch(stats: EpochStats) -> None:
        tracker.log_epoch(run_id, stats)
        progress.epoch_done(cell, stats)
        if epoch_hook is not None:
            epoch_hook(stats)

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
        return None
    try:
        record_result(tracker, experiment_id, run_id, cell, result)
    except Exception as e:  # noqa: BLE001 - e.g. a full disk: this cell fails, others go on
        tracker.fail_cell(run_id, e)
        report.outcomes[run_id] = "failed"
        progress.cell_done(cell, "failed", f"recording the result: {e}")
        return None
    report.outcomes[run_id] = result.outcome
    progress.cell_done(cell, result.outcome, _describe(result))
    return result


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
    from .summary import cells_frame, factor_levels, factors, render, tabulate

    cells = cells_frame(grid=grid, tracking_uri=tracker.tracking_uri)
    levels = {f: factor_levels(cells, f) for f in factors(cells)}
    with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
        grid_plots(cells, levels, Path(folder))
        (Path(folder) / "summary.md").write_text(
            render(tabulate(cells), "markdown"))
        tracker.log_files(parent_run_id, Path(folder))


def _describe(result: CellResult) -> str:
    return (f"test_acc {result.test_acc:.4f}, best epoch {result.epochs_needed}/"
            f"{result.epochs_run}, {result.duration_s:.1f}s")

