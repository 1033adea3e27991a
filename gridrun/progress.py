"""The live progress display of a launch: cell i/N, epoch, current val acc, elapsed and ETA.

In a terminal it is one live line drawn by rich; in a log (CI, nohup) it is one plain line per
epoch and per finished cell, so the output stays readable when it is not a terminal.
"""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from .grid import Cell, Grid
from .train import EpochStats


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ConsoleProgress:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, soft_wrap=True)  # logs: never wrap lines
        self.live = self.console.is_terminal
        self.bar: Progress | None = None
        self.task = None
        self.started = time.monotonic()
        self.todo = 0
        self.done = 0
        self.position = 0
        self.max_epochs = 1

    # ETA: time so far, scaled by the share of the grid's epochs-to-run done so far
    def _eta(self, epoch: int) -> str:
        fraction = (self.done + epoch / self.max_epochs) / max(self.todo, 1)
        if fraction <= 0:
            return "--:--"
        elapsed = time.monotonic() - self.started
        return _clock(elapsed / fraction - elapsed)

    def launch_started(self, grid: Grid, todo: int, skipped: int) -> None:
        self.todo, self.started = todo, time.monotonic()
        skipped_note = f", {skipped} already finished (skipped)" if skipped else ""
        self.console.print(f"grid {grid.name}: {todo} cells to run{skipped_note}")
        if self.live and todo:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.fields[status]}"), console=self.console,
                                transient=True)
            self.task = self.bar.add_task("", total=todo, status="")
            self.bar.start()

    def cell_started(self, position: int, todo: int, cell: Cell) -> None:
        self.position, self.max_epochs = position, cell.config["train.max_epochs"]
        self._show(f"[{position}/{todo}] {cell.name}", "starting", 0)

    def epoch_done(self, cell: Cell, stats: EpochStats) -> None:
        status = (f"epoch {stats.epoch}/{self.max_epochs} val_acc {stats.val_acc:.4f} "
                  f"elapsed {_clock(time.monotonic() - self.started)} ETA {self._eta(stats.epoch)}")
        self._show(f"[{self.position}/{self.todo}] {cell.name}", status, stats.epoch)

    def cell_done(self, cell: Cell, outcome: str, detail: str) -> None:
        self.done += 1
        line = f"[{self.position}/{self.todo}] {cell.name}: {outcome} ({detail})"
        if self.bar is not None:
            self.bar.console.print(line)
            self.bar.update(self.task, completed=self.done)
            if self.done == self.todo:
                self.bar.stop()
        else:
            self.console.print(line)

    def _show(self, description: str, status: str, epoch: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=description, status=status,
                            completed=self.done + epoch / self.max_epochs)
        elif epoch:
            self.console.print(f"{description} {status}", highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
