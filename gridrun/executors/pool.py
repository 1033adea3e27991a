"""The local executor: N long-lived worker processes on this machine, fed cells by the launch.

- Workers start once per launch, forked from a fork server that imported torch once, so no cell
  pays a process start or an import. Each maps the decode-cache files of the grid's datasets
  (`data.open_cached`): the images live once in the page cache, not once per worker.
- Each worker runs `torch.set_num_threads(threads)`. On small CNNs, several single-thread
  processes beat one process with several threads (2 x 1 thread was 15-40 % faster than
  1 x 2 threads on this project's 2-core machine), hence the default of one worker per core.
- The launching process hands a cell to whichever worker is idle, longest cells first (the
  order of the iterable it is given). Workers never open the tracking store: they send epoch
  statistics and results back over a pipe, and the launch records them while the worker
  already trains its next cell.
- A worker that dies (killed, out of memory) fails its cell with the reason and is replaced;
  the grid goes on (and the launch may hand the cell out again: `--retries`).
- A worker whose launching process died (kill -9) exits within a second, mid-epoch, so a
  relaunch never trains a cell beside an orphan of the dead launch.
- With a planner that decides per epoch (`decide`), a worker waits for each epoch's answer
  (CONTINUE or a `Stop`), like Ray Tune's trial schedulers.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
from multiprocessing.connection import wait
from typing import Callable, Iterable, Iterator

from ..data.images import ImageSet
from ..spec.grid import Cell
from ..train.checkpoint import Where
from ..train.records import Stop
from . import warm_up
from .base import Stoppable
from .entry import start_worker
from .events import CellFailed, Event
from .messages import NO_MORE, handle, offer_waiting
from .wire import recv as _recv
from .wire import send as _send

JOIN_SECONDS = 10
MAX_FAILED_STARTS = 3


class _Worker:
    def __init__(self, ctx, files: dict[tuple, str], threads: int, slot: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=start_worker, name=f"gridrun-worker-{slot}",
                                   args=(child, files, threads, slot, os.getpid()),
                                   daemon=True)
        with _launching_script_hidden():
            self.process.start()
        child.close()
        self.slot = slot
        self.cell: Cell | None = None  # the cell it trains now
        self.ready = False
        self.waiting = False  # idle: the plan had no cell for it when it last asked

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def where(self) -> str:
        return f"{socket.gethostname()}, process {self.pid}"

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(JOIN_SECONDS)
        self.conn.close()


@contextlib.contextmanager
def _launching_script_hidden():
    """Workers need nothing from the script that called `launch`; without this, multiprocessing
    would run that script again in every worker (its `if __name__ == "__main__"` caveat), so a
    plain script or notebook cell calling `launch()` would relaunch itself in each worker."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main and k in main.__dict__}
    for key in saved:
        setattr(main, key, None) if key == "__spec__" else delattr(main, key)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def _death(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _answer(worker: _Worker, decide) -> Callable:
    """A worker waits for the planner's decision on each epoch only when there is a planner."""
    if decide is None:
        return lambda decision: None
    return lambda decision: _send(worker.conn, decision)


def _context():
    if "forkserver" in mp.get_all_start_methods():
        warm_up()  # torch imported once, in the fork server
        return mp.get_context("forkserver")
    return mp.get_context("spawn")


class PoolExecutor(Stoppable):
    name = "local"

    def __init__(self, images: dict[tuple, ImageSet], workers: int, threads: int):
        missing = [key for key, image_set in images.items() if not image_set.cache_file]
        if missing:
            raise ValueError(f"datasets without a decode-cache file cannot be shared: {missing}")
        self.files = {key: image_set.cache_file for key, image_set in images.items()}
        self.workers, self.threads = workers, threads
        self._pool: list[_Worker] = []
        self._next_slot = 0
        self._ctx = None
        self._starting: threading.Thread | None = None

    def start(self) -> None:
        """Start the workers now, in the background (each start waits for the fork server's
        imports): a launch calls this before it opens the tracking store, so the two overlap."""
        if self._starting is None:
            self._ctx = _context()
            self._starting = threading.Thread(target=self._start_workers, daemon=True,
                                              name="gridrun-worker-start")
            self._starting.start()

    def local_pid(self, worker: int) -> int | None:
        return worker or None  # events name a worker process by its pid

    def _start_workers(self) -> None:
        for _ in range(self.workers):
            self._start_worker()

    def stop(self) -> None:
        if self._starting is not None:
            self._starting.join()
        while self._pool:
            self._pool.pop().stop()

    def _start_worker(self) -> None:
        self._pool.append(_Worker(self._ctx, self.files, self.threads, self._next_slot))
        self._next_slot += 1

    def run(self, cells: Iterable[Cell],
            decide: Callable[[Cell, object], Stop | None] | None = None,
            checkpoint_for: Callable[[Cell], Where | None] | None = None
            ) -> Iterator[Event]:
        self.start()
        self._starting.join()
        pool = self._pool
        pending = iter(cells)
        failed_starts = 0

        def hand_out(worker: _Worker) -> Cell | None:
            """The next cell to `worker`; when none is left the worker is told to stop, and
            when none is ready yet it waits. The iterator is asked every time: a failed cell
            may come back to it for a retry."""
            cell = next(pending, NO_MORE)
            worker.waiting = cell is None
            if cell is None:
                return None
            if cell is NO_MORE:
                _send(worker.conn, None)
                worker.process.join(JOIN_SECONDS)
                pool.remove(worker)
                worker.stop()
                return None
            _send(worker.conn, (cell, decide is not None,
                                checkpoint_for(cell) if checkpoint_for else None))
            worker.cell = cell
            return cell

        try:
            while pool:
                ready = wait([w.conn for w in pool] + [w.process.sentinel for w in pool])
                for worker in [w for w in pool if w.conn in ready or w.process.sentinel in ready]:
                    try:  # one message per worker per round: a chatty worker starves no other
                        if worker.conn.poll():
                            kind, body = _recv(worker.conn)
                            yield from handle(worker, kind, body, hand_out, decide,
                                              _answer(worker, decide))
                    except (EOFError, OSError):
                        pass  # the worker is gone; its sentinel says how, below
                    if worker in pool and not worker.process.is_alive():
                        pool.remove(worker)
                        worker.stop()
                        if not worker.ready:
                            failed_starts += 1
                            if failed_starts >= MAX_FAILED_STARTS:
                                raise RuntimeError(f"worker processes die as they start (the "
                                                   f"last one {_death(worker.process)})")
                        if worker.cell is not None:
                            yield CellFailed(worker.cell, f"WorkerDied: worker process "
                                             f"{worker.pid} {_death(worker.process)} while "
                                             "training this cell", "", worker.pid)
                        # a replacement, which stops at once if no cell (or retry) is left
                        self._start_worker()
                yield from offer_waiting(pool, hand_out)
        finally:
            self.stop()
