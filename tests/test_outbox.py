"""A tracking server that goes away during a launch: what could not be recorded waits, in order,
and is recorded when the server is back; training goes on meanwhile; past the limit the launch
stops in one line. The unit tests drive the outbox with a store that fails on cue; the end-to-end
test kills a real `mlflow server` for 20 s in the middle of a real launch."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from gridrun.launch import outbox as outbox_module
from gridrun.launch.outbox import Outbox, StoreOutage, quick_failures, unreachable

from .conftest import free_port, start_mlflow_server

DOWN = MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch "
                       "failed with exception HTTPConnectionPool(host='127.0.0.1', port=5000): "
                       "Max retries exceeded with url (Caused by NewConnectionError: "
                       "[Errno 111] Connection refused)")


class _Store:
    """A store that is away while `down` is set: it records what it is handed, in order."""

    def __init__(self):
        self.down, self.written = False, []

    def write(self, item):
        if self.down:
            raise DOWN
        self.written.append(item)


def test_what_waits_during_an_outage_is_written_in_order_when_the_store_is_back(monkeypatch):
    monkeypatch.setattr(outbox_module, "RETRY_SECONDS", 0.01)
    store, notes = _Store(), []
    box = Outbox(store.write, limit_s=60, note=notes.append)
    box.put(1)
    store.down = True
    for event in (2, 3, 4):  # epochs the workers send meanwhile
        box.put(event)
    assert store.written == [1] and list(box.pending) == [2, 3, 4]
    assert notes[0].startswith("tracking server unreachable (Connection refused); training goes "
                               "on and its records wait here (at most 60 s")
    store.down = False
    box.put(5)
    assert store.written == [1, 2, 3, 4, 5] and not box.pending
    assert notes[1].startswith("tracking server back after")


def test_a_write_waits_for_what_came_before_it_and_for_the_store(monkeypatch):
    monkeypatch.setattr(outbox_module, "RETRY_SECONDS", 0.01)
    store = _Store()
    box = Outbox(store.write, limit_s=60)
    store.down = True
    box.put("epoch 3")
    back_at = time.monotonic() + 0.2
    tries = []

    def end_run():  # e.g. closing the launch's run: only after every epoch is in
        tries.append(store.written[:])
        store.write("FINISHED")
        return "closed"

    def come_back(item):
        store.down = time.monotonic() < back_at  # a server restarting: away for 0.2 s
        store.write(item)

    box.handle = come_back
    assert box.call(end_run) == "closed"
    assert store.written == ["epoch 3", "FINISHED"]
    assert tries == [["epoch 3"]]  # tried only once what came before it was written


def test_past_the_limit_the_launch_stops_with_one_line(monkeypatch):
    monkeypatch.setattr(outbox_module, "RETRY_SECONDS", 0.01)
    store = _Store()
    store.down = True
    box = Outbox(store.write, limit_s=0.05, where="http://127.0.0.1:5000")
    box.put("epoch 1")
    time.sleep(0.1)
    with pytest.raises(StoreOutage) as stopped:
        box.put("epoch 2")
    assert str(stopped.value).startswith("http://127.0.0.1:5000: no answer for 0 s "
                                         "(track.outage_limit: 0)")
    assert "the same command resumes them once the server is back" in str(stopped.value)
    assert "\n" not in str(stopped.value)


def test_only_an_unreachable_store_is_waited_for():
    assert unreachable(DOWN) and unreachable(ConnectionRefusedError(111, "refused"))
    refused = MlflowException("RESOURCE_DOES_NOT_EXIST: Run 'x' not found")
    assert not unreachable(refused) and not unreachable(ValueError("a bug"))
    box = Outbox(lambda e: (_ for _ in ()).throw(refused), limit_s=60)
    with pytest.raises(MlflowException, match="not found"):
        box.put("event")  # a real error is never buffered: it is the writer's to handle


def test_mlflows_own_retries_are_turned_down_only_for_a_launch_against_a_server(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # the user's setting stays
    with quick_failures("http://127.0.0.1:5000"):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    with quick_failures("sqlite:///mlflow.db"):
        assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


@pytest.mark.server
@pytest.mark.slow
def test_a_server_down_for_20_s_mid_launch_loses_nothing(write_grid, tmp_path):
    """The server is killed (SIGKILL, as a crash or a node failure would) while two workers
    train, kept down for 20 s (four of the outbox's retry intervals), then started again on
    the same store: the launch finishes with every cell FINISHED and every per-epoch metric in
    the store exactly once."""
    epochs = 25
    path = write_grid(f"""
        name: outage
        fixed: {{data.dataset: digits, model.name: lenet, optim.name: adam,
                train.patience: 100, train.max_epochs: {epochs}}}
        grid:
          optim.lr: [0.001, 0.002, 0.003, 0.004]
    """)
    folder = tmp_path / "server"
    folder.mkdir()
    port = free_port()
    servers = [start_mlflow_server(folder, port)]  # all stopped however the test ends
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        launch = subprocess.Popen(
            [sys.executable, "-m", "gridrun.cli", "launch", str(path), "--tracking-uri", uri,
             "--workers", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        try:
            seen = ""
            while not re.search(r"epoch 3/", seen):  # both workers train
                line = launch.stdout.readline()
                assert line or launch.poll() is None, seen
                seen += line
            os.killpg(servers[0].pid, signal.SIGKILL)
            servers[0].wait(timeout=30)
            time.sleep(20)
            assert launch.poll() is None, "the launch ended while the server was away:\n" + seen
            servers.append(start_mlflow_server(folder, port))
            out, _ = launch.communicate(timeout=600)
        finally:
            if launch.poll() is None:
                launch.kill()
        output = seen + out
        assert launch.returncode == 0, output[-4000:]
        assert "ran 4 cells, skipped 0 already finished, 0 failed" in output, output[-4000:]
        assert "tracking server unreachable" in output and "tracking server back after" in output
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("outage")
        runs = client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'cell'")
        assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
        for run in runs:
            for key in ("train_loss", "val_loss", "val_acc"):
                steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
                assert steps == list(range(1, epochs + 1)), (run.info.run_name, key, steps)
    finally:
        for server in servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
