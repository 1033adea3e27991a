"""MLflow tracking: one experiment per grid, one parent run per launch, one child run per cell.

Everything goes through an explicit `MlflowClient` and run ids, never MLflow's global "active
run", so a single process can write for many cells (and, later, for many worker processes).

Tags written on every child run:
  gridrun.kind=cell, gridrun.cell (stable cell id), gridrun.index (grid order), gridrun.label
  (bundle label, the "Model" column), gridrun.axis.<axis> (the cell's value on each axis),
  gridrun.outcome (early_stopped | max_epochs | not_converging | failed), gridrun.reason.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterable

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.run_status import RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from .grid import Cell, Grid
from .train import CellResult, EpochStats

KIND = "gridrun.kind"
CELL = "gridrun.cell"
OUTCOME = "gridrun.outcome"
REASON = "gridrun.reason"
MAX_PARAM_LENGTH = 6000
BATCH = 100  # MLflow accepts at most 100 params or tags in one log_batch call


def _now_ms() -> int:
    return int(time.time() * 1000)


def _chunks(items: list, size: int = BATCH) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def format_param(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


class Tracker:
    """Writes a grid's runs to one MLflow tracking store."""

    def __init__(self, tracking_uri: str | None = None):
        # None: $MLFLOW_TRACKING_URI, else MLflow's default (sqlite:///mlflow.db in the cwd)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = self.client.tracking_uri

    # --- experiments and lookups ---

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        return self.client.create_experiment(name) if create else None

    def runs(self, experiment_id: str, filter_string: str = "") -> list:
        """All runs of an experiment matching a filter, across result pages."""
        found, token = [], None
        while True:
            page = self.client.search_runs([experiment_id], filter_string=filter_string,
                                           max_results=1000, page_token=token)
            found += list(page)
            token = page.token
            if not token:
                return found

    def finished_cells(self, experiment_id: str) -> set[str]:
        """Ids of cells that already have a FINISHED run: a relaunch skips them."""
        runs = self.runs(experiment_id, f"tags.`{KIND}` = 'cell' and attributes.status = 'FINISHED'")
        return {r.data.tags[CELL] for r in runs if CELL in r.data.tags}

    # --- the launch's parent run ---

    def start_launch(self, experiment_id: str, grid: Grid, cells_planned: int) -> str:
        tags = {KIND: "launch", "gridrun.grid": grid.name, "gridrun.grid_file": grid.path,
                "gridrun.cells": str(cells_planned)}
        if grid.description:
            tags[MLFLOW_RUN_NOTE] = grid.description
        run = self.client.create_run(experiment_id, start_time=_now_ms(), tags=tags,
                                     run_name=f"launch-{time.strftime('%Y%m%d-%H%M%S')}")
        run_id = run.info.run_id
        self.client.log_text(run_id, grid.text, os.path.basename(grid.path) or "grid.yaml")
        if grid.overrides:
            self.client.log_dict(run_id, {k: format_param(v) for k, v in grid.overrides.items()},
                                 "overrides.json")
        return run_id

    def end_launch(self, run_id: str, status: str, counts: dict[str, int]) -> None:
        self.client.log_batch(run_id, metrics=[Metric(f"cells_{k}", v, _now_ms(), 0)
                                               for k, v in counts.items()])
        self.client.set_terminated(run_id, status)

    # --- one cell's child run ---

    def start_cell(self, experiment_id: str, parent_id: str, cell: Cell, grid: Grid,
                   extra_params: dict[str, Any] | None = None) -> str:
        tags = {MLFLOW_PARENT_RUN_ID: parent_id, KIND: "cell", CELL: cell.id,
                "gridrun.index": str(cell.index), "gridrun.label": cell.label,
                "gridrun.grid": grid.name, OUTCOME: "running"}
        tags.update({f"gridrun.axis.{axis}": value for axis, value in cell.axes.items()})
        run = self.client.create_run(experiment_id, start_time=_now_ms(), tags=tags,
                                     run_name=cell.name)
        params = {**cell.config, **(extra_params or {})}
        entries = [Param(k, format_param(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for chunk in _chunks(entries):
            self.client.log_batch(run.info.run_id, params=chunk)
        return run.info.run_id

    def log_epoch(self, run_id: str, stats: EpochStats) -> None:
        """All of an epoch's metrics in one call, at step=epoch."""
        ts = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), ts, stats.epoch)
                                               for k, v in stats.metrics().items()])

    def finish_cell(self, run_id: str, result: CellResult) -> None:
        ts = _now_ms()
        metrics = [Metric(k, float(v), ts, result.epochs_run)
                   for k, v in result.final_metrics().items()]
        tags = [RunTag(OUTCOME, result.outcome), RunTag(REASON, result.reason[:5000])]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def fail_cell(self, run_id: str, error: BaseException, status: str = "FAILED") -> None:
        message = f"{error.__class__.__name__}: {error}"[:5000]
        self.client.log_batch(run_id, tags=[RunTag(OUTCOME, "failed" if status == "FAILED"
                                                   else "killed"),
                                            RunTag(REASON, message),
                                            RunTag("gridrun.error", message)])
        self.client.set_terminated(run_id, status)

    def log_artifact_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)
