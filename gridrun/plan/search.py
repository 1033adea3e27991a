"""`search: optuna` grids: an Optuna study whose trials are gridrun cells.

    fixed: {data.dataset: cifar10, model.name: simple_cnn}
    search:
      n_trials: 20
      sampler: tpe            # tpe | random (seeded with `seed`)
      pruner: median          # median | none: prunes on the per-epoch monitored value
      space:
        optim.lr: {low: 0.0001, high: 0.01, log: true}
        model.dropout: {low: 0.0, high: 0.5}
        data.batch_size: [32, 64, 128]

Each trial is trained and recorded exactly like a grid cell (a child run with the same params,
metrics, tags and artifacts, plus `gridrun.trial`), so `gridrun summary` works on it. The
objective is the best value of `train.monitor` (maximized for accuracies, minimized for losses).
With several workers, as many trials run at once: each is asked of the study when a worker is
free, so it sees every trial told before it.

The study lives in the state directory (`optuna.db`, Optuna's RDB storage on SQLite), so every
launch continues it: finished trials inform the sampler, and each launch runs `n_trials` new
ones. The sampler's seed is `seed` plus the number of trials already in the study, so a lone
relaunch is reproducible and proposes new points; a launch that starts while another launch of
the grid is alive adds its own random salt, so the two do not propose the same points. A trial
whose launch died (its run is stale or KILLED) is failed in the study and enqueued again with
the same parameters: the same cell id, so its run resumes from its checkpoint.

`OptunaPlan` is a `Plan` (`base.py`): it says which cell runs next and answers each epoch (the pruner);
the launch's executor decides where the trials run.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Iterator

import optuna
from optuna.trial import TrialState

from ..spec import config
from ..spec.config import monitor_mode
from ..spec.grid import Cell, Grid, format_value
from ..tracking import tags as T
from ..tracking.claims import Claims
from ..tracking.liveness import STALE_SECONDS, is_stale
from ..train.records import CellResult, EpochStats, Stop
from .base import CellList


def _settings(grid: Grid, suggested: dict) -> dict:
    return {**grid.fixed, **suggested, **grid.overrides}


def _cell(grid: Grid, suggested: dict, index: int) -> Cell:
    cfg = config.resolve(_settings(grid, suggested))
    config.check_cell(cfg, grid.path)
    axes = {key: format_value(value) for key, value in suggested.items() if key in cfg}
    return Cell(index=index, config=cfg, name=f"trial-{index:03d}", label=str(cfg["model.name"]),
                axes=axes, id=config.cell_id(cfg), config_id=config.cell_id(cfg, with_seed=False))


def probe_cells(grid: Grid) -> list[Cell]:
    """What a launch checks before a trial runs (data, model sizes against
    `model.max_params`, memory): the space's low and high corners, and every choice of every
    categorical key with the other keys low (a middle choice may be the largest model)."""
    space = grid.search.space
    low = {k: v["choices"][0] if "choices" in v else v["low"] for k, v in space.items()}
    high = {k: v["choices"][-1] if "choices" in v else v["high"] for k, v in space.items()}
    probes = [low, high]
    for key, spec in space.items():
        for choice in spec.get("choices", [])[1:-1]:
            probes.append({**low, key: choice})
    return [_cell(grid, settings, i) for i, settings in enumerate(probes)]


def _suggest(trial: optuna.Trial, space: dict) -> dict:
    values = {}
    for key, spec in space.items():
        if "choices" in spec:
            # Optuna's categorical values must be plain scalars: lists are chosen by position
            choices = spec["choices"]
            pick = trial.suggest_categorical(key, [format_value(c) for c in choices])
            values[key] = choices[[format_value(c) for c in choices].index(pick)]
        elif config.OPTIONS[key].kind == "int":
            values[key] = trial.suggest_int(key, spec["low"], spec["high"], log=spec["log"])
        else:
            values[key] = trial.suggest_float(key, spec["low"], spec["high"], log=spec["log"])
    return values


def make_study(grid: Grid, storage: str | None = None, salt: int = 0) -> optuna.Study:
    """The grid's study: in `storage` (continued when it exists), sampled with the grid's
    seed plus the number of trials already in it (plus `salt`), pruned as `search.pruner`
    says, or as `schedule:` says when it names one (`asha`, `hyperband`)."""
    spec = grid.search
    existing = 0
    if storage is not None:
        try:
            existing = len(optuna.load_study(study_name=grid.name, storage=storage).trials)
        except KeyError:
            existing = 0
    seed = (spec.seed + existing + salt) % 2**32
    monitor = _settings(grid, {}).get("train.monitor", config.OPTIONS["train.monitor"].default)
    mode = monitor_mode(monitor, _settings(grid, {}).get("train.mode", "auto"))
    sampler = (optuna.samplers.TPESampler(seed=seed) if spec.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    pruner = _pruner(grid)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=grid.name, sampler=sampler, pruner=pruner,
                               storage=storage, load_if_exists=True,
                               direction="maximize" if mode == "max" else "minimize")


def _pruner(grid: Grid) -> optuna.pruners.BasePruner:
    schedule = grid.schedule
    if schedule.name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=schedule.min_epochs, reduction_factor=schedule.reduction_factor)
    if schedule.name == "hyperband":
        max_epochs = _settings(grid, {}).get("train.max_epochs",
                                             config.OPTIONS["train.max_epochs"].default)
        return optuna.pruners.HyperbandPruner(min_resource=schedule.min_epochs,
                                              max_resource=max_epochs,
                                              reduction_factor=schedule.reduction_factor)
    if grid.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


class OptunaPlan(CellList):
    """The trials of one launch's Optuna study, as cells, with the pruner's per-epoch answer."""
    decides = True

    def __init__(self, grid: Grid, folder: Path | None = None, claims: Claims | None = None):
        self.grid = grid
        storage = f"sqlite:///{folder / 'optuna.db'}" if folder is not None else None
        salt = uuid.uuid4().int % 2**31 if claims is not None and claims.others_running() else 0
        self.study = make_study(grid, storage, salt)
        retried = self._retry_dead_trials(claims) if claims is not None else 0
        # n_trials new trials, plus those a dead launch left, which continue from checkpoints
        super().__init__([], grid.search.n_trials + retried)
        self.trials_to_run = self.planned
        self.trials: dict[int, optuna.Trial] = {}  # cell index (trial number) -> trial
        self.passed = 0

    def _retry_dead_trials(self, claims: Claims) -> int:
        """RUNNING trials of launches that died: told from their run when it finished, else
        failed and enqueued again (the same parameters, hence the same cell and run). Returns
        how many were enqueued."""
        retried = 0
        monitor = _settings(self.grid, {}).get("train.monitor",
                                               config.OPTIONS["train.monitor"].default)
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            cell_id = trial.user_attrs.get("gridrun.cell")
            runs = claims.ledger.cell_runs(cell_id) if cell_id else []
            if any(r.info.status == "RUNNING" and not is_stale(r) for r in runs):
                continue  # a live launch trains it
            if cell_id is None and time.time() - trial.datetime_start.timestamp() < STALE_SECONDS:
                continue  # just asked by a live launch, not yet claimed
            done = next((r for r in runs if r.info.status == "FINISHED"), None)
            try:
                if done is not None and monitor in done.data.metrics:
                    history = claims.ledger.metric_history(done.info.run_id, monitor)
                    self.study.tell(trial.number, max(history) if self.study.direction ==
                                    optuna.study.StudyDirection.MAXIMIZE else min(history))
                    continue
                self.study.tell(trial.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError):  # another launch told it first
                continue
            self.study.enqueue_trial(trial.params, user_attrs={"gridrun.retry_of": trial.number})
            retried += 1
        return retried

    @property
    def to_run(self) -> int:
        return self.trials_to_run

    def cells(self) -> Iterator[Cell]:
        """Trials asked one at a time, until `n_trials` of them were claimed by this launch."""
        asked = 0
        while asked - self.passed < self.to_run:
            trial = self.study.ask()
            cell = _cell(self.grid, _suggest(trial, self.grid.search.space), trial.number)
            trial.set_user_attr("gridrun.cell", cell.id)
            self.trials[cell.index] = trial
            asked += 1
            yield cell

    def passed_over(self, cell: Cell) -> None:
        """A trial whose cell another launch holds or finished: failed here, another asked."""
        self.passed += 1

    def tags(self, cell: Cell) -> dict[str, str]:
        return {T.TRIAL: str(cell.index)}

    def decide(self, cell: Cell, stats: EpochStats) -> Stop | None:
        monitor = cell.config["train.monitor"]
        value = getattr(stats, monitor)
        trial = self.trials[cell.index]
        trial.report(value, stats.epoch)
        if trial.should_prune():
            pruner = self.study.pruner.__class__.__name__
            return Stop("pruned", f"pruned at epoch {stats.epoch} by Optuna's {pruner} "
                                  f"({monitor} {value:.4f})")
        return None

    def done(self, cell: Cell, result: CellResult | None) -> None:
        trial = self.trials.pop(cell.index)
        mode = monitor_mode(cell.config["train.monitor"], cell.config["train.mode"])
        # the whole history: a resumed trial trained its first epochs in an earlier launch
        seen = [getattr(s, cell.config["train.monitor"]) for s in result.history] if result else []
        if result is None or not seen:
            self.study.tell(trial, state=TrialState.FAIL)
        elif result.outcome == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, max(seen) if mode == "max" else min(seen))
