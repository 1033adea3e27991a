"""A cell's model in MLflow (`gridrun.tracking.logged_model`): what it requires to run, and what
logging it costs."""
from __future__ import annotations

import importlib_metadata
import mlflow
import torch
from mlflow.utils import requirements_utils

from gridrun.tracking.logged_model import log_model
from gridrun.tracking.recorder import Recorder


def test_a_model_names_this_environments_torch_and_mlflow_without_a_scan_of_every_package(
        tracking_uri, monkeypatch):
    """MLflow checks the requirements against the environment as it saves the model and as it
    loads it back to try the input example; it maps just torch and MLflow to do so, not every
    installed distribution's files (1.2-1.4 s here). The next user of its map gets the full
    one."""
    scans = []
    scan = importlib_metadata.packages_distributions
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # as in a new process
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    monkeypatch.setattr(importlib_metadata, "packages_distributions",
                        lambda: scans.append("scan") or scan())
    recorder = Recorder(tracking_uri)
    experiment_id = recorder.experiment_id("models")
    run_id = recorder.client.create_run(experiment_id).info.run_id
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    model_id = log_model(recorder, experiment_id, run_id, model, torch.zeros(2, 1, 8, 8),
                         "lenet-lr0_01", {"optim.lr": 0.01})

    assert scans == []
    # as it was: built in full when next needed
    assert (requirements_utils._MODULES_TO_PACKAGES, requirements_utils._PACKAGES_TO_MODULES) \
        == (None, None)
    mlflow.set_tracking_uri(tracking_uri)
    folder = mlflow.artifacts.download_artifacts(f"models:/{model_id}")
    with open(f"{folder}/requirements.txt") as f:
        assert f.read().split() == [f"mlflow=={mlflow.__version__}",
                                    f"torch=={torch.__version__.split('+')[0]}"]
    loaded = mlflow.pytorch.load_model(f"models:/{model_id}")
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))
