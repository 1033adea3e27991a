"""A grid's MLflow runs as pandas frames: one row per run, one row per cell, and the factors
(axes) the cells vary over. Read-only: every read goes through `gridrun.tracking.store`."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import GridError
from ..spec import config
from ..spec.grid import Grid
from ..tracking import tags as T
from ..tracking.launch_run import Best
from ..tracking.store import Store

METRICS = ("test_acc", "best_val_acc", "epochs_needed", "duration_s", "params_total",
           "params_trainable", "epochs_run", "val_acc")  # val_acc: the last epoch's
SIZE_TAGS = {"params_total": T.PARAMS_TOTAL, "params_trainable": T.PARAMS_TRAINABLE}

def runs_frame(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every cell run of an experiment, one row each: tags, typed params and final metrics."""
    store = Store(tracking_uri)
    exp_id = store.experiment_id(experiment)
    if exp_id is None:
        raise GridError(f"no experiment '{experiment}' in {store.tracking_uri}; launch the grid "
                        "first, or pass the --tracking-uri it was launched with")
    records = []
    for run in store.runs(exp_id, T.of_kind("cell")):
        tags, info = run.data.tags, run.info
        record = {"run_id": info.run_id, "name": info.run_name, "status": info.status,
                  "start_time": info.start_time, "end_time": info.end_time,
                  "cell": tags.get(T.CELL), "config": tags.get(T.CONFIG) or tags.get(T.CELL),
                  "index": int(tags.get(T.INDEX, -1)), "label": tags.get(T.LABEL),
                  "outcome": tags.get(T.OUTCOME), "reason": tags.get(T.REASON)}
        record.update({f"axis:{k[len(T.AXIS_PREFIX):]}": v for k, v in tags.items()
                       if k.startswith(T.AXIS_PREFIX)})
        record.update(run.data.params)
        record.update({m: run.data.metrics.get(m, np.nan) for m in METRICS})
        for m, tag in SIZE_TAGS.items():  # tags since the sizes left the metrics
            if tag in tags:
                record[m] = float(tags[tag])
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    for key, opt in config.OPTIONS.items():  # params come back as strings
        if key in frame and opt.kind in ("int", "float"):
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
    return frame


def cells_frame(experiment: str | None = None, grid: Grid | None = None,
                tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per cell: its latest FINISHED run, else its latest run, else "NOT RUN" (grid only)."""
    name = grid.name if grid is not None else experiment
    if grid is not None and grid.search is not None:  # trials are not known in advance
        grid = None
    runs = runs_frame(name, tracking_uri)
    if runs.empty:
        runs = pd.DataFrame(columns=["run_id", "status", "start_time", "cell", "config", "index"])
    runs["_finished"] = runs["status"] == "FINISHED"
    latest = (runs.sort_values(["_finished", "start_time"], ascending=False)
              .drop_duplicates("cell").drop(columns="_finished"))
    if grid is None:
        return latest.sort_values(["index", "start_time"]).reset_index(drop=True)
    planned = pd.DataFrame([{"cell": c.id, "config": c.config_id, "index": c.index,
                             "label": c.label, "name": c.name,
                             **{f"axis:{a}": v for a, v in c.axes.items()}, **c.config}
                            for c in grid.cells()])
    run_cols = ["cell", "run_id", "status", "start_time", "end_time", "outcome", "reason",
                *[m for m in METRICS if m in latest]]
    merged = planned.merge(latest.reindex(columns=run_cols), on="cell", how="left")
    merged["status"] = merged["status"].fillna("NOT RUN")
    return merged.sort_values("index").reset_index(drop=True)


def factor_levels(cells: pd.DataFrame, factor: str) -> pd.Series:
    """A factor's level per cell: a bundle's label, or a key's value."""
    if factor in config.OPTIONS and factor in cells:
        return cells[factor].map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    if f"axis:{factor}" in cells:
        return cells[f"axis:{factor}"]
    raise GridError(f"unknown factor '{factor}'; allowed: {', '.join(factors(cells))}")


def factors(cells: pd.DataFrame) -> list[str]:
    """The grid's axes, by name."""
    return [c[len("axis:"):] for c in cells.columns if c.startswith("axis:")]


BEST_RULE = ("the highest test accuracy; on a tie, the higher best validation accuracy, then the "
             "cell first in grid order")


def best_order(test_acc: float, best_val_acc: float, index: int) -> tuple:
    """The key whose maximum is the best cell (`BEST_RULE`): the launch run's best cell and
    `--register`'s choice both use it (the summary bolds every tied row)."""
    return (test_acc, best_val_acc if best_val_acc == best_val_acc else -1.0, -index)


def choose_best(entries: list[tuple[tuple, str]]) -> tuple[int, list[str]]:
    """Of `entries` ((best_order key, name) pairs), the position of the best and the names of
    the others with the same test accuracy: a tie the rule broke, which callers say aloud."""
    chosen = max(range(len(entries)), key=lambda i: entries[i][0])
    top = entries[chosen][0][0]
    tied = [name for i, (key, name) in enumerate(entries) if i != chosen and key[0] == top]
    return chosen, tied


def best_cell(cells: pd.DataFrame) -> Best | None:
    """The best finished cell of `cells` (`cells_frame`) by `BEST_RULE`, pruned cells left
    out (their accuracy is an early epoch's), with the cells it tied with; None when none
    finished."""
    done = finished_accuracy(cells)
    if done.empty:
        return None
    rows = list(done.itertuples(index=False))
    chosen, tied = choose_best([(best_order(r.test_acc, r.best_val_acc, r.index), r.name)
                                for r in rows])
    row = rows[chosen]
    return Best(row.name, row.run_id, row.cell, float(row.test_acc), tuple(tied), BEST_RULE)


def has_result(cells: pd.DataFrame) -> pd.Series:
    """Which cells have a result: finished, scored, and not pruned (a pruned cell's test
    accuracy is an early epoch's; the table, the effects and the plots all leave it out)."""
    outcome = cells["outcome"] if "outcome" in cells else pd.Series("", index=cells.index)
    return (cells["status"] == "FINISHED") & cells["test_acc"].notna() & (outcome != "pruned")


def finished_accuracy(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells with a result (`has_result`), their accuracy in % as `accuracy`."""
    done = cells[has_result(cells)].copy()
    done["accuracy"] = done["test_acc"] * 100
    return done
