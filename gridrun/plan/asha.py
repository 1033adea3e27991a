"""How much of a grid to train: every cell to its end (`schedule: all`, the default), or
asynchronous successive halving (`schedule: asha`), which stops cells that are not among the
best early and spends the compute on those that are.

    schedule: asha                                        # or, with its settings:
    schedule: {name: asha, min_epochs: 1, reduction_factor: 8, within_se: 0, promote: true}

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020) puts rungs at
epochs r, r*eta, r*eta^2, ... below a cell's `train.max_epochs` (r = `min_epochs`, eta =
`reduction_factor`). A cell goes on past a rung only if its monitored value so far
(`train.monitor`, best epoch up to the rung) ranks in the top 1/eta of the cells that reached
that rung; otherwise it ends there with outcome `pruned` and the rung in its reason.

With `promote: true` (the default, Li et al.'s algorithm), a cell that does not rank yet waits
at the rung: the plan answers its epoch with a pausing `Stop`, its worker saves its checkpoint
and takes another cell, and its run stays claimed. While more cells may still reach the rung,
the top 1/eta rounded down go on, so the first cell at a rung waits for rivals; once none can
(the rung is closed), the top 1/eta rounded up. A free worker is handed, in this order, the
best waiting cell that ranks (the deepest rung first), a new cell, or a waiting cell that never
can, which ends at its rung (`on_resume`: scored from its checkpoint, not trained further); and
nothing (None) while cells in training may still change the ranks. A resumed cell computes
what it would have without the pause. On report 001's grid this halves the epochs that
deciding at once trains (`benchmarks/asha_replay.py`).

Two rules keep the workers busy to the end without training more:
- A cell that went on from a rung while more cells could still reach it waits there again,
  from its next epoch, once cells that came later outrank it (`_overtaken`): as if they had
  come first. It goes on again if it ranks when the rung fills, else ends on its checkpoint.
- Once no new cell is left, while another cell trains, the leader of a cell's last rung goes
  on at once (`promotion_quota(leader_goes_on=True)`): one goes on from that rung in the end,
  and waiting for its rivals would leave a worker idle while they train to it, then the
  winner train on alone.
On report 001's grid (2 workers) the two cut the replayed wall time by 13 % on average over
51 orders and by 18 % in the worst, with no more epochs; one worker never meets either.

With `promote: false`, each cell is decided at once as it reaches a rung, among the cells that
reached it so far (rounded up), like Ray Tune's ASHAScheduler: nothing pauses, but the first
cells at a rung have few rivals and go on more easily, and each keeps its worker to its end.

Validation accuracy on n images is itself noisy (a standard error of 0.6 points on CIFAR-10's
5,000), so a rung that ranks cells 0.2 points apart decides on noise. With `within_se: k`, a
cell whose value is within k standard errors of the last cell that goes on by rank goes on
too, and its reason says so in the end ("kept at the epoch-9 rung on noise: ..."). No other
ASHA does this; `benchmarks/asha_replay.py` measures what it costs and saves on recorded
curves.

The rungs' records are read back from the tracking store when a launch starts (every cell's
per-epoch history), so a relaunch after a kill decides as the first launch would have: a cell
the dead launch left at a rung waits there again, and one it was training trains on first.

For `search:` grids the same key picks Optuna's pruner: `asha` its SuccessiveHalvingPruner,
`hyperband` its HyperbandPruner (`gridrun.search`).

`AshaPlan` is a `Plan` (`base.py`) beside `GridPlan` and `OptunaPlan`: it says which cells
run and answers each epoch (continue, or a `Stop`), as Ray Tune's trial schedulers do; the
executor decides where the cells run. The schedule's settings are `gridrun.spec.sections`'.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

from ..spec.config import monitor_mode
from ..spec.grid import Cell
from ..spec.sections import Schedule
from ..tracking import tags as T
from ..train.records import PAUSED, EpochStats, Paused, Stop
from .base import CellList


def keep_count(reached: int, reduction_factor: int) -> int:
    """How many of the cells that reached a rung go on: the top 1/eta, rounded up."""
    return max(1, math.ceil(reached / reduction_factor))


def promotion_quota(reached: int, reduction_factor: int, closed: bool,
                    leader_goes_on: bool = False) -> int:
    """How many of the cells that reached a rung go on when cells wait there to be promoted:
    while more may still arrive, the top 1/eta rounded down (Li et al.: the first cell at a
    rung waits for rivals); once none can, the top 1/eta rounded up, as `keep_count`.

    With `leader_goes_on` (a cell's last rung, once no new cell is left and while another
    trains), at least one goes on while the rung is open too. One goes on from it in the end
    whatever arrives, so its leader trains on at once instead of waiting for rivals that can
    take most of the launch to arrive, while a worker idles (a rival that overtakes it pauses
    it again: `AshaPlan._overtaken`)."""
    if closed:
        return keep_count(reached, reduction_factor)
    return max(reached // reduction_factor, 1 if leader_goes_on and reached else 0)


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
    """A cell's standing at a rung."""
    goes_on: bool
    rank: int  # 1 = the best at this rung so far
    reached: int  # cells that reached the rung, this one included
    keep: int  # how many of them go on by rank (the top 1/eta)
    cutoff: float  # the value of the last cell that goes on by rank (nan: none goes on yet)
    band: float  # within_se x the cutoff's standard error: how far below it still goes on
    by_noise: bool  # goes on only because it is within `band` of the cutoff


