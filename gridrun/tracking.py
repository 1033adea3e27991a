"""MLflow tracking: one experiment per grid, one parent run per launch, one child run per cell.

Reading apart from writing: a `Store` only looks things up (summary and status use it, and a
read never creates or restores an experiment); a `Recorder` owns every write, and a launch has
exactly one, in the launching process, whatever executes the cells. Everything goes through one
`MlflowClient` per process and tracking URI (`client()`), never MLflow's global "active run".
Nothing outside this module touches an `MlflowClient`.

Tags written on every child run:
  gridrun.kind=cell, gridrun.cell (stable cell id), gridrun.index (grid order), gridrun.label
  (bundle label, the "Model" column), gridrun.axis.<axis> (the cell's value on each axis),
  gridrun.outcome (early_stopped | max_epochs | not_converging | failed), gridrun.reason.
Claims and liveness (`gridrun.claims`): params gridrun.claim.<n> (who owns the run, written
once each: MLflow refuses to change a param, which makes them a compare-and-set), tags
gridrun.heartbeat (unix seconds of the owner's last beat), gridrun.host, gridrun.pid,
gridrun.error.<try> (the error of each retried try).
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.run_status import RunStatus
from mlflow.utils.mlflow_tags import (MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE,
                                      MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE)

from .grid import Cell, Grid

if TYPE_CHECKING:
    import torch

    from .events import CellResult, EpochStats

KIND = "gridrun.kind"
CELL = "gridrun.cell"
OVERRIDES = "gridrun.overrides"  # the launch's --set arguments, so `summary` finds its cells
CONFIG = "gridrun.config"  # the cell id without the seed: groups repeats
OUTCOME = "gridrun.outcome"
REASON = "gridrun.reason"
HEARTBEAT = "gridrun.heartbeat"
WITHDRAWN = "gridrun.withdrawn"  # a run that lost a claim race, on its way to the trash
CLAIM = "gridrun.claim."  # + n: the n-th owner of a run (0: the launch that created it)
MAX_PARAM_LENGTH = 6000
BATCH = 100  # MLflow accepts at most 100 params or tags in one log_batch call


def _now_ms() -> int:
    return int(time.time() * 1000)


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


def model_name(run_name: str) -> str:
    """A logged model's name from its cell's run name: MLflow refuses / : . % " ' in model
    names, so `lr0.01-adam` becomes `lr0_01-adam`."""
    return re.sub(r"[/:.%\"']", "_", run_name) or "model"


def describe_cell(cell: Cell, result: CellResult) -> str:
    """A finished cell in a sentence, e.g. "variant relu_bn, optimizer adam: early_stopped,
    test accuracy 0.6215 (no val_acc improvement for 5 epochs ...)"."""
    varies = ", ".join(f"{axis} {value}" for axis, value in cell.axes.items()) or cell.name
    score = ("" if result.outcome == "pruned"
             else f", test accuracy {result.test_acc:.4f}")
    return f"{varies}: {result.outcome}{score} ({result.reason})."


