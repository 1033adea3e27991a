"""The launch's parent run: what a launch set out to do, its grid as params, its counts at the end.

Under `mlflow run`, the project's own run is adopted when it is in the grid's experiment, and
otherwise linked to the new parent by tags both ways.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata

from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_RUN_NOTE,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
)

from ..spec.grid import Cell, Grid
from . import tags as T
from .writes import RunWrites, format_param, now_ms


def source_tags(grid: Grid, project_run=None) -> dict[str, str]:
    """MLflow's "Source" of a launch and its cells: under `mlflow run`, the project run's own
    source tags; otherwise the command and, when the grid file lies in a git checkout, its
    commit, so a run says which code and which grid file produced it."""
    if project_run is not None:
        return {k: v for k, v in project_run.data.tags.items()
                if k.startswith(("mlflow.source.", "mlflow.project."))}
    tags = {MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_SOURCE_NAME: f"gridrun launch {grid.path}"}
    folder = os.path.dirname(os.path.abspath(grid.path)) if os.path.exists(grid.path) \
        else os.getcwd()
    try:
        found = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True,
                               text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return tags
    if found.returncode == 0 and found.stdout.strip():
        tags[MLFLOW_GIT_COMMIT] = found.stdout.strip()
    return tags


@dataclass(frozen=True)
class Best:
    """A study's best cell (chosen by `results.frames.best_cell`), as a launch run records it."""
    name: str
    run_id: str
    cell: str  # its cell id
    test_acc: float
    tied_with: tuple[str, ...] = ()  # cells with the same test accuracy that the rule passed over
    why: str = ""  # the rule, said when there was a tie


def describe(best: Best) -> str:
    """`leaky_nodrop-lr0_001-adam, test accuracy 0.5115`, and the tie when there was one."""
    tie = (f"; tied with {', '.join(best.tied_with)}, chosen by the rule: {best.why}"
           if best.tied_with else "")
    return f"{best.name}, test accuracy {best.test_acc:.4f}{tie}"


def levels_of(grid: Grid, cells: list[Cell] | None) -> dict[str, list[str]]:
    """Each axis's levels that `cells` take (all of them without cells), in the grid's order."""
    if not cells:
        return {a.name: a.labels() for a in grid.axes}
    taken: dict[str, set[str]] = {a.name: set() for a in grid.axes}
    for cell in cells:
        for axis, level in cell.axes.items():
            taken.setdefault(axis, set()).add(level)
    return {a.name: [label for label in a.labels() if label in taken[a.name]]
            for a in grid.axes if taken[a.name]}


