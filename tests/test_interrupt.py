"""Ctrl-C on a real launch: finished cells are kept, the cell in progress is KILLED, and the
same command resumes where it stopped."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from mlflow import MlflowClient


def test_interrupted_launch_keeps_finished_cells_and_resumes(write_grid, tmp_path):
    path = write_grid("""
        name: interrupted
        fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, optim.lr: 0.001,
                train.patience: 100, train.max_epochs: 1}
        grid:
          variant:
            first: {}
            long: {train.max_epochs: 150}
    """)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "gridrun.cli", "launch", str(path), "--tracking-uri", uri]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    seen = ""
    while time.monotonic() < deadline:  # wait until the first cell is done and the long one trains
        line = proc.stderr.readline()
        seen += line
        if "] first: max_epochs" in seen and re.search(r"\] long epoch \d+/150", line):
            break
        if not line and proc.poll() is not None:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, seen + err
    assert "interrupted: the cell in progress is recorded as KILLED" in err
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

    # the same command resumes: the finished cell is skipped, the killed one trains again
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert "ran 1 cells, skipped 1 already finished, 0 failed" in again.stdout
    finished = [r for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
                if r.data.tags.get("gridrun.kind") == "cell"]
    assert sorted(r.info.run_name for r in finished) == ["first", "long"]