def _chunks(items: list, size: int = BATCH) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def format_param(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


_CLIENTS: dict[str | None, MlflowClient] = {}


def client(tracking_uri: str | None = None) -> MlflowClient:
    """This process's client for a tracking URI (None: $MLFLOW_TRACKING_URI, else MLflow's
    default, sqlite:///mlflow.db in the working directory). Building one costs ~0.7 s against
    SQLite (engine, schema check), so each process builds one per store and keeps it."""
    if tracking_uri not in _CLIENTS:
        with _schema_lock(tracking_uri):
            made = MlflowClient(tracking_uri=tracking_uri)
            made._tracking_client.store  # noqa: B018 - opens the store, creating its schema
        _CLIENTS[tracking_uri] = _CLIENTS[made.tracking_uri] = made
    return _CLIENTS[tracking_uri]


URI_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
REACH_SECONDS = 5.0


def check_tracking_uri(tracking_uri: str | None) -> None:
    """Refuse a tracking URI that cannot work, in one line and within seconds, before a launch
    decodes any data: an unknown scheme, a SQLite file in a folder that does not exist, a
    server that does not answer (MLflow itself would retry for minutes)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from .errors import GridError

    where = "--tracking-uri" if tracking_uri else "$MLFLOW_TRACKING_URI"
    if not tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        return  # MLflow's default, sqlite:///mlflow.db here
    uri = tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
    scheme = urllib.parse.urlparse(uri).scheme.split("+")[0]
    if scheme and len(scheme) > 1 and scheme not in URI_SCHEMES:
        raise GridError(f"unknown scheme '{scheme}://' in {uri!r}; allowed: sqlite:///PATH, "
                        "http(s)://HOST:PORT (an mlflow server), file:///PATH, postgresql://, "
                        "mysql://", where)
    if scheme == "sqlite":
        path = _sqlite_path(uri)
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise GridError(f"the folder of the SQLite store {path!r} does not exist; create "
                            "it or give another path", where)
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_SECONDS):
                pass
        except urllib.error.HTTPError:
            pass  # something answers: MLflow reports anything else in its own words
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise GridError(f"no tracking server answers at {uri} within {REACH_SECONDS:.0f} s "
                            f"({reason}); start one (mlflow server) or fix the URI",
                            where) from None


@contextlib.contextmanager
def global_tracking_uri(tracking_uri: str):
    """MLflow's process-wide tracking URI set to `tracking_uri` meanwhile: some MLflow calls
    (logging a model, registering one from `models:/ID`) resolve the store globally, whatever
    their client's URI."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def _sqlite_path(tracking_uri: str | None) -> str:
    """The file of a SQLite tracking URI (None: MLflow's default), else ""."""
    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    path = uri[len("sqlite:///"):].split("?")[0] if uri.startswith("sqlite:///") else ""
    return "" if path == ":memory:" else path


def _missing_sqlite(tracking_uri: str | None) -> bool:
    path = _sqlite_path(tracking_uri)
    return bool(path) and not os.path.exists(path)


@contextlib.contextmanager
def _schema_lock(tracking_uri: str | None):
    """Hold an exclusive lock on a SQLite store's file while MLflow opens it: MLflow creates a
    new store's tables on first open, and several launches opening one new store at once
    otherwise fail with "table ... already exists". An advisory flock on the database file
    itself: SQLite's own locks are fcntl locks, which flock does not touch, and no lock file
    is left beside the store."""
    path = _sqlite_path(tracking_uri)
    if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        yield
        return
    import fcntl
    with open(path, "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


class Store:
    """Read-only view of a tracking store: experiments, runs, finished cells, launches.

    A SQLite store that does not exist yet is read as empty, not created: `gridrun status` or
    `summary` typed in the wrong folder leaves no stray mlflow.db behind (`create=True` is for
    the writer)."""

    def __init__(self, tracking_uri: str | None = None, create: bool = False):
        if not create and _missing_sqlite(tracking_uri):
            import mlflow
            self.client = None
            self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
            return
        self.client = client(tracking_uri)
        self.tracking_uri = self.client.tracking_uri

    def experiment_id(self, name: str) -> str | None:
        """The id of a live experiment, or None (also when it was deleted: reads restore nothing)."""
        if self.client is None:
            return None
        exp = self.client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage == "deleted":
            return None
        return exp.experiment_id

    def runs(self, experiment_id: str, filter_string: str = "") -> list:
        """All runs of an experiment matching a filter, across result pages.

        The cyclic garbage collector is paused meanwhile: a page of 1,000 runs builds ~50,000
        short-lived ORM objects, and collections triggered by them took more than half of the
        search time (1.8 s -> 0.75 s for 1,000 runs, benchmarks/summary_speed.py).
        """
        found, token = [], None
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            while True:
                page = self.client.search_runs([experiment_id], filter_string=filter_string,
                                               max_results=1000, page_token=token)
                found += list(page)
                token = page.token
                if not token:
                    return found
        finally:
            if was_enabled:
                gc.enable()

    def finished_cells(self, experiment_id: str) -> set[str]:
        """Ids of cells that already have a FINISHED run: a relaunch skips them."""
        runs = self.runs(experiment_id, f"tags.`{KIND}` = 'cell' and attributes.status = 'FINISHED'")
        return {r.data.tags[CELL] for r in runs if CELL in r.data.tags}

    def cell_runs(self, experiment_id: str, cell_id: str) -> list:
        """Every live (not deleted) run of one cell, newest first."""
        runs = self.client.search_runs([experiment_id], f"tags.`{CELL}` = '{cell_id}'",
                                       order_by=["attributes.start_time DESC"], max_results=1000)
        return [r for r in runs if r.data.tags.get(KIND) == "cell" and WITHDRAWN not in r.data.tags]

    def running_launches(self, experiment_id: str) -> list:
        return self.client.search_runs(
            [experiment_id], f"tags.`{KIND}` = 'launch' and attributes.status = 'RUNNING'",
            max_results=1000)

    def histories(self, experiment_id: str, metrics: dict[str, str]) -> dict[str, list[float]]:
        """Per cell id in `metrics` (cell id -> metric name): that metric's per-epoch values
        (epoch 1 first) from the cell's run with the longest history. What a schedule that
        compares cells (`gridrun.schedule`) replays when a launch starts."""
        out: dict[str, list[float]] = {}
        for run in self.runs(experiment_id, f"tags.`{KIND}` = 'cell'"):
            cell_id = run.data.tags.get(CELL)
            if cell_id not in metrics or WITHDRAWN in run.data.tags:
                continue
            by_step = {m.step: m.value for m in
                       self.client.get_metric_history(run.info.run_id, metrics[cell_id])}
            values = [by_step[step] for step in sorted(by_step)]
            if len(values) > len(out.get(cell_id, [])):
                out[cell_id] = values
        return out

    def logged_steps(self, run_id: str) -> set[int]:
        """The epochs whose metrics a run has."""
        return {m.step for m in self.client.get_metric_history(run_id, "val_acc")}

    def logged_epochs(self, run_id: str) -> int:
        """The last epoch whose metrics a run has (0: none)."""
        return max(self.logged_steps(run_id), default=0)

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

    def latest_launch(self, experiment_id: str):
        """The most recent parent run of an experiment, or None."""
        runs = self.client.search_runs([experiment_id], f"tags.`{KIND}` = 'launch'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None


class Recorder:
    """Every write of a launch: experiments, the parent run, child runs, metrics, artifacts,
    models. `store` reads the same tracking store."""

    def __init__(self, tracking_uri: str | None = None):
        self.store = Store(tracking_uri, create=True)
        self.client = self.store.client
        self.tracking_uri = self.store.tracking_uri
        self.source_tags: dict[str, str] = {}  # the launch's, for its cells (start_launch)
        self.final_metrics: dict[str, list[Metric]] = {}  # run id -> what finish_cell logged

    def experiment_id(self, name: str) -> str:
        """The grid's experiment, created (or restored from the trash) for writing."""
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(name)
            except MlflowException as e:  # another launch of the grid created it just now
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self.client.get_experiment_by_name(name)
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    # --- the launch's parent run ---

    def start_launch(self, experiment_id: str, grid: Grid, cells_planned: int,
                     extra_tags: dict[str, str] | None = None) -> str:
        """The launch's parent run. Under `mlflow run`, the project's own run is adopted when it
        is in the grid's experiment, and otherwise linked to the new parent by tags."""
        tags = {KIND: "launch", "gridrun.grid": grid.name, "gridrun.grid_file": grid.path,
                "gridrun.cells": str(cells_planned), **(extra_tags or {})}
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
            run = self.client.create_run(experiment_id, start_time=_now_ms(), tags=tags,
                                         run_name=f"launch-{time.strftime('%Y%m%d-%H%M%S')}")
            run_id = run.info.run_id
            if project_run is not None:
                self.client.set_tag(run_id, "gridrun.project_run", project_run.info.run_id)
                self.client.set_tag(project_run.info.run_id, "gridrun.launch_run", run_id)
                self.client.set_tag(project_run.info.run_id, "gridrun.experiment", grid.name)
        self._log_grid(experiment_id, run_id, grid, logged_params)
        file_name = os.path.basename(grid.path)
        self.client.log_text(run_id, grid.text,
                             file_name if file_name.endswith((".yaml", ".yml")) else "grid.yaml")
        if grid.overrides:
            self.client.log_dict(run_id, {k: format_param(v) for k, v in grid.overrides.items()},
                                 "overrides.json")
            self.client.set_tag(run_id, OVERRIDES, json.dumps(grid.override_args))
        if grid.only:  # a slice of the grid: say which, so the launch is not read as all of it
            self.client.set_tag(run_id, "gridrun.only", "; ".join(
                f"{axis}={','.join(levels)}" for axis, levels in grid.only.items()))
        return run_id

    def _log_grid(self, experiment_id: str, run_id: str, grid: Grid,
                  logged_params: dict[str, str]) -> None:
        """The grid on its launch's run, as params a user can filter and compare launches by:
        every fixed setting (`fixed.<key>`, --set overrides included), every axis with its
        levels (`axis.<name>`), the seeds and the schedule. The experiment says what the grid
        file says: its description as the experiment's note, the file as a tag."""
        params = {f"fixed.{k}": format_param(v) for k, v in {**grid.fixed,
                                                                **grid.overrides}.items()}
        params.update({f"axis.{a.name}": ", ".join(a.labels()) for a in grid.axes})
        if grid.seeds:
            params["seeds"] = ", ".join(map(str, grid.seeds))
        params["schedule"] = grid.schedule.name
        rows = [Param(k, v[:MAX_PARAM_LENGTH]) for k, v in params.items()
                if k not in logged_params]
        for chunk in _chunks(rows):
            self.client.log_batch(run_id, params=chunk)
        if grid.description:
            self.client.set_experiment_tag(experiment_id, MLFLOW_RUN_NOTE, grid.description)
        self.client.set_experiment_tag(experiment_id, "gridrun.grid_file", grid.path)

    def _project_run(self):
        """The run `mlflow run` started for this process (MLFLOW_RUN_ID), if any in this store."""
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if not run_id:
            return None
        try:
            return self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - a stale id from another store: not ours to adopt
            return None

    def end_launch(self, run_id: str, status: str, counts: dict[str, int],
                   figures: dict[str, float] | None = None) -> None:
        """Close the parent run with the launch's cell counts as tags (`gridrun.cells_ran`, ...)
        and `figures` (what recording a cell cost) as metrics.

        The counts are bookkeeping, not measurements: as metrics MLflow's chart view drew a
        `cells_planned` chart beside every `val_acc` chart of the experiment. As tags they sit
        on the launch's overview and still filter (`tags.gridrun.cells_failed = '0'`)."""
        ts = _now_ms()
        metrics = [Metric(k, float(v), ts, 0) for k, v in (figures or {}).items()]
        tags = [RunTag(f"gridrun.cells_{k}", str(v)) for k, v in counts.items()]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, status)

    def close_launch(self, run_id: str, reason: str, status: str) -> None:
        """End another launch's parent run (one that died), saying why."""
        self.set_tags(run_id, {REASON: reason})
        self.client.set_terminated(run_id, status)

    # --- one cell's child run ---

    def start_cell(self, experiment_id: str, parent_id: str, cell: Cell, grid: Grid,
                   extra_params: dict[str, Any] | None = None,
                   extra_tags: dict[str, str] | None = None) -> str:
        tags = {MLFLOW_PARENT_RUN_ID: parent_id, KIND: "cell", CELL: cell.id,
                CONFIG: cell.config_id,
                "gridrun.index": str(cell.index), "gridrun.label": cell.label,
                "gridrun.grid": grid.name, OUTCOME: "running", **(extra_tags or {})}
        tags.update({f"gridrun.axis.{axis}": value for axis, value in cell.axes.items()})
        tags.update(self.source_tags)
        run = self.client.create_run(experiment_id, start_time=_now_ms(), tags=tags,
                                     run_name=cell.name)
        params = {**cell.config, **(extra_params or {})}
        entries = [Param(k, format_param(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for chunk in _chunks(entries):
            self.client.log_batch(run.info.run_id, params=chunk)
        return run.info.run_id

    def log_inputs(self, run_id: str, datasets: list) -> None:
        """The cell's data as MLflow dataset inputs (`gridrun.inputs`); logging the same input
        again (a resumed cell) adds nothing."""
        self.client.log_inputs(run_id, datasets=datasets)

    def log_epoch(self, run_id: str, stats: EpochStats) -> None:
        """All of an epoch's metrics in one call, at step=epoch."""
        ts = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), ts, stats.epoch)
                                               for k, v in stats.metrics().items()])

    def finish_cell(self, run_id: str, result: CellResult, cell: Cell | None = None,
                    model_id: str | None = None) -> None:
        """The cell's final figures (one value each, at step 0, as MLflow logs a metric without a
        step: its chart view draws them as bars, apart from the per-epoch curves; linked to the
        cell's logged model when it has one), its outcome, its description (what it varies and
        how it ended, in a sentence: MLflow's run description), and FINISHED."""
        ts = _now_ms()
        metrics = [Metric(k, float(v), ts, 0, model_id=model_id)
                   for k, v in result.final_metrics().items()]
        self.final_metrics[run_id] = metrics
        tags = [RunTag(OUTCOME, result.outcome), RunTag(REASON, result.reason[:5000])]
        if cell is not None:
            tags.append(RunTag(MLFLOW_RUN_NOTE, describe_cell(cell, result)))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def fail_cell(self, run_id: str, error: str, status: str = "FAILED") -> None:
        """End a cell's run FAILED (or KILLED) with `error` ("Class: message") on its tags."""
        message = error[:5000]
        self.client.log_batch(run_id, tags=[RunTag(OUTCOME, "failed" if status == "FAILED"
                                                   else "killed"),
                                            RunTag(REASON, message),
                                            RunTag("gridrun.error", message)])
        self.client.set_terminated(run_id, status)

    # --- claims (the protocol is gridrun.claims') ---

    def claim(self, run_id: str, n: int, owner: str) -> bool:
        """Write param gridrun.claim.<n> = owner: True when this call wrote it (or it already
        held `owner`), False when another owner wrote it first. One `log_param` is one
        insert under the params table's primary key, so two launches racing for the same n
        (on SQLite or behind an `mlflow server`) cannot both win."""
        from mlflow.exceptions import MlflowException
        try:
            self.client.log_param(run_id, f"{CLAIM}{n}", owner)
            return True
        except MlflowException as e:
            # another owner wrote claim n first, or the run went to the trash meanwhile (a
            # rival launch withdrew it): either way the run is not ours
            if e.error_code == "INVALID_PARAMETER_VALUE" and (
                    "Changing param" in str(e) or "'active' state" in str(e)):
                return False
            raise

    def reopen(self, run_id: str, tags: dict[str, str]) -> None:
        """A KILLED (or stale RUNNING) run this launch now owns: RUNNING again, with its tags."""
        self.set_tags(run_id, tags)
        self.client.update_run(run_id, status="RUNNING")

    def withdraw(self, run_id: str) -> None:
        """A run created for a claim that lost a race: marked withdrawn first (so no launch
        takes it for a killed run to resume while it goes), ended, and moved to MLflow's
        trash."""
        self.set_tags(run_id, {WITHDRAWN: "true"})
        self.client.set_terminated(run_id, "KILLED")
        self.client.delete_run(run_id)

    def beat(self, run_id: str, now: float) -> None:
        self.client.set_tag(run_id, HEARTBEAT, f"{now:.1f}")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_artifact_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_files(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def log_model(self, experiment_id: str, run_id: str, model: torch.nn.Module,
                  example_input: torch.Tensor, name: str = "model",
                  params: dict[str, Any] | None = None) -> str:
        """The trained model in MLflow's pytorch flavor (pt2), with input example and signature,
        as a logged model named `name` (the cell's run name, so the Models tab says which cell
        each is) carrying `params` (the cell's config); returns its model id.

        A model logged after its cell finished (the launch's best) gets the cell's final metrics
        too: the same values at the same time and step, now with the model's id, which MLflow
        links to the model and does not add to the run's history a second time.

        It takes float images in [0, 1], shape [N, C, H, W], and returns class logits.
        Requirements are given, not inferred: inference imports half the environment and takes
        seconds per model.
        """
        import mlflow
        import mlflow.pytorch
        import numpy as np
        import torch

        # created here so the model belongs to the run's experiment, not the "active" one
        logged = self.client.create_logged_model(
            experiment_id, name=model_name(name), source_run_id=run_id,
            params={k: format_param(v)[:MAX_PARAM_LENGTH] for k, v in (params or {}).items()})
        with global_tracking_uri(self.tracking_uri):  # log_model resolves the store globally
            info = mlflow.pytorch.log_model(
                model, name="model", run_id=run_id, model_id=logged.model_id,
                input_example=example_input.numpy().astype(np.float32),
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        if run_id in self.final_metrics:
            self.client.log_batch(run_id, metrics=[
                Metric(m.key, m.value, m.timestamp, m.step, model_id=info.model_id)
                for m in self.final_metrics[run_id]])
        return info.model_id
