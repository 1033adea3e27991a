"""A study: what the results section of a report needs, read once from the tracking store.

    study = read_study(grid, tracking_uri)      # cells, curves, the best cell, launches, data
    importance(study)                           # which factor mattered (Optuna's fANOVA)
    cost(study)                                 # wall time, cell time per outcome, epochs saved

`gridrun.results.page` draws it (`figures_of`, for a notebook too) and writes it as one page.
Reads only: nothing here writes to the store (`--log` is the page's, through the tracking layer).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import GridError
from ..spec.grid import Grid
from ..tracking import tags as T
from ..tracking.store import Store
from .frames import best_cell, cells_frame, factor_levels, factors, has_result
from .tables import effects_table, read_reference, tabulate

CURVE_METRICS = ("val_acc", "train_loss", "train_acc", "val_loss")
# below this many cells per level of a factor, an importance is a rough ranking, and says so
CELLS_PER_LEVEL = 3
REPORTS = ("confusion_matrix.json", "top_confusions.json", "classification_report.json")


@dataclass
class Study:
    grid: Grid
    tracking_uri: str
    cells: pd.DataFrame  # one row per cell that ran: its latest finished run (`cells_frame`)
    table: pd.DataFrame  # the summary table; with `compare`, the report column and the delta
    effects: pd.DataFrame  # the marginal mean accuracy of each level of each factor
    factors: list[str]  # the axes the cells that ran vary over
    curves: dict[str, pd.DataFrame]  # run id -> one row per epoch: epoch, CURVE_METRICS
    best: pd.Series | None  # the best finished cell's row of `cells`
    reports: dict = field(default_factory=dict)  # the best cell's REPORTS, by file name
    launches: list[dict] = field(default_factory=list)  # one per launch run, oldest first
    inputs: list[dict] = field(default_factory=list)  # the data: name, context, digest, source
    not_run: int = 0  # cells of the grid no launch has run yet

    def levels(self, factor: str) -> pd.Series:
        """Each cell's level of `factor`, aligned with `cells`."""
        return factor_levels(self.cells, factor)


def read_study(grid: Grid, tracking_uri: str | None = None,
               compare: str | None = None) -> Study:
    """Read a grid's runs, their per-epoch curves, the best cell's reports and the launches."""
    reference = read_reference(compare) if compare else None  # a bad CSV fails before reading
    store = Store(tracking_uri)
    experiment_id = store.experiment_id(grid.name)
    if experiment_id is None:
        raise GridError(f"no experiment '{grid.name}' in {store.tracking_uri}; launch the grid "
                        "first, or pass the --tracking-uri it was launched with")
    cells = cells_frame(grid=grid, tracking_uri=tracking_uri)
    not_run = int((cells["status"] == "NOT RUN").sum())
    cells = cells[cells["status"] != "NOT RUN"].reset_index(drop=True)
    if cells.empty:
        raise GridError(f"no cell of grid '{grid.name}' has run yet; launch it first")
    varied = [f for f in factors(cells) if factor_levels(cells, f).nunique() > 1]
    curves = {run_id: _curve(store, run_id) for run_id in cells["run_id"].dropna()}
    best = _best_row(cells)
    return Study(grid=grid, tracking_uri=store.tracking_uri, cells=cells,
                 table=tabulate(cells, reference=reference), effects=effects_table(cells),
                 factors=varied, curves=curves, best=best,
                 reports=_reports(store, best["run_id"]) if best is not None else {},
                 launches=_launches(store, experiment_id, grid),
                 inputs=_inputs(store, cells["run_id"].dropna()), not_run=not_run)


def _curve(store: Store, run_id: str) -> pd.DataFrame:
    by_metric = {m: {p.step: p.value for p in store.client.get_metric_history(run_id, m)}
                 for m in CURVE_METRICS}
    epochs = sorted(set().union(*by_metric.values()))
    return pd.DataFrame({"epoch": epochs, **{m: [by_metric[m].get(e, np.nan) for e in epochs]
                                             for m in CURVE_METRICS}})


def _best_row(cells: pd.DataFrame) -> pd.Series | None:
    """The best finished cell's row, by the rule the launch and `--register` use."""
    best = best_cell(cells)
    return None if best is None else cells[cells["run_id"] == best.run_id].iloc[0]


def _reports(store: Store, run_id: str) -> dict:
    """The best cell's confusion matrix, most confused pairs and per-class report: artifacts
    every finished cell logs. A run without one (an older gridrun) leaves it out."""
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        present = {a.path for a in store.client.list_artifacts(run_id)}
        for name in REPORTS:
            if name in present:
                path = store.client.download_artifacts(run_id, name, folder)
                out[name] = json.loads(Path(path).read_text())
    return out


