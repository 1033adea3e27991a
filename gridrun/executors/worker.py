"""A worker process of the local executor: it maps the datasets, then trains the cells it is
sent, one after another, and sends back each epoch and each result.

This module is what the fork server imports once for every worker (`WORKER_MODULE`), so the
imports each worker's first cell would otherwise pay happen here, once: torch, the training
code, and torch._dynamo, which torch.optim imports lazily when the first optimizer is built
(about two seconds of CPU). Not scikit-learn: the launch has found every split's rows before
it starts a worker, and kept them beside the decode cache (`launch.preflight.prepare_data`).
The launching process never imports this module.

The fork server ends once its launching process has exited. Started by that process, it holds
the process's stdout and stderr open until it is gone, and tearing its modules down one by one
took it 1.2-1.5 s: whatever read the launch's output through a pipe (a script, a CI log,
`| tee`) waited that long after the launch had ended. So the fork server (and no other process
that imports this module) ends without that teardown: it holds nothing to flush or save.
"""
from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from multiprocessing.connection import Connection

import torch
import torch._dynamo

from ..data.cache import open_cached
from . import FORK_SERVER_OF
from .runner import CellRunner
from .wire import recv, send

ORPHAN_CHECK_SECONDS = 1.0

if os.environ.get(FORK_SERVER_OF) == str(os.getppid()):  # this is the fork server `warm_up` started
    atexit.register(os._exit, 0)  # the last exit handler registered runs first


def exit_when_orphaned(launcher: int) -> None:
    """End this process as soon as the launching process is gone (killed with SIGKILL, say):
    its cell's checkpoint stays as the last finished epoch left it, and no orphan trains on
    beside the relaunch that resumes the cell. A worker's parent is the fork server, which
    exits with the launching process; then this process is adopted and its parent changes."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(ORPHAN_CHECK_SECONDS)
            if os.getppid() != parent or not _alive(launcher):
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="gridrun-orphan-watch").start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_main(conn: Connection, files: dict[tuple, str], threads: int, slot: int,
                launcher: int) -> None:
    """A worker process: map the datasets, then train the cells it is sent until told to stop.
    When the launching process is gone (its end of the pipe closed), the worker just ends."""
    try:
        _serve(conn, files, threads, slot, launcher)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return


def _serve(conn: Connection, files: dict[tuple, str], threads: int, slot: int,
           launcher: int) -> None:
    # Ctrl-C and SIGTERM (sent to the whole process group by a terminal, by SLURM) are the
    # launching process's to handle: it stops the workers once its cells are marked
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exit_when_orphaned(launcher)
    torch.set_num_threads(threads)
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(slot % torch.cuda.device_count())  # spread workers over GPUs
    runner = CellRunner({key: open_cached(file) for key, file in files.items()})
    send(conn, ("ready", None))
    while True:
        task = recv(conn)
        if task is None:
            return
        cell, awaits_decisions, checkpoint = task
        message = runner.start(cell, checkpoint)
        while message[0] in ("epoch", "saved"):
            send(conn, message)  # a checkpoint's note goes out before the next epoch trains
            waits = awaits_decisions and message[0] == "epoch"
            message = runner.step(recv(conn) if waits else None)
        send(conn, message)
