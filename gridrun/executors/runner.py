"""Running cells one after another in one process: what both the inline executor and every
worker process of the pool do.

A runner holds its datasets (memory-mapped, shared with the other processes) and the splits of
the last few data configurations, so consecutive cells over the same data reuse them instead of
carving and moving them again (airbench's "data resident, one object reused").
"""
from __future__ import annotations

from typing import Generator

from ..data import ImageSet, Splits, dataset_key
from ..events import CellResult, Checkpoint, EpochStats, Stop
from ..grid import Cell
from ..train import epochs, split_for
from ..train.precision import select_device

SPLIT_KEYS = ("data.val_fraction", "data.val_size", "data.train_size", "data.test_size",
              "data.split_seed")
KEEP_SPLITS = 4


class CellRunner:
    def __init__(self, images: dict[tuple, ImageSet]):
        self.images = images
        self._splits: dict[tuple, Splits] = {}

    def splits(self, cfg: dict) -> Splits:
        device = select_device(cfg["train.device"])
        key = (dataset_key(cfg), tuple(cfg[k] for k in SPLIT_KEYS), str(device))
        if key not in self._splits:
            if len(self._splits) >= KEEP_SPLITS:
                del self._splits[next(iter(self._splits))]
            self._splits[key] = split_for(cfg, self.images[dataset_key(cfg)]).to(device)
        return self._splits[key]

    def run(self, cell: Cell, checkpoint: Checkpoint | None = None
            ) -> Generator[EpochStats, Stop | None, CellResult]:
        """Train `cell` on this runner's data (see `gridrun.train.epochs`), from and into
        `checkpoint` (its file path and metadata) when given."""
        cfg = cell.config
        path, meta = checkpoint if checkpoint is not None else (None, None)
        return epochs(cfg, self.images[dataset_key(cfg)], self.splits(cfg), path, meta)
