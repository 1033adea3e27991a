"""Real launches killed with SIGKILL at several moments, then the same command again: every cell
ends with exactly one FINISHED run, killed cells continue in their own run from their last
epoch (no step logged twice, none missing) and end with the numbers of an uninterrupted launch.
Also: concurrent launches split a grid, retries resume from the checkpoint, `gridrun status`
tells the truth, and a search continues its study."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from gridrun.results.status import grid_status, render
from gridrun.spec.load import load_grid

# UNRECORDED: for the launches here whose subject is which launch trains which cell, or the
# numbers it ends with (concurrency, status, a search, rungs, retries, the reference, two kills
# on CIFAR-10); the kills at any moment keep the model and figures
from .helpers import UNRECORDED

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes

GRID = """
name: durable
fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, train.patience: 100,
        train.max_epochs: 15}
grid:
  optim.lr: [0.001, 0.002, 0.003]
"""
EPOCHS = 15
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gridrun.cli", *args]


def _launch(path: Path, uri: str, *extra: str) -> list[str]:
    # one thread per worker whatever the worker count: the numbers then match across launches
    return _cli("launch", str(path), "--tracking-uri", uri, "--threads", "1", *extra)


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _kill_when(cmd: list[str], cwd: Path, pattern: str, deadline_s: float = 300,
               victim=None) -> str:
    """Start `cmd`; when a line of its progress matches `pattern`, SIGKILL it (or the process
    `victim(pid)` names); return what it printed."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen, deadline = "", time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen += line
            if re.search(pattern, line):
                os.kill(victim(proc.pid) if victim else proc.pid, signal.SIGKILL)
                break
            if not line and proc.poll() is not None:
                pytest.fail(f"the launch ended before /{pattern}/ was seen:\n{seen}")
        else:
            pytest.fail(f"/{pattern}/ not seen in {deadline_s}s:\n{seen}")
        if victim is None:
            proc.wait(timeout=60)
            return seen
        rest, _ = proc.communicate(timeout=600)
        return seen + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cell_runs(uri: str, name: str = "durable") -> dict[str, list]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        if run.data.tags.get("gridrun.kind") == "cell":
            runs.setdefault(run.info.run_name, []).append(run)
    return runs


def _history(uri: str, run_id: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, "val_acc"))


def _finished_numbers(uri: str) -> dict[str, tuple]:
    """Per cell: its one FINISHED run's test accuracy and validation curve."""
    out = {}
    for name, runs in _cell_runs(uri).items():
        finished = [r for r in runs if r.info.status == "FINISHED"]
        assert len(finished) == 1, (name, [r.info.status for r in runs])
        run = finished[0]
        out[name] = (run.data.metrics["test_acc"], _history(uri, run.info.run_id))
    return out


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "durable.yaml"
    path.write_text(GRID)
    return path


# A module fixture is built once per xdist worker that runs a test using it: the tests that
# compare with `reference` share a worker, which launches the reference grid once, not twice
SHARES_REFERENCE = pytest.mark.xdist_group("durability-reference")


@pytest.fixture(scope="module")
def reference(grid_file, tmp_path_factory) -> dict[str, tuple]:
    """The grid launched once, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    done = _run(_launch(grid_file, uri, "--workers", "2", *UNRECORDED), folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return _finished_numbers(uri)


@SHARES_REFERENCE
@pytest.mark.parametrize("moment, workers, pattern", [
    ("before the first epoch", 1, r"\] lr0_\d+ starting"),
    ("mid-epoch", 1, r"\] lr0_\d+ epoch 3/"),
    ("while recording a result", 2, rf"epoch {EPOCHS}/{EPOCHS}"),
    ("between cells", 2, r": max_epochs \("),
])
def test_a_launch_killed_at_any_moment_is_finished_by_the_same_command(
        grid_file, reference, tmp_path, moment, workers, pattern):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = _launch(grid_file, uri, "--workers", str(workers))
    _kill_when(cmd, tmp_path, pattern)
    before = {name: [(r.info.run_id, r.info.status) for r in runs]
              for name, runs in _cell_runs(uri).items()}
    assert before, "the kill came before any run existed: the moment was not tested"

    status = grid_status(load_grid(grid_file), uri)  # the command's own call, in this process
    assert not status["complete"]
    assert "stale" in render(status) and "the next launch resumes it" in render(status)

    again = _run(cmd, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _finished_numbers(uri) == reference  # one FINISHED run each, the numbers unchanged
    for name, runs in _cell_runs(uri).items():
        assert len(runs) == 1, (name, [r.info.status for r in runs])  # resumed, not restarted
        if name in before:
            assert runs[0].info.run_id == before[name][0][0]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("durable")
    launches = client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'launch'")
    assert sorted(r.info.status for r in launches) == ["FINISHED", "KILLED"]
    assert not list((tmp_path / ".gridrun").glob("*/*.pt"))  # removed once FINISHED
    status = grid_status(load_grid(grid_file), uri)
    assert status["complete"] and status["counts"]["finished"] == 3


def test_a_grid_killed_twice_on_cifar10_ends_with_every_cell_finished_once(cifar_dir, tmp_path):
    path = tmp_path / "cifar.yaml"
    path.write_text("""
