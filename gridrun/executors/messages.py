"""What a worker's message means, for every executor with workers (local processes, Ray
actors): a worker says `ready`, then per cell one `epoch` message per epoch (and a `saved` one
after each epoch's checkpoint, when it keeps them) and a `finished`, `paused` or `failed` one.
The executor turns them into events and keeps its workers busy.

The cells an executor is given may include None: the plan has nothing to start now (ASHA
waits for a rung to fill before it promotes a paused cell), but may have after the next event.
A worker that got None waits (`waiting`), and is offered a cell again after every message."""
from __future__ import annotations

from typing import Callable, Iterator

from .events import CellFailed, CellFinished, CellPaused, CellStarted, CheckpointSaved, EpochDone, Event

NO_MORE = object()  # what `next(cells, NO_MORE)` gives once the plan has no cell left at all


def handle(worker, kind: str, body, hand_out: Callable, decide: Callable | None,
           answer: Callable, proceed: Callable[[], None] = lambda: None) -> Iterator[Event]:
    """Events for one message of `worker` (anything with `cell`, `pid`, `where` and `ready`).
    `hand_out(worker)` gives it its next cell (None: no cell is left, it was retired);
    `answer(decision)` sends the planner's decision on an epoch back (None: go on);
    `proceed()` lets it train on after a checkpoint (a worker that goes on by itself: nothing)."""
    if kind == "ready":
        worker.ready = True
        cell = hand_out(worker)
        if cell is not None:
            yield CellStarted(cell, worker.pid, worker.where)
        return
    cell = worker.cell
    if kind == "epoch":
        answer(decide(cell, body) if decide is not None else None)
        yield EpochDone(cell, body, worker.pid)
        return
    if kind == "saved":
        proceed()  # the next epoch trains while the launch takes the checkpoint
        yield CheckpointSaved(cell, body, worker.pid)
        return
    worker.cell = None
    if kind == "finished":
        following = hand_out(worker)  # the worker trains on while this cell is recorded
        yield CellFinished(cell, body, worker.pid)
    elif kind == "paused":  # the plan learns of it first: it may hand the worker a promotion
        yield CellPaused(cell, body, worker.pid)
        following = hand_out(worker)
    else:  # recorded first: the launch may queue the cell again for a retry
        yield CellFailed(cell, body[0], body[1], worker.pid)
        following = hand_out(worker)
    if following is not None:
        yield CellStarted(following, worker.pid, worker.where)


def offer_waiting(workers: list, hand_out: Callable) -> Iterator[Event]:
    """Ask the plan again for a cell for each worker that waits (see the module docstring).
    When every worker waits, no event can come that would change the plan's answer: that is
    a planner's bug, raised rather than hung on."""
    for worker in [w for w in workers if w.waiting]:
        cell = hand_out(worker)
        if cell is not None:
            yield CellStarted(cell, worker.pid, worker.where)
    if workers and all(w.waiting for w in workers):
        raise RuntimeError("the plan has no cell to start, and no cell is training that could "
                           "change that")
