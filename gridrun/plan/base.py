"""The seam between a launch and its planners, as Ray Tune's `TrialScheduler` and Hydra's
`Sweeper` declare theirs: a plan says what runs next and when a cell stops; an executor says
where it runs, and knows plans only as a `decide` callable.

    for cell in plan.cells():                   # what to run next, pulled when a worker is free
        ... each epoch: plan.decide(cell, stats) -> None (CONTINUE) | Stop(outcome, reason)
        plan.paused(cell, paused)               # it stopped at a Stop that pauses (PAUSE)
        plan.done(cell, result)                 # the result (None: the cell failed or was lost)

A paused cell comes out of `cells()` again later, and `on_resume(cell)` says whether it trains
on (None) or ends at its checkpoint (a `Stop`). `cells()` may yield None: nothing to start
now, ask again after the next event (ASHA waits for a rung to fill).

The three planners: `cartesian.GridPlan` (every cell to its end), `asha.AshaPlan` (successive
halving over a grid's cells), `search.OptunaPlan` (an Optuna study's trials).
"""
from __future__ import annotations

from typing import Iterator, Protocol

from ..spec.grid import Cell
from ..train.records import CellResult, EpochStats, Paused, Stop


class Plan(Protocol):
    planned: int  # cells (or trials) of the whole plan
    todo: list[Cell]  # the cells this launch sets out to run, known in advance (none: a search)
    decides: bool  # whether `decide` can ever stop a cell (else executors need not ask)

    @property
    def to_run(self) -> int: ...  # of them, how many this launch sets out to run

    def cells(self) -> Iterator[Cell | None]: ...
    def tags(self, cell: Cell) -> dict[str, str]: ...  # what the plan adds to a cell's run
    def remarks(self, cell: Cell) -> list[str]: ...  # what it adds to a cell's reason, at its end
    def decide(self, cell: Cell, stats: EpochStats) -> Stop | None: ...
    def paused(self, cell: Cell, paused: Paused) -> None: ...
    def on_resume(self, cell: Cell) -> Stop | None: ...
    def passed_over(self, cell: Cell) -> None: ...  # another launch holds or finished it
    def done(self, cell: Cell, result: CellResult | None) -> None: ...


class CellList:
    """A plan over a fixed list of cells, each to its end: the defaults the planners share."""
    decides = False

    def __init__(self, todo: list[Cell], planned: int):
        self.todo, self.planned = todo, planned

    @property
    def to_run(self) -> int:
        return len(self.todo)

    def cells(self) -> Iterator[Cell]:
        return iter(self.todo)

    def tags(self, cell: Cell) -> dict[str, str]:
        return {}

    def remarks(self, cell: Cell) -> list[str]:
        return []

    def decide(self, cell: Cell, stats: EpochStats) -> Stop | None:
        return None

    def paused(self, cell: Cell, paused: Paused) -> None:
        pass

    def on_resume(self, cell: Cell) -> Stop | None:
        return None

    def passed_over(self, cell: Cell) -> None:
        pass

    def done(self, cell: Cell, result: CellResult | None) -> None:
        pass
