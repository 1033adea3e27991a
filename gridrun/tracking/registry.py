"""MLflow's model registry: a cell's logged model as a new version of a registered model."""
from __future__ import annotations

import contextlib
import io

from mlflow.exceptions import MlflowException

from ..errors import GridError
from . import tags as T
from .store import Store, global_tracking_uri


def register_version(store: Store, name: str, run, model_id: str, cell_id: str,
                     cell_name: str, test_acc: float, why: str, where: str = "--register"):
    """A new version of `name` from the logged model `model_id` of `run`, through
    `mlflow.register_model`: MLflow's own registration, which also tags the logged model with
    its versions, so its page lists them instead of offering "Register model".

    The registered model is described (what it holds, from which experiment) and tagged with
    the grid; the version carries the cell (id, name, experiment), its test accuracy, `why` it
    was chosen, and the cell run's description. Tags are strings in MLflow's registry; the
    accuracy as a number is the logged model's metric `test_acc`, which its page shows.
    Returns MLflow's ModelVersion."""
    import mlflow

    client = store.client
    experiment = client.get_experiment(run.info.experiment_id).name
    try:
        client.create_registered_model(
            name, tags={T.GRID: run.data.tags.get(T.GRID, experiment)},
            description=f"The best cell of gridrun grid '{experiment}' by test accuracy: a "
                        "CNN taking float images in [0, 1], shape [N, C, H, W], returning "
                        "class logits. Each version is one `gridrun summary --register`.")
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise GridError(f"cannot register '{name}': {e.message}", where) from None
    tags = {T.CELL: cell_id, T.CELL_NAME: cell_name, "test_acc": f"{test_acc:g}",
            T.EXPERIMENT: run.info.experiment_id, T.CHOSEN_BY: why}
    # the registry finds models:/ID globally; MLflow prints what it did to stderr, which
    # `--register`'s own line says better
    with global_tracking_uri(store.tracking_uri), contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(f"models:/{model_id}", name, tags=tags)
    note = run.data.tags.get("mlflow.note.content")
    if note:
        version = client.update_model_version(name, version.version, description=note)
    return client.get_model_version(name, version.version)