name: durable
fixed: {data.dataset: cifar10, data.train_size: 600, data.test_size: 200, model.name: lenet,
        optim.name: sgd, optim.momentum: 0.9, train.max_epochs: 6, train.patience: 100,
        train.diverge_epochs: 100}
grid:
  optim.lr: [0.01, 0.02, 0.05]
""")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = _launch(path, uri, "--data-dir", str(cifar_dir), "--workers", "2", *UNRECORDED)
    _kill_when(cmd, tmp_path, r"epoch 2/6")
    _kill_when(cmd, tmp_path, r"epoch 5/6")
    again = _run(cmd, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed from checkpoints" in again.stdout
    for name, runs in _cell_runs(uri).items():
        assert [r.info.status for r in runs] == ["FINISHED"], name
        steps = [s for s, _ in _history(uri, runs[0].info.run_id)]
        assert steps == list(range(1, int(runs[0].data.metrics["epochs_run"]) + 1))


def test_status_of_a_grid_never_launched_is_all_pending_and_creates_nothing(grid_file, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = _run(_cli("status", str(grid_file), "--tracking-uri", uri, "--format", "json"), tmp_path)
    assert done.returncode == 1
    assert '"pending": 3' in done.stdout
    assert MlflowClient(uri).get_experiment_by_name("durable") is None


def test_status_shows_a_live_launchs_cells_running_and_exits_0_only_at_the_end(grid_file,
                                                                             tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen(_launch(grid_file, uri, "--workers", "1", *UNRECORDED), cwd=tmp_path,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if re.search(r"\] lr0_\d+ epoch 2/", line):
                break
        # the worker is held still while the status runs: a digits cell trains its 15 epochs in
        # about the time the status command takes to start, and could otherwise end in between
        # (the launch logs an epoch before it prints it, so epoch 2 is in the store)
        [worker] = _grandchildren(proc.pid)
        os.kill(worker, signal.SIGSTOP)
        try:
            now = _run(_cli("status", str(grid_file), "--tracking-uri", uri, "--format", "json"),
                       tmp_path)
        finally:
            os.kill(worker, signal.SIGCONT)
        assert now.returncode == 1
        found = json.loads(now.stdout)
        [running] = [c for c in found["cells"] if c["state"] == "running"]
        assert 2 <= running["epochs"] < EPOCHS
        assert running["host"] == socket.gethostname()
        assert 0 <= running["heartbeat_age_s"] < 60
        assert found["counts"]["pending"] == 2 and found["counts"]["finished"] == 0
        proc.stdout.read()
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _run(_cli("status", str(grid_file), "--tracking-uri", uri), tmp_path)
    assert done.returncode == 0 and "3 finished" in done.stdout


def _grandchildren(pid: int) -> list[int]:
    """Processes whose parent's parent is `pid`: the local executor's workers (forked by the
    fork server the launch started)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    return [p for p, parent in parents.items() if parents.get(parent) == pid]


