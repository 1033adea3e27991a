"""The Ray executor: cells on Ray actors, on any machine of a Ray cluster (`--executor ray`).

- An actor is a long-lived worker, like a worker process of the local executor: it takes the
  datasets once, when it starts, and trains cell after cell with them (Ray's plain tasks would
  start a fresh process per GPU call and reload everything). Each actor asks Ray for one cell's
  resources (`execution.resources: {cpus: 1, gpus: 0.25}`): Ray places it on a node with room,
  fractional GPUs pack several small CNNs on one device, and `cpus` is also its torch threads.
- The datasets go into Ray's object store once per launch (`ray.put`); Ray copies them to each
  node once, and the actors of a node read that one copy without a copy of their own
  (read-only numpy buffers in shared memory).
- The launching process (Ray's driver) stays the one writer: an actor returns each epoch's
  statistics and the cell's result from a method call; it never opens the tracking store.
  Every epoch is one call (`step`) carrying the planner's decision for the last one, as in
  Ray Tune's trial schedulers.
- Retries, layer by layer. Ray retries nothing of ours: a method call is not re-run when its
  actor dies (re-running a half-trained epoch would train it twice), and a dead actor is not
  restarted by Ray. This executor reports the cell failed (`WorkerDied`) and starts a
  replacement actor, which Ray places on any node that still has room; the launch's
  `--retries` hands the cell out again, and it resumes from its last epoch's checkpoint. Ray
  does what only it can: detecting a dead worker or node, placing actors, moving the data.
- Actors belong to the driver: when the launching process dies, Ray ends them, so nothing
  trains beside a relaunch (which resumes from the checkpoints, `gridrun.claims`).
- Checkpoints travel with the calls, so no machine needs another's disk: a cell starts from
  the checkpoint the launch hands its actor (as bytes, through the object store), and after
  every epoch the actor hands its new checkpoint back (a `saved` message) before it trains the
  next. The launch keeps it in its state directory and, with a tracking server, uploads it to
  the run's artifacts (`gridrun.tracking.checkpoints`): when a node dies, its cells resume on
  another node from their last epoch, and a launch on another machine can resume them too.

Only this module imports Ray, and only when a launch asks for it (`pip install 'gridrun[ray]'`).
"""
from __future__ import annotations

import logging
import os
import socket
import warnings
from typing import Callable, Iterable, Iterator

from ..errors import GridError
from ..spec.grid import Cell
from ..train.checkpoint import Where
from ..train.records import Stop
from .base import Stoppable
from .events import CellFailed, Event
from .messages import NO_MORE, handle, offer_waiting

MAX_FAILED_STARTS = 3
CONNECT_SECONDS = 5.0
INSTALL_HINT = "install it with: pip install 'gridrun[ray]'"


def import_ray(where: str = "--executor ray"):
    """Ray, or the one-line error that says how to get it."""
    try:
        import ray
    except ImportError:
        raise GridError(f"Ray is not installed; {INSTALL_HINT}", where) from None
    return ray


def connect(address: str | None, where: str = "--address") -> bool:
    """Join the Ray cluster at `address` (`auto`: the one started on this machine with `ray
    start`; `ray://host:port`: Ray Client; `host:port`: its head node), else at `$RAY_ADDRESS`,
    else start a new local Ray instance for this launch alone: joining another launch's
    private instance would lose it when that launch ends. True when this call started Ray (the
    launch shuts it down again). A process where Ray already runs (a notebook, a test) keeps
    its own connection."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address not in ("auto", "local"):
        _check_reachable(address, where)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)  # not its start-up notices
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise GridError(f"cannot join a Ray cluster at {address} ({first}); start one with "
                        "'ray start --head', or leave out --address for a local one",
                        where) from None
    return True


def _check_reachable(address: str, where: str) -> None:
    """A quick TCP check, so an address with nothing behind it is an error in seconds (Ray
    itself keeps retrying a missing head node for a minute or more)."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise GridError(f"not a Ray address: {address!r}; allowed: auto, host:port, "
                        "ray://host:port", where)
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_SECONDS).close()
    except OSError as e:
        raise GridError(f"nothing answers at {host}:{port} ({e.strerror or e}); start a Ray "
                        "head node there with 'ray start --head'", where) from None


