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
Every launch runs `n_trials` new trials. With several workers, as many trials run at once:
each is asked of the study when a worker is free, so it sees every trial told before it.

`OptunaPlan` is a planner: it says which cell runs next and answers each epoch (the pruner);
the launch's executor decides where the trials run.
"""
from __future__ import annotations

from typing import Iterator

import optuna

from . import config
from .events import CellResult, EpochStats, Stop
from .grid import Cell, Grid, _format_value
from .train.recipe import monitor_mode


def _settings(grid: Grid, suggested: dict) -> dict:
    return {**grid.fixed, **suggested, **grid.overrides}


def _cell(grid: Grid, suggested: dict, index: int) -> Cell:
    cfg = config.resolve(_settings(grid, suggested))
    config.check_cell(cfg, grid.path)
    axes = {key: _format_value(value) for key, value in suggested.items() if key in cfg}
    return Cell(index=index, config=cfg, name=f"trial-{index:03d}", label=str(cfg["model.name"]),
                axes=axes, id=config.cell_id(cfg), config_id=config.cell_id(cfg, with_seed=False))


def probe_cells(grid: Grid) -> list[Cell]:
    """The search space's low and high corners: enough to check data and model size up front."""
    space = grid.search.space
    low = {k: v["choices"][0] if "choices" in v else v["low"] for k, v in space.items()}
    high = {k: v["choices"][-1] if "choices" in v else v["high"] for k, v in space.items()}
    return [_cell(grid, low, 0), _cell(grid, high, 1)]


def _suggest(trial: optuna.Trial, space: dict) -> dict:
    values = {}
    for key, spec in space.items():
        if "choices" in spec:
            # Optuna's categorical values must be plain scalars: lists are chosen by position
            choices = spec["choices"]
            pick = trial.suggest_categorical(key, [_format_value(c) for c in choices])
            values[key] = choices[[_format_value(c) for c in choices].index(pick)]
        elif config.OPTIONS[key].kind == "int":
            values[key] = trial.suggest_int(key, spec["low"], spec["high"], log=spec["log"])
        else:
            values[key] = trial.suggest_float(key, spec["low"], spec["high"], log=spec["log"])
    return values


def make_study(grid: Grid) -> optuna.Study:
    spec = grid.search
    monitor = _settings(grid, {}).get("train.monitor", config.OPTIONS["train.monitor"].default)
    mode = monitor_mode(monitor, _settings(grid, {}).get("train.mode", "auto"))
    sampler = (optuna.samplers.TPESampler(seed=spec.seed) if spec.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=spec.seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
              if spec.pruner == "median" else optuna.pruners.NopPruner())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=grid.name, sampler=sampler, pruner=pruner,
                               direction="maximize" if mode == "max" else "minimize")


class OptunaPlan:
    """The trials of one launch's Optuna study, as cells, with the pruner's per-epoch answer."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.study = make_study(grid)
        self.planned = self.to_run = grid.search.n_trials
        self.trials: dict[int, optuna.Trial] = {}  # cell index (trial number) -> trial
        self.seen: dict[int, list[float]] = {}  # the monitored value of each epoch

    def cells(self) -> Iterator[Cell]:
        for _ in range(self.to_run):
            trial = self.study.ask()
            cell = _cell(self.grid, _suggest(trial, self.grid.search.space), trial.number)
            self.trials[cell.index], self.seen[cell.index] = trial, []
            yield cell

    def tags(self, cell: Cell) -> dict[str, str]:
        return {"gridrun.trial": str(cell.index)}

    def decide(self, cell: Cell, stats: EpochStats) -> Stop | None:
        monitor = cell.config["train.monitor"]
        value = getattr(stats, monitor)
        trial = self.trials[cell.index]
        self.seen[cell.index].append(value)
        trial.report(value, stats.epoch)
        if trial.should_prune():
            return Stop("pruned", f"pruned by Optuna's median pruner at epoch {stats.epoch} "
                                  f"({monitor} {value:.4f})")
        return None

    def done(self, cell: Cell, result: CellResult | None) -> None:
        trial, seen = self.trials.pop(cell.index), self.seen.pop(cell.index)
        mode = monitor_mode(cell.config["train.monitor"], cell.config["train.mode"])
        if result is None or not seen:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif result.outcome == "pruned":
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, max(seen) if mode == "max" else min(seen))
