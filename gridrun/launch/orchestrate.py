"""A launch, top to bottom: check everything, plan the cells, let an executor train them, record
every event.

    preflight (devices, data, models) -> plan (grid cells, ASHA or Optuna trials)
        -> executor.run(plan) yields events -> the writer records each one (the one writer)

Training (`gridrun.train`) knows nothing of MLflow; tracking (`gridrun.tracking`) knows nothing
of training loops; executors know where cells run and nothing of either MLflow or plans; plans
know what runs next. This module joins them.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, fields, replace

from ..data.images import ImageSet
from ..executors import Executor
from ..executors.events import CheckpointSaved
from ..plan.base import Plan
from ..plan.cartesian import longest_first, plan_grid
from ..spec.grid import Cell, Grid
from ..spec.load import with_schedule
from ..tracking.checkpoints import Checkpoints, served
from ..tracking.claims import ClaimedCells, Claims, check_state_root, state_folder, state_root
from ..tracking.ledger import MlflowLedger
from ..tracking.recorder import Recorder
from ..tracking.store import check_tracking_uri
from ..tracking.system_metrics import WorkerSampler
from ..tracking.views import where_to_look
from .outbox import Outbox, StoreOutage, quick_failures, unreachable
from .preflight import check_devices, check_models, prepare_data
from .report import LaunchReport, Progress, SilentProgress
from .signals import StopSignals, signal_name
from .writer import RecordingWarmUp, Writer, record_grid

DRAIN_SECONDS = 120  # how long a launch waits for its last checkpoint uploads
STOPPING_DRAIN_SECONDS = 20  # ... when it was stopped (SLURM kills 30 s after its SIGTERM)


@dataclass(frozen=True)
class LaunchOptions:
    """How to launch a grid, from the command line or a notebook. Each `None` falls back to the
    grid file (`execution:`, `track:`, `schedule:`), then to gridrun's default."""
    data_dir: str | None = None
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    rerun: bool = False  # train finished cells again, into new runs
    executor: str | None = None  # auto | local | inline | ray
    workers: int | None = None
    threads: int | None = None
    address: str | None = None  # a Ray cluster's
    retries: int | None = None
    log_model: str | None = None  # best | all | none
    figures: str | None = None  # best | all | none
    state_dir: str | None = None  # checkpoints (default: .gridrun/ beside a SQLite store)
    keep_checkpoints: bool | None = None
    schedule: str | None = None  # all | asha | hyperband


def launch(grid: Grid, options: LaunchOptions | None = None, *,
           progress: Progress | None = None, **settings) -> LaunchReport:
    """Train every cell of `grid` not yet finished in its experiment; record each as a child run.
    `options` (or the same fields as keywords: `launch(grid, tracking_uri=..., workers=2)`)
    say how (`LaunchOptions`).

    Safe to run again at any time, and beside other launches of the same grid: cells another
    live launch trains are left to it, and cells a dead or interrupted launch left are resumed
    from their last epoch's checkpoint into their own run (`gridrun.tracking.claims`).
    Checkpoints live under `state_dir` and are removed once their cell's run is FINISHED,
    unless `keep_checkpoints`. A cell that raises is tried again from its checkpoint up to
    `retries` times. A grid with `search:` runs an Optuna study instead
    (`gridrun.plan.search`): each trial is a child run like a cell, and every launch runs
    `n_trials` new trials of a study kept in the state directory.
    """
    if settings:
        known = {f.name for f in fields(LaunchOptions)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"launch() got unknown settings {unknown}; allowed: {sorted(known)}")
        options = LaunchOptions(**{**(options.__dict__ if options else {}), **settings})
    options = options or LaunchOptions()
    grid = with_schedule(grid, options.schedule)
    progress = progress or SilentProgress()
    check_tracking_uri(options.tracking_uri)  # before anything is decoded or created
    # SIGTERM (SLURM, docker stop) stops a launch like Ctrl-C; a server's outage is waited out
    with StopSignals() as signals, quick_failures(options.tracking_uri
                                                  or os.environ.get("MLFLOW_TRACKING_URI", "")):
        return _launch(grid, options, progress, signals)


def _launch(grid: Grid, options: LaunchOptions, progress: Progress,
            signals: StopSignals) -> LaunchReport:
    cells, images, sizes, run_with, engine = _prepare(grid, options)
    with engine:
        engine.start()  # the workers map the data while the store is read and set up
        recorder = Recorder(options.tracking_uri)
        with signals.deferred():
            claims, plan, elsewhere = _plan(grid, options, recorder, cells, images, sizes)
        report = LaunchReport(claims.ledger.experiment_id, None, plan.planned,
                              plan.planned - plan.to_run - elsewhere,
                              tracking_uri=recorder.tracking_uri,
                              workers=min(run_with["workers"], plan.to_run), elsewhere=elsewhere,
                              state_dir=str(claims.folder))
        report.ui_url, report.ui_command = where_to_look(recorder.tracking_uri,
                                                         report.experiment_id)
        progress.launch_started(grid, plan.to_run, report.skipped, report.workers)
        if plan.to_run:
            _run(grid, options, recorder, claims, plan, report, images, engine, progress,
                 run_with["executor"], signals)
    return report


