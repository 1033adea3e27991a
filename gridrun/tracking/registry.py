"""MLflow's model registry: a cell's logged model as a new version of a registered model."""
from __future__ import annotations

from mlflow.exceptions import MlflowException

from ..errors import GridError
from . import tags as T
from .store import Store, global_tracking_uri


def register_version(store: Store, name: str, run, model_id: str, cell_id: str,
                     cell_name: str, test_acc: float, where: str = "--register"):
    """A new version of `name` (the registered model created when new) from the logged model
    `model_id` of `run`, tagged with its cell and test accuracy, described as the cell's run
    is. Returns MLflow's ModelVersion."""
    client = store.client
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise GridError(f"cannot register '{name}': {e.message}", where) from None
    tags = {T.CELL: cell_id, T.CELL_NAME: cell_name, "test_acc": f"{test_acc:.4f}",
            T.EXPERIMENT: run.info.experiment_id}
    with global_tracking_uri(store.tracking_uri):  # the registry finds models:/ID globally
        return client.create_model_version(
            name, f"models:/{model_id}", run_id=run.info.run_id, tags=tags, model_id=model_id,
            description=run.data.tags.get("mlflow.note.content"))
