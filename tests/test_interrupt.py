"""Ctrl-C on a real launch: finished cells are kept, the cell in progress is KILLED with its
checkpoint, and the same command resumes it from its last epoch in the same run."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes


def _launch_command(path, tmp_path, *extra: str) -> tuple[str, list[str], dict]:
    """The tracking URI, the `gridrun launch` command and the environment of a launch run as a
    user runs it, recording into a SQLite store in `tmp_path`."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "gridrun.cli", "launch", str(path), "--tracking-uri", uri, *extra]
    return uri, cmd, {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_interrupted_launch_keeps_finished_cells_and_resumes(write_grid, tmp_path):
    path = write_grid("""
        name: interrupted
        fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, optim.lr: 0.001,
                train.patience: 100, train.max_epochs: 1}
        grid:
          variant:
            first: {}
            long: {train.max_epochs: 40}
    """)
    uri, cmd, env = _launch_command(path, tmp_path)
    # SIGINT as a terminal sends it, even when this suite itself runs in a background job
    # (which starts its children with SIGINT ignored)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    seen, training = "", False
    while time.monotonic() < deadline:  # wait until the first cell is done and the long one trains
        line = proc.stderr.readline()
        seen += line
        if "] first: max_epochs" in seen and re.search(r"\] long epoch \d+/40", line):
            training = True
            break
        if not line and proc.poll() is not None:
            break
    # the signal must reach a launch that is still training the long cell, or the test says so
    assert training and proc.poll() is None, "the launch was not training when interrupted:\n" + seen
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, seen + err
    assert "interrupted by SIGINT: cells in progress are recorded as KILLED with their checkpoints" in err
    assert "Traceback" not in err

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("interrupted")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("gridrun.kind") == "cell"}
    assert runs["first"].info.status == "FINISHED"
    assert runs["long"].info.status == "KILLED"
    assert runs["long"].data.tags["gridrun.outcome"] == "killed"
    parent = client.get_run(runs["long"].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"

    killed_at = max(m.step for m in client.get_metric_history(runs["long"].info.run_id, "val_acc"))
    assert killed_at >= 1
    assert list((tmp_path / ".gridrun").glob("experiment-*/*.pt"))  # its checkpoint is kept

    # the same command resumes: the finished cell is skipped, the killed one continues in its run
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert "ran 1 cells (1 resumed from checkpoints), skipped 1 already finished" in again.stdout
    cells = [r for r in client.search_runs([exp.experiment_id])
             if r.data.tags.get("gridrun.kind") == "cell"]
    assert sorted((r.info.run_name, r.info.status) for r in cells) == [
        ("first", "FINISHED"), ("long", "FINISHED")]
    long = client.get_run(runs["long"].info.run_id)  # the same run as before
    assert long.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(long.info.run_id, "val_acc")]
    epochs_run = int(long.data.metrics["epochs_run"])
    assert epochs_run > killed_at
    assert sorted(steps) == list(range(1, epochs_run + 1))  # no gap, no step twice
    assert not list((tmp_path / ".gridrun").glob("experiment-*/*.pt"))  # removed once FINISHED


def _wait_for_epochs(proc, names: list[str], epochs: int, timeout: float = 300) -> str:
    """Read the launch's progress until each cell in `names` has reported `epochs` epochs
    (so each has a checkpoint); what it printed."""
    deadline, seen = time.monotonic() + timeout, ""
    done = {name: 0 for name in names}
    while time.monotonic() < deadline and min(done.values()) < epochs:
        line = proc.stderr.readline()
        seen += line
        match = re.search(r"\] (\S+) epoch (\d+)/", line)
        if match and match.group(1) in done:
            done[match.group(1)] = int(match.group(2))
        if not line and proc.poll() is not None:
            break
    assert min(done.values()) >= epochs and proc.poll() is None, (
        "the launch was not training both cells when stopped:\n" + seen)
    return seen


def test_sigterm_stops_a_two_worker_launch_at_once_and_the_relaunch_resumes_every_cell(
        write_grid, tmp_path, cifar_dir):
    """What SLURM does at preemption or at a job's time limit (SIGTERM to the job's processes,
    SIGKILL 30 s later), sent to the whole process group as SLURM does (the launch's workers
    get it too), `docker stop` and Kubernetes too: the launch exits 143 within 10 s
    with every run KILLED and tagged with the signal, and the next launch resumes every cell
    from its checkpoint at once, each epoch logged exactly once."""
    path = write_grid("""
        name: preempted
        fixed: {data.dataset: cifar10, data.train_size: 1000, data.val_size: 300,
                data.test_size: 300, model.name: base4, optim.name: adam, optim.lr: 0.001,
                train.patience: 100, train.max_epochs: 8}
        grid:
          variant:
            a: {}
            b: {model.dropout: 0.2}
    """)
    uri, cmd, env = _launch_command(path, tmp_path, "--data-dir", str(cifar_dir),
                                    "--workers", "2")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = _wait_for_epochs(proc, ["a", "b"], 2)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, seen + err
    assert took < 10, f"exit {took:.1f} s after SIGTERM"
    assert "interrupted by SIGTERM: cells in progress are recorded as KILLED" in err
    assert "Traceback" not in err, err

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("preempted")
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.status for r in runs} == {"KILLED"}, [(r.info.run_name, r.info.status)
                                                          for r in runs]
    assert {r.data.tags.get("gridrun.signal") for r in runs} == {"SIGTERM"}
    cells = {r.info.run_name: r for r in runs if r.data.tags.get("gridrun.kind") == "cell"}
    assert set(cells) == {"a", "b"}
    assert all(r.data.tags["gridrun.outcome"] == "killed" for r in cells.values())
    killed_at = {name: max(m.step for m in client.get_metric_history(r.info.run_id, "val_acc"))
                 for name, r in cells.items()}

    started = time.monotonic()
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert "ran 2 cells (2 resumed from checkpoints), skipped 0 already finished" in again.stdout
    assert time.monotonic() - started < 300
    for name, run in cells.items():
        resumed = client.get_run(run.info.run_id)  # the same run, continued
        assert resumed.info.status == "FINISHED"
        assert not resumed.data.tags.get("gridrun.signal")  # no longer what ended it
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, 9)), (name, steps)  # 1..8, each once
        assert 8 > killed_at[name] >= 2
