"""Run a grid: check everything, plan the cells, let an executor train them, record every event.

    validate (data, model sizes, precision) -> plan (grid cells or Optuna trials)
        -> executor.run(plan) yields events -> this process records each one (the one writer)

Training (`gridrun.train`) knows nothing of MLflow; tracking (`gridrun.tracking`) knows nothing
of training loops; executors (`gridrun.executors`) know where cells run and nothing of either
MLflow or plans. This module joins them.
"""
from __future__ import annotations

import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .backbones import check_weights
from .data import ImageSet, check_sizes, dataset_key, load_dataset
from .errors import GridError
from .events import (CellFailed, CellFinished, CellResult, CellStarted, EpochDone, LaunchReport,
                     Progress, SilentProgress)
from .claims import Claim, ClaimedCells, Claims, check_state_root, state_folder, state_root
from .grid import Cell, Grid, with_schedule
from .inputs import dataset_inputs
from .system_metrics import WorkerSampler
from .tracking import Recorder, check_tracking_uri

__all__ = ["launch", "LaunchReport", "GridPlan", "prepare_data", "check_models"]


def prepare_data(grid: Grid, cells: list[Cell], data_dir: str | None) -> dict[tuple, ImageSet]:
    """Load every dataset the grid uses and check every subset size, before any run exists."""
    images: dict[tuple, ImageSet] = {}
    for cell in cells:
        cfg = cell.config
        key = dataset_key(cfg)
        if key not in images:
            images[key] = load_dataset(key[0], data_dir, key[1])
        check_sizes(images[key], cfg["data.val_fraction"], cfg["data.train_size"],
                    cfg["data.test_size"], grid.path, cfg["data.val_size"])
    return images


def check_devices(grid: Grid, cells: list[Cell]) -> None:
    """Every `train.device` of the grid exists on this machine (before any data is read)."""
    from .train.precision import check_device

    for device in sorted({c.config["train.device"] for c in cells}):
        problem = check_device(device)
        if problem:
            raise GridError(f"train.device: {problem}", grid.path)


def _available_bytes() -> int:
    """Physical memory of this machine (the CPU's; a GPU's when training there is checked by
    CUDA itself)."""
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _model_cost(cfg: dict, dataset: ImageSet, where: str) -> int:
    """The cell's parameter count, from its model built on PyTorch's `meta` device (shapes, no
    memory), and a shape-only forward pass: a model that cannot run on the configured image size
    (a kernel larger than the image) or that would need more memory than this machine has (a
    million filters, `image_size: 100000`) is refused here, before any run exists. A builder
    that needs real tensors is built on the CPU instead."""
    import torch

    from .models import count_params
    from .train import build_cell_model

    channels, stored, _ = dataset.image_shape
    size = cfg["data.image_size"] or stored
    cfg = {**cfg, "model.pretrained": False} if cfg.get("model.pretrained") else cfg
    name = cfg["model.name"]

    def refuse(e: Exception) -> GridError:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        return GridError(f"{name} cannot run on {channels}x{size}x{size} images ({reason}); "
                         "allowed: a larger data.image_size or a smaller model", where)

    device = "meta"
    try:
        with torch.device(device):
            model = build_cell_model(cfg, dataset.num_classes, channels, size)
    except GridError:
        raise
    except Exception:  # noqa: BLE001 - a builder that needs real tensors: build it for real
        device = "cpu"
        try:
            model = build_cell_model(cfg, dataset.num_classes, channels, size)
        except GridError:
            raise
        except Exception as e:  # noqa: BLE001
            raise refuse(e) from None
    params = count_params(model)[0]
    outputs: list[int] = []
    hooks = [m.register_forward_hook(
        lambda _m, _i, out: outputs.append(out.numel()) if isinstance(out, torch.Tensor) else None)
        for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, size, size, device=device))
    except Exception as e:  # noqa: BLE001 - say which model and size; the first line says why
        raise refuse(e) from None
    finally:
        for hook in hooks:
            hook.remove()
    # training holds weights, gradients and up to two optimizer states (4 x fp32 per
    # parameter) and every layer's output for the backward pass, with its gradient (2 x fp32
    # per activation value, per image of a batch)
    need = 16 * params + 8 * sum(outputs) * cfg["data.batch_size"]
    have = _available_bytes()
    if need > have:
        raise GridError(f"{name} at {size}x{size} with batch {cfg['data.batch_size']} would need "
                        f"about {need / 2**30:,.1f} GiB to train ({params:,} parameters); this "
                        f"machine has {have / 2**30:,.1f} GiB; allowed: a smaller model, image "
                        "size or batch", where)
    return params


