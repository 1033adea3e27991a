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
Every launch runs `n_trials` new trials.
"""
from __future__ import annotations

import optuna

from . import config
from .execute import LaunchReport, Progress, run_cell
from .grid import Cell, Grid, _format_value
from .tracking import Tracker
from .train import StopTraining, monitor_mode


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


def run_trials(tracker: Tracker, experiment_id: str, report: LaunchReport, grid: Grid,
               images: dict, progress: Progress) -> optuna.Study:
    study = make_study(grid)
    for number in range(grid.search.n_trials):
        trial = study.ask()
        cell = _cell(grid, _suggest(trial, grid.search.space), number)
        monitor = cell.config["train.monitor"]
        mode = monitor_mode(monitor, cell.config["train.mode"])
        seen: list[float] = []

        def report_epoch(stats, trial=trial, monitor=monitor, seen=seen) -> None:
            value = getattr(stats, monitor)
            seen.append(value)
            trial.report(value, stats.epoch)
            if trial.should_prune():
                raise StopTraining("pruned", f"pruned by Optuna's median pruner at epoch "
                                             f"{stats.epoch} ({monitor} {value:.4f})")

        result = run_cell(tracker, experiment_id, report, grid, cell, images, progress,
                          number + 1, grid.search.n_trials, epoch_hook=report_epoch)
        run_id = next(reversed(report.outcomes))
        tracker.client.set_tag(run_id, "gridrun.trial", str(number))
        if result is None or not seen:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif result.outcome == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, max(seen) if mode == "max" else min(seen))
    return study
