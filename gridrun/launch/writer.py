"""The one writer of a launch: the executor's events become MLflow writes and progress, in the
launching process (worker processes never open the store). Each cell's run was created, or
taken over, when the cell was claimed (`gridrun.tracking.claims`); the writer fills it."""
from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..data.images import ImageSet, dataset_key
from ..executors.events import CellFailed, CellFinished, CellPaused, CellStarted, EpochDone, Event
from ..plan.base import Plan
from ..results.frames import best_order
from ..spec.grid import Cell, Grid
from ..tracking import tags as T
from ..tracking.claims import Claim, ClaimedCells, Claims
from ..tracking.inputs import dataset_inputs
from ..tracking.logged_model import log_model
from ..tracking.recorder import Recorder
from ..tracking.system_metrics import WorkerSampler
from ..train.records import PAUSED, CellResult, Paused
from .outbox import unreachable
from .report import LaunchReport, Progress
from .signals import signal_name


def import_recording_code(models: bool = True) -> None:
    """Pay, while the workers train, the one-time costs of recording that would otherwise fall
    on the first or the best cell's recording at the end of the launch (about 2.5 seconds):
    importing matplotlib and, when `models` are logged, MLflow's pytorch flavor and
    torch.export, and torch.export's first trace."""
    try:
        from ..results import figures  # noqa: F401

        if not models:
            return
        import mlflow.pytorch  # noqa: F401
        import torch

        torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),))
    except Exception:  # noqa: BLE001 - only a head start: the real calls report any error
        pass


class RecordingWarmUp:
    """`import_recording_code` in a thread of its own, started once, when the launch asks: at
    once when every finished cell logs a model or draws figures; otherwise when the last cell
    starts (or, should some cells go to other launches, when the plan has no cell left).

    Not later, when the first worker idles: a grid's cells often end together (the same epochs,
    the same model sizes), and then nothing idles before the last cell ends and all of the
    warm-up (about 2.5 seconds of CPU) fell after it, where the launch waits for nothing
    else. Not sooner: the warm-up's CPU is then the cells' (the last ones share it at most)."""

    def __init__(self, models: bool = True) -> None:
        self.models = models  # models are logged: warm up their export too
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=import_recording_code, args=(self.models,),
                                            daemon=True, name="gridrun-warm-up")
            self._thread.start()

    def wait(self) -> None:
        """Until the warm-up, if it started, is done: torch.export keeps global state, and two
        exports at once in one process break each other."""
        if self._thread is not None:
            self._thread.join()


