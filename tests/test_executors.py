"""Executors: worker processes give the numbers the launching process gives, share the dataset,
never open the tracking store, and survive a worker that dies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from gridrun.executors import FORK_SERVER_OF, choose_executor, default_split
from gridrun.launch import SilentProgress, launch
from gridrun.spec.load import load_grid

pytestmark = pytest.mark.slow  # trains real launches (CIFAR-10 or many cells) or kills them: minutes

GRID = """
    name: {name}
    fixed: {{data.dataset: digits, train.max_epochs: 2, optim.name: adam, optim.lr: 0.002}}
    grid:
      model.name: [lenet, base4]
      seed: [0, 1]
"""


def _numbers(uri: str, experiment: str) -> dict[str, tuple]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    numbers = {}
    for run in client.search_runs([exp.experiment_id], "tags.`gridrun.kind` = 'cell'"):
        history = client.get_metric_history(run.info.run_id, "val_loss")
        numbers[run.data.tags["gridrun.cell"]] = (
            run.info.status, run.data.metrics["test_acc"], run.data.metrics["test_loss"],
            tuple(m.value for m in sorted(history, key=lambda m: m.step)))
    return numbers


def test_the_same_grid_gives_the_same_numbers_inline_and_on_1_or_2_workers(write_grid, tmp_path):
    """Same seeds, same threads per worker, same machine: the executor changes nothing."""
    results = {}
    for executor, workers in (("inline", 1), ("local", 1), ("local", 2)):
        uri = f"sqlite:///{tmp_path / f'{executor}{workers}.db'}"
        grid = load_grid(write_grid(GRID.format(name="same")))
        report = launch(grid, tracking_uri=uri, executor=executor, workers=workers, threads=1,
                        log_model="none", figures="none")  # the subject is the numbers
        assert (report.ran, report.failed, report.workers) == (4, 0, workers)
        results[executor, workers] = _numbers(uri, "same")
    assert results["inline", 1] == results["local", 1] == results["local", 2]
    assert all(status == "FINISHED" for status, *_ in results["local", 2].values())


class _Inspector(SilentProgress):
    """Looks into each worker process at its first epoch, and kills the one training `victim`."""

    def __init__(self, victim: str, store_file: str):
        self.victim, self.store_file = victim, store_file
        self.looked: dict[int, dict] = {}

    def epoch_done(self, cell, stats, worker):
        if worker not in self.looked:
            fds = [os.readlink(f"/proc/{worker}/fd/{fd}") for fd in os.listdir(f"/proc/{worker}/fd")]
            maps = open(f"/proc/{worker}/maps").read()
            self.looked[worker] = {"store_open": any(self.store_file in f for f in fds),
                                   "maps_cache": "digits-" in maps and ".pt" in maps}
        if cell.name.startswith(self.victim) and stats.epoch == 1:
            os.kill(worker, signal.SIGKILL)


def test_a_killed_worker_fails_its_cell_and_the_grid_finishes(write_grid, tmp_path):
    path = write_grid("""
        name: killed-worker
        fixed: {data.dataset: digits, model.name: lenet, optim.name: adam, optim.lr: 0.002,
                train.patience: 100}
        grid:
          variant:
            doomed: {train.max_epochs: 40}
            a: {train.max_epochs: 2, optim.lr: 0.001}
            b: {train.max_epochs: 2, optim.lr: 0.002}
            c: {train.max_epochs: 2, optim.lr: 0.003}
    """)
    store = tmp_path / "mlflow.db"
    inspector = _Inspector("doomed", str(store))
    report = launch(load_grid(path), tracking_uri=f"sqlite:///{store}", workers=2, threads=1,
                    progress=inspector)
    assert (report.ran, report.failed) == (4, 1)
    client = MlflowClient(f"sqlite:///{store}")
    runs = {r.info.run_name: r for r in client.search_runs([report.experiment_id],
                                                           "tags.`gridrun.kind` = 'cell'")}
    doomed = runs.pop("doomed")
    assert doomed.info.status == "FAILED"
    assert "killed by SIGKILL while training this cell" in doomed.data.tags["gridrun.reason"]
    assert {name: r.info.status for name, r in runs.items()} == {
        "a": "FINISHED", "b": "FINISHED", "c": "FINISHED"}
    assert client.get_run(report.parent_run_id).info.status == "FAILED"
    # a replacement worker took over: more workers were seen than the pool's size
    assert len(inspector.looked) >= 2
    for worker, seen in inspector.looked.items():
        assert not seen["store_open"], f"worker {worker} opened the tracking store"
        assert seen["maps_cache"], f"worker {worker} does not map the dataset's cache file"


def test_one_cell_runs_in_the_launching_process_and_starts_no_fork_server(tmp_path, monkeypatch):
    """`auto` runs a single cell inline, and neither the CLI nor the launch then starts the
    workers' fork server (about 4 s of CPU beside the cell, for nothing); more cells, or an
    executor asked for, go where they are asked."""
    from click.testing import CliRunner

    import gridrun.executors
    from gridrun.cli import cli

    assert [choose_executor(e, 1) for e in (None, "auto", "local", "ray")] == [
        "inline", "inline", "local", "ray"]
    assert [choose_executor(e, 2) for e in (None, "auto", "inline")] == [
        "local", "local", "inline"]
    started = []
    monkeypatch.setattr(gridrun.executors, "warm_up", lambda: started.append("fork server"))
    done = CliRunner().invoke(cli, [
        "cell", "--set", "data.dataset=digits", "--set", "model.name=lenet",
        "--set", "train.max_epochs=1", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert done.exit_code == 0, done.output
    assert "ran 1 cells" in done.output and started == []


def test_default_split_is_one_single_thread_worker_per_core_capped_by_the_cells():
    assert default_split(24, uses_gpu=False, cores=2) == (2, 1)
    assert default_split(1, uses_gpu=False, cores=2) == (1, 2)
    assert default_split(24, uses_gpu=False, cores=16) == (16, 1)
    assert default_split(24, uses_gpu=True, gpus=2, cores=16) == (2, 8)


@pytest.mark.parametrize("section, message", [
    ("execution: {workers: 0}", "execution.workers: must be an integer >= 1 or auto, got 0"),
    ("execution: {executor: slurm}",
     "execution.executor: unknown value 'slurm'; allowed: auto, local, inline, ray"),
    ("execution: {workerz: 2}", "execution: unknown key 'workerz'; allowed: executor, workers, "
                                "threads, retries, address, resources"),
    ("execution: {resources: {gpus: 1.5}}", "execution.resources.gpus: must be a whole number "
                                            "above 1 (Ray shares a device only in fractions up to "
                                            "1), got 1.5"),
    ("execution: {resources: {cpus: 0}}", "execution.resources.cpus: must be a number > 0, got 0"),
    ("execution: {resources: {tpus: 1}}",
     "execution.resources: unknown key 'tpus'; allowed: cpus, gpus"),
    ("execution: {address: 5}", "execution.address: must be a non-empty string, got 5"),
    ("track: {log_model: some}", "track.log_model: unknown value 'some'; allowed: best, all, none"),
])
def test_execution_and_track_sections_are_validated(write_grid, section, message):
    from gridrun.errors import GridError

    path = write_grid(f"fixed: {{data.dataset: digits}}\n{section}\n")
    with pytest.raises(GridError) as error:
        load_grid(path)
    assert str(error.value) == f"{path}: {message}"


def test_a_plain_script_without_a_main_guard_can_launch_on_workers(write_grid, tmp_path):
    """Workers never re-run the calling script (multiprocessing's __main__ caveat)."""
    import subprocess
    import sys

    path = write_grid("""
        name: from-a-script
        fixed: {data.dataset: digits, model.name: lenet, train.max_epochs: 1}
        grid: {optim.lr: [0.01, 0.02]}
    """)
    script = tmp_path / "study.py"
    script.write_text(f"""
from gridrun.launch import launch
from gridrun.spec.load import load_grid
print("script body ran")
report = launch(load_grid({str(path)!r}), tracking_uri="sqlite:///{tmp_path / 'm.db'}", workers=2)
print("ran", report.ran, "failed", report.failed)
""")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["script body ran", "ran 2 failed 0"]


def test_bf16_is_refused_before_anything_is_created_where_the_cpu_cannot_compute_it(
        write_grid, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from gridrun.cli import cli
    from gridrun.train import precision

    monkeypatch.setattr(precision, "bf16_supported", lambda device: (False, "a CPU without AMX "
                                                                            "or AVX512-BF16"))
    path = write_grid("fixed: {data.dataset: digits, train.precision: bf16}")
    result = CliRunner().invoke(cli, ["launch", str(path), "--tracking-uri",
                                      f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {path}: train.precision: bf16 is not computed natively on a CPU without AMX or "
        "AVX512-BF16 (it would be slower than fp32); allowed there: fp32")
    assert not (tmp_path / "m.db").exists()


def test_only_the_fork_server_of_a_launch_ends_without_tearing_its_modules_down():
    """The fork server holds the launch's stdout open until it is gone: it skips the teardown
    of torch and the rest (1.2-1.5 s), and only a process whose parent the environment names
    does; any other process that imports the worker module ends as usual."""
    script = textwrap.dedent(f"""
        import atexit, os, sys
        atexit.register(print, "torn down")  # runs after any exit handler registered later
        os.environ[{FORK_SERVER_OF!r}] = sys.argv[1]
        import gridrun.executors.worker
    """)

    def ended(launcher: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, str(launcher)], capture_output=True,
                              text=True, timeout=120)

    as_fork_server = ended(os.getpid())  # this test's process is the child's parent
    elsewhere = ended(os.getppid())
    assert (as_fork_server.returncode, as_fork_server.stdout) == (0, ""), as_fork_server.stderr
    assert (elsewhere.returncode, elsewhere.stdout) == (0, "torn down\n"), elsewhere.stderr


def _fork_server_of_a_fresh_process(with_a_thread: bool) -> dict:
    """A fresh process (one thread, as the command line's; or with another thread, as a
    notebook's) calls warm_up() and says what its fork server is, then exits."""
    script = textwrap.dedent(f"""
        import json, os, sys, threading, time
        if {with_a_thread!r}:
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        from gridrun.executors import FORK_SERVER_OF, warm_up
        warm_up()
        from multiprocessing import forkserver
        pid = forkserver._forkserver._forkserver_pid
        # a new interpreter's /proc entries read empty for a moment after its start returns
        deadline = time.monotonic() + 10
        while not open(f"/proc/{{pid}}/cmdline", "rb").read() and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(f"/proc/{{pid}}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{{pid}}/cmdline", "rb") as f, open("/proc/self/cmdline", "rb") as me:
            forked = f.read() == me.read()
        with open(f"/proc/{{pid}}/environ", "rb") as f:
            named = f"{{FORK_SERVER_OF}}={{os.getpid()}}".encode() in f.read().split(bytes(1))
        print(json.dumps({{"pid": pid, "parent_is_us": parent == os.getpid(), "forked": forked,
                          "named_in_environ": named, "torch_here": "torch" in sys.modules,
                          "left_in_environ": FORK_SERVER_OF in os.environ}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    return False


def test_a_command_line_launch_forks_its_fork_server_instead_of_starting_an_interpreter():
    """The command line's process (one thread) imports torch and forks the fork server from
    itself, which so never imports torch again; the server ends once that process has."""
    seen = _fork_server_of_a_fresh_process(with_a_thread=False)
    assert seen["parent_is_us"] and seen["forked"] and seen["torch_here"], seen
    assert not seen["left_in_environ"], seen
    assert _ends_within(seen["pid"], 10), "the fork server outlived its launching process"


def test_a_process_with_threads_gets_multiprocessings_own_fork_server_told_who_started_it():
    """A fork could catch another thread holding a lock: with one, multiprocessing starts its
    fork server as a new interpreter, and only its environment names the launching process
    (the fork server alone may skip the teardown of its modules)."""
    seen = _fork_server_of_a_fresh_process(with_a_thread=True)
    assert seen["parent_is_us"] and not seen["forked"], seen
    assert seen["named_in_environ"] and not seen["left_in_environ"], seen
    assert _ends_within(seen["pid"], 10), "the fork server outlived its launching process"
