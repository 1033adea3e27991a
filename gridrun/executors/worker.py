"""A worker process of the local executor: it maps the datasets, then trains the cells it is
sent, one after another, and sends back each epoch and each result.

This module is what the fork server imports once for every worker (`WORKER_MODULE`), so the
imports each worker's first cell would otherwise pay happen here, once: torch, the training
code, the splits' sklearn, and torch._dynamo, which torch.optim imports lazily when the first
optimizer is built (about a second). The launching process never imports it.
"""
from __future__ import annotations

import signal
import traceback
from multiprocessing.connection import Connection

import sklearn.model_selection  # noqa: F401
import torch
import torch._dynamo  # noqa: F401

from ..data import open_cached
from .runner import CellRunner
from .wire import recv, send


def worker_main(conn: Connection, files: dict[tuple, str], threads: int, slot: int) -> None:
    """A worker process: map the datasets, then train the cells it is sent until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launching process's to handle
    torch.set_num_threads(threads)
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(slot % torch.cuda.device_count())  # spread workers over GPUs
    runner = CellRunner({key: open_cached(file) for key, file in files.items()})
    send(conn, ("ready", None))
    while True:
        task = recv(conn)
        if task is None:
            return
        cell, awaits_decisions = task
        steps = runner.run(cell)
        try:
            stats = next(steps)
            while True:
                send(conn, ("epoch", stats))
                stats = steps.send(recv(conn) if awaits_decisions else None)
        except StopIteration as done:
            send(conn, ("finished", done.value))
        except Exception as e:  # noqa: BLE001 - one broken cell must not end the worker
            send(conn, ("failed", (f"{e.__class__.__name__}: {e}", traceback.format_exc())))
