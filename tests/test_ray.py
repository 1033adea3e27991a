"""The Ray executor on a real local Ray instance (`ray.init(num_cpus=2)`, shared by this module's
tests): the same cells, params, metrics, tags and artifacts as the local executor for the same
seeds; and the one-line errors (no Ray, no cluster at an address, resources no node has). A node
that dies mid-grid, on a real two-node cluster: tests/test_cluster.py."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from gridrun.cli import cli
from gridrun.launch import launch
from gridrun.spec.load import load_grid

pytestmark = pytest.mark.cluster  # starts a real Ray cluster

GRID = """
    name: {name}
    fixed: {{data.dataset: cifar10, data.train_size: 600, data.val_size: 200,
            data.test_size: 200, model.name: lenet, optim.name: sgd, optim.momentum: 0.9,
            train.max_epochs: {epochs}, train.patience: 100}}
    grid:
      optim.lr: [0.01, 0.02]
      seed: [0, 1]
"""
# what differs between any two launches, whatever runs them: who held the claim, and when
VOLATILE = re.compile(r"^(gridrun\.(claim|heartbeat|host|pid|worker|launch|best_of_launch)|"
                      r"mlflow\.(user|source|parentRunId|log-model\.history|runName))")


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    # a new instance of its own, never a cluster that another test (test_cluster) runs now
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _record(uri: str, experiment: str) -> dict[str, dict]:
    """Everything a cell's run holds that its training decides, by cell id."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    cells = {}
    for run in client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'cell'"):
        run_id = run.info.run_id
        cell = run.data.tags["gridrun.cell"]
        assert cell not in cells, f"cell {cell} has two runs"
        history = {key: tuple(m.value for m in sorted(client.get_metric_history(run_id, key),
                                                      key=lambda m: m.step))
                   for key in ("train_loss", "val_loss", "val_acc")}
        metrics = {k: v for k, v in run.data.metrics.items()  # all but timings and the
                   if not k.endswith(("seconds", "duration_s"))  # machine's readings
                   and not k.startswith("system/")}
        cells[cell] = {
            "status": run.info.status, "name": run.info.run_name,
            "params": {k: v for k, v in run.data.params.items() if not VOLATILE.match(k)},
            "tags": {k: v for k, v in run.data.tags.items() if not VOLATILE.match(k)},
            "metrics": metrics, "history": history,
            "artifacts": sorted(a.path for a in client.list_artifacts(run_id)),
            "models": len(run.outputs.model_outputs) if run.outputs else 0}
    return cells


def test_ray_lands_what_the_local_executor_lands_with_the_same_numbers(
        ray_instance, write_grid, tmp_path, cifar_dir):
    path = write_grid(GRID.format(name="on-ray", epochs=2))
    records = {}
    for executor in ("local", "ray"):
        uri = f"sqlite:///{tmp_path / f'{executor}.db'}"
        report = launch(load_grid(path), data_dir=str(cifar_dir), tracking_uri=uri,
                        executor=executor, workers=2, threads=1, log_model="all")
        assert (report.ran, report.failed, report.workers) == (4, 0, 2)
        records[executor] = _record(uri, "on-ray")
    local, on_ray = records["local"], records["ray"]
    assert set(local) == set(on_ray) and len(on_ray) == 4
    for cell in local:
        for part in local[cell]:
            assert on_ray[cell][part] == local[cell][part], (cell, part)
    assert all(r["status"] == "FINISHED" for r in on_ray.values())
    assert all(r["models"] == 1 for r in on_ray.values()), "log_model: all, one logged model each"


def test_without_ray_the_ray_executor_is_a_one_line_error(write_grid, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    path = write_grid("fixed: {data.dataset: digits, train.max_epochs: 1}\n"
                      "grid: {optim.lr: [0.01, 0.02]}\n")
    store = tmp_path / "m.db"
    result = CliRunner().invoke(cli, ["launch", str(path), "--executor", "ray",
                                      "--tracking-uri", f"sqlite:///{store}"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: --executor ray: Ray is not installed; install it "
                                     "with: pip install 'gridrun[ray]'")
    assert not store.exists()


def test_a_ray_address_with_nothing_behind_it_is_an_error_at_once(write_grid, tmp_path):
    """In a fresh process (this one already runs Ray, which a launch would just use)."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    path = write_grid("fixed: {data.dataset: digits, train.max_epochs: 1}\n")
    store = tmp_path / "m.db"
    proc = subprocess.run([sys.executable, "-m", "gridrun.cli", "launch", str(path),
                           "--executor", "ray", "--address", "127.0.0.1:9",
                           "--tracking-uri", f"sqlite:///{store}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --address: nothing answers at 127.0.0.1:9 (")
    assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout
    assert not store.exists()


def test_resources_that_no_node_has_are_an_error_not_a_wait(ray_instance, write_grid, tmp_path):
    path = write_grid("fixed: {data.dataset: digits, train.max_epochs: 1}\n"
                      "execution: {executor: ray, resources: {cpus: 1, gpus: 0.5}}\n")
    result = CliRunner().invoke(cli, ["launch", str(path), "--tracking-uri",
                                      f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: execution.resources: each cell asks for 0.5 gpus; "
                                     "the Ray cluster has 0")
    assert not (tmp_path / "m.db").exists()