@dataclass
class Writer:
    """Turns the executor's events into MLflow writes and progress (see the module docstring)."""
    recorder: Recorder
    experiment_id: str
    report: LaunchReport
    grid: Grid
    images: dict[tuple, ImageSet]
    progress: Progress
    log_model: str  # all | best | none
    figures: str  # all | best | none
    plan: Plan
    claims: Claims
    retries: int = 0
    keep_checkpoints: bool = False
    warm_up: RecordingWarmUp | None = None
    sampler: WorkerSampler | None = None  # each running cell's worker: CPU, memory, GPU
    local_pid: Callable[[int], int | None] = lambda worker: None  # the executor's
    source: ClaimedCells | None = None
    started: int = 0
    positions: dict[int, int] = field(default_factory=dict)  # cell index -> its start's number
    # this launch's best finished cell (`best_order` key, run_id, result or None, cell): the one
    # whose model and figures `best` logs, which only this launch has in memory
    best: tuple | None = None
    record_seconds: list[float] = field(default_factory=list)

    def handle(self, event: Event) -> None:
        """Record `event`. Safe to call again with the same event after a write failed (the
        outbox replays it once the store answers): what it counts, it counts after writing."""
        cell = event.cell
        claim = self.claims.held[cell.index]
        if isinstance(event, CellStarted):
            worker = {T.WORKER: event.where} if event.where else {}
            if claim.tries == 0 and claim.pauses == 0:
                images = self.images[dataset_key(cell.config)]
                self.recorder.set_tags(claim.run_id, {T.DATA_SOURCE: images.source,
                                                      **self.plan.tags(cell), **worker})
                self.recorder.cells.log_inputs(claim.run_id, dataset_inputs(cell.config, images))
                self.started += 1
                self.positions[cell.index] = self.started
                if self.warm_up is not None and self.started == self.plan.to_run:
                    self.warm_up.start()  # the last cell is on its way (`RecordingWarmUp`)
                if claim.resumed:
                    self.report.resumed += 1
            elif claim.pauses:  # out of a pause: promoted at its rung, or to end there
                self.recorder.set_tags(claim.run_id, {T.OUTCOME: "running", T.REASON: "",
                                                      **worker})
            elif worker:  # a retry, maybe on another machine
                self.recorder.set_tags(claim.run_id, worker)
            pid = self.local_pid(event.worker)
            if self.sampler is not None and pid:  # (again on a retry's new worker)
                self.sampler.watch(claim.run_id, pid)
            self.progress.cell_started(self.positions[cell.index], cell, event.worker,
                                       claim.from_epoch)
        elif isinstance(event, EpochDone):
            if event.stats.epoch not in claim.logged:  # a resumed cell logs no step twice
                sample = self.sampler.epoch_sample(claim.run_id) if self.sampler else []
                self.recorder.cells.log_epoch(claim.run_id, event.stats, _scheduled(cell),
                                              sample)
                claim.logged.add(event.stats.epoch)
            self.progress.epoch_done(cell, event.stats, event.worker)
        elif isinstance(event, CellPaused):
            self.paused(claim, event.paused)
        elif isinstance(event, CellFinished):
            self.finished(claim, event.result)
        elif isinstance(event, CellFailed):
            self.failed(claim, event.error, event.traceback)

    def passed_over(self, cell: Cell) -> None:
        """A planned cell another launch finished or holds by the time it was pulled."""
        self.report.elsewhere += 1
        self.plan.passed_over(cell)
        self.plan.done(cell, None)
        self.progress.cell_done(cell, "elsewhere", "claimed by another launch")

    def paused(self, claim: Claim, paused: Paused) -> None:
        """The plan paused the cell at a rung: its run stays RUNNING and claimed (heartbeats
        go on), tagged with why it waits, until the plan hands it out again."""
        self.stop_sampling(claim.run_id)
        self.recorder.set_tags(claim.run_id, {T.OUTCOME: PAUSED, T.REASON: paused.reason})
        claim.pauses += 1
        self.plan.paused(claim.cell, paused)
        self.progress.cell_paused(claim.cell, paused.reason)

    def finished(self, claim: Claim, result: CellResult) -> None:
        cell, run_id = claim.cell, claim.run_id
        self.stop_sampling(run_id)
        if not self.claims.owns(run_id):  # stalled past the stale timeout and taken over
            self.claims.release(cell)
            self.plan.done(cell, None)
            self.progress.cell_done(cell, "elsewhere", "taken over by another launch")
            return
        t0 = time.perf_counter()
        remarks = self.plan.remarks(cell)  # e.g. ASHA kept it on noise at a rung
        if remarks:
            result = replace(result, reason="; ".join([result.reason, *remarks]))
        try:
            for stats in result.history:  # epochs a killed launch never logged (its worker
                if stats.epoch not in claim.logged:  # checkpointed them): from the checkpoint
                    self.recorder.cells.log_epoch(run_id, stats, _scheduled(cell))
                    claim.logged.add(stats.epoch)
            if self.log_model == "all":
                self.warmed_up()
            record_result(self.recorder, self.experiment_id, run_id, cell, result,
                          with_model=self.log_model == "all", figures=self.figures == "all")
        except Exception as e:  # e.g. a full disk: this cell fails, the others go on
            if unreachable(e):  # not the cell's fault: the outbox replays the event later
                raise
            self.claims.release(cell)
            self.recorder.cells.fail(run_id, f"recording the result: {e.__class__.__name__}: {e}")
            self.report.outcomes[run_id] = "failed"
            self.plan.done(cell, None)
            self.progress.cell_done(cell, "failed", f"recording the result: {e}")
            return
        self.claims.release(cell, keep_checkpoint=self.keep_checkpoints)
        self.record_seconds.append(time.perf_counter() - t0)
        key = best_order(result.test_acc, result.best_val_acc, cell.index)
        if "best" in (self.log_model, self.figures) and result.outcome != "pruned" and (
                self.best is None or key > self.best[0]):
            self.best = (key, run_id, result, cell)
        self.report.outcomes[run_id] = result.outcome
        self.plan.done(cell, result)
        self.progress.cell_done(cell, result.outcome, _describe(result))

    def failed(self, claim: Claim, error: str, trace: str) -> None:
        cell, run_id = claim.cell, claim.run_id
        self.stop_sampling(run_id)
        tries = claim.tries + 1
        again = tries <= self.retries
        self.recorder.set_tags(run_id, {T.error_of_try(tries): error[:5000]})
        if trace:  # each try's traceback is kept; the last one is error.txt
            self.recorder.log_artifact_text(
                run_id, trace, f"error-try-{tries}.txt" if again else "error.txt")
        claim.tries = tries
        if again:  # from the last epoch's checkpoint
            self.progress.cell_done(cell, "retrying",
                                    f"try {claim.tries}/{self.retries + 1} failed: {error}")
            self.source.retry(cell)
            return
        self.recorder.cells.fail(run_id, error)
        self.claims.release(cell, keep_checkpoint=False)  # a relaunch starts a FAILED cell over
        self.report.outcomes[run_id] = "failed"
        self.plan.done(cell, None)
        self.progress.cell_done(cell, "failed", error)

    def stop_sampling(self, run_id: str | None = None) -> None:
        """No more system-metric samples for `run_id` (for any run when None): its run ends."""
        if self.sampler is None:
            return
        if run_id:
            self.sampler.forget(run_id)
        else:
            self.sampler.stop()

    def record_best(self) -> None:
        """`track: {log_model: best, figures: best}`: the model and the figures of this launch's
        best cell (`results.frames.BEST_RULE`), once its rivals have finished."""
        if self.best is None:
            return
        _, run_id, result, cell = self.best
        if self.figures == "best":
            from ..results.figures import cell_figures
            with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
                cell_figures(result, Path(folder), title=cell.name)
                self.recorder.log_files(run_id, Path(folder))
        if self.log_model == "best" and result.model is not None:
            self.warmed_up()
            log_model(self.recorder, self.experiment_id, run_id, result.model,
                      result.example_input, cell.name, cell.config)
        self.recorder.set_tags(run_id, {T.BEST_OF_LAUNCH: self.report.parent_run_id})

    def warmed_up(self) -> None:
        """Before exporting a model: wait for the warm-up (`RecordingWarmUp.wait`)."""
        if self.warm_up is not None:
            self.warm_up.wait()

    def kill_running(self, why: BaseException) -> None:
        """An interrupted launch (Ctrl-C, SIGTERM, or an error of the launch itself, e.g. its
        output closed): the cells in progress end KILLED with their checkpoints kept, so the
        same command resumes them from their last epoch at once."""
        self.stop_sampling()
        stopped_by = signal_name(why)
        for claim in list(self.claims.held.values()):
            self.claims.release(claim.cell)
            try:
                self.recorder.cells.fail(claim.run_id, f"{stopped_by or why.__class__.__name__}: "
                                         "the launch was interrupted; the same command resumes "
                                         "the cell", status="KILLED", stopped_by=stopped_by)
            except Exception:  # noqa: BLE001 - recording what we can while stopping
                pass


