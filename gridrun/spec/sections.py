"""The sections of a grid file beside its cells: `search:`, `schedule:`, `execution:` and
`track:` (how a launch runs and records the cells: none of them is part of any cell, so none
changes a cell's id), and `seeds:`.

    search: {n_trials: 20, sampler: tpe, space: {optim.lr: {low: 1e-4, high: 1e-2, log: true}}}
    schedule: {name: asha, min_epochs: 1, reduction_factor: 8, within_se: 0, promote: true}
    execution: {executor: local, workers: 2, threads: 1, retries: 0, resources: {cpus: 1, gpus: 0}}
    track: {log_model: best, figures: best, keep_checkpoints: false, system_metrics: 10}

Each parser takes the raw YAML value and the place it came from, and returns checked settings
or raises a `GridError` naming the key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import GridError
from . import config
from .safe_yaml import quoted

MAX_CELLS = 10_000  # a grid (or a search) larger than this is refused rather than attempted
# how a launch runs and records the cells (not part of any cell: they change no result)
EXECUTION = {"executor": ("auto", "local", "inline", "ray"), "workers": "auto", "threads": "auto",
             "retries": 0, "address": str, "resources": {"cpus": 1, "gpus": 0}}
# system_metrics: seconds between samples of each cell's worker (0: none)
# outage_limit: seconds a launch waits out an unreachable tracking server (gridrun.launch.outbox)
TRACK = {"log_model": ("best", "all", "none"), "figures": ("best", "all", "none"),
         "keep_checkpoints": False, "upload_checkpoints": True, "system_metrics": 10,
         "outage_limit": 300}
# what each of those keys does, for `gridrun keys` and the docs' key reference
SECTION_DOCS = {
    "execution.executor": "where cells train: local (worker processes), inline (this process, "
                          "for debugging), ray (actors on a Ray cluster); auto: local, or inline "
                          "for a single cell",
    "execution.workers": "cells trained at once (auto: one single-thread worker per CPU core, one "
                         "per GPU)",
    "execution.threads": "torch threads of each worker (auto: cores // workers)",
    "execution.retries": "tries again, from its last checkpoint, a cell that raised or whose "
                         "worker died, before recording it FAILED",
    "execution.address": "the Ray cluster to join (auto, or HEAD:6379); none: a local Ray "
                         "instance of the launch's own",
    "execution.resources": "what each cell asks of a Ray cluster: {cpus, gpus} (gpus 0.25: four "
                           "cells share a GPU)",
    "track.log_model": "log the model of the launch's best cell, of every cell, or of none",
    "track.figures": "draw curves and confusion matrices for the best cell, every cell, or none",
    "track.keep_checkpoints": "keep a cell's checkpoint after its run is FINISHED",
    "track.upload_checkpoints": "with a tracking server, upload each epoch's checkpoint to the "
                                "cell's run, so a launch on any machine resumes it (false: "
                                "only the state directory has them)",
    "track.system_metrics": "seconds between samples of each cell's worker: CPU, memory, GPU "
                            "(0: none)",
    "track.outage_limit": "seconds a launch waits out an unreachable tracking server, keeping "
                          "its records, before it stops",
    "schedule.name": "all: train every cell to its end; asha: successive halving at rungs "
                     "min_epochs * reduction_factor^k; hyperband: Optuna's, for search: grids",
    "schedule.min_epochs": "the first rung's epoch (r)",
    "schedule.reduction_factor": "the top 1/eta of the cells at a rung go on (eta)",
    "schedule.within_se": "a cell within this many standard errors of the last cell that goes "
                          "on at a rung goes on too: val_acc's binomial error on the validation "
                          "images, else the spread of the cell's last 3 epochs (0: rank alone)",
    "schedule.promote": "true: a cell that does not rank at a rung yet waits there (paused, its "
                        "checkpoint kept) and goes on once it ranks among the cells that "
                        "reached the rung since, as in Li et al.'s ASHA; false: it stops at "
                        "once, as in Ray Tune's ASHAScheduler",
}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
SCHEDULES = ("all", "asha", "hyperband")  # hyperband: searches only
SCHEDULE_DEFAULTS = {"min_epochs": 1, "reduction_factor": 8, "within_se": 0.0, "promote": True}
SCHEDULE_LEAST = {"min_epochs": 1, "reduction_factor": 2, "within_se": 0}  # the least each takes


@dataclass(frozen=True)
class Schedule:
    """`schedule:` how much of each cell to train: `all` to its end, or ASHA's rungs (its
    runtime, the rung records and decisions, is `gridrun.plan.asha`'s)."""
    name: str = "all"
    min_epochs: int = SCHEDULE_DEFAULTS["min_epochs"]
    reduction_factor: int = SCHEDULE_DEFAULTS["reduction_factor"]
    within_se: float = SCHEDULE_DEFAULTS["within_se"]  # the noise rule's k (0: off)
    promote: bool = SCHEDULE_DEFAULTS["promote"]  # pause at a rung and wait to rank (Li et al.)

    def rungs(self, max_epochs: int) -> list[int]:
        """The rung epochs below `max_epochs`: r, r*eta, r*eta^2, ..."""
        rungs, epoch = [], self.min_epochs
        while epoch < max_epochs:
            rungs.append(epoch)
            epoch *= self.reduction_factor
        return rungs


