"""The inline executor: every cell in the launching process, one after another. No process
starts, so it is the executor for debugging (a breakpoint in the loop just works) and for tests
of the loop itself."""
from __future__ import annotations

import os
import traceback
from typing import Callable, Iterable, Iterator

from ..data import ImageSet
from ..events import (CellFailed, CellFinished, CellStarted, Checkpoint, EpochDone, Event,
                      Stop)
from ..grid import Cell
from .runner import CellRunner


class InlineExecutor:
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
            checkpoint_for: Callable[[Cell], Checkpoint | None] | None = None
            ) -> Iterator[Event]:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        runner = CellRunner(self.images)
        for cell in cells:  # pulled one at a time: a cell failed below may come back (a retry)
            yield CellStarted(cell, 0)
            try:
                steps = runner.run(cell, checkpoint_for(cell) if checkpoint_for else None)
                stats = next(steps)
                while True:
                    yield EpochDone(cell, stats, 0)
                    stats = steps.send(decide(cell, stats) if decide else None)
            except StopIteration as done:
                yield CellFinished(cell, done.value, 0)
            except Exception as e:  # noqa: BLE001 - one broken cell must not end the grid
                yield CellFailed(cell, f"{e.__class__.__name__}: {e}", traceback.format_exc(), 0)