def versions() -> str:
    """What produced the numbers: `gridrun 0.1.0; torch 2.14.1; ...; Python 3.11.7`."""
    found = []
    for package in ("gridrun", "torch", "torchvision", "mlflow"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return "; ".join([*found, f"Python {platform.python_version()}"])


def machine() -> str:
    """Where the launch ran: `Linux x86_64; AMD EPYC 9B14; 2 cores`, and its GPUs when torch
    (loaded by then in a launch) sees some. Cells trained elsewhere (Ray) say their device in
    `gridrun.device`."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    parts = [f"{platform.system()} {platform.machine()}", cpu, f"{os.cpu_count()} cores"]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        parts += [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return "; ".join(parts)


class LaunchRun(RunWrites):
    """Writes on a launch's parent run. `source_tags` (set by `start`) are the launch's
    MLflow Source, which its cells carry too."""

    def __init__(self, client):
        super().__init__(client)
        self.source_tags: dict[str, str] = {}

    def start(self, experiment_id: str, grid: Grid, cells_planned: int,
              cells: list[Cell] | None = None, extra_tags: dict[str, str] | None = None) -> str:
        """The launch's parent run, setting out to train `cells_planned` cells: `cells`, when
        known in advance (all of the grid's axes when not: a search). Under `mlflow run`, the
        project's own run is adopted when it is in the grid's experiment, and otherwise linked
        to the new parent by tags."""
        tags = {T.KIND: "launch", T.GRID: grid.name, T.GRID_FILE: grid.path,
                T.CELLS: str(cells_planned), T.VERSIONS: versions(), T.MACHINE: machine(),
                **(extra_tags or {})}
        described = f"{grid.description.strip()}\n\n" if grid.description else ""
        tags[MLFLOW_RUN_NOTE] = (f"{described}{cells_planned} cells of grid '{grid.name}' "
                                 f"({grid.path}) to train in this launch.")
        project_run = self._project_run()
        self.source_tags = source_tags(grid, project_run)
        tags.update(self.source_tags)
        logged_params: dict[str, str] = {}  # a new run has none
        if project_run is not None and project_run.info.experiment_id == experiment_id:
            run_id = project_run.info.run_id
            logged_params = project_run.data.params  # `mlflow run`'s own, which cannot change
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        else:
            run = self.client.create_run(experiment_id, start_time=now_ms(), tags=tags,
                                         run_name=f"launch-{time.strftime('%Y%m%d-%H%M%S')}")
            run_id = run.info.run_id
            if project_run is not None:
                self.client.set_tag(run_id, T.PROJECT_RUN, project_run.info.run_id)
                self.client.set_tag(project_run.info.run_id, T.LAUNCH_RUN, run_id)
                self.client.set_tag(project_run.info.run_id, T.EXPERIMENT, grid.name)
        self._log_grid(experiment_id, run_id, grid, cells, logged_params)
        file_name = os.path.basename(grid.path)
        self.client.log_text(run_id, grid.text,
                             file_name if file_name.endswith((".yaml", ".yml")) else "grid.yaml")
        if grid.overrides:
            self.client.log_dict(run_id, {k: format_param(v) for k, v in grid.overrides.items()},
                                 "overrides.json")
            self.client.set_tag(run_id, T.OVERRIDES, json.dumps(grid.override_args))
        if grid.only:  # a slice of the grid: say which, so the launch is not read as all of it
            self.client.set_tag(run_id, T.ONLY, "; ".join(
                f"{axis}={','.join(levels)}" for axis, levels in grid.only.items()))
        return run_id

    def _log_grid(self, experiment_id: str, run_id: str, grid: Grid, cells: list[Cell] | None,
                  logged_params: dict[str, str]) -> None:
        """What the launch trains, as params a user can filter and compare launches by: each
        axis with the levels of this launch's cells (`axis.<name>`: a slice or a resumed
        launch names only what it trains), the seeds and the schedule. The fixed settings are
        on every cell's run and in the grid file logged beside (as params here they doubled
        the experiment's parameter list). The experiment says what the grid file says: its
        description as the experiment's note, the file as a tag."""
        params = {f"axis.{name}": ", ".join(levels)
                  for name, levels in levels_of(grid, cells).items()}
        if grid.seeds:
            params["seeds"] = ", ".join(map(str, grid.seeds))
        params["schedule"] = grid.schedule.name
        self.log_params(run_id, params, skip=logged_params)
        self.set_experiment_tags(experiment_id, {
            **({MLFLOW_RUN_NOTE: grid.description} if grid.description else {}),
            T.GRID_FILE: grid.path})

    def _project_run(self):
        """The run `mlflow run` started for this process (MLFLOW_RUN_ID), if any in this store."""
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if not run_id:
            return None
        try:
            return self.client.get_run(run_id)
        except MlflowException:  # a stale id from another store: not ours to adopt
            return None

    def end(self, run_id: str, status: str, counts: dict[str, int],
            record_seconds: list[float] | None = None, best: Best | None = None,
            stopped_by: str | None = None) -> None:
        """Close the parent run with the study's result and the launch's bookkeeping.

        The result is the one metric of a launch run, `best_test_acc`: the best finished cell
        of the grid when the launch ended (the study as it stands, whichever launches trained
        its cells), with its name and run as tags (`gridrun.best_cell`, `gridrun.best_run`) and
        in the run's description, a tie named there.
        The counts (`gridrun.cells_ran`, ...) and what recording a cell cost
        (`gridrun.record_seconds`, "mean max") are bookkeeping, not measurements: as metrics
        MLflow's chart view opened on a `record_seconds_max` chart and drew `cells_planned`
        beside every accuracy chart. As tags they sit on the launch's overview and still
        filter (`tags.gridrun.cells_failed = '0'`)."""
        tags = {T.cells_count(k): str(v) for k, v in counts.items()}
        if stopped_by:
            tags[T.SIGNAL] = stopped_by
        if record_seconds:
            tags[T.RECORD_SECONDS] = (f"{sum(record_seconds) / len(record_seconds):.3f} "
                                      f"{max(record_seconds):.3f}")
        metrics = []
        if best is not None:
            metrics.append(Metric(T.BEST_TEST_ACC, float(best.test_acc), now_ms(), 0))
            tags.update({T.BEST_CELL: best.name, T.BEST_RUN: best.run_id})
            note = self.client.get_run(run_id).data.tags.get(MLFLOW_RUN_NOTE, "")
            tags[MLFLOW_RUN_NOTE] = f"{note}\n\nBest cell of the grid: {describe(best)}.".lstrip()
        self.client.log_batch(run_id, metrics=metrics,
                              tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, status)

    def close(self, run_id: str, reason: str, status: str) -> None:
        """End another launch's parent run (one that died), saying why."""
        self.set_tags(run_id, {T.REASON: reason})
        self.client.set_terminated(run_id, status)
