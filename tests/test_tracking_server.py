"""`scripts/tracking-server`: a real `mlflow server` over a real PostgreSQL, started the way the
docs tell users to, secure by default: anonymous requests and wrong passwords are refused, a
launch with the launch user's credentials runs. A launch with 2 workers and a second launch of
the same CIFAR-10 grid, against it at the same time: no lost metric, no duplicate cell."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from mlflow import MlflowClient

from .conftest import TRACKING_SERVER as SCRIPT

# starts a real mlflow server and PostgreSQL, once per session: on one xdist worker with
# tests/test_cluster.py, which uses it too (`--dist loadgroup`)
pytestmark = [pytest.mark.server, pytest.mark.xdist_group("postgres")]

EPOCHS = 3
GRID = f"""
name: shared-server
fixed: {{data.dataset: cifar10, data.train_size: 500, data.val_size: 200, data.test_size: 200,
        model.name: lenet, optim.name: adam, train.max_epochs: {EPOCHS}, train.patience: 100}}
grid:
  optim.lr: [0.001, 0.002, 0.003, 0.004]
  seed: [0, 1]
"""


def test_the_server_refuses_anonymous_requests_wrong_passwords_and_an_open_host(
        postgres_server, tmp_path, monkeypatch):
    url, credentials = postgres_server
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(url + "/api/2.0/mlflow/experiments/get-by-name?"
                               "experiment_name=Default", timeout=30)
    assert anonymous.value.code == 401

    grid = tmp_path / "refused.yaml"
    grid.write_text(GRID.replace("shared-server", "refused"))
    wrong = {**os.environ, **credentials, "MLFLOW_TRACKING_PASSWORD": "not-the-password"}
    done = subprocess.run([sys.executable, "-m", "gridrun.cli", "launch", str(grid),
                           "--tracking-uri", url], cwd=tmp_path, env=wrong, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --tracking-uri: the tracking server refused user "
                                  "'gridrun' (401 Unauthorized)") and done.stderr.count("\n") == 1
    for key, value in credentials.items():  # MLflow's client reads them from the environment
        monkeypatch.setenv(key, value)
    assert MlflowClient(url).get_experiment_by_name("refused") is None  # nothing created

    open_host = subprocess.run([str(SCRIPT), "start", "--dir", str(tmp_path / "open"),
                                "--host", "0.0.0.0", "--no-auth"], capture_output=True,
                               text=True, timeout=60)
    assert open_host.returncode == 2
    assert "--host 0.0.0.0 with --no-auth would let anyone on the network read, write and " \
           "delete every run" in open_host.stderr
    assert not (tmp_path / "open" / "server.env").exists()


@pytest.mark.parametrize("option, value, said", [
    ("--workers", "0", "--workers '0' is not a number of processes; allowed: 1-99"),
    ("--port", "http", "--port and --db-port take numbers"),
    ("--host", "a;b", "--host 'a;b' is not a host name or address"),
])
def test_a_bad_option_is_one_error_line_and_makes_nothing(option, value, said, tmp_path):
    folder = tmp_path / "server"
    done = subprocess.run([str(SCRIPT), "start", "--dir", str(folder), option, value],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"error: tracking-server: {said}\n"
    assert not folder.exists()


def _what_went_wrong(out: str) -> str:
    """A failed launch's error lines and its end (its whole output would be cut by pytest)."""
    lines = out.splitlines()
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln or "Exception" in ln]
    return "\n".join(errors[-20:] + ["..."] + lines[-15:])


def test_two_concurrent_launches_on_a_postgres_backed_server_train_each_cell_once(
        postgres_server, cifar_dir, tmp_path, monkeypatch):
    url, credentials = postgres_server
    status = subprocess.run([str(SCRIPT), "status", "--dir", "/nonexistent-gridrun-dir"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1 and status.stdout.strip() == "not running"

    grid = tmp_path / "shared.yaml"
    grid.write_text(GRID)
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "PYTHONUNBUFFERED": "1", **credentials}
    cmd = [sys.executable, "-m", "gridrun.cli", "launch", str(grid), "--data-dir", str(cifar_dir),
           "--threads", "1"]
    # started together: each claims cells as its workers free up, so both train some
    launches = [subprocess.Popen(cmd + ["--workers", str(workers)], cwd=tmp_path, env=env,
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for workers in (2, 1)]
    outs = [p.communicate(timeout=600)[0] for p in launches]
    assert [p.returncode for p in launches] == [0, 0], "\n\n".join(map(_what_went_wrong, outs))
    ran = [int(re.search(r"ran (\d+) cells", out).group(1)) for out in outs]
    assert sum(ran) == 8 and all(ran), ran  # both trained, no cell twice

    for key, value in credentials.items():  # MLflow's client reads them from the environment
        monkeypatch.setenv(key, value)
    client = MlflowClient(url)
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
