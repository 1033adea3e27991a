"""A cell's child run: created when the cell is claimed, filled epoch by epoch by the launch's
writer, ended FINISHED (with its final figures, outcome and logged model) or FAILED/KILLED.
"""
from __future__ import annotations

import random
import time

from mlflow.entities import Metric, RunTag
from mlflow.entities.run_status import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from ..spec.grid import Cell, Grid
from ..train.records import CellResult, EpochStats
from . import tags as T
from .launch_run import LaunchRun
from .writes import RunWrites, now_ms


def describe_cell(cell: Cell, result: CellResult) -> str:
    """A finished cell in a sentence, e.g. "variant relu_bn, optimizer adam: early_stopped,
    test accuracy 0.6215 (no val_acc improvement for 5 epochs ...)"."""
    varies = ", ".join(f"{axis} {value}" for axis, value in cell.axes.items()) or cell.name
    score = ("" if result.outcome == "pruned"
             else f", test accuracy {result.test_acc:.4f}")
    return f"{varies}: {result.outcome}{score} ({result.reason})."


def axis_params(cell: Cell) -> dict[str, str]:
    """The cell's level on each axis, as a param named after the axis (`variant = relu_bn`,
    `optimizer = adam`), so MLflow's parallel coordinates and filters use the grid's own
    factors. A scalar axis is its key (`optim.lr`), already a param with the same value."""
    return {axis: level for axis, level in cell.axes.items() if axis not in cell.config}


class CellRuns(RunWrites):
    """Writes on a launch's cell runs. `final_metrics` keeps what `finish` logged per run, so
    a model logged later (the launch's best) is linked to the same values."""

    def __init__(self, client, launch: LaunchRun):
        super().__init__(client)
        self.launch = launch
        self.final_metrics: dict[str, list[Metric]] = {}

    def start(self, experiment_id: str, parent_id: str, cell: Cell, grid: Grid,
              extra_tags: dict[str, str] | None = None) -> str:
        """The cell's run: its resolved config and its level on each axis as params (see
        `axis_params`), the rest as tags."""
        tags = {MLFLOW_PARENT_RUN_ID: parent_id, T.KIND: "cell", T.CELL: cell.id,
                T.CONFIG: cell.config_id, T.INDEX: str(cell.index), T.LABEL: cell.label,
                T.GRID: grid.name, T.OUTCOME: "running", **(extra_tags or {})}
        tags.update({T.axis(axis): value for axis, value in cell.axes.items()})
        tags.update(self.launch.source_tags)
        run = self.client.create_run(experiment_id, start_time=now_ms(), tags=tags,
                                     run_name=cell.name)
        self.log_params(run.info.run_id, {**cell.config, **axis_params(cell)})
        return run.info.run_id

    def log_inputs(self, run_id: str, datasets: list) -> None:
        """The cell's data as MLflow dataset inputs (`gridrun.tracking.inputs`); logging the same input
        again (a resumed cell) adds nothing.

        Two launches of a grid log the same datasets when their first cells start, often in the
        same second; behind an `mlflow server` on PostgreSQL the second insert of a dataset row
        then fails on its unique key (an IntegrityError, which the server returns as an internal
        error) and took that launch down. Tried again, the row exists and is reused."""
        for attempt in range(3):
            try:
                self.client.log_inputs(run_id, datasets=datasets)
                return
            except MlflowException:
                if attempt == 2:
                    raise
                time.sleep(0.2 + random.random() * 0.3)

    def log_epoch(self, run_id: str, stats: EpochStats, with_lr: bool = True,
                  also: list[Metric] = ()) -> None:
        """All of an epoch's metrics in one call, at step=epoch, with `also` (the worker's
        system sample at the epoch's end, at its own step). `with_lr`: the learning rate too
        (a cell with a scheduler; otherwise it is the param `optim.lr`, and a flat `lr` chart
        beside every accuracy chart says nothing)."""
        ts = now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), ts, stats.epoch)
                                               for k, v in stats.metrics().items()
                                               if with_lr or k != "lr"] + list(also))

    def finish(self, run_id: str, result: CellResult, cell: Cell | None = None,
                    model_id: str | None = None) -> None:
        """The cell's final figures (one value each, at step 0, as MLflow logs a metric without a
        step: its chart view draws them as bars, apart from the per-epoch curves; linked to the
        cell's logged model when it has one), its outcome, its description (what it varies and
        how it ended, in a sentence: MLflow's run description), the device it trained on, and
        FINISHED."""
        ts = now_ms()
        metrics = [Metric(k, float(v), ts, 0, model_id=model_id)
                   for k, v in result.final_metrics().items()]
        self.final_metrics[run_id] = metrics
        tags = [RunTag(T.OUTCOME, result.outcome), RunTag(T.REASON, result.reason[:5000]),
                RunTag(T.PARAMS_TOTAL, str(result.params_total)),
                RunTag(T.PARAMS_TRAINABLE, str(result.params_trainable))]
        if result.device:
            tags.append(RunTag(T.DEVICE, result.device))
        if cell is not None:
            tags.append(RunTag(MLFLOW_RUN_NOTE, describe_cell(cell, result)))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def fail(self, run_id: str, error: str, status: str = "FAILED",
             stopped_by: str | None = None) -> None:
        """End a cell's run FAILED (or KILLED) with `error` ("Class: message") on its tags,
        and the signal that stopped its launch, if one did."""
        message = error[:5000]
        tags = [RunTag(T.OUTCOME, "failed" if status == "FAILED" else "killed"),
                RunTag(T.REASON, message), RunTag(T.ERROR, message)]
        if stopped_by:
            tags.append(RunTag(T.SIGNAL, stopped_by))
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status)
