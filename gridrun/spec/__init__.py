"""The grid file and what it describes, checked before anything runs. Torch-free, MLflow-free.

    config.py     every key of a cell: type, range, default, when it applies (`Option` rows,
                  the one schema); resolution, cross-key rules, content-hash cell ids
    catalog.py    the model registry's names and options, read from the builders' source
    safe_yaml.py  YAML as data only, bounded in size, every key once
    sections.py   `search:`, `schedule:`, `execution:`, `track:`, `seeds:`
    grid.py       `Grid`, `Axis`, `Cell`, and the expansion of axes into cells
    load.py       reading a file with `--set`, `--only` and `--schedule`

May import: `gridrun.errors` only. That keeps `--dry-run`, `keys`, `status` and `summary` fast
(an import contract in setup.cfg says so, and CI checks it).
"""
from .grid import Axis, Cell, Grid
from .load import grid_from_settings, load_grid, with_only, with_schedule

__all__ = ["Axis", "Cell", "Grid", "grid_from_settings", "load_grid", "with_only",
           "with_schedule"]
