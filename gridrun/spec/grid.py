"""What a grid is once read: its axes, its cells, and the expansion of one into the other.

    name: activation_vs_optim          # MLflow experiment (default: the file's stem)
    fixed:                             # settings every cell shares (nested or dotted keys)
      data.dataset: cifar10
    grid:                              # the axes; the cells are their cartesian product
      optim.lr: [0.001, 0.005]         # a list of values for one key
      optimizer:                       # a named bundle: each label sets several keys
        sgd0.9: {optim.name: sgd, optim.momentum: 0.9}
        adam: {optim.name: adam}
    exclude:                           # partial assignments whose cells are dropped
      - {optimizer: adam, optim.lr: 0.005}
    seeds: [0, 1, 2]                   # repeat every cell with each seed
    schedule: asha                     # all (default) | asha | hyperband (searches): sections.py
    execution: {workers: 2}            # how the launch runs (sections.py)
    track: {log_model: best}           # what it records (sections.py)

A cell's id is a hash of its resolved config (`config.cell_id`), so a cell keeps its id, and its
MLflow runs, whatever grid or slice of a grid it is launched from. Cells whose resolved configs
are equal (an axis over a key that does not apply to them, such as momentum under Adam) are
kept once. Reading and checking a file is `gridrun.spec.load`'s.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import GridError
from . import config
from .sections import Schedule, SearchSpec


@dataclass
class Axis:
    """One dimension of the grid. `values` is a list of (label, settings) pairs."""
    name: str
    values: list[tuple[str, dict[str, Any]]]
    bundle: bool  # True: named values that each set several keys

    def labels(self) -> list[str]:
        return [label for label, _ in self.values]


@dataclass
class Cell:
    """One configuration of a grid, resolved (defaults filled in, keys that do not apply
    dropped), with its seed: it trains once, into one run, found again by its `id`."""
    index: int  # position in grid order
    config: dict[str, Any]  # resolved, flat, dotted keys
    name: str  # readable run name, e.g. "leaky_nodrop-lr0.005-sgd0.5"
    label: str  # label on the first bundle axis (else the model name): a table's "Model" column
    axes: dict[str, str]  # axis name -> label of the value this cell takes (applicable axes only)
    id: str  # stable hash of config (seed included)
    config_id: str = ""  # the same without the seed: repeats of one configuration share it


@dataclass
class Grid:
    """A grid file, read and checked (`load_grid`): its axes and settings, and the `--set`,
    `--only` and `--schedule` given with it. `cells()` expands it, in grid order."""
    path: str
    name: str
    description: str
    fixed: dict[str, Any]
    axes: list[Axis]
    exclude: list[dict[str, Any]]
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    override_args: list[str] = field(default_factory=list)  # the --set strings, as given
    search: SearchSpec | None = None
    text: str = ""  # the file as written, logged with each launch
    execution: dict[str, Any] = field(default_factory=dict)  # executor, workers, threads
    track: dict[str, Any] = field(default_factory=dict)  # log_model
    schedule: Schedule = field(default_factory=Schedule)  # all cells to the end, or ASHA
    only: dict[str, tuple[str, ...]] = field(default_factory=dict)  # --only: axis -> levels kept

    def size(self) -> int:
        """Number of combinations before exclusions and de-duplication."""
        return math.prod(len(a.values) for a in self.axes) * max(len(self.seeds), 1)

    def planned(self) -> int:
        """How many cells a launch of this grid plans: a search's trials, else its cells."""
        return self.search.n_trials if self.search is not None else len(self.cells())

    def cells(self) -> list[Cell]:
        """The cells in grid order; with `only`, those whose axes take one of the kept levels
        (each keeps its place and id in the whole grid, so its runs are the whole grid's)."""
        cells = expand(self)
        if not self.only:
            return cells
        return [c for c in cells
                if all(c.axes.get(axis) in levels for axis, levels in self.only.items())]


def run_name(parts: list[str]) -> str:
    """A cell's name from its levels, e.g. `leaky_nodrop-lr0_001-adam`: the name of its MLflow
    run and of its logged model alike. MLflow refuses / : . % " ' in a logged model's name, so
    they become `_` in both, and the Models tab names each model as its run is named."""
    return re.sub(r"[/:.%\"']", "_", "-".join(parts))


def format_value(value: Any) -> str:
    """A value as it appears in a level's label: `0.005`, lists as `32x64`."""
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


# --- expansion -------------------------------------------------------------------------------

def _excluded(rule: dict[str, Any], bundle_labels: dict[str, str], cfg: dict[str, Any]) -> bool:
    """A rule matches when every key matches: bundle axes by label, config keys by resolved value."""
    for key, value in rule.items():
        if key in bundle_labels:
            if bundle_labels[key] != value:
                return False
        elif key not in cfg or cfg[key] != value:
            return False
    return True


def expand(grid: Grid) -> list[Cell]:
    """The cells of a grid in grid order (first axis outermost), without duplicates."""
    cells: list[Cell] = []
    seen: set[str] = set()
    matched: set[int] = set()  # exclusion rules that matched some combination
    seeds = grid.seeds or [None]
    for combo in itertools.product(*(a.values for a in grid.axes), seeds):
        *choices, seed = combo
        settings = dict(grid.fixed)
        for _, axis_settings in choices:
            settings.update(axis_settings)
        settings.update(grid.overrides)
        if seed is not None:
            settings["seed"] = seed
        cfg = config.resolve(settings)
        config.check_cell(cfg, grid.path)
        # axes whose keys all fall away for this cell (momentum under Adam) do not name it
        chosen = {axis.name: label for axis, (label, s) in zip(grid.axes, choices)
                  if axis.bundle or all(k in cfg for k in s)}
        bundle_values = {axis.name: label for axis, (label, _) in zip(grid.axes, choices)
                         if axis.bundle}
        hits = {i for i, rule in enumerate(grid.exclude) if _excluded(rule, bundle_values, cfg)}
        matched |= hits
        if hits:
            continue
        cid = config.cell_id(cfg)
        if cid in seen:
            continue
        seen.add(cid)
        parts = list(chosen.values())
        if len(grid.seeds) > 1:
            parts.append(f"s{seed}")
        # the first bundle axis names the cell in tables (the "Model" column)
        labels = [bundle_values[a.name] for a in grid.axes if a.bundle][:1]
        cells.append(Cell(
            index=len(cells),
            config=cfg,
            name=run_name(parts) or run_name([grid.name]),
            label=labels[0] if labels else str(cfg["model.name"]),
            axes=chosen,
            id=cid,
            config_id=config.cell_id(cfg, with_seed=False),
        ))
    unused = [i for i in range(len(grid.exclude)) if i not in matched]
    if unused:
        i = unused[0]
        raise GridError(f"exclude[{i}] {grid.exclude[i]} matches no cell of the grid (a typo?); "
                        "each rule names axis values that occur together", grid.path)
    return cells