def disconnect() -> None:
    import ray
    ray.shutdown()


def cluster_slots(resources: dict[str, float], where: str = "execution.resources") -> int:
    """How many cells the cluster can train at once with `resources` each; an error, not a
    launch that waits forever, when not even one cell fits."""
    import ray
    total = ray.cluster_resources()
    fits = []
    for key, ray_key in (("cpus", "CPU"), ("gpus", "GPU")):
        want = resources.get(key, 0)
        if want:
            have = total.get(ray_key, 0)
            if have < want:
                raise GridError(f"each cell asks for {want:g} {key}; the Ray cluster has "
                                f"{have:g}", where)
            fits.append(int(have // want))
    return max(1, min(fits)) if fits else 1


def _wire(image_set) -> dict:
    """A dataset as numpy arrays, which Ray's object store shares between the processes of a
    node without copying (it pickles torch tensors into private copies)."""
    fields = dict(image_set.__dict__)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        fields[key] = fields[key].numpy()
    fields["cache_file"] = ""
    return fields


def _unwire(fields: dict):
    import torch

    from ..data.images import ImageSet

    fields = dict(fields)
    with warnings.catch_warnings():  # read-only shared buffers: training only reads them
        warnings.simplefilter("ignore", UserWarning)
        for key in ("train_x", "train_y", "test_x", "test_y"):
            fields[key] = torch.from_numpy(fields[key])
    return ImageSet(**fields)


class CellActor:
    """What each Ray actor runs: a `CellRunner` over the datasets, one cell at a time, an epoch
    per call. Made a Ray actor class by `RayExecutor` (this module imports no Ray at its top)."""

    def __init__(self, datasets: dict, threads: int):
        import ray
        import torch

        from .runner import CellRunner

        torch.set_num_threads(threads)
        images = {key: _unwire(ray.get(ref)) for key, ref in datasets.items()}
        self.runner = CellRunner(images)

    def ready(self) -> tuple[str, tuple[int, str, str]]:
        import ray
        node = ray.get_runtime_context().get_node_id()[:8]
        return "ready", (os.getpid(), socket.gethostname(),
                         f"Ray node {node} ({ray.util.get_node_ip_address()}), "
                         f"process {os.getpid()}")

    def start(self, cell: Cell, checkpoint: Where | None):
        return self.runner.start(cell, checkpoint)

    def step(self, decision: Stop | None):
        return self.runner.step(decision)


class _Actor:
    def __init__(self, handle):
        self.handle = handle
        self.cell: Cell | None = None
        self.pid, self.host, self.where = 0, "", ""
        self.ready = False
        self.waiting = False  # idle: the plan had no cell for it when it last asked


class RayExecutor(Stoppable):
    name = "ray"
    owns_ray = False  # True when the launch started Ray for itself: stop() shuts it down

    def __init__(self, images: dict, workers: int, resources: dict[str, float]):
        self.images, self.workers, self.resources = images, workers, resources
        self.threads = max(1, int(resources.get("cpus", 1)))
        self._actor_class = None
        self._datasets: dict | None = None
        self._actors: list[_Actor] = []

    def start(self) -> None:
        """Put the datasets into the object store and start the actors (their starts overlap
        the launch's reading of the store)."""
        if self._actor_class is not None:
            return
        import ray
        self._actor_class = ray.remote(CellActor).options(
            num_cpus=self.resources.get("cpus", 1), num_gpus=self.resources.get("gpus", 0),
            max_restarts=0, max_task_retries=0)
        self._datasets = {key: ray.put(_wire(image_set))
                          for key, image_set in self.images.items()}
        for _ in range(self.workers):
            self._new_actor()

    def _new_actor(self) -> _Actor:
        actor = _Actor(self._actor_class.remote(self._datasets, self.threads))
        self._actors.append(actor)
        return actor

    def stop(self) -> None:
        import ray
        if not ray.is_initialized():
            return
        while self._actors:
            ray.kill(self._actors.pop().handle, no_restart=True)
        self._datasets = None
        self._actor_class = None
        if self.owns_ray:
            ray.shutdown()

    def local_pid(self, worker: int) -> int | None:
        """An actor's pid when it runs on this machine (a local Ray instance, or the head
        node's share of a cluster); None for actors on other nodes."""
        here = socket.gethostname()
        return worker if any(a.pid == worker and a.host == here for a in self._actors) else None

    def _retire(self, actor: _Actor) -> None:
        import ray
        if actor in self._actors:
            self._actors.remove(actor)
            ray.kill(actor.handle, no_restart=True)

    def run(self, cells: Iterable[Cell],
            decide: Callable[[Cell, object], Stop | None] | None = None,
            checkpoint_for: Callable[[Cell], Where | None] | None = None
            ) -> Iterator[Event]:
        import ray
        from ray.exceptions import ObjectLostError, RayActorError

        self.start()
        pending = iter(cells)
        calls = {actor.handle.ready.remote(): actor for actor in self._actors}
        failed_starts = 0

        def hand_out(actor: _Actor) -> Cell | None:
            """The next cell to `actor`, or retire it, or let it wait when none is ready yet;
            the iterator is asked every time, since a failed cell may come back to it for a
            retry."""
            cell = next(pending, NO_MORE)
            actor.waiting = cell is None
            if cell is None:
                return None
            if cell is NO_MORE:
                self._retire(actor)
                return None
            actor.cell = cell
            checkpoint = checkpoint_for(cell) if checkpoint_for else None
            calls[actor.handle.start.remote(cell, _carried(checkpoint))] = actor
            return cell

        try:
            while calls:
                [done], _ = ray.wait(list(calls), num_returns=1)
                actor = calls.pop(done)
                try:
                    kind, body = ray.get(done)
                except (RayActorError, ObjectLostError) as e:  # the actor, or its node, died
                    self._actors.remove(actor)
                    if not actor.ready:
                        failed_starts += 1
                        if failed_starts >= MAX_FAILED_STARTS:
                            raise RuntimeError(f"Ray actors die as they start (the last one: "
                                               f"{_first_line(e)})") from None
                    if actor.cell is not None:
                        yield CellFailed(actor.cell, f"WorkerDied: Ray actor ({actor.where}) "
                                         f"died while training this cell: {_first_line(e)}",
                                         "", actor.pid)
                    # a replacement, anywhere with room; retired at once if nothing is left
                    replacement = self._new_actor()
                    calls[replacement.handle.ready.remote()] = replacement
                    continue
                if kind == "ready":
                    actor.pid, actor.host, actor.where = body

                def answer(decision, actor=actor):  # the next epoch is the next call
                    calls[actor.handle.step.remote(decision)] = actor
                yield from handle(actor, kind, body, hand_out, decide, answer,
                                  lambda answer=answer: answer(None))
                yield from offer_waiting(self._actors, hand_out)
        finally:
            self.stop()


def _carried(checkpoint: Where | None) -> Where | None:
    """A cell's checkpoint as its actor gets it, wherever that runs: the launch's file read
    here and carried as bytes, and every new one handed back (nothing on the actor's disk)."""
    if checkpoint is None:
        return None
    blob = checkpoint.blob
    if blob is None and checkpoint.path:
        try:
            with open(checkpoint.path, "rb") as file:
                blob = file.read()
        except FileNotFoundError:
            pass
    return Where(None, checkpoint.meta, blob, hand_back=True, stop=checkpoint.stop)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return error.__class__.__name__