def _plan(grid: Grid, options: LaunchOptions, recorder: Recorder, cells: list[Cell],
          images: dict[tuple, ImageSet], sizes: dict[int, int]
          ) -> tuple[Claims, Plan, int]:
    """The launch's claims, its plan, and how many cells other live launches train now."""
    root = state_root(recorder.tracking_uri, options.state_dir)
    check_state_root(root)
    experiment_id = recorder.experiment_id(grid.name, grid)
    folder = state_folder(root, recorder.tracking_uri, experiment_id, grid.name)
    upload = served(recorder.tracking_uri) and grid.track.get("upload_checkpoints", True)
    checkpoints = Checkpoints(folder, *((recorder.client, recorder.tracking_uri) if upload
                                        else ()))
    claims = Claims(MlflowLedger(recorder, experiment_id), grid, folder, options.rerun,
                    checkpoints)
    claims.close_stale_launches()
    if grid.search is not None:
        from ..plan.search import OptunaPlan
        return claims, OptunaPlan(grid, folder, claims), 0
    finished = set() if options.rerun else recorder.store.finished_cells(experiment_id)
    busy = claims.busy_elsewhere() - finished
    todo = longest_first([c for c in cells if c.id not in finished | busy], images, sizes)
    plan = plan_grid(grid, cells, todo, recorder.store, experiment_id)
    return claims, plan, sum(c.id in busy for c in cells)


def _run(grid: Grid, options: LaunchOptions, recorder: Recorder, claims: Claims, plan: Plan,
         report: LaunchReport, images: dict[tuple, ImageSet], engine: Executor,
         progress: Progress, executor: str, signals: StopSignals) -> None:
    """The launch's parent run, its cells trained and recorded, and the parent closed with the
    launch's counts (KILLED, with the cells in progress, when the launch is interrupted or
    stopped by SIGTERM). Every write to the store is `deferred`: a signal waits for it."""
    log_model = _setting(options.log_model, grid.track, "log_model", "best")
    figures = _setting(options.figures, grid.track, "figures", "best")
    warm_up = None  # never beside training in this process: tracing touches torch's global state
    if executor != "inline" and (log_model, figures) != ("none", "none"):
        warm_up = RecordingWarmUp(models=log_model != "none")
        if "all" in (log_model, figures):  # the first finished cell needs it
            warm_up.start()
    with signals.deferred():
        report.parent_run_id = recorder.launch.start(claims.ledger.experiment_id, grid,
                                                     plan.to_run, plan.todo,
                                                     claims.launch_tags())
    claims.parent_run_id = report.parent_run_id
    claims.start_beating()
    interval = grid.track.get("system_metrics", 10)
    writer = Writer(recorder, claims.ledger.experiment_id, report, grid, images, progress,
                    log_model, figures, plan, claims,
                    _setting(options.retries, grid.execution, "retries", 0),
                    _setting(options.keep_checkpoints, grid.track, "keep_checkpoints", False),
                    warm_up, WorkerSampler(recorder.client, interval) if interval else None,
                    engine.local_pid)
    writer.source = ClaimedCells(plan.cells(), claims, writer.passed_over,
                                 on_dry=warm_up.start if warm_up else None)
    outbox = Outbox(writer.handle, grid.track.get("outage_limit", 300), progress.note,
                    where=recorder.tracking_uri, guard=signals.deferred)
    status, stopped_by = "FINISHED", None
    cells_now = None  # the grid's cells as the store has them at the end, read once
    try:
        for event in engine.run(outbox.each(writer.source),
                                plan.decide if plan.decides else None,
                                lambda cell: replace(claims.checkpoint_for(cell),
                                                     stop=plan.on_resume(cell))):
            if isinstance(event, CheckpointSaved):  # kept and uploaded, never held up by
                claims.saved(event.cell, event.saved)  # a store that is away
            else:
                outbox.put(event)
        outbox.call(writer.record_best)
        try:
            cells_now = outbox.call(lambda: record_grid(recorder, report.parent_run_id, grid))
        except StoreOutage:
            raise
        except Exception as e:  # noqa: BLE001 - the cells are recorded; the plots are extras
            warnings.warn(f"could not log the grid's summary plots: {e}", stacklevel=2)
        if warm_up is not None:  # started in the tail and maybe not needed: not left running
            warm_up.wait()  # into the interpreter's exit (done by now, as a rule)
    except BaseException as e:
        signals.stopping()  # a second signal does not cut the clean-up short
        status, stopped_by = "KILLED", signal_name(e)
        engine.stop()  # no worker trains on while the cells are marked
        writer.kill_running(e)
        raise
    finally:
        writer.stop_sampling()
        # the last checkpoints up (another machine may resume them) and finished ones deleted
        claims.checkpoints.upload_held_back()
        if not claims.checkpoints.wait(DRAIN_SECONDS if status == "FINISHED" else
                                       STOPPING_DRAIN_SECONDS):
            progress.note("some checkpoints were still uploading when the launch ended; the "
                          "files in the state directory are newer")
        report.checkpoint_uploads = claims.checkpoints.stats
        claims.stop_beating()
        end = lambda: _end_launch(recorder, report, writer, grid, status,
                                  cells_now, stopped_by)
        if status == "FINISHED":
            outbox.call(end)
        else:
            try:
                with signals.deferred():
                    end()
            except Exception as e:  # the server is still away: a later launch closes the run
                if not unreachable(e):
                    raise


