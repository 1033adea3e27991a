"""Many machines for real: a two-node Ray cluster (a head node and a worker node, each with a
raylet of its own and one CPU: `ray.cluster_utils.Cluster`) launching against the tracking
server of `scripts/tracking-server`, which is all the nodes share. The worker node dies mid-grid
(its raylet and its actor killed): its cell resumes on the head node from its last checkpoint,
into the same run. And a launch whose state directory is gone resumes its cells from the
checkpoints in their runs' artifacts; those hold one checkpoint per run, deleted when the run
is FINISHED unless kept."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from gridrun.launch import SilentProgress, launch
from gridrun.results.status import grid_status
from gridrun.spec.load import load_grid

# one PostgreSQL-backed server per session: these tests and tests/test_tracking_server.py share
# it on one xdist worker (`--dist loadgroup`)
pytestmark = [pytest.mark.cluster, pytest.mark.server, pytest.mark.slow,
              pytest.mark.xdist_group("postgres")]

GRID = """
    name: {name}
    fixed: {{data.dataset: cifar10, data.train_size: {train}, data.val_size: 200,
            data.test_size: 200, model.name: lenet, optim.name: adam,
            train.max_epochs: {epochs}, train.patience: 100}}
    grid:
      optim.lr: [0.001, 0.002]
      seed: {seeds}
