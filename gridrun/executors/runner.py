"""Running cells one after another in one process, an epoch per step: what the inline executor,
every worker process of the pool and every Ray actor do. This is the one loop that steps
through a cell's epochs for all of them.

    message = runner.start(cell, checkpoint)     # ("epoch", EpochStats) | ("saved", Saved)
    while message[0] in ("epoch", "saved"):      #   | ("finished", result) | ("paused", Paused)
        message = runner.step(decision)          #   | ("failed", (error, traceback))

`decision` is the planner's Stop for an epoch, or None (go on; always None after "saved": a
checkpoint was written, and the worker hands it over before it trains the next epoch). A
`Stop` that pauses ends the cell's turn with "paused" after that epoch's checkpoint: the
worker is free, and the cell resumes later from the checkpoint, on any worker.

A runner holds its datasets (memory-mapped, shared with the other processes) and the splits of
the last few data configurations, so consecutive cells over the same data reuse them instead of
carving and moving them again (airbench's "data resident, one object reused").
"""
from __future__ import annotations

import traceback
from typing import Callable, Generator

from ..data.images import ImageSet, dataset_key
from ..data.splits import SPLIT_KEYS, Splits, split_for
from ..spec.grid import Cell
from ..train.checkpoint import Saved, Where
from ..train.loop import epochs
from ..train.precision import select_device
from ..train.records import CellResult, EpochStats, Paused, Stop

KEEP_SPLITS = 4
Message = tuple[str, object]  # what `start` and `step` return (see the module docstring)


class CellRunner:
    def __init__(self, images: dict[tuple, ImageSet]):
        self.images = images
        self._splits: dict[tuple, Splits] = {}
        self._steps: Generator[EpochStats | Saved, Stop | None, CellResult | Paused] | None = None

    def splits(self, cfg: dict) -> Splits:
        device = select_device(cfg["train.device"])
        key = (dataset_key(cfg), tuple(cfg[k] for k in SPLIT_KEYS), str(device))
        if key not in self._splits:
            if len(self._splits) >= KEEP_SPLITS:
                del self._splits[next(iter(self._splits))]
            self._splits[key] = split_for(cfg, self.images[dataset_key(cfg)]).to(device)
        return self._splits[key]

    def start(self, cell: Cell, checkpoint: Where | None = None) -> Message:
        """Begin `cell` on this runner's data (see `gridrun.train.loop.epochs`), from and into
        `checkpoint` (`train.checkpoint.Where`) when given; its first epoch's message."""
        def begin() -> EpochStats:
            cfg = cell.config
            self._steps = epochs(cfg, self.images[dataset_key(cfg)], self.splits(cfg),
                                 checkpoint)
            return next(self._steps)
        return self._advance(begin)

    def step(self, decision: Stop | None) -> Message:
        """The planner's answer to the last epoch (None: go on); the next message."""
        return self._advance(lambda: self._steps.send(decision))

    def _advance(self, step: Callable[[], EpochStats | Saved]) -> Message:
        try:
            body = step()
            return ("saved" if isinstance(body, Saved) else "epoch"), body
        except StopIteration as done:
            self._steps = None
            return ("paused" if isinstance(done.value, Paused) else "finished"), done.value
        except Exception as e:  # noqa: BLE001 - a cell's error is its own: report, go on
            self._steps = None
            return "failed", (f"{e.__class__.__name__}: {e}", traceback.format_exc())