@dataclass
class SearchSpec:
    """`search:` in a grid file: an Optuna study instead of a cartesian product."""
    n_trials: int
    sampler: str  # tpe | random
    pruner: str  # median | none
    seed: int
    space: dict[str, dict]  # key -> {"low", "high", "log"} or {"choices": [...]}


def parse_seeds(raw: Any, where: str) -> list[int]:
    if raw is None:
        return []
    if (not isinstance(raw, list) or not raw
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32
                   for s in raw)):
        raise GridError(f"must be a non-empty list of integers in [0, 2^32 - 1], got {raw!r}",
                        where)
    if len(set(raw)) != len(raw):
        raise GridError(f"repeated seed in {raw!r}", where)
    return list(raw)


def check_keys(raw: dict, allowed, where: str) -> None:
    """A section's keys are among `allowed`; the first unknown one (sorted) is the error."""
    unknown = set(raw) - set(allowed)
    if unknown:
        raise GridError(f"unknown key '{sorted(map(str, unknown))[0]}'; allowed: "
                        f"{', '.join(allowed)}", where)


def parse_search(raw: Any, fixed: dict[str, Any], where: str) -> SearchSpec:
    """Validate `search:`: sampler, pruner, n_trials and a space of ranges and choices."""
    if not isinstance(raw, dict):
        raise GridError("must be a mapping with n_trials, sampler, pruner, seed, space", where)
    check_keys(raw, ("n_trials", "sampler", "pruner", "seed", "space"), where)
    n_trials = raw.get("n_trials", 20)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or not 1 <= n_trials <= MAX_CELLS:
        raise GridError(f"must be an integer in [1, {MAX_CELLS}], got {n_trials!r}",
                        f"{where}.n_trials")
    sampler, pruner = raw.get("sampler", "tpe"), raw.get("pruner", "median")
    if sampler not in SAMPLERS:
        raise GridError(f"unknown value {sampler!r}; allowed: {', '.join(SAMPLERS)}",
                        f"{where}.sampler")
    if pruner not in PRUNERS:
        raise GridError(f"unknown value {pruner!r}; allowed: {', '.join(PRUNERS)}",
                        f"{where}.pruner")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise GridError(f"must be an integer in [0, 2^32 - 1], got {seed!r}", f"{where}.seed")
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise GridError("needs a mapping of keys to ranges {low, high, log} or lists of choices",
                        f"{where}.space")
    space = {}
    for key, spec in space_raw.items():
        w = f"{where}.space.{key}"
        if key not in config.OPTIONS:
            raise GridError(config.unknown_key_message(str(key)), w)
        if isinstance(spec, list) and spec:
            space[key] = {"choices": [config.check_value(key, v, f"{w}[{i}]")
                                      for i, v in enumerate(spec)]}
            continue
        kind = config.OPTIONS[key].kind
        if not isinstance(spec, dict) or set(spec) - {"low", "high", "log"} or \
                not {"low", "high"} <= set(spec) or kind not in ("int", "float"):
            raise GridError("must be a list of choices, or {low, high, log} for a numeric key",
                            w)
        low = config.check_value(key, spec["low"], f"{w}.low")
        high = config.check_value(key, spec["high"], f"{w}.high")
        if not low < high:
            raise GridError(f"low must be below high, got {low} and {high}", w)
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise GridError(f"must be true or false, got {log!r}", f"{w}.log")
        if log and low <= 0:
            raise GridError(f"a log-scale range needs low > 0, got {low}", w)
        space[key] = {"low": low, "high": high, "log": log}
    # every corner of the space must make a valid cell
    corner = {k: (v["choices"][0] if "choices" in v else v["low"]) for k, v in space.items()}
    config.check_cell(config.resolve({**fixed, **corner}), where)
    return SearchSpec(n_trials, sampler, pruner, seed, space)


