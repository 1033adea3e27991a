"""`schedule: all`: every cell of a grid to its end, the longest first; and `plan_grid`, which
picks it or ASHA for a grid's schedule."""
from __future__ import annotations

from ..data.images import ImageSet, dataset_key
from ..spec.grid import Cell, Grid
from ..tracking.store import Store
from .asha import AshaPlan
from .base import CellList


class GridPlan(CellList):
    """The cells of a grid to run, each to its end: no per-epoch decisions."""


def plan_grid(grid: Grid, cells: list[Cell], todo: list[Cell], store: Store,
              experiment_id: str) -> CellList:
    """All of `todo` to the end (`schedule: all`), or ASHA over them, its rungs replayed from
    every cell's history in the store (earlier launches' cells count at their rungs)."""
    if grid.schedule.name != "asha":
        return GridPlan(todo, len(cells))
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
