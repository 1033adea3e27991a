"""The inline executor: every cell in the launching process, one after another. No process
starts, so it is the executor for debugging (a breakpoint in the loop just works) and for tests
of the loop itself."""
from __future__ import annotations

import os
import socket
from typing import Callable, Iterable, Iterator

from ..data.images import ImageSet
from ..spec.grid import Cell
from ..train.checkpoint import Where
from ..train.records import Stop
from .base import Stoppable
from .events import CellFailed, CellFinished, CellPaused, CellStarted, CheckpointSaved, EpochDone, Event
from .runner import CellRunner


class InlineExecutor(Stoppable):
    name = "inline"

    def __init__(self, images: dict[tuple, ImageSet], threads: int | None = None):
        self.images, self.threads, self.workers = images, threads, 1

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def local_pid(self, worker: int) -> int | None:
        return os.getpid()  # every cell trains in this process

    def run(self, cells: Iterable[Cell],
            decide: Callable[[Cell, object], Stop | None] | None = None,
            checkpoint_for: Callable[[Cell], Where | None] | None = None
            ) -> Iterator[Event]:
        import torch

        before = torch.get_num_threads()  # the caller's (a notebook's), given back at the end
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            runner = CellRunner(self.images)
            for cell in cells:  # pulled one at a time: a failed cell may come back (a retry)
                if cell is None:  # the plan waits for a cell to train, and none trains here
                    raise RuntimeError("the plan has no cell to start, and no cell is "
                                       "training that could change that")
                where = checkpoint_for(cell) if checkpoint_for else None  # before the start
                yield CellStarted(cell, 0, f"{socket.gethostname()}, process {os.getpid()}")
                kind, body = runner.start(cell, where)
                while kind in ("epoch", "saved"):
                    if kind == "saved":
                        yield CheckpointSaved(cell, body, 0)
                        kind, body = runner.step(None)
                        continue
                    yield EpochDone(cell, body, 0)  # recorded before the plan decides
                    kind, body = runner.step(decide(cell, body) if decide else None)
                if kind == "finished":
                    yield CellFinished(cell, body, 0)
                elif kind == "paused":
                    yield CellPaused(cell, body, 0)
                else:
                    yield CellFailed(cell, body[0], body[1], 0)
        finally:
            torch.set_num_threads(before)
