"""A trained cell's model in MLflow: MLflow's pytorch flavor, as a logged model named after its
cell and carrying the cell's config. The only tracking module that imports torch (and only
when a model is logged)."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric

from ..spec.grid import run_name
from .store import global_tracking_uri
from .writes import MAX_PARAM_LENGTH, format_param

if TYPE_CHECKING:
    import torch

    from .recorder import Recorder

def model_name(name: str) -> str:
    """A logged model's name: its cell's run name, already one MLflow takes
    (`spec.grid.run_name`); any other name made one the same way."""
    return run_name([name]) or "model"


def log_model(recorder: Recorder, experiment_id: str, run_id: str, model: torch.nn.Module,
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
    seconds per model. MLflow's check of them against the environment maps just those
    packages (`_requirements_mapped`).
    """
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch

    # created here so the model belongs to the run's experiment, not the "active" one
    logged = recorder.client.create_logged_model(
        experiment_id, name=model_name(name), source_run_id=run_id,
        params={k: format_param(v)[:MAX_PARAM_LENGTH] for k, v in (params or {}).items()})
    # log_model resolves the store globally; its requirements are torch's and MLflow's own pin
    with global_tracking_uri(recorder.tracking_uri), _requirements_mapped(["torch", "mlflow"]):
        info = mlflow.pytorch.log_model(
            model, name="model", run_id=run_id, model_id=logged.model_id,
            input_example=example_input.numpy().astype(np.float32),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    if run_id in recorder.cells.final_metrics:
        recorder.client.log_batch(run_id, metrics=[
            Metric(m.key, m.value, m.timestamp, m.step, model_id=info.model_id)
            for m in recorder.cells.final_metrics[run_id]])
    return info.model_id


@contextlib.contextmanager
def _requirements_mapped(packages: list[str]):
    """Meanwhile, MLflow maps only `packages` (each its own module) to their modules, instead of
    every installed distribution. MLflow checks a model's requirements against the environment
    twice as it logs the model (as it saves it, and as it loads it back to try the input
    example), and to do so first maps every installed distribution's files to their modules,
    once per process: 1.2-1.4 s of CPU with this project's 234 packages, paid at the end of
    every launch that logs a model. The check itself still runs, on the requirements given.
    Where MLflow already holds its map (or keeps it elsewhere), nothing is changed."""
    from mlflow.utils import requirements_utils

    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", ()) is not None:
        yield
        return
    reverse = getattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    requirements_utils._MODULES_TO_PACKAGES = {name: [name] for name in packages}
    try:
        yield
    finally:  # as it was: the next user of the map (requirement inference, say) builds it in full
        requirements_utils._MODULES_TO_PACKAGES = None
        requirements_utils._PACKAGES_TO_MODULES = reverse
