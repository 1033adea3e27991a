"""The best cell's logged model into MLflow's model registry (`summary --register`): chosen
here from the results (`frames.BEST_RULE`), written by `gridrun.tracking.registry`."""
from __future__ import annotations

from ..errors import GridError
from ..spec.grid import Grid
from ..tracking.registry import register_version
from ..tracking.store import Store
from .frames import BEST_RULE, best_cell, cells_frame


def register_best(name: str, experiment: str | None = None, grid: Grid | None = None,
                  tracking_uri: str | None = None):
    """Register the logged model of the best finished cell (`BEST_RULE`; pruned cells left
    out) as a new version of `name` in MLflow's model registry. Refused when that cell has no
    logged model (launched with `log_model: none`, or another launch's best). Returns the
    cell (`Best`, with the cells it tied with) and MLflow's ModelVersion."""
    best = best_cell(cells_frame(experiment, grid, tracking_uri))
    where = "--register"
    if best is None:
        raise GridError(f"no finished cell in experiment '{grid.name if grid else experiment}' "
                        "to register", where)
    store = Store(tracking_uri)
    run = store.get_run(best.run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise GridError(f"the best cell {best.name} (run {best.run_id}, test accuracy "
                        f"{best.test_acc:.4f}) has no logged model; relaunch it with "
                        "--log-model all, or log_model: best in one launch of the grid", where)
    why = BEST_RULE + (f"; tied on test accuracy with {', '.join(best.tied_with)}"
                       if best.tied_with else "")
    version = register_version(store, name, run, outputs[-1].model_id, best.cell, best.name,
                               best.test_acc, why, where)
    return best, version