def record_result(recorder: Recorder, experiment_id: str, run_id: str, cell: Cell,
                  result: CellResult, with_model: bool = True, figures: bool = True) -> None:
    """A trained cell's reports and (optionally) figures and model, then its final metrics and
    outcome. The run is marked FINISHED last, so a crash while logging leaves it unfinished
    and a relaunch trains the cell again rather than trusting half its artifacts."""
    from ..results.reports import cell_reports

    with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
        if figures:
            from ..results.figures import cell_figures
            cell_figures(result, Path(folder), title=cell.name)
        cell_reports(result, Path(folder))
        recorder.log_files(run_id, Path(folder))
    model_id = None
    if with_model and result.model is not None and result.example_input is not None:
        model_id = log_model(recorder, experiment_id, run_id, result.model,
                             result.example_input, cell.name, cell.config)
    recorder.cells.finish(run_id, result, cell, model_id)


def record_grid(recorder: Recorder, parent_run_id: str, grid: Grid):
    """The grid-level figures and the results table, on the launch's parent run; returns the
    cells' frame they were drawn from (`results.frames.cells_frame`)."""
    from ..results.figures import grid_plots
    from ..results.frames import cells_frame, factor_levels, factors
    from ..results.render import render
    from ..results.tables import tabulate

    cells = cells_frame(grid=grid, tracking_uri=recorder.tracking_uri)
    levels = {f: factor_levels(cells, f) for f in factors(cells)}
    with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
        grid_plots(cells, levels, Path(folder))
        (Path(folder) / "summary.md").write_text(
            render(tabulate(cells), "markdown"))
        recorder.log_files(parent_run_id, Path(folder))
    return cells


def _scheduled(cell: Cell) -> bool:
    """Whether the cell's learning rate changes as it trains (it has a scheduler)."""
    return cell.config.get("train.scheduler", "none") != "none"


def _describe(result: CellResult) -> str:
    if result.outcome == "pruned":  # what it was cut for, not a score it was never ranked on
        last = result.history[-1].val_acc if result.history else float("nan")
        return (f"at epoch {result.epochs_run}, val_acc {last:.4f}, "
                f"{result.duration_s:.1f}s")
    return (f"test_acc {result.test_acc:.4f}, best epoch {result.epochs_needed}/"
            f"{result.epochs_run}, {result.duration_s:.1f}s")