@SHARES_REFERENCE
def test_a_cell_whose_worker_dies_is_retried_from_its_checkpoint(grid_file, reference, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = _kill_when(_launch(grid_file, uri, "--workers", "1", "--retries", "1", *UNRECORDED),
                     tmp_path, r"epoch 4/", victim=lambda launch: _grandchildren(launch)[0])
    assert "retrying (try 1/2 failed: WorkerDied" in out
    assert "0 failed" in out
    assert _finished_numbers(uri) == reference
    retried = [r for runs in _cell_runs(uri).values() for r in runs
               if "gridrun.error.1" in r.data.tags]
    assert len(retried) == 1 and retried[0].data.tags["gridrun.error.1"].startswith("WorkerDied")


def test_four_concurrent_launches_split_the_grid_on_one_store(tmp_path):
    """On SQLite; behind an mlflow server on PostgreSQL: tests/test_tracking_server.py."""
    path = tmp_path / "shared.yaml"
    path.write_text("""
name: durable
fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, train.max_epochs: 3,
        train.patience: 100}
grid:
  optim.lr: [0.001, 0.002, 0.003, 0.004]
  train.label_smoothing: [0.0, 0.1]
""")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [subprocess.Popen(_launch(path, uri, "--workers", "1", *UNRECORDED), cwd=tmp_path,
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    failed = [out[-3000:] for p, out in zip(procs, outs) if p.returncode != 0]
    assert not failed, "\n\n".join(failed)
    assert not any("database is locked" in out for out in outs)
    ran = [int(m.group(1)) for out in outs for m in re.finditer(r"ran (\d+) cells", out)]
    assert sum(ran) == 8, outs  # each cell trained by exactly one launch
    runs = _cell_runs(uri)
    assert len(runs) == 8
    for name, cell_runs in runs.items():
        assert [r.info.status for r in cell_runs] == ["FINISHED"], name
        assert [s for s, _ in _history(uri, cell_runs[0].info.run_id)] == [1, 2, 3]


def test_a_search_continues_its_study_and_a_killed_trial_is_not_lost(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("""
name: durable
fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, train.max_epochs: 6,
        train.patience: 100}
search:
  n_trials: 2
  sampler: random
  pruner: none
  space:
    optim.lr: {low: 0.0005, high: 0.005, log: true}
""")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = _launch(path, uri, "--workers", "1", *UNRECORDED)
    first = _run(cmd, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    _kill_when(cmd, tmp_path, r"epoch 2/6")  # the second launch's first trial, mid-way
    killed = {name: runs[0].info.run_id for name, runs in _cell_runs(uri).items()
              if runs[0].info.status == "RUNNING"}
    assert len(killed) == 1
    third = _run(cmd, tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "1 resumed from checkpoints" in third.stdout
    runs = [r for rs in _cell_runs(uri).values() for r in rs]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert killed.popitem()[1] in {r.info.run_id for r in runs}  # the killed trial, finished
    # 2 trials per launch, all distinct: launch 1's two, launch 2's killed one, launch 3's two
    assert len(runs) == 5
    assert len({r.data.params["optim.lr"] for r in runs}) == 5
    assert list((tmp_path / ".gridrun").glob("*/optuna.db"))


def test_an_unwritable_state_dir_is_one_error_line_before_anything_is_recorded(grid_file,
                                                                              tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "a-file").write_text("")
    done = _run(_launch(grid_file, uri, "--state-dir", str(tmp_path / "a-file" / "state")),
                tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --state-dir: cannot write checkpoints to ")
    assert len(done.stderr.splitlines()) == 1
    assert MlflowClient(uri).get_experiment_by_name("durable") is None


def test_a_launch_killed_while_cells_wait_at_a_rung_is_finished_by_the_same_command(tmp_path):
    """ASHA pauses cells at a rung (their runs RUNNING, their checkpoints kept). Killed then,
    the relaunch finds them waiting there again, promotes or ends them, and the grid ends as
    an uninterrupted launch ends it: one FINISHED run per cell, the same numbers."""
    path = tmp_path / "waits.yaml"
    path.write_text(GRID.replace("train.max_epochs: 15", "train.max_epochs: 4").replace(
        "[0.001, 0.002, 0.003]", "[0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01]")
        + "schedule: {name: asha, min_epochs: 1, reduction_factor: 3}\n")
    whole = tmp_path / "whole"
    whole.mkdir()
    uri = f"sqlite:///{whole / 'mlflow.db'}"
    done = _run(_launch(path, uri, "--workers", "1", *UNRECORDED), whole)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": paused (waits at the epoch-1 rung" in done.stderr + done.stdout
    reference = _finished_numbers(uri)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = _launch(path, uri, "--workers", "1", *UNRECORDED)
    seen = _kill_when(cmd, tmp_path, r"\[2/6\] \S+: paused")
    paused = [name for name, runs in _cell_runs(uri).items()
              if runs[0].data.tags.get("gridrun.outcome") == "paused"]
    assert len(paused) == 2, seen
    again = _run(cmd, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _finished_numbers(uri) == reference
    for name in paused:  # resumed into its own run, every epoch logged once
        [run] = _cell_runs(uri)[name]
        steps = [step for step, _ in _history(uri, run.info.run_id)]
        assert steps == list(range(1, int(run.data.metrics["epochs_run"]) + 1))
