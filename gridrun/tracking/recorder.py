"""Every write of a launch, through one client: the experiment, the launch's parent run
(`launch_run.py`) and its cells' child runs (`cell_run.py`). A launch has exactly one recorder,
in the launching process, whatever executes the cells; worker processes never open the store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from .cell_run import CellRuns
from .launch_run import LaunchRun
from .store import Store
from .views import experiment_view_tags
from .writes import RunWrites

if TYPE_CHECKING:
    from ..spec.grid import Grid


class Recorder(RunWrites):
    """`launch` writes the parent run, `cells` the child runs; `store` reads the same store."""

    def __init__(self, tracking_uri: str | None = None):
        self.store = Store(tracking_uri, create=True)
        super().__init__(self.store.client)
        self.tracking_uri = self.store.tracking_uri
        self.launch = LaunchRun(self.client)
        self.cells = CellRuns(self.client, self.launch)

    def experiment_id(self, name: str, grid: Grid | None = None) -> str:
        """The grid's experiment, created (or restored from the trash) for writing; with `grid`,
        made to open in `mlflow ui` as a study (`views.experiment_view_tags`)."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(
                    name, tags=experiment_view_tags(grid, {}) if grid is not None else None)
            except MlflowException as e:  # another launch of the grid created it just now
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self.client.get_experiment_by_name(name)
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        if grid is not None:
            try:
                self.set_experiment_tags(exp.experiment_id, experiment_view_tags(grid, exp.tags))
            except MlflowException:  # a server that refuses them: the view is a convenience
                pass
        return exp.experiment_id


def log_on_latest_launch(experiment: str, text: str, artifact_file: str,
                         tracking_uri: str | None = None) -> str | None:
    """Attach `text` (a rendered table: `summary --log`) to the experiment's latest launch run;
    returns that run's id (None: no launch yet)."""
    recorder, run_id = _latest_launch(experiment, tracking_uri)
    if run_id is not None:
        recorder.log_artifact_text(run_id, text, artifact_file)
    return run_id


def log_folder_on_latest_launch(experiment: str, folder, artifact_path: str,
                                tracking_uri: str | None = None) -> str | None:
    """Attach every file of `folder` (a study page and its figures: `report --log`) to the
    experiment's latest launch run, under `artifact_path`; returns that run's id."""
    recorder, run_id = _latest_launch(experiment, tracking_uri)
    if run_id is not None:
        recorder.log_files(run_id, folder, artifact_path)
    return run_id


def _latest_launch(experiment: str, tracking_uri: str | None) -> tuple[Recorder, str | None]:
    recorder = Recorder(tracking_uri)
    exp_id = recorder.store.experiment_id(experiment)
    latest = recorder.store.latest_launch(exp_id) if exp_id else None
    return recorder, latest.info.run_id if latest is not None else None