def _launches(store: Store, experiment_id: str, grid: Grid) -> list[dict]:
    """Every launch of the experiment: when, what command (the grid file and what the run
    records of the options that change cells: --set, --only, --schedule), where, with which
    versions."""
    out = []
    for run in sorted(store.runs(experiment_id, T.of_kind("launch")),
                      key=lambda r: r.info.start_time):
        tags = run.data.tags
        overrides = json.loads(tags.get(T.OVERRIDES, "[]"))
        schedule = run.data.params.get("schedule", "")
        command = " ".join([
            tags.get("mlflow.source.name", "gridrun launch"), *(f"--set {o}" for o in overrides),
            *(f"--only {o}" for o in filter(None, tags.get(T.ONLY, "").split("; "))),
            *([f"--schedule {schedule}"] if schedule and schedule != grid.schedule.name else [])])
        out.append({"run_id": run.info.run_id, "name": run.info.run_name,
                    "status": run.info.status, "start": run.info.start_time,
                    "end": run.info.end_time, "command": command,
                    "host": tags.get(T.HOST, ""), "versions": tags.get(T.VERSIONS, ""),
                    "machine": tags.get(T.MACHINE, ""), "ran": tags.get(T.cells_count("ran"), ""),
                    "schedule": schedule})
    return out


def _inputs(store: Store, run_ids) -> list[dict]:
    """The distinct datasets the cells trained, validated and were tested on, with digests."""
    seen = {}
    for run_id in run_ids:
        for dataset_input in store.get_run(run_id).inputs.dataset_inputs:
            ds = dataset_input.dataset
            context = next((t.value for t in dataset_input.tags if t.key == "mlflow.data.context"),
                           "")
            seen.setdefault((ds.name, context, ds.digest), {
                "name": ds.name, "context": context, "digest": ds.digest, "source": ds.source})
    return list(seen.values())


def importance(study: Study) -> tuple[pd.DataFrame, str]:
    """How much each factor explains of the test accuracy across the cells: Optuna's fANOVA
    on one trial per finished cell (its levels, its accuracy), and a note on how far to trust
    it. Pruned cells are left out (their accuracy is an early epoch's); cells that did not
    converge are in, with the accuracy they reached: not converging is what a factor did."""
    return factor_importance(study.cells, study.factors)


def factor_importance(cells: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, str]:
    """`importance` on a frame of cells (`cells_frame`) and the factors to rank."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    done = cells[has_result(cells)]
    levels = {f: factor_levels(done, f) for f in names}
    names = [f for f in names if levels[f].nunique() > 1]
    if len(done) < 3 or not names:
        return (pd.DataFrame(columns=["Factor", "Importance"]),
                f"not computed: {len(done)} finished cells, {len(names)} factors with more than "
                "one level among them")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    choices = {f: tuple(dict.fromkeys(levels[f])) for f in names}
    for i in range(len(done)):
        study.add_trial(optuna.trial.create_trial(
            params={f: levels[f].iloc[i] for f in names},
            distributions={f: CategoricalDistribution(choices[f]) for f in names},
            value=float(done["test_acc"].iloc[i])))
    ranked = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0),
                                   normalize=True)
    out = pd.DataFrame({"Factor": list(ranked), "Importance": list(ranked.values())})
    per_level = len(done) / max(len(choices[f]) for f in names)
    note = (f"Optuna's fANOVA on {len(done)} finished cells over {len(names)} factors "
            f"({per_level:.1f} cells per level of the widest factor).")
    if per_level < CELLS_PER_LEVEL:
        note += (f" With fewer than {CELLS_PER_LEVEL} cells per level, read it as a rough "
                 "ranking, not a measurement: one cell more can reorder close factors.")
    return out, note


def cost(study: Study) -> dict:
    """What the study cost: launches' wall time, cell time by outcome, epochs trained, and the
    epochs early stopping and a schedule saved (each stopped cell's epochs short of
    `train.max_epochs`)."""
    cells = study.cells
    finished = cells[cells["status"] == "FINISHED"]
    max_epochs = finished["train.max_epochs"] if "train.max_epochs" in finished else np.nan
    short = (max_epochs - finished["epochs_run"]).clip(lower=0)
    by_outcome = finished.groupby("outcome")["duration_s"].agg(["count", "sum"])
    walls = [(run["end"] - run["start"]) / 1000 for run in study.launches
             if run["end"] and run["start"]]
    return {
        "launches": len(study.launches), "wall_s": float(sum(walls)),
        "cell_seconds": {o: float(r["sum"]) for o, r in by_outcome.iterrows()},
        "cells": {o: int(r["count"]) for o, r in by_outcome.iterrows()},
        "epochs_trained": int(finished["epochs_run"].sum()),
        "epochs_saved_early_stopping": int(short[finished["outcome"] == "early_stopped"].sum()),
        "epochs_saved_schedule": int(short[finished["outcome"] == "pruned"].sum()),
        "epochs_saved_not_converging": int(short[finished["outcome"] == "not_converging"].sum()),
    }