"""


@pytest.fixture
def server(postgres_server, monkeypatch):
    """The tracking server's URL, with the launch user's credentials in the environment."""
    url, credentials = postgres_server
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    return url


@pytest.fixture(scope="module")
def two_nodes():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    from ray.cluster_utils import Cluster
    # a dead node noticed within seconds (Ray's default health check takes up to ~30 s)
    checks = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "_system_config": checks})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def _kill_node(cluster, node) -> list[int]:
    """A node's death: its raylet and every process it started (the actors) killed at once;
    the pids of those processes."""
    import psutil
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    actors = raylet.children(recursive=True)
    for process in [raylet, *actors]:
        process.send_signal(signal.SIGKILL)
    cluster.remove_node(node, allow_graceful=False)  # and the rest of the node's processes
    return [p.pid for p in actors]


class _NodeKiller(SilentProgress):
    """Kills the worker node once the cell on it has trained `after` epochs while the head
    node trains another; records every epoch each cell trained, each start (and the epoch it
    resumed after), and `gridrun status` just after the kill and as the killed node's cell
    starts again."""

    def __init__(self, cluster, node, grid, uri: str, after: int):
        import psutil
        self.cluster, self.node, self.grid, self.uri, self.after = cluster, node, grid, uri, after
        self.node_id = node.node_id[:8]
        self.raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
        self.epochs: dict[str, list[list[int]]] = {}  # cell name -> epochs trained, per try
        self.starts: dict[str, list[tuple[int, int]]] = {}  # -> (worker pid, resumed after)
        self.running: dict[str, int] = {}  # cell name -> its worker's pid
        self.killed_pids: list[int] = []
        self.killed_at: dict[str, int] = {}  # victim -> epochs it had trained
        self.status_after_kill = self.status_on_head = None

    def cell_started(self, position, cell, worker, resumed_after=0):
        self.starts.setdefault(cell.name, []).append((worker, resumed_after))
        self.epochs.setdefault(cell.name, []).append([])
        self.running[cell.name] = worker
        if cell.name in self.killed_at:  # its run names its new worker by now
            self.status_on_head = grid_status(self.grid, self.uri)

    def epoch_done(self, cell, stats, worker):
        self.epochs[cell.name][-1].append(stats.epoch)
        if self.killed_pids or len(self.running) < 2:
            return
        on_node = {p.pid for p in self.raylet.children(recursive=True)}
        victims = [name for name, pid in self.running.items() if pid in on_node]
        if victims and len(self.epochs[victims[0]][-1]) >= self.after:
            self.killed_pids = _kill_node(self.cluster, self.node)
            self.killed_at = {name: len(self.epochs[name][-1]) for name in victims}
            self.status_after_kill = grid_status(self.grid, self.uri)

    def cell_done(self, cell, outcome, detail):
        self.running.pop(cell.name, None)


def _runs(client: MlflowClient, experiment_id: str) -> dict:
    runs = client.search_runs([experiment_id], "tags.`gridrun.kind` = 'cell'")
    names = [r.info.run_name for r in runs]
    assert len(names) == len(set(names)), f"a cell with two runs: {sorted(names)}"
    return {r.info.run_name: r for r in runs}


def _steps(client: MlflowClient, run) -> dict[str, list[int]]:
    return {key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            for key in ("train_loss", "val_loss", "val_acc")}


def test_a_node_that_dies_mid_grid_hands_its_cell_to_the_other_node_from_its_checkpoint(
        two_nodes, server, write_grid, cifar_dir, tmp_path):
    cluster, worker_node = two_nodes
    epochs = 5
    grid = load_grid(write_grid(GRID.format(name="two-nodes", train=1000, epochs=epochs,
                                                 seeds=[0, 1])))
    killer = _NodeKiller(cluster, worker_node, grid, server, after=3)
    report = launch(grid, data_dir=str(cifar_dir), tracking_uri=server, executor="ray",
                    retries=1, progress=killer, state_dir=str(tmp_path / "head-state"))

    assert killer.killed_pids, "the worker node was never killed"
    assert (report.ran, report.failed, report.workers) == (4, 0, 2)
    (victim, trained), = killer.killed_at.items()  # one node, one cell on it
    assert trained == 3
    # resumed, not restarted: its second try continues from its checkpoint (the last epoch
    # it finished, or the one before when the kill beat that checkpoint to the launch)
    (first_pid, _), (second_pid, resumed_after) = killer.starts[victim]
    assert first_pid in killer.killed_pids and second_pid not in killer.killed_pids
    assert trained - 1 <= resumed_after <= trained and resumed_after >= 2, killer.epochs
    before, after = killer.epochs[victim]
    assert before[:trained] == list(range(1, trained + 1)), killer.epochs
    assert after == list(range(resumed_after + 1, epochs + 1)), killer.epochs

    # `gridrun status` saw the cell move: on the dead node's process, then on the head node
    during = {c["name"]: c for c in killer.status_after_kill["cells"]}
    assert during[victim]["state"] == "running"
    assert f"Ray node {killer.node_id}" in during[victim]["detail"]
    moved = {c["name"]: c for c in killer.status_on_head["cells"]}[victim]
    assert moved["state"] == "running" and "Ray node" in moved["detail"]
    assert killer.node_id not in moved["detail"] and f"process {second_pid}" in moved["detail"]

    client = MlflowClient(server)
    runs = _runs(client, report.experiment_id)
    assert len(runs) == 4
    for name, run in runs.items():  # every cell once, every epoch once
        assert run.info.status == "FINISHED", name
        assert set(map(tuple, _steps(client, run).values())) == {tuple(range(1, epochs + 1))}
        assert client.list_artifacts(run.info.run_id, "checkpoints") == [], name
        assert "gridrun.checkpoint" not in run.data.tags
    tags = runs[victim].data.tags
    assert tags["gridrun.error.1"].startswith(f"WorkerDied: Ray actor (Ray node "
                                              f"{killer.node_id} (")
    assert f"process {first_pid}) died while training this cell" in tags["gridrun.error.1"]
    assert f"process {second_pid}" in tags["gridrun.worker"]
    assert killer.node_id not in tags["gridrun.worker"]
    uploads = report.checkpoint_uploads
    assert uploads.uploads >= 4 and uploads.failed == 0


def _wait_for(log: str, pattern: str, proc, times: int = 1, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(pattern, open(log).read())) >= times:
            return
        assert proc.poll() is None, open(log).read()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"never saw {pattern!r}:\n{open(log).read()[-3000:]}")


def test_a_launch_without_its_state_directory_resumes_from_the_runs_artifacts(
        server, write_grid, cifar_dir, tmp_path):
    """SIGTERM mid-grid (a SLURM job at its time limit), the state directory deleted (a relaunch
    on another machine has none): the stopped launch uploaded each cell's newest checkpoint as
    it stopped (uploads held back by UPLOAD_SECONDS included), and the next launch downloads it
    and continues the run from it. A run holds one checkpoint: its last when kept
    (`--keep-checkpoints`), else none once FINISHED."""
    path = write_grid(GRID.format(name="from-artifacts", train=3000, epochs=8, seeds=[0]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "gridrun.cli", "launch", str(path), "--tracking-uri", server,
           "--data-dir", str(cifar_dir), "--state-dir", str(state), "--workers", "2",
           "--threads", "1"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:  # only the first epoch's checkpoint goes up as it trains
        first = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                 env={**env, "GRIDRUN_UPLOAD_SECONDS": "600"})
    try:
        for name in ("lr0_001-seed0", "lr0_002-seed0"):
            _wait_for(str(log), rf"{name} epoch 3/8", first)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143, open(log).read()[-3000:]
    finally:
        first.kill()
    client = MlflowClient(server)
    exp_id = client.get_experiment_by_name("from-artifacts").experiment_id
    left = _runs(client, exp_id)
    assert len(left) == 2 and {r.info.status for r in left.values()} == {"KILLED"}
    uploaded = {name: int(r.data.tags["gridrun.checkpoint"][-7:-3])
                for name, r in left.items()}
    for name, run in left.items():
        # its newest: of the last epoch logged, the one before (the worker was stopped before
        # it saved), or a later one (saved after the launch's last record: the relaunch logs
        # that epoch from the checkpoint)
        logged = max(_steps(client, run)["val_acc"])
        assert uploaded[name] >= max(2, logged - 1), (name, logged, uploaded)
        files = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
        assert files == [run.data.tags["gridrun.checkpoint"]], (name, files)
    shutil.rmtree(state)

    again = subprocess.run(cmd + ["--keep-checkpoints"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # each from the checkpoint its run's tag named when the first launch stopped
    resumed = dict(re.findall(r"\] (\S+) resuming after epoch (\d+)", again.stderr))
    assert {name: int(epoch) for name, epoch in resumed.items()} == uploaded
    # what a server's user sees: one link, none of MLflow's per-run lines, the same table
    assert "View run" not in again.stdout + again.stderr
    assert f"see the results: {server}/#/experiments/{exp_id}/" in again.stdout
    summary = subprocess.run([sys.executable, "-m", "gridrun.cli", "summary", str(path),
                              "--tracking-uri", server, "--format", "markdown"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert summary.stdout.count("\n") == 4 and "**" in summary.stdout, summary.stdout
    runs = _runs(client, exp_id)
    assert set(runs) == set(left)
    for name, run in runs.items():
        assert run.info.status == "FINISHED"
        assert set(map(tuple, _steps(client, run).values())) == {tuple(range(1, 9))}, name
        # kept: its last checkpoint, alone
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == \
            ["checkpoints/epoch-0008.pt"], name
        assert run.info.run_id == left[name].info.run_id  # the same run, continued
    best = next(r for r in runs.values() if "gridrun.best_of_launch" in r.data.tags)
    assert {"curves.png", "confusion_matrix.png", "classification_report.json"} <= \
        {a.path for a in client.list_artifacts(best.info.run_id)}
