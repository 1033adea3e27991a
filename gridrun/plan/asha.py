"""How much of a grid to train: every cell to its end (`schedule: all`, the default), or
asynchronous successive halving (`schedule: asha`), which stops cells that are not among the
best early and spends the compute on those that are.

    schedule: asha                                        # or, with its settings:
    schedule: {name: asha, min_epochs: 1, reduction_factor: 3, within_se: 0}

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020) puts rungs at
epochs r, r*eta, r*eta^2, ... below a cell's `train.max_epochs` (r = `min_epochs`, eta =
`reduction_factor`). A cell that reaches a rung goes on only if its monitored value so far
(`train.monitor`, best epoch up to the rung) ranks in the top 1/eta, rounded up, of all cells
that reached that rung so far, itself included; otherwise it stops there with outcome `pruned`
and the rung in its reason. Decisions are taken at once, as each cell reaches a rung, like Ray
Tune's ASHAScheduler: no worker waits for a whole rung, and a cell that goes on simply trains
on (its epochs are never trained twice). The first cells at a rung have few rivals, so they
go on more easily; longest-first ordering puts comparable cells side by side.

Validation accuracy on n images is itself noisy (a standard error of 0.6 points on CIFAR-10's
5,000), so a rung that ranks cells 0.2 points apart decides on noise. With `within_se: k`, a
cell whose value is within k standard errors of the last cell that goes on by rank goes on
too, and its reason says so in the end ("kept at the epoch-9 rung on noise: ..."). No other
ASHA does this; `benchmarks/asha_replay.py` measures what it costs and saves on recorded
curves.

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
import statistics
from dataclasses import dataclass
from typing import Callable

from ..spec.config import monitor_mode
from ..spec.sections import Schedule
from ..tracking import tags as T
from ..train.records import EpochStats, Stop
from .base import CellList


def keep_count(reached: int, reduction_factor: int) -> int:
    """How many of the cells that reached a rung go on: the top 1/eta, rounded up."""
    return max(1, math.ceil(reached / reduction_factor))


def standard_error(monitor: str, value: float, val_images: int, recent: list[float]) -> float:
    """How far `value` could move on noise alone. Validation accuracy is a share of
    `val_images` images, so its binomial standard error is known: sqrt(p (1 - p) / n), 0.0060
    at p = 0.76 on CIFAR-10's 5,000 validation images. Any other monitor (a loss) has no such
    formula: the spread (sample standard deviation) of the cell's last 3 epochs stands in; with
    fewer than two epochs, nothing is known and the error is 0."""
    if monitor == "val_acc" and val_images > 0:
        p = min(max(value, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / val_images)
    last = [v for v in recent[-3:] if math.isfinite(v)]
    return statistics.stdev(last) if len(last) >= 2 else 0.0


@dataclass(frozen=True)
class Verdict:
    """A cell's judgement at a rung."""
    goes_on: bool
    rank: int  # 1 = the best at this rung so far
    reached: int  # cells that reached the rung, this one included
    keep: int  # how many of them go on by rank (the top 1/eta)
    cutoff: float  # the value of the last cell that goes on by rank
    band: float  # within_se x the cutoff's standard error: how far below it still goes on
    by_noise: bool  # goes on only because it is within `band` of the cutoff


class Rungs:
    """Each rung's record: the monitored value every cell had when it reached the rung."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.records: dict[tuple[str, int], dict[str, float]] = {}  # (monitor, rung) -> values

    def record(self, monitor: str, rung: int, cell_id: str, value: float) -> None:
        self.records.setdefault((monitor, rung), {})[cell_id] = value

    def judge(self, monitor: str, mode: str, rung: int, cell_id: str, value: float,
              error_of: Callable[[float], float] = lambda cutoff: 0.0) -> Verdict:
        """Record `value` for `cell_id` at `rung` and judge it. The top 1/eta go on (ties go
        on: a cell is never cut for equalling one that went on); with `schedule.within_se` k,
        so does a cell within k standard errors (`error_of(cutoff)`) of the last one that goes
        on by rank, since the two differ by no more than noise."""
        self.record(monitor, rung, cell_id, value)
        values = self.records[(monitor, rung)]
        better = sum((v > value) if mode == "max" else (v < value)
                     for other, v in values.items() if other != cell_id)
        keep = keep_count(len(values), self.schedule.reduction_factor)
        cutoff = sorted(values.values(), reverse=mode == "max")[keep - 1]
        band = self.schedule.within_se * error_of(cutoff) if self.schedule.within_se else 0.0
        by_rank = better < keep
        by_noise = not by_rank and band > 0 and abs(value - cutoff) <= band
        return Verdict(by_rank or by_noise, better + 1, len(values), keep, cutoff, band, by_noise)

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
        self.seen: dict[str, list[float]] = {}  # cell id -> its monitored value, epoch by epoch
        self.kept_by_noise: dict[str, list[str]] = {}  # cell id -> what its reason adds
        for cell_id, (cfg, values) in (histories or {}).items():
            monitor, mode = self._monitor(cfg)
            self.rungs.replay(monitor, mode, cell_id, values, cfg["train.max_epochs"])
            self.seen[cell_id] = list(values)

    @staticmethod
    def _monitor(cfg: dict) -> tuple[str, str]:
        return cfg["train.monitor"], monitor_mode(cfg["train.monitor"], cfg["train.mode"])

    def tags(self, cell) -> dict[str, str]:
        return {T.SCHEDULE: "asha"}

    def remarks(self, cell) -> list[str]:
        return self.kept_by_noise.get(cell.id, [])

    def decide(self, cell, stats: EpochStats) -> Stop | None:
        monitor, mode = self._monitor(cell.config)
        seen = self.seen.setdefault(cell.id, [])
        del seen[stats.epoch - 1:]  # a retried epoch replaces the one its try reported
        seen.append(getattr(stats, monitor))
        finite = [v for v in seen if math.isfinite(v)]
        epoch, max_epochs = stats.epoch, cell.config["train.max_epochs"]
        if epoch not in self.schedule.rungs(max_epochs) or not finite:
            return None
        best = max(finite) if mode == "max" else min(finite)
        verdict = self.rungs.judge(
            monitor, mode, epoch, cell.id, best,
            lambda cutoff: standard_error(monitor, cutoff, stats.val_images, finite))
        eta, k = self.schedule.reduction_factor, self.schedule.within_se
        if verdict.by_noise:
            self.kept_by_noise.setdefault(cell.id, []).append(
                f"kept at the epoch-{epoch} rung on noise: {monitor} {best:.4f} ranked "
                f"{verdict.rank} of {verdict.reached}, {abs(best - verdict.cutoff):.4f} from "
                f"{verdict.cutoff:.4f}, the last of the top {verdict.keep} (within_se {k:g}: "
                f"{verdict.band:.4f})")
        if verdict.goes_on:
            return None
        noise = (f", and those within {verdict.band:.4f} of {verdict.cutoff:.4f} (within_se "
                 f"{k:g})" if k > 0 else "")
        return Stop("pruned", f"pruned at epoch {epoch} (ASHA rung, reduction factor {eta}): "
                              f"{monitor} {best:.4f} ranks {verdict.rank} of the "
                              f"{verdict.reached} cells that reached this rung; the top "
                              f"{verdict.keep} go on{noise}")
