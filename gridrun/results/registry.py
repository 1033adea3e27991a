"""The best cell's logged model into MLflow's model registry (`summary --register`): chosen
here from the results, written by `gridrun.tracking.registry`."""
from __future__ import annotations

from ..errors import GridError
from ..spec.grid import Grid
from ..tracking.registry import register_version
from ..tracking.store import Store
from .frames import cells_frame, finished_accuracy


def register_best(name: str, experiment: str | None = None, grid: Grid | None = None,
                  tracking_uri: str | None = None):
    """Register the logged model of the best finished cell (highest test accuracy, pruned cells
    left out) as a new version of `name` in MLflow's model registry, tagged with the cell's id,
    name and test accuracy. Refused when that cell has no logged model (launched with
    `log_model: none`, or another launch's best). Returns MLflow's ModelVersion."""
    cells = cells_frame(experiment, grid, tracking_uri)
    done = finished_accuracy(cells)
    done = done[done["outcome"] != "pruned"]
    where = "--register"
    if done.empty:
        raise GridError(f"no finished cell in experiment '{grid.name if grid else experiment}' "
                        "to register", where)
    best = done.loc[done["test_acc"].idxmax()]
    store = Store(tracking_uri)
    run = store.get_run(best["run_id"])
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise GridError(f"the best cell {best['name']} (run {best['run_id']}, test accuracy "
                        f"{best['test_acc']:.4f}) has no logged model; relaunch it with "
                        "--log-model all, or log_model: best in one launch of the grid", where)
    return register_version(store, name, run, outputs[-1].model_id, best["cell"], best["name"],
                            best["test_acc"], where)