def check_models(grid: Grid, cells: list[Cell], images: dict[tuple, ImageSet]) -> dict[int, int]:
    """Pretrained weights present, `model.max_params` respected and `train.precision` native
    on the device, for every cell, before any run exists. Returns each cell's parameter count
    (keyed by cell index): each distinct model is built once."""
    from .train import check_precision

    counted: dict[str, int] = {}
    sizes: dict[int, int] = {}
    for cell in cells:
        cfg = cell.config
        if cfg.get("model.pretrained"):
            try:
                check_weights(cfg["model.name"])
            except GridError as e:
                raise GridError(f"cell {cell.name}: {e}", grid.path) from None
        problem = check_precision(cfg["train.precision"], cfg["train.device"])
        if problem:
            raise GridError(f"train.precision: {problem}", grid.path)
        dataset = images[dataset_key(cfg)]
        channels = dataset.image_shape[0]
        model_keys = {k: v for k, v in cfg.items() if k.startswith("model.")}
        key = repr(sorted(model_keys.items())) + repr((dataset.num_classes, channels))
        key += repr((cfg["data.image_size"], cfg["data.batch_size"]))
        if key not in counted:
            counted[key] = _model_cost(cfg, dataset, f"{grid.path}: cell {cell.name}")
        sizes[cell.index] = counted[key]
        limit = cfg.get("model.max_params")
        if limit is not None and counted[key] > limit:
            raise GridError(f"cell {cell.name}: {cfg['model.name']} has {counted[key]:,} "
                            f"parameters, more than model.max_params={limit:,}", grid.path)
    return sizes


class GridPlan:
    """The cells of a grid to run (longest first), with no per-epoch decisions. A planner
    says what runs next and may decide per epoch (`gridrun.search.OptunaPlan`); an executor
    says where."""
    decide = None

    def __init__(self, todo: list[Cell], planned: int):
        self.todo, self.planned = todo, planned

    @property
    def to_run(self) -> int:
        return len(self.todo)

    def cells(self) -> Iterator[Cell]:
        return iter(self.todo)

    def tags(self, cell: Cell) -> dict[str, str]:
        return {}

    def done(self, cell: Cell, result: CellResult | None) -> None:
        pass

    def passed_over(self, cell: Cell) -> None:
        pass


def _grid_plan(grid: Grid, cells: list[Cell], todo: list[Cell], store, experiment_id: str):
    """All of `todo` to the end (`schedule: all`), or ASHA over them, its rungs replayed from
    every cell's history in the store (earlier launches' cells count at their rungs)."""
    if grid.schedule.name != "asha":
        return GridPlan(todo, len(cells))
    from .schedule import AshaPlan
    by_id = {c.id: c.config for c in cells}
    histories = store.histories(experiment_id, {i: cfg["train.monitor"] for i, cfg in
                                                by_id.items()})
    return AshaPlan(todo, len(cells), grid.schedule,
                    {i: (by_id[i], values) for i, values in histories.items()})


def longest_first(cells: list[Cell], images: dict[tuple, ImageSet],
                  sizes: dict[int, int]) -> list[Cell]:
    """Cells by estimated cost, largest first (grid order among equals), so the last cells of
    a launch are short ones and no worker idles while one long cell finishes. The estimate:
    training images x max epochs x pixels x sqrt(parameters)."""
    def cost(cell: Cell) -> float:
        cfg = cell.config
        dataset = images[dataset_key(cfg)]
        n = cfg["data.train_size"] or len(dataset.train_y)
        side = cfg["data.image_size"] or dataset.image_shape[1]
        return n * cfg["train.max_epochs"] * side * side * max(sizes.get(cell.index, 1), 1) ** 0.5
    return sorted(cells, key=cost, reverse=True)