class Rungs:
    """Each rung's record: the monitored value every cell had when it reached the rung."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.records: dict[tuple[str, int], dict[str, float]] = {}  # (monitor, rung) -> values

    def record(self, monitor: str, rung: int, cell_id: str, value: float) -> None:
        self.records.setdefault((monitor, rung), {})[cell_id] = value

    def reached(self, monitor: str, rung: int) -> int:
        return len(self.records.get((monitor, rung), {}))

    def judge(self, monitor: str, mode: str, rung: int, cell_id: str, value: float,
              error_of: Callable[[float], float] = lambda cutoff: 0.0) -> Verdict:
        """Record `value` for `cell_id` at `rung` and judge it among the top 1/eta, rounded
        up (`keep_count`)."""
        self.record(monitor, rung, cell_id, value)
        keep = keep_count(self.reached(monitor, rung), self.schedule.reduction_factor)
        return self.standing(monitor, mode, rung, cell_id, keep, error_of)

    def standing(self, monitor: str, mode: str, rung: int, cell_id: str, keep: int,
                 error_of: Callable[[float], float] = lambda cutoff: 0.0) -> Verdict:
        """Whether the recorded `cell_id` goes on when the top `keep` at `rung` do. Ties go
        on: a cell is never cut for equalling one that went on. With `schedule.within_se` k,
        so does a cell within k standard errors (`error_of(cutoff)`) of the last one that goes
        on by rank, since the two differ by no more than noise."""
        values = self.records[(monitor, rung)]
        value = values[cell_id]
        better = sum((v > value) if mode == "max" else (v < value)
                     for other, v in values.items() if other != cell_id)
        if keep < 1:
            return Verdict(False, better + 1, len(values), 0, math.nan, 0.0, False)
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
                self.record(monitor, rung, cell_id, best_of(values[:rung], mode))


def best_of(values: list[float], mode: str) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    return max(finite) if mode == "max" else min(finite)


class AshaPlan(CellList):
    """The cells of a grid (longest first), each stopped at a rung unless it ranks among the
    best there; with `schedule.promote`, a cell that does not rank yet waits at the rung
    (paused) until it does, or until no cell can still reach the rung."""
    decides = True

    def __init__(self, todo: list, planned: int, schedule: Schedule,
                 histories: dict[str, tuple[dict, list[float]]] | None = None):
        super().__init__(todo, planned)
        self.schedule = schedule
        self.rungs = Rungs(schedule)
        self.seen: dict[str, list[float]] = {}  # cell id -> its monitored value, epoch by epoch
        self.val_images: dict[str, int] = {}  # cell id -> its validation images (0: unknown)
        self.kept_by_noise: dict[str, list[str]] = {}  # cell id -> what its reason adds
        for cell_id, (cfg, values) in (histories or {}).items():
            monitor, mode = self._monitor(cfg)
            self.rungs.replay(monitor, mode, cell_id, values, cfg["train.max_epochs"])
            self.seen[cell_id] = list(values)
        # where each cell of this launch is: not started, training, waiting at a rung, or
        # handed out only to end at its checkpoint (the Stop it ends with)
        self.fresh: deque[Cell] = deque()
        self.running: dict[str, Cell] = {}
        self.waiting: dict[str, tuple[Cell, int]] = {}  # cell id -> (cell, its rung)
        self.ending: dict[str, Stop] = {}
        for cell in todo:
            trained = len(self.seen.get(cell.id, []))
            if schedule.promote and trained in schedule.rungs(cell.config["train.max_epochs"]):
                self.waiting[cell.id] = (cell, trained)  # an earlier launch left it at a rung
            elif trained:  # it was training when that launch ended: it trains on first (one
                # that waited past its rung, outranked there, trains one epoch, then waits again)
                self.fresh.appendleft(cell)
            else:
                self.fresh.append(cell)

    @staticmethod
    def _monitor(cfg: dict) -> tuple[str, str]:
        return cfg["train.monitor"], monitor_mode(cfg["train.monitor"], cfg["train.mode"])

    def tags(self, cell) -> dict[str, str]:
        return {T.SCHEDULE: "asha"}

    def remarks(self, cell) -> list[str]:
        return self.kept_by_noise.get(cell.id, [])

    # --- what runs next

    def cells(self) -> Iterator[Cell | None]:
        """The cells to start or resume, each when a worker asks: the best waiting cell that
        now ranks at its rung (the deepest rung first, as Li et al.), else a new cell, else a
        waiting cell that never can, to end at its checkpoint; None while cells that train
        may still change the ranks."""
        while True:
            if not self.schedule.promote:
                if not self.fresh:
                    return
                yield self._start(self.fresh.popleft())
                continue
            closed = self._closed_rungs()
            promoted = self._promotion(closed)
            if promoted is not None:
                yield self._start(promoted)
            elif self.fresh:
                yield self._start(self.fresh.popleft())
            elif (ended := self._ending(closed)) is not None:
                yield self._start(ended)
            elif self.running:
                yield None
            else:
                return

    def _start(self, cell: Cell) -> Cell:
        self.waiting.pop(cell.id, None)
        self.running[cell.id] = cell
        return cell

    def on_resume(self, cell: Cell) -> Stop | None:
        return self.ending.get(cell.id)

    def _epochs(self, cell: Cell) -> int:
        return len(self.seen.get(cell.id, []))

    def _closed_rungs(self) -> set[int]:
        """The rungs no cell of this launch can still reach: none is new, none trains below
        them, and every cell waiting below them waits for good (its rung is closed too and it
        does not rank there)."""
        if self.fresh:
            return set()
        training = [self._epochs(c) for i, c in self.running.items() if i not in self.ending]
        lowest = min(training, default=math.inf)
        waiting_at = {r for _, r in self.waiting.values()}
        closed: set[int] = set()
        for rung in sorted(waiting_at | self._all_rungs()):
            if rung > lowest or any(r < rung and (r not in closed or self._goes_on(r, closed))
                                    for r in waiting_at):
                break
            closed.add(rung)
        return closed

    def _all_rungs(self) -> set[int]:
        return {r for c in [*self.running.values(), *(c for c, _ in self.waiting.values())]
                for r in self.schedule.rungs(c.config["train.max_epochs"])}

    def _rung_below(self, cell: Cell, epoch: int) -> int:
        """The deepest rung at or below `epoch` (0: none), where the cell's standing is judged."""
        return max((r for r in self.schedule.rungs(cell.config["train.max_epochs"]) if r <= epoch),
                   default=0)

    def _verdict(self, cell: Cell, rung: int, closed: set[int]) -> Verdict:
        monitor, mode = self._monitor(cell.config)
        # the leader of a cell's last rung trains on once no new cell is left to start, while
        # another cell trains (a worker would wait beside it: `promotion_quota`)
        leads = (not self.fresh and rung == self._rung_below(cell, cell.config["train.max_epochs"])
                 and any(i != cell.id and i not in self.ending for i in self.running))
        keep = promotion_quota(self.rungs.reached(monitor, rung), self.schedule.reduction_factor,
                               rung in closed, leads)
        recent = [v for v in self.seen.get(cell.id, [])[:rung] if math.isfinite(v)]
        images = self.val_images.get(cell.id, 0)
        return self.rungs.standing(monitor, mode, rung, cell.id, keep,
                                   lambda cutoff: standard_error(monitor, cutoff, images, recent))

    def _best_waiting(self, rung: int) -> list[Cell]:
        """The best cell waiting at `rung` for each monitor there (the only ones that can
        rank: a worse one goes on only after them)."""
        best: dict[str, Cell] = {}
        for cell, r in self.waiting.values():
            if r == rung:
                monitor, mode = self._monitor(cell.config)
                values = self.rungs.records[(monitor, rung)]
                held = best.get(monitor)
                if held is None or (values[cell.id] > values[held.id] if mode == "max"
                                    else values[cell.id] < values[held.id]):
                    best[monitor] = cell
        return list(best.values())

    def _goes_on(self, rung: int, closed: set[int]) -> bool:
        return any(self._verdict(c, rung, closed).goes_on for c in self._best_waiting(rung))

    def _promotion(self, closed: set[int]) -> Cell | None:
        """The best waiting cell that ranks at its rung now, from the deepest rung down."""
        for rung in sorted({r for _, r in self.waiting.values()}, reverse=True):
            for cell in self._best_waiting(rung):
                verdict = self._verdict(cell, rung, closed)
                if verdict.goes_on:
                    if verdict.by_noise:
                        self._kept_on_noise(cell, rung, verdict)
                    return cell
        return None

    def _ending(self, closed: set[int]) -> Cell | None:
        """A waiting cell at a closed rung, where it does not rank (else `_promotion` would
        have taken it): it ends at its rung."""
        for cell, rung in self.waiting.values():
            if rung in closed:
                verdict = self._verdict(cell, rung, closed)
                self.ending[cell.id] = self._pruned(cell, rung, verdict, self._epochs(cell))
                return cell
        return None

    # --- each epoch

    def decide(self, cell: Cell, stats: EpochStats) -> Stop | None:
        monitor, mode = self._monitor(cell.config)
        seen = self.seen.setdefault(cell.id, [])
        del seen[stats.epoch - 1:]  # a retried epoch replaces the one its try reported
        seen.append(getattr(stats, monitor))
        self.val_images[cell.id] = stats.val_images
        epoch, max_epochs = stats.epoch, cell.config["train.max_epochs"]
        best = best_of(seen, mode)
        if epoch not in self.schedule.rungs(max_epochs):
            return self._overtaken(cell, epoch) if self.schedule.promote else None
        if not math.isfinite(best):
            return None
        if not self.schedule.promote:
            finite = [v for v in seen if math.isfinite(v)]
            verdict = self.rungs.judge(
                monitor, mode, epoch, cell.id, best,
                lambda cutoff: standard_error(monitor, cutoff, stats.val_images, finite))
            if verdict.by_noise:
                self._kept_on_noise(cell, epoch, verdict)
            return None if verdict.goes_on else self._pruned(cell, epoch, verdict)
        self.rungs.record(monitor, epoch, cell.id, best)
        verdict = self._verdict(cell, epoch, self._closed_rungs())
        if verdict.goes_on:  # it ranks now: it trains on without a pause
            if verdict.by_noise:
                self._kept_on_noise(cell, epoch, verdict)
            return None
        ahead = (f"the top {verdict.keep} go on so far" if verdict.keep else
                 f"none goes on until {self.schedule.reduction_factor} have reached it")
        return Stop(PAUSED, f"waits at the epoch-{epoch} rung: {monitor} {best:.4f} ranks "
                            f"{verdict.rank} of the {verdict.reached} cells there so far; "
                            f"{ahead}")

    def _overtaken(self, cell: Cell, epoch: int) -> Stop | None:
        """A pausing `Stop` for a cell that went on from its rung while the rung was open and
        no longer ranks there, since cells that reached the rung after it outrank it: it waits
        at that rung from its next epoch, as it would have had they arrived first, and goes
        on or ends when the rung decides (its extra epochs stay in its history)."""
        rung = self._rung_below(cell, epoch)
        monitor, _ = self._monitor(cell.config)
        value = self.rungs.records.get((monitor, rung), {}).get(cell.id)
        if value is None:
            return None
        verdict = self._verdict(cell, rung, self._closed_rungs())
        if verdict.goes_on:
            return None
        return Stop(PAUSED, f"waits at the epoch-{rung} rung again after epoch {epoch}: "
                            f"{monitor} {value:.4f} there now ranks {verdict.rank} of the "
                            f"{verdict.reached} cells there so far; the top {verdict.keep} go on")

    def paused(self, cell: Cell, paused: Paused) -> None:
        self.running.pop(cell.id, None)
        self.waiting[cell.id] = (cell, self._rung_below(cell, paused.epoch))

    def passed_over(self, cell: Cell) -> None:
        self.done(cell, None)

    def done(self, cell: Cell, result) -> None:
        for where in (self.running, self.waiting, self.ending):
            where.pop(cell.id, None)

    # --- what the reasons say

    def _kept_on_noise(self, cell: Cell, rung: int, verdict: Verdict) -> None:
        monitor, mode = self._monitor(cell.config)
        value = self.rungs.records[(monitor, rung)][cell.id]
        self.kept_by_noise.setdefault(cell.id, []).append(
            f"kept at the epoch-{rung} rung on noise: {monitor} {value:.4f} ranked "
            f"{verdict.rank} of {verdict.reached}, {abs(value - verdict.cutoff):.4f} from "
            f"{verdict.cutoff:.4f}, the last of the top {verdict.keep} (within_se "
            f"{self.schedule.within_se:g}: {verdict.band:.4f})")

    def _pruned(self, cell: Cell, rung: int, verdict: Verdict, epoch: int = 0) -> Stop:
        monitor, _ = self._monitor(cell.config)
        value = self.rungs.records[(monitor, rung)][cell.id]
        k = self.schedule.within_se
        noise = (f", and those within {verdict.band:.4f} of {verdict.cutoff:.4f} (within_se "
                 f"{k:g})" if k > 0 and verdict.keep else "")
        where = (f"epoch {rung}" if epoch in (0, rung) else
                 f"the epoch-{rung} rung after {epoch} epochs")
        return Stop("pruned", f"pruned at {where} (ASHA rung, reduction factor "
                              f"{self.schedule.reduction_factor}): {monitor} {value:.4f} ranks "
                              f"{verdict.rank} of the {verdict.reached} cells that reached this "
                              f"rung; the top {verdict.keep} go on{noise}", epoch)
