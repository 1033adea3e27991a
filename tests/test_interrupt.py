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
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "gridrun.cli", "launch", str(path), "--tracking-uri", uri]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
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
    assert "interrupted: cells in progress are recorded as KILLED with their checkpoints" in err
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
