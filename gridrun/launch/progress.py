"""The live progress display of a launch.

In a terminal: one line per worker (its cell, epoch and validation accuracy) under a bar with
the grid's done/total, elapsed time and ETA, drawn by rich. In a log (CI, nohup): one plain line
per event, e.g. `[3/24] relu_bn-lr0.001-sgd0.9 epoch 2/20 val_acc 0.4567 elapsed 00:41 ETA 05:10`.

The ETA is measured, not guessed: the mean epoch time so far, times the epochs still possibly
ahead (each unfinished cell up to its max_epochs), divided by the workers. Early stopping makes
it an upper bound.
"""
from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.text import Text

from ..spec.grid import Cell, Grid
from ..train.records import EpochStats


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ConsoleProgress:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, soft_wrap=True)  # logs: never wrap lines
        self.live_mode = self.console.is_terminal
        self.live: Live | None = None
        self.bar: Progress | None = None
        self.task = None
        self.started = time.monotonic()
        self.todo = self.done = self.workers = 0
        self.max_epochs = 1
        self.positions: dict[int, int] = {}  # cell index -> position in start order
        self.epochs: dict[int, int] = {}  # cell index -> epochs done, while it trains
        self.lines: dict[int, str] = {}  # worker -> its current line
        self.epoch_seconds: list[float] = []

    def eta(self) -> str:
        if not self.epoch_seconds:
            return "--:--"
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        unstarted = self.todo - self.done - len(self.epochs)
        ahead = unstarted * self.max_epochs + sum(self.max_epochs - e for e in self.epochs.values())
        return _clock(mean * max(ahead, 0) / max(self.workers, 1))

    def launch_started(self, grid: Grid, todo: int, skipped: int, workers: int) -> None:
        self.todo, self.workers, self.started = todo, workers, time.monotonic()
        skipped_note = f", {skipped} already finished (skipped)" if skipped else ""
        on = f" on {workers} workers" if workers > 1 and todo else ""
        self.console.print(f"grid {grid.name}: {todo} cells to run{skipped_note}{on}",
                           highlight=False)
        cells = grid.cells() if grid.search is None else []
        self.max_epochs = max((c.config["train.max_epochs"] for c in cells), default=1)
        if self.live_mode and todo:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.fields[status]}"), console=self.console)
            self.task = self.bar.add_task("grid", total=todo, status="")
            self.live = Live(self._view(), console=self.console, transient=True,
                             refresh_per_second=4)
            self.live.start()

    def cell_started(self, position: int, cell: Cell, worker: int, resumed_after: int = 0
                     ) -> None:
        self.positions[cell.index] = position
        self.epochs[cell.index] = resumed_after
        self.max_epochs = max(self.max_epochs, cell.config["train.max_epochs"])
        self._show(worker, f"{self._tag(cell)} " + (
            f"resuming after epoch {resumed_after}" if resumed_after else "starting"))

    def epoch_done(self, cell: Cell, stats: EpochStats, worker: int) -> None:
        self.epochs[cell.index] = stats.epoch
        self.epoch_seconds.append(stats.epoch_seconds)
        line = (f"{self._tag(cell)} epoch {stats.epoch}/{cell.config['train.max_epochs']}"
                f" val_acc {stats.val_acc:.4f}")
        if self.live is None:  # the live bar shows elapsed and ETA once, for the grid
            line += f" elapsed {_clock(time.monotonic() - self.started)} ETA {self.eta()}"
        self._show(worker, line)

    def cell_paused(self, cell: Cell, reason: str) -> None:
        """A line of its own: the cell waits at a rung, its worker moves on."""
        self.epochs.pop(cell.index, None)
        self.note(f"{self._tag(cell)}: paused ({reason})")

    def cell_done(self, cell: Cell, outcome: str, detail: str) -> None:
        self.done += 1
        self.epochs.pop(cell.index, None)
        self.note(f"{self._tag(cell)}: {outcome} ({detail})")

    def note(self, line: str) -> None:
        """A line of its own above the live view (or in the log)."""
        if self.live is not None:
            self.live.console.print(line, highlight=False, markup=False)
            self._refresh()
        else:
            self.console.print(line, highlight=False, markup=False)

    def _tag(self, cell: Cell) -> str:
        return f"[{self.positions.get(cell.index, '?')}/{self.todo}] {cell.name}"

    def _show(self, worker: int, line: str, log: bool = True) -> None:
        self.lines[worker] = line
        if self.live is not None:
            self._refresh()
        elif log:
            self.console.print(line, highlight=False, markup=False)

    def _view(self):
        # workers numbered 1, 2, ... in the order they first reported (their pids mean nothing)
        rows = [Text(f"worker {n}: {line}" if self.workers > 1 else line)
                for n, line in enumerate(self.lines.values(), 1)]
        return Group(self.bar, *rows)

    def _refresh(self) -> None:
        self.bar.update(self.task, completed=self.done,
                        description=f"{self.done}/{self.todo} cells",
                        status=f"elapsed {_clock(time.monotonic() - self.started)} "
                               f"ETA {self.eta()}")
        self.live.update(self._view())

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
