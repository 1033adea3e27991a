"""Where a worker process starts: the one name the launching process hands to multiprocessing.
It imports the worker module (torch, the training code) only inside the new process, which the
fork server has already imported it into (`WORKER_MODULE`)."""
from __future__ import annotations


def start_worker(*args) -> None:
    """A worker process's entry point."""
    from .worker import worker_main
    worker_main(*args)
