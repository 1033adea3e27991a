"""`gridrun status`: where every cell of a grid stands, read from the tracking store alone.

States, in the grid's order:
  finished  a FINISHED run (its outcome and test accuracy)
  pruned    a FINISHED run that a schedule stopped at a rung (`schedule: asha`): done, not best
  running   a RUNNING run whose launch is alive (heartbeat age, host, epochs logged)
  paused    a RUNNING run its live launch holds at an ASHA rung, waiting to rank there
  stale     a RUNNING run whose launch died: the next launch resumes it from its checkpoint
  killed    the latest run was interrupted (Ctrl-C): the next launch resumes it
  failed    the latest run FAILED (its error): the next launch trains it again
  pending   no run yet

Nothing here writes: a status of a grid never launched shows every cell pending and creates no
experiment.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from ..spec.grid import Grid
from ..spec.load import load_grid
from ..tracking import tags as T
from ..tracking.liveness import is_stale, last_sign_of_life
from ..tracking.store import Store
from ..train.records import PAUSED

STATES = ("finished", "pruned", "running", "paused", "stale", "killed", "failed", "pending")
DONE = ("finished", "pruned")


@dataclass
class CellStatus:
    index: int
    name: str
    cell: str  # the cell id
    state: str
    run_id: str = ""
    epochs: int = 0  # epochs logged on the run
    detail: str = ""
    host: str = ""
    heartbeat_age_s: float | None = None


def grid_as_launched(path: str, overrides: list[str] | None = None,
                     tracking_uri: str | None = None) -> Grid:
    """The grid file with the --set overrides of its latest launch (unless `overrides` is given),
    so that `gridrun summary GRID` finds the cells that `gridrun launch GRID --set ...` ran."""
    grid = load_grid(path, overrides or ())
    if overrides is None:
        store = Store(tracking_uri)
        exp_id = store.experiment_id(grid.name)
        latest = store.latest_launch(exp_id) if exp_id else None
        if latest is not None and latest.data.tags.get(T.OVERRIDES):
            grid = load_grid(path, json.loads(latest.data.tags[T.OVERRIDES]))
    return grid


def grid_status(grid: Grid, tracking_uri: str | None = None) -> dict:
    """Every cell's state and the counts per state, as plain data (what `--format json`
    prints)."""
    store = Store(tracking_uri)
    experiment_id = store.experiment_id(grid.name)
    runs = store.runs(experiment_id, T.of_kind("cell")) if experiment_id else []
    by_cell: dict[str, list] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):
        by_cell.setdefault(run.data.tags.get(T.CELL, ""), []).append(run)
    if grid.search is None:
        cells = [(c.index, c.name, c.id) for c in grid.cells()]
    else:  # a search's cells are the trials recorded so far
        cells = sorted({(int(r.data.tags.get(T.INDEX, 0)), r.info.run_name,
                         r.data.tags[T.CELL]) for rs in by_cell.values() for r in rs[-1:]})
    now = time.time()
    rows = [_cell_status(store, index, name, cell_id, by_cell.get(cell_id, []), now)
            for index, name, cell_id in cells]
    counts = {state: sum(r.state == state for r in rows) for state in STATES}
    return {"grid": grid.name, "experiment_id": experiment_id,
            "tracking_uri": store.tracking_uri, "counts": counts,
            "complete": bool(rows) and sum(counts[s] for s in DONE) == len(rows),
            "cells": [asdict(r) for r in rows]}


def _cell_status(store: Store, index: int, name: str, cell_id: str, runs: list,
                 now: float) -> CellStatus:
    row = CellStatus(index, name, cell_id, "pending")
    finished = next((r for r in runs if r.info.status == "FINISHED"), None)
    running = next((r for r in runs if r.info.status == "RUNNING"), None)
    run = finished or running or (runs[0] if runs else None)
    if run is None:
        return row
    tags, metrics = run.data.tags, run.data.metrics
    row.run_id = run.info.run_id
    row.host = tags.get(T.HOST, "")
    if finished is not None:
        row.epochs = int(metrics.get("epochs_run", 0))
        if tags.get(T.OUTCOME) == "pruned":
            row.state = "pruned"
            row.detail = (f"pruned at epoch {row.epochs}, val_acc "
                          f"{metrics.get('val_acc', float('nan')):.4f}")
            return row
        row.state = "finished"
        row.detail = f"{tags.get('gridrun.outcome', '')}, test_acc {metrics.get('test_acc', 0):.4f}"
        return row
    row.epochs = store.logged_epochs(run.info.run_id)
    if running is not None:
        row.heartbeat_age_s = round(now - last_sign_of_life(run), 1)
        row.state = "stale" if is_stale(run, now) else "running"
        where = tags.get(T.WORKER) or row.host or "?"
        row.detail = (f"on {where}, last heartbeat {row.heartbeat_age_s:.0f}s ago"
                      + ("; the next launch resumes it" if row.state == "stale" else ""))
        if row.state == "running" and tags.get(T.OUTCOME) == PAUSED:
            row.state, row.detail = PAUSED, tags.get(T.REASON, "")
    elif run.info.status == "KILLED":
        row.state = "killed"
        row.detail = tags.get(T.REASON, "interrupted")
    else:
        row.state = "failed"
        row.detail = tags.get(T.ERROR, tags.get(T.REASON, ""))
    return row


def render(status: dict) -> str:
    """The status as a table, then the counts. `index` is the cell's place in grid order from 0,
    as its run's tag `gridrun.index` and the JSON status number it."""
    header = ["index", "cell", "state", "epochs", "detail"]
    rows = [[str(c["index"]), c["name"], c["state"], str(c["epochs"] or "-"),
             c["detail"].splitlines()[0][:100] if c["detail"] else ""] for c in status["cells"]]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    counts = ", ".join(f"{n} {state}" for state, n in status["counts"].items() if n)
    lines.append(f"grid '{status['grid']}': {len(rows)} cells: {counts or 'none recorded'}")
    return "\n".join(lines) + "\n"


def render_json(status: dict) -> str:
    return json.dumps(status, indent=1) + "\n"
