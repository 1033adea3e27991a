"""A real `mlflow server` on 127.0.0.1: launch into it, read the table and artifacts back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from .conftest import REPO

pytestmark = pytest.mark.server  # starts a real mlflow server (and PostgreSQL)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def test_launch_and_summary_against_a_real_server(mlflow_server, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    gridrun = [sys.executable, "-m", "gridrun.cli"]
    grid = str(REPO / "grids" / "quickstart.yaml")
    launch = subprocess.run(gridrun + ["launch", grid, "--set", "train.max_epochs=1"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert "ran 4 cells" in launch.stdout and "View run" not in launch.stdout
    assert f"see the results: {mlflow_server}/#/experiments/" in launch.stdout

    summary = subprocess.run(gridrun + ["summary", grid, "--format", "markdown"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert summary.stdout.count("\n") == 6 and "**" in summary.stdout

    api = f"{mlflow_server}/api/2.0/mlflow"
    experiment = _get(f"{api}/experiments/get-by-name?experiment_name=quickstart")["experiment"]
    body = json.dumps({"experiment_ids": [experiment["experiment_id"]],
                       "filter": "tags.`gridrun.kind` = 'cell'"}).encode()
    request = urllib.request.Request(f"{api}/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.load(response)["runs"]
    assert len(runs) == 4 and all(r["info"]["status"] == "FINISHED" for r in runs)
    best = next(r for r in runs if any(t["key"] == "gridrun.best_of_launch"
                                       for t in r["data"]["tags"]))
    files = {f["path"] for f in _get(f"{api}/artifacts/list?run_id={best['info']['run_id']}")
             ["files"]}
    assert {"curves.png", "confusion_matrix.png", "classification_report.json"} <= files
