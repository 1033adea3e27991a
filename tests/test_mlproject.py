"""`mlflow run .`: the MLproject's entry points, run for real with the local environment."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from mlflow import MlflowClient

from .conftest import REPO

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes


def _project_copy(tmp_path):
    """The project's MLproject files in a scratch folder (mlflow runs commands in the project
    folder, and MLflow writes artifacts under ./mlruns there)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("MLproject", "python_env.yaml"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "grids", project / "grids")
    return project


def _mlflow_run(project, uri, *args):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run(["mlflow", "run", ".", "--env-manager", "local", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=600)


def test_mlflow_run_main_launches_the_quickstart_grid(tmp_path):
    project = _project_copy(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _mlflow_run(project, uri, "-P", "grid=grids/quickstart.yaml",
                       "-P", "overrides=train.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id])
    cells = [r for r in runs if r.data.tags.get("gridrun.kind") == "cell"]
    parents = [r for r in runs if r.data.tags.get("gridrun.kind") == "launch"]
    assert len(cells) == 4 and all(r.info.status == "FINISHED" for r in cells)
    assert len(parents) == 1
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parents[0].info.run_id}
    assert all(r.data.params["train.max_epochs"] == "1" for r in cells)
    # the project's own run (in the Default experiment) points at the launch
    project_run = client.get_run(parents[0].data.tags["gridrun.project_run"])
    assert project_run.data.tags["gridrun.launch_run"] == parents[0].info.run_id

    summary = _mlflow_run(project, uri, "-e", "summary", "-P", "grid=grids/quickstart.yaml")
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert summary.stdout.startswith("| Model | Duration | Learning Rate | Momentum/Adam |")


def test_mlflow_run_cell_adopts_the_project_run_in_its_experiment(tmp_path):
    project = _project_copy(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _mlflow_run(project, uri, "-e", "cell", "--experiment-name", "my-cells",
                       "-P", "experiment=my-cells", "-P", "model=lenet", "-P", "max_epochs=1",
                       "-P", "lr=0.002")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("my-cells").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("gridrun.kind") == "launch"]
    (cell,) = [r for r in runs if r.data.tags.get("gridrun.kind") == "cell"]
    assert parent.data.tags.get("mlflow.project.entryPoint") == "cell"
    assert cell.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert cell.data.params["optim.lr"] == "0.002" and cell.data.params["model.name"] == "lenet"
    assert cell.info.run_name.startswith("datasetdigits-lenet-adam-lr0_002")