def launch(grid: Grid, data_dir: str | None = None, tracking_uri: str | None = None,
           rerun: bool = False, progress: Progress | None = None, executor: str | None = None,
           workers: int | None = None, threads: int | None = None,
           log_model: str | None = None, figures: str | None = None,
           state_dir: str | None = None, retries: int | None = None,
           keep_checkpoints: bool | None = None, address: str | None = None,
           schedule: str | None = None) -> LaunchReport:
    """Train every cell of `grid` not yet finished in its experiment; record each as a child run.

    Safe to run again at any time, and beside other launches of the same grid: cells another
    live launch trains are left to it, and cells a dead or interrupted launch left are resumed
    from their last epoch's checkpoint into their own run (`gridrun.claims`). Checkpoints live
    under `state_dir` (default: `.gridrun/` beside a SQLite store, else in the working
    directory) and are removed once their cell's run is FINISHED, unless `keep_checkpoints`.
    A cell that raises is tried again from its checkpoint up to `retries` times.

    A grid with `search:` runs an Optuna study instead (`gridrun.search`): each trial is a child
    run like a cell, and every launch runs `n_trials` new trials of a study kept in the state
    directory. `executor`, `workers`, `threads`, `retries`, `log_model`, `figures`,
    `keep_checkpoints` and `address` (a Ray cluster's) override the grid file's `execution:`
    and `track:` sections; `schedule` (`all`, `asha`, `hyperband`) its `schedule:`.
    """
    grid = with_schedule(grid, schedule)
    progress = progress or SilentProgress()
    check_tracking_uri(tracking_uri)  # before anything is decoded or created
    cells, images, sizes, run_with, engine = _prepare(grid, data_dir, executor, workers, threads,
                                                       address)
    engine.start()  # the workers map the data while the store is read and set up
    try:
        recorder = Recorder(tracking_uri)
        root = state_root(recorder.tracking_uri, state_dir)
        check_state_root(root)
        experiment_id = recorder.experiment_id(grid.name)
        folder = state_folder(root, recorder.tracking_uri, experiment_id, grid.name)
        claims = Claims(recorder, experiment_id, grid, folder, rerun)
        claims.close_stale_launches()
        elsewhere = 0
        if grid.search is not None:
            from .search import OptunaPlan
            plan = OptunaPlan(grid, folder, claims)
        else:
            finished = set() if rerun else recorder.store.finished_cells(experiment_id)
            busy = claims.busy_elsewhere() - finished
            elsewhere = sum(c.id in busy for c in cells)
            todo = longest_first([c for c in cells if c.id not in finished | busy], images,
                                 sizes)
            plan = _grid_plan(grid, cells, todo, recorder.store, experiment_id)
    except BaseException:
        engine.stop()
        raise
    warm_up_recording = None
    if run_with["executor"] != "inline":  # never beside training in this process: tracing
        warm_up_recording = threading.Thread(target=_import_recording_code, daemon=True)
        warm_up_recording.start()  # touches torch's global state
    report = LaunchReport(experiment_id, None, plan.planned,
                          plan.planned - plan.to_run - elsewhere,
                          tracking_uri=recorder.tracking_uri,
                          workers=min(run_with["workers"], plan.to_run), elsewhere=elsewhere,
                          state_dir=str(folder))
    progress.launch_started(grid, plan.to_run, report.skipped, report.workers)
    if not plan.to_run:
        engine.stop()
        return report
    try:
        report.parent_run_id = recorder.start_launch(experiment_id, grid, plan.to_run,
                                                     claims.launch_tags())
    except BaseException:
        engine.stop()
        raise
    claims.parent_run_id = report.parent_run_id
    claims.start_beating()
    writer = _Writer(recorder, experiment_id, report, grid, images, progress,
                     log_model or grid.track.get("log_model", "best"),
                     figures or grid.track.get("figures", "best"), plan, claims,
                     retries if retries is not None else grid.execution.get("retries", 0),
                     keep_checkpoints if keep_checkpoints is not None
                     else grid.track.get("keep_checkpoints", False), warm_up_recording,
                     _sampler(recorder, grid.track.get("system_metrics", 10)), engine.local_pid)
    writer.source = ClaimedCells(plan.cells(), claims, writer.passed_over)
    status = "FINISHED"
    try:
        for event in engine.run(writer.source, plan.decide, claims.checkpoint_for):
            writer.handle(event)
        writer.record_best()
        try:
            record_grid(recorder, report.parent_run_id, grid)
        except Exception as e:  # noqa: BLE001 - the cells are recorded; the plots are extras
            warnings.warn(f"could not log the grid's summary plots: {e}")
    except BaseException as e:
        status = "KILLED"
        engine.stop()
        writer.kill_running(e)
        raise
    finally:
        writer.stop_sampling()
        claims.stop_beating()
        counts = {"planned": report.planned, "skipped": report.skipped, "ran": report.ran,
                  "failed": report.failed, "resumed": report.resumed,
                  "elsewhere": report.elsewhere}
        seconds = writer.record_seconds
        costs = {"record_seconds_mean": sum(seconds) / len(seconds),
                 "record_seconds_max": max(seconds)} if seconds else {}
        recorder.end_launch(report.parent_run_id,
                            "FAILED" if status == "FINISHED" and report.failed else status, counts,
                            costs)
    report.extra["record_seconds"] = writer.record_seconds
    return report


