"""How much of a grid to train: every cell to its end (`schedule: all`, the default), or
asynchronous successive halving (`schedule: asha`), which stops cells that are not among the
best early and spends the compute on those that are.

    schedule: asha                                        # or, with its two settings:
    schedule: {name: asha, min_epochs: 1, reduction_factor: 3}

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020) puts rungs at
epochs r, r*eta, r*eta^2, ... below a cell's `train.max_epochs` (r = `min_epochs`, eta =
`reduction_factor`). A cell that reaches a rung goes on only if its monitored value so far
(`train.monitor`, best epoch up to the rung) ranks in the top 1/eta, rounded up, of all cells
that reached that rung so far, itself included; otherwise it stops there with outcome `pruned`
and the rung in its reason. Decisions are taken at once, as each cell reaches a rung, like Ray
Tune's ASHAScheduler: no worker waits for a whole rung, and a cell that goes on simply trains
on (its epochs are never trained twice). The first cells at a rung have few rivals, so they
go on more easily; longest-first ordering puts comparable cells side by side.

The rungs' records are read back from the tracking store when a launch starts (every cell's
per-epoch history), so a relaunch after a kill decides exactly as the first launch would have.

For `search:` grids the same key picks Optuna's pruner: `asha` its SuccessiveHalvingPruner,
`hyperband` its HyperbandPruner (`gridrun.search`).

`AshaPlan` is a `Plan` (`base.py`) beside `GridPlan` and `OptunaPlan`: it says which cells
run and answers each epoch (continue, or a `Stop`), as Ray Tune's trial schedulers do; the
executor decides where the cells run. The schedule's settings are `gridrun.spec.sections`'.
"""
from __future__ import annotations

import math

from ..spec.config import monitor_mode
from ..spec.sections import Schedule
from ..tracking import tags as T
from ..train.records import EpochStats, Stop
from .base import CellList


def keep_count(reached: int, reduction_factor: int) -> int:
    """How many of the cells that reached a rung go on: the top 1/eta, rounded up."""
    return max(1, math.ceil(reached / reduction_factor))


class Rungs:
    """Each rung's record: the monitored value every cell had when it reached the rung."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.records: dict[tuple[str, int], dict[str, float]] = {}  # (monitor, rung) -> values

    def record(self, monitor: str, rung: int, cell_id: str, value: float) -> None:
        self.records.setdefault((monitor, rung), {})[cell_id] = value

    def judge(self, monitor: str, mode: str, rung: int, cell_id: str, value: float
              ) -> tuple[bool, int, int, int]:
        """Record `value` for `cell_id` at `rung`; (goes on?, its rank, cells at the rung, how
        many go on). Ties go on: a cell is never cut for equalling one that went on."""
        self.record(monitor, rung, cell_id, value)
        values = self.records[(monitor, rung)]
        better = sum((v > value) if mode == "max" else (v < value)
                     for other, v in values.items() if other != cell_id)
        keep = keep_count(len(values), self.schedule.reduction_factor)
        return better < keep, better + 1, len(values), keep

    def replay(self, monitor: str, mode: str, cell_id: str, values: list[float],
               max_epochs: int) -> None:
        """Record an earlier launch's cell from its per-epoch history (epoch 1 first)."""
        for rung in self.schedule.rungs(max_epochs):
            if rung <= len(values):
                seen = values[:rung]
                self.record(monitor, rung, cell_id, max(seen) if mode == "max" else min(seen))


class AshaPlan(CellList):
    """The cells of a grid (longest first), each stopped at a rung unless it ranks among the
    best there."""
    decides = True

    def __init__(self, todo: list, planned: int, schedule: Schedule,
                 histories: dict[str, tuple[dict, list[float]]] | None = None):
        super().__init__(todo, planned)
        self.schedule = schedule
        self.rungs = Rungs(schedule)
        self.best: dict[str, float] = {}  # cell id -> best monitored value so far
        for cell_id, (cfg, values) in (histories or {}).items():
            monitor, mode = self._monitor(cfg)
            self.rungs.replay(monitor, mode, cell_id, values, cfg["train.max_epochs"])
            if values:
                self.best[cell_id] = max(values) if mode == "max" else min(values)

    @staticmethod
    def _monitor(cfg: dict) -> tuple[str, str]:
        return cfg["train.monitor"], monitor_mode(cfg["train.monitor"], cfg["train.mode"])

    def tags(self, cell) -> dict[str, str]:
        return {T.SCHEDULE: "asha"}

    def decide(self, cell, stats: EpochStats) -> Stop | None:
        monitor, mode = self._monitor(cell.config)
        value = getattr(stats, monitor)
        if math.isfinite(value):
            best = self.best.get(cell.id)
            better = best is None or (value > best if mode == "max" else value < best)
            self.best[cell.id] = value if better else best
        epoch, max_epochs = stats.epoch, cell.config["train.max_epochs"]
        if epoch not in self.schedule.rungs(max_epochs) or cell.id not in self.best:
            return None
        goes_on, rank, reached, keep = self.rungs.judge(monitor, mode, epoch, cell.id,
                                                        self.best[cell.id])
        if goes_on:
            return None
        eta = self.schedule.reduction_factor
        return Stop("pruned", f"pruned at epoch {epoch} (ASHA rung, reduction factor {eta}): "
                              f"{monitor} {self.best[cell.id]:.4f} ranks {rank} of the {reached} "
                              f"cells that reached this rung; the top {keep} go on")
