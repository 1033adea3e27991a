"""`scripts/tracking-server`: a real `mlflow server` over a real PostgreSQL, started the way the
README tells users to. A launch with 2 workers and a second launch of the same CIFAR-10 grid,
against it at the same time: no lost metric, no duplicate cell."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
from mlflow import MlflowClient

from .conftest import REPO, free_port

pytestmark = pytest.mark.server  # starts a real mlflow server (and PostgreSQL)

SCRIPT = REPO / "scripts" / "tracking-server"
EPOCHS = 3
GRID = f"""
name: shared-server
fixed: {{data.dataset: cifar10, data.train_size: 500, data.val_size: 200, data.test_size: 200,
        model.name: lenet, optim.name: adam, train.max_epochs: {EPOCHS}, train.patience: 100}}
grid:
  optim.lr: [0.001, 0.002, 0.003, 0.004]
  seed: [0, 1]
"""


@pytest.fixture(scope="module")
def postgres_server():
    # not under pytest's private tmp folders: as root, PostgreSQL runs as user postgres
    folder = tempfile.mkdtemp(prefix="gridrun-tracking-server-")
    os.chmod(folder, 0o755)
    port, db_port = free_port(), free_port()
    start = subprocess.run([str(SCRIPT), "start", "--dir", folder, "--port", str(port),
                            "--db-port", str(db_port)], capture_output=True, text=True,
                           timeout=600)
    if start.returncode == 3:  # PostgreSQL (or its driver) is missing and could not be installed
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no PostgreSQL here: {start.stderr.strip()}")
    assert start.returncode == 0, start.stdout + start.stderr
    url = f"http://127.0.0.1:{port}"
    assert f"export MLFLOW_TRACKING_URI={url}" in start.stdout
    yield url
    stop = subprocess.run([str(SCRIPT), "stop", "--dir", folder, "--purge"],
                          capture_output=True, text=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)
    assert stop.returncode == 0, stop.stderr


def test_two_concurrent_launches_on_a_postgres_backed_server_train_each_cell_once(
        postgres_server, cifar_dir, tmp_path):
    status = subprocess.run([str(SCRIPT), "status", "--dir", "/nonexistent-gridrun-dir"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1 and status.stdout.strip() == "not running"

    grid = tmp_path / "shared.yaml"
    grid.write_text(GRID)
    env = {**os.environ, "MLFLOW_TRACKING_URI": postgres_server, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "gridrun.cli", "launch", str(grid), "--data-dir", str(cifar_dir),
           "--threads", "1"]
    # started together: each claims cells as its workers free up, so both train some
    launches = [subprocess.Popen(cmd + ["--workers", str(workers)], cwd=tmp_path, env=env,
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for workers in (2, 1)]
    outs = [p.communicate(timeout=600)[0] for p in launches]
    assert [p.returncode for p in launches] == [0, 0], [out[-3000:] for out in outs]
    ran = [int(re.search(r"ran (\d+) cells", out).group(1)) for out in outs]
    assert sum(ran) == 8 and all(ran), ran  # both trained, no cell twice

    client = MlflowClient(postgres_server)
    exp = client.get_experiment_by_name("shared-server")
    runs = client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'cell'")
    cells = [r.data.tags["gridrun.cell"] for r in runs]
    assert len(cells) == len(set(cells)) == 8  # no duplicate cell
    for run in runs:
        assert run.info.status == "FINISHED", run.info.run_name
        epochs = int(run.data.metrics["epochs_run"])
        for key in ("train_loss", "val_loss", "val_acc"):  # no lost metric, none twice
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == list(range(1, epochs + 1)), (run.info.run_name, key, steps)
        assert "classification_report.json" in {a.path for a in
                                                 client.list_artifacts(run.info.run_id)}
