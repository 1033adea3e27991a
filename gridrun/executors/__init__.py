"""Where cells run, apart from what runs (Hydra's Launcher beside its Sweeper).

An executor takes an iterable of cells, pulled lazily (a planner may decide the next cell only
when a worker is free; a failed cell may come back for a retry after the iterator once ran
dry, so executors ask it again whenever a worker is free; a None means nothing to start yet,
and the worker waits to be offered a cell after the next event), an optional per-epoch
`decide(cell, stats) -> Stop | None`, and an optional `checkpoint_for(cell) -> Where` (where
the cell resumes from and saves to after every epoch: `gridrun.train.checkpoint.Where`), and
yields events (`events.py`): CellStarted, EpochDone, CheckpointSaved, CellPaused (a planner's
`Stop` that pauses: the checkpoint holds the cell, the worker is free), CellFinished,
CellFailed. The launch consumes the events and records them; it does not know which executor
made them.

Every executor is a context manager (`with engine:` stops its workers on the way out) and
drives cells through one loop, `runner.CellRunner` (start a cell, answer each epoch).

- `inline`: every cell in the launching process (debugging, tests of the loop).
- `local`: long-lived worker processes on this machine (the default).
- `ray`: long-lived Ray actors anywhere in a Ray cluster (`cluster.py`; the `ray` extra).

Defaults (`execution.workers` / `--workers`, `execution.threads` / `--threads`): on the CPU one
single-thread worker per core, at most one per cell to run (threads = cores // workers); on
GPUs one worker per GPU, each with cores // workers threads. More workers than GPUs pack
several cells on one GPU (e.g. `--workers 4` on one GPU for small CNNs).

May import: `gridrun.train`, `gridrun.data`, `gridrun.models`, `gridrun.spec`,
`gridrun.errors`; never tracking or plans (a planner reaches an executor as a `decide`
callable).
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import threading
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

if TYPE_CHECKING:  # this module stays light: the CLI calls warm_up(), which imports torch
    from ..data.images import ImageSet
    from ..spec.grid import Cell
    from ..train.checkpoint import Where
    from ..train.records import Stop
    from .events import Event

EXECUTORS = ("local", "inline", "ray")
WORKER_MODULE = "gridrun.executors.worker"  # what the fork server imports once for every worker
# set, for the fork server `warm_up` starts, to the launching process's pid (`worker.py`)
FORK_SERVER_OF = "GRIDRUN_FORK_SERVER_OF"


class Executor(Protocol):
    """Where cells run (see the module docstring); also `with executor:`."""
    name: str
    workers: int

    def start(self) -> None: ...  # optional head start: workers up before the first cell
    def stop(self) -> None: ...
    def __enter__(self) -> Executor: ...
    def __exit__(self, *exc_info) -> bool: ...

    # the process id on this machine of the worker an event names, for sampling its CPU and
    # memory (`gridrun.system_metrics`); None when it runs on another machine
    def local_pid(self, worker: int) -> int | None: ...

    def run(self, cells: Iterable[Cell],
            decide: Callable[[Cell, object], Stop | None] | None = None,
            checkpoint_for: Callable[[Cell], Where | None] | None = None
            ) -> Iterator[Event]: ...


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def warm_up() -> None:
    """Start the fork server that worker processes are forked from, now: it imports the
    training code (torch._dynamo and the rest, about 2 s of CPU) while the launching process
    imports MLflow and reads the grid, the data and the store, instead of after. The fork
    server alone is told (`FORK_SERVER_OF`, in its environment) that it may end without
    tearing its modules down (`worker.py`).

    A launching process with no other thread (the command line's, which calls this first)
    imports torch and then forks the fork server from itself, which so starts with torch
    imported: multiprocessing would start a new interpreter that imports torch a second
    time, 2.0-2.6 s of CPU in every launch on workers, on cores the cells share. Any other
    process (a notebook's, one with threads, which a fork could catch holding a lock) gets
    multiprocessing's own fork server."""
    if "forkserver" not in mp.get_all_start_methods():
        return
    from multiprocessing import forkserver
    forkserver.set_forkserver_preload([WORKER_MODULE])
    os.environ[FORK_SERVER_OF] = str(os.getpid())
    try:
        if threading.active_count() == 1 and os.path.isdir("/proc/self/fd"):
            import torch  # noqa: F401 - this process needs it next; the fork server inherits it
            with _forked_not_spawned():
                forkserver.ensure_running()
        else:
            forkserver.ensure_running()
    finally:
        del os.environ[FORK_SERVER_OF]


@contextlib.contextmanager
def _forked_not_spawned():
    """Meanwhile, multiprocessing starts its fork server (and its resource tracker, if it has
    none yet) as a fork of this process running the code it would have given a new interpreter
    (`python -c CODE`), with the descriptors it passes and those this process had before
    (stdin, stdout, stderr), never the others made meanwhile: the fork server holding the
    write end of the pipe whose closing tells it to exit would never exit."""
    from multiprocessing import util

    spawn = util.spawnv_passfds
    before = _open_descriptors()

    def fork_instead(path, args, passfds):
        if "-c" not in args:  # not the start this was written for: as multiprocessing would
            return spawn(path, args, passfds)
        code = args[args.index("-c") + 1]
        sys.stdout.flush()  # nothing buffered here is written again by a fork
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        status = 1  # the fork server (or resource tracker): its own loop, then gone without
        try:  # this process's exit handlers, as its own interpreter would have ended
            for fd in _open_descriptors() - before - set(passfds):
                os.close(fd)
            exec(code, {"__name__": "__mp_server__"})  # multiprocessing's own code, as given
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else 0
        except BaseException:  # noqa: BLE001 - said on stderr, as by its own interpreter
            sys.excepthook(*sys.exc_info())
            sys.stderr.flush()
        finally:
            os._exit(status)

    util.spawnv_passfds = fork_instead
    try:
        yield
    finally:
        util.spawnv_passfds = spawn


def _open_descriptors() -> set[int]:
    """This process's open file descriptors (not the one that lists them, closed by then)."""
    open_now = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        open_now.add(int(name))
    return open_now


def choose_executor(executor: str | None, planned: int) -> str:
    """The executor a launch of `planned` cells uses: the one asked for, else (`auto`) the
    inline executor for a single cell, where a worker process would only add its start (and
    its fork server, about 4 s of CPU), and worker processes on this machine for more."""
    if executor in (None, "auto"):
        return "inline" if planned == 1 else "local"
    return executor


def default_split(cells_to_run: int, uses_gpu: bool, gpus: int = 0,
                  cores: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) when the user sets neither (see the module docstring)."""
    cores = cores or cpu_count()
    if uses_gpu and gpus:
        workers = gpus
    else:
        workers = cores
    workers = max(1, min(workers, cells_to_run))
    return workers, max(1, cores // workers)


def make_executor(kind: str, images: dict[tuple, ImageSet], workers: int, threads: int,
                  resources: dict[str, float] | None = None) -> Executor:
    if kind == "ray":
        from .cluster import RayExecutor
        return RayExecutor(images, workers, resources or {"cpus": threads, "gpus": 0})
    if kind == "inline":
        from .inline import InlineExecutor
        return InlineExecutor(images, threads)
    if kind == "local":
        from .pool import PoolExecutor
        return PoolExecutor(images, workers, threads)
    raise ValueError(f"unknown executor {kind!r}; allowed: {', '.join(EXECUTORS)}")