def _prepare(grid: Grid, data_dir: str | None, executor: str | None, workers: int | None,
             threads: int | None, address: str | None):
    """Everything a launch checks and loads before it touches the store: the executor (a
    missing Ray extra or an unreachable cluster is an error at once), the devices, the data and
    the models' sizes; then the executor, not yet started."""
    executor = executor or grid.execution.get("executor")
    started_ray = False
    if executor == "ray":
        from .executors.cluster import connect
        started_ray = connect(address or grid.execution.get("address"))
    elif executor != "inline":
        from .executors import warm_up
        warm_up()  # the workers' fork server imports torch while the data is read
    try:
        if grid.search is not None:
            from .search import probe_cells
            cells = probe_cells(grid)  # the space's corners: enough to check data and models
        else:
            cells = grid.cells()
        check_devices(grid, cells)
        images = prepare_data(grid, cells, data_dir)  # data errors before the store is touched
        sizes = check_models(grid, cells, images)
        # workers and threads follow from the grid's size, not from what is left of it, so a
        # cell trains with the same threads (and gives the same numbers) whichever launch runs it
        planned = grid.search.n_trials if grid.search is not None else len(cells)
        run_with = _execution(grid, cells, planned, executor, workers, threads)
        from .executors import make_executor
        engine = make_executor(run_with["executor"], images, run_with["workers"],
                               run_with["threads"], run_with.get("resources"))
    except BaseException:
        if started_ray:  # nothing of this launch runs on it yet
            from .executors.cluster import disconnect
            disconnect()
        raise
    if started_ray:
        engine.owns_ray = True  # the launch started Ray: it stops it with its actors
    return cells, images, sizes, run_with, engine


def _import_recording_code() -> None:
    """Pay, while the workers train, the one-time costs of recording that would otherwise fall
    on the first or the best cell's recording at the end of the launch (about three seconds):
    importing matplotlib, MLflow's pytorch flavor and torch.export, MLflow's map of installed
    packages (read when a model's requirements are checked) and torch.export's first trace."""
    try:
        import mlflow.pytorch  # noqa: F401
        import torch
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        from . import reports  # noqa: F401

        warn_dependency_requirement_mismatches([f"torch=={torch.__version__.split('+')[0]}"])
        torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),))
    except Exception:  # noqa: BLE001 - only a head start: the real calls report any error
        pass