def launch_settings(raw: Any, defaults: dict[str, Any], where: str) -> dict[str, Any]:
    """`execution:` or `track:`: each key one of its choices, a boolean (keys whose default is
    one), an integer >= 0 (keys whose default is one), a string (keys whose default is `str`,
    else None), Ray resources (the key whose default is a mapping), or an integer >= 1 or auto
    ("auto" keys). Missing keys take their default (the first choice, or the default itself)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise GridError(f"must be a mapping with keys {', '.join(defaults)}", where)
    check_keys(raw, defaults, where)
    settings = {}
    for key, allowed in defaults.items():
        if allowed is str:
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise GridError(f"must be a non-empty string, got {value!r}", f"{where}.{key}")
            settings[key] = value
            continue
        if isinstance(allowed, dict):
            settings[key] = ray_resources(raw.get(key), allowed, f"{where}.{key}")
            continue
        value = raw.get(key, allowed[0] if isinstance(allowed, tuple) else allowed)
        if isinstance(allowed, tuple):
            if value not in allowed:
                raise GridError(f"unknown value {value!r}; allowed: {', '.join(allowed)}",
                                f"{where}.{key}")
        elif isinstance(allowed, bool):
            if not isinstance(value, bool):
                raise GridError(f"must be true or false, got {value!r}", f"{where}.{key}")
        elif isinstance(allowed, int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise GridError(f"must be an integer >= 0, got {value!r}", f"{where}.{key}")
        elif value != "auto" and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise GridError(f"must be an integer >= 1 or auto, got {value!r}", f"{where}.{key}")
        settings[key] = value
    return settings


def schedule_allowed(key: str) -> str:
    """What `schedule.<key>` may take, as errors and the key reference say it."""
    if isinstance(SCHEDULE_DEFAULTS[key], bool):
        return "true or false"
    kind = "a number" if isinstance(SCHEDULE_DEFAULTS[key], float) else "an integer"
    return f"{kind} >= {SCHEDULE_LEAST[key]}"


def parse_schedule(raw: Any, search: bool, where: str) -> Schedule:
    """`schedule:` a name (`all`, `asha`; `hyperband` for searches) or a mapping with `name`,
    `min_epochs` (>= 1), `reduction_factor` (>= 2), `within_se` (a number >= 0) and `promote`
    (true or false)."""
    if raw is None:
        return Schedule()
    if not isinstance(raw, dict):
        raw = {"name": raw}
    allowed = ("name", *SCHEDULE_DEFAULTS)
    check_keys(raw, allowed, where)
    names = SCHEDULES if search else tuple(s for s in SCHEDULES if s != "hyperband")
    name = raw.get("name", "all")
    if name not in names:
        raise GridError(f"unknown schedule {quoted(name)}; allowed: {', '.join(names)}"
                        + ("" if search else " (hyperband: for search: grids)"), where)
    settings = {}
    for key, least in SCHEDULE_LEAST.items():
        value = raw.get(key, SCHEDULE_DEFAULTS[key])
        kind = float if isinstance(SCHEDULE_DEFAULTS[key], float) else int
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) \
                or not math.isfinite(value) or value < least:
            raise GridError(f"must be {schedule_allowed(key)}, got {value!r}", f"{where}.{key}")
        settings[key] = kind(value)
    promote = raw.get("promote", SCHEDULE_DEFAULTS["promote"])
    if not isinstance(promote, bool):
        raise GridError(f"must be {schedule_allowed('promote')}, got {promote!r}",
                        f"{where}.promote")
    return Schedule(name, **settings, promote=promote)


def ray_resources(raw: Any, defaults: dict[str, float], where: str) -> dict[str, float]:
    """`execution.resources`: what one cell asks of a Ray cluster. `cpus` > 0 (also its torch
    threads, rounded down, at least 1); `gpus` >= 0, a fraction (0.25: four cells share a GPU)
    or a whole number (Ray's rule: no fractions above 1)."""
    if raw is None:
        return dict(defaults)
    if not isinstance(raw, dict):
        raise GridError(f"must be a mapping with keys {', '.join(defaults)}, e.g. "
                        "{cpus: 1, gpus: 0.25}", where)
    check_keys(raw, defaults, where)
    resources = dict(defaults)
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value) or value < 0 or (key == "cpus" and value == 0):
            least = "> 0" if key == "cpus" else ">= 0"
            raise GridError(f"must be a number {least}, got {value!r}", f"{where}.{key}")
        if value > 1 and value != int(value):
            raise GridError(f"must be a whole number above 1 (Ray shares a device only in "
                            f"fractions up to 1), got {value!r}", f"{where}.{key}")
        resources[key] = value
    return resources