def _study_best(recorder: Recorder, grid: Grid, cells=None):
    """The grid's best finished cell now, whichever launches trained it (None: none yet), from
    `cells` when the grid's figures already read them."""
    from ..results.frames import best_cell, cells_frame
    try:
        if cells is None:
            cells = cells_frame(grid=grid, tracking_uri=recorder.tracking_uri)
        return best_cell(cells)
    except Exception as e:  # noqa: BLE001 - the cells are recorded; the parent's line is extra
        warnings.warn(f"could not find the grid's best cell: {e}", stacklevel=2)
        return None


def _setting(given, section: dict, key: str, default):
    """An option given to the launch, else the grid file's section, else the default."""
    return given if given is not None else section.get(key, default)


def _end_launch(recorder: Recorder, report: LaunchReport, writer: Writer, grid: Grid,
                status: str, cells=None, stopped_by: str | None = None) -> None:
    counts = {"planned": report.planned, "skipped": report.skipped, "ran": report.ran,
              "failed": report.failed, "resumed": report.resumed, "elsewhere": report.elsewhere}
    if status != "KILLED":  # an interrupted launch closes its run at once
        report.best = _study_best(recorder, grid, cells)
    recorder.launch.end(report.parent_run_id,
                        "FAILED" if status == "FINISHED" and report.failed else status, counts,
                        writer.record_seconds, report.best, stopped_by)


def _prepare(grid: Grid, options: LaunchOptions):
    """Everything a launch checks and loads before it touches the store: the executor (a
    missing Ray extra or an unreachable cluster is an error at once), the devices, the data and
    the models' sizes; then the executor, not yet started."""
    executor = options.executor or grid.execution.get("executor")
    # workers and threads follow from the grid's size, not from what is left of it, so a cell
    # trains with the same threads (and gives the same numbers) whichever launch runs it
    planned = grid.planned()
    started_ray = False
    if executor == "ray":
        from ..executors.cluster import connect
        started_ray = connect(options.address or grid.execution.get("address"))
    else:
        from ..executors import choose_executor, warm_up
        if choose_executor(executor, planned) == "local":
            warm_up()  # the workers' fork server imports torch while the data is read
    try:
        if grid.search is not None:
            from ..plan.search import probe_cells
            cells = probe_cells(grid)  # the space's corners: enough to check data and models
        else:
            cells = grid.cells()
        check_devices(grid, cells)
        images = prepare_data(grid, cells, options.data_dir)  # data errors before the store is touched
        sizes = check_models(grid, cells, images)
        run_with = _execution(grid, cells, planned, options.executor, options.workers,
                              options.threads)
        from ..executors import make_executor
        engine = make_executor(run_with["executor"], images, run_with["workers"],
                               run_with["threads"], run_with.get("resources"))
    except BaseException:
        if started_ray:  # nothing of this launch runs on it yet
            from ..executors.cluster import disconnect
            disconnect()
        raise
    if started_ray:
        engine.owns_ray = True  # the launch started Ray: it stops it with its actors
    return cells, images, sizes, run_with, engine


def _execution(grid: Grid, cells: list[Cell], planned: int, executor: str | None,
               workers: int | None, threads: int | None) -> dict:
    """The executor, workers and threads of this launch: arguments, else the grid file's
    `execution:` section, else the defaults of `gridrun.executors` (and the inline executor
    when a single cell is to run: a worker process would only add its start)."""
    from ..executors import choose_executor, cpu_count, default_split
    from ..train.precision import select_device

    settings = dict(grid.execution)
    for key, value in (("executor", executor), ("workers", workers), ("threads", threads)):
        if value is not None:
            settings[key] = value
    if settings.get("executor") == "ray":  # Ray's actors: as many as fit in the cluster
        from ..executors.cluster import cluster_slots
        resources = dict(settings["resources"])
        if threads is not None:
            resources["cpus"] = threads
        settings["resources"] = resources
        if settings.get("workers", "auto") == "auto":
            settings["workers"] = max(1, min(planned, cluster_slots(resources)))
        settings["threads"] = max(1, int(resources["cpus"]))
        return settings
    devices = {select_device(c.config["train.device"]).type for c in cells}
    gpus = 0
    if "cuda" in devices:
        import torch
        gpus = torch.cuda.device_count()
    auto_workers, _ = default_split(max(planned, 1), "cuda" in devices, gpus)
    settings["executor"] = choose_executor(settings.get("executor"), planned)
    if settings["executor"] == "inline":
        settings["workers"] = 1
    if settings.get("workers", "auto") == "auto":
        settings["workers"] = auto_workers
    if settings.get("threads", "auto") == "auto":
        settings["threads"] = max(1, cpu_count() // settings["workers"])
    return settings