def _execution(grid: Grid, cells: list[Cell], planned: int, executor: str | None,
               workers: int | None, threads: int | None) -> dict:
    """The executor, workers and threads of this launch: arguments, else the grid file's
    `execution:` section, else the defaults of `gridrun.executors` (and the inline executor
    when a single cell is to run: a worker process would only add its start)."""
    from .executors import cpu_count, default_split
    from .train import select_device

    settings = dict(grid.execution)
    for key, value in (("executor", executor), ("workers", workers), ("threads", threads)):
        if value is not None:
            settings[key] = value
    if settings.get("executor") == "ray":  # Ray's actors: as many as fit in the cluster
        from .executors.cluster import cluster_slots
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
    if settings.get("executor", "auto") == "auto":  # one cell: no process to start for it
        settings["executor"] = "inline" if planned == 1 else "local"
    if settings["executor"] == "inline":
        settings["workers"] = 1
    if settings.get("workers", "auto") == "auto":
        settings["workers"] = auto_workers
    if settings.get("threads", "auto") == "auto":
        settings["threads"] = max(1, cpu_count() // settings["workers"])
    return settings


@dataclass
class _Writer:
    """The one writer of a launch: turns the executor's events into MLflow writes and progress.
    Runs in the launching process; worker processes never open the store. Each cell's run was
    created (or taken over) when the cell was claimed; the writer fills it."""
    recorder: Recorder
    experiment_id: str
    report: LaunchReport
    grid: Grid
    images: dict[tuple, ImageSet]
    progress: Progress
    log_model: str  # all | best | none
    figures: str  # all | best | none
    plan: object
    claims: Claims
    retries: int = 0
    keep_checkpoints: bool = False
    warm_up: threading.Thread | None = None  # _import_recording_code, running meanwhile
    sampler: WorkerSampler | None = None  # each running cell's worker: CPU, memory, GPU
    local_pid: Callable[[int], int | None] = lambda worker: None  # the executor's
    source: ClaimedCells | None = None
    started: int = 0
    best: tuple | None = None  # (test_acc, run_id, result, cell) of the best finished cell
    record_seconds: list[float] = field(default_factory=list)

    def handle(self, event) -> None:
        cell = event.cell
        claim = self.claims.held[cell.index]
        if isinstance(event, CellStarted):
            if claim.tries == 0:
                self.started += 1
                if claim.resumed:
                    self.report.resumed += 1
                images = self.images[dataset_key(cell.config)]
                self.recorder.set_tags(claim.run_id, {"gridrun.data_source": images.source,
                                                      **self.plan.tags(cell)})
                self.recorder.log_inputs(claim.run_id, dataset_inputs(cell.config, images))
            pid = self.local_pid(event.worker)
            if self.sampler is not None and pid:  # (again on a retry's new worker)
                self.sampler.watch(claim.run_id, pid)
            self.progress.cell_started(self.started, cell, event.worker, claim.from_epoch)
        elif isinstance(event, EpochDone):
            if event.stats.epoch not in claim.logged:  # a resumed cell logs no step twice
                self.recorder.log_epoch(claim.run_id, event.stats)
                claim.logged.add(event.stats.epoch)
            self.progress.epoch_done(cell, event.stats, event.worker)
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

    def finished(self, claim: Claim, result: CellResult) -> None:
        cell, run_id = claim.cell, claim.run_id
        self.stop_sampling(run_id)
        if not self.claims.owns(run_id):  # stalled past the stale timeout and taken over
            self.claims.release(cell)
            self.plan.done(cell, None)
            self.progress.cell_done(cell, "elsewhere", "taken over by another launch")
            return
        t0 = time.perf_counter()
        try:
            for stats in result.history:  # epochs a killed launch never logged (its worker
                if stats.epoch not in claim.logged:  # checkpointed them): from the checkpoint
                    self.recorder.log_epoch(run_id, stats)
                    claim.logged.add(stats.epoch)
            if self.log_model == "all":
                self.warmed_up()
            self.claims.release(cell)
            record_result(self.recorder, self.experiment_id, run_id, cell, result,
                          with_model=self.log_model == "all", figures=self.figures == "all")
        except Exception as e:  # noqa: BLE001 - e.g. a full disk: this cell fails, others go on
            self.recorder.fail_cell(run_id, f"recording the result: {e.__class__.__name__}: {e}")
            self.report.outcomes[run_id] = "failed"
            self.plan.done(cell, None)
            self.progress.cell_done(cell, "failed", f"recording the result: {e}")
            return
        if not self.keep_checkpoints:
            self.claims.checkpoint_path(cell).unlink(missing_ok=True)
        self.record_seconds.append(time.perf_counter() - t0)
        if "best" in (self.log_model, self.figures) and (
                self.best is None or result.test_acc > self.best[0]):
            self.best = (result.test_acc, run_id, result, cell)
        self.report.outcomes[run_id] = result.outcome
        self.plan.done(cell, result)
        self.progress.cell_done(cell, result.outcome, _describe(result))

    def failed(self, claim: Claim, error: str, trace: str) -> None:
        cell, run_id = claim.cell, claim.run_id
        self.stop_sampling(run_id)
        claim.tries += 1
        again = claim.tries <= self.retries
        self.recorder.set_tags(run_id, {f"gridrun.error.{claim.tries}": error[:5000]})
        if trace:  # each try's traceback is kept; the last one is error.txt
            self.recorder.log_artifact_text(
                run_id, trace, f"error-try-{claim.tries}.txt" if again else "error.txt")
        if again:  # from the last epoch's checkpoint
            self.progress.cell_done(cell, "retrying",
                                    f"try {claim.tries}/{self.retries + 1} failed: {error}")
            self.source.retry(cell)
            return
        self.claims.release(cell, keep_checkpoint=False)  # a relaunch starts a FAILED cell over
        self.recorder.fail_cell(run_id, error)
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
        best cell (by test accuracy, as the summary's bold row), once its rivals have finished."""
        if self.best is None:
            return
        _, run_id, result, cell = self.best
        if self.figures == "best":
            from .reports import cell_figures
            with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
                cell_figures(result, Path(folder), title=cell.name)
                self.recorder.log_files(run_id, Path(folder))
        if self.log_model == "best" and result.model is not None:
            self.warmed_up()
            self.recorder.log_model(self.experiment_id, run_id, result.model,
                                    result.example_input, cell.name, cell.config)
        self.recorder.set_tags(run_id, {"gridrun.best_of_launch": self.report.parent_run_id})

    def warmed_up(self) -> None:
        """Wait for the warm-up thread before exporting a model: torch.export keeps global
        state, and two exports at once in one process break each other."""
        if self.warm_up is not None:
            self.warm_up.join()
            self.warm_up = None

    def kill_running(self, why: BaseException) -> None:
        """An interrupted launch (Ctrl-C, or an error of the launch itself, e.g. its output
        closed): the cells in progress end KILLED with their checkpoints kept, so the same
        command resumes them from their last epoch."""
        self.stop_sampling()
        for claim in list(self.claims.held.values()):
            self.claims.release(claim.cell)
            try:
                self.recorder.fail_cell(claim.run_id, f"{why.__class__.__name__}: the launch was "
                                        "interrupted; the same command resumes the cell",
                                        status="KILLED")
            except Exception:  # noqa: BLE001 - recording what we can while stopping
                pass


def _sampler(recorder: Recorder, interval: float) -> WorkerSampler | None:
    return WorkerSampler(recorder.client, interval) if interval else None


def record_result(recorder: Recorder, experiment_id: str, run_id: str, cell: Cell,
                  result: CellResult, with_model: bool = True, figures: bool = True) -> None:
    """A trained cell's reports and (optionally) figures and model, then its final metrics and
    outcome. The run is marked FINISHED last, so a crash while logging leaves it unfinished
    and a relaunch trains the cell again rather than trusting half its artifacts."""
    from .reports import cell_reports

    with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
        cell_reports(result, Path(folder), title=cell.name, figures=figures)
        recorder.log_files(run_id, Path(folder))
    model_id = None
    if with_model and result.model is not None and result.example_input is not None:
        model_id = recorder.log_model(experiment_id, run_id, result.model, result.example_input,
                                      cell.name, cell.config)
    if result.device:
        recorder.set_tags(run_id, {"gridrun.device": result.device})
    recorder.finish_cell(run_id, result, cell, model_id)


def record_grid(recorder: Recorder, parent_run_id: str, grid: Grid) -> None:
    """The grid-level figures and the results table, on the launch's parent run."""
    from .reports import grid_plots
    from .summary import cells_frame, factor_levels, factors, render, tabulate

    cells = cells_frame(grid=grid, tracking_uri=recorder.tracking_uri)
    levels = {f: factor_levels(cells, f) for f in factors(cells)}
    with tempfile.TemporaryDirectory(prefix="gridrun-") as folder:
        grid_plots(cells, levels, Path(folder))
        (Path(folder) / "summary.md").write_text(
            render(tabulate(cells), "markdown"))
        recorder.log_files(parent_run_id, Path(folder))


def _describe(result: CellResult) -> str:
    if result.outcome == "pruned":  # what it was cut for, not a score it was never ranked on
        last = result.history[-1].val_acc if result.history else float("nan")
        return (f"at epoch {result.epochs_run}, val_acc {last:.4f}, "
                f"{result.duration_s:.1f}s")
    return (f"test_acc {result.test_acc:.4f}, best epoch {result.epochs_needed}/"
            f"{result.epochs_run}, {result.duration_s:.1f}s")
