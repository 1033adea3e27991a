"""A grid's results, read from the tracking store: the tables, figures and status a user reads.

    frames.py    runs and cells as pandas frames; the factors cells vary over
    tables.py    the results table (`gridrun summary`): configurations, mean ± std, bold best,
                 pivots, marginal effects, published results beside ours
    render.py    tables as terminal text, Markdown, LaTeX, CSV, HTML
    reports.py   per-cell reports: confusion matrix, most-confused pairs, per-class
                 precision/recall/F1 (numpy only: written for every cell)
    figures.py   per-cell figures (curves, confusion), per-grid plots (matplotlib)
    status.py    every cell's state (`gridrun status`)
    study.py     a study read once: cells, curves, the best cell's reports, launches, data;
                 which factor mattered (fANOVA), what it cost
    page.py      the study page (`gridrun report`) and its figures, for a notebook too
    registry.py  the best cell into MLflow's model registry (written by `gridrun.tracking`)

Torch-free (an import contract says so): `summary` and `status` answer in a fraction of a
second. May import: `gridrun.tracking`, `gridrun.train.records`, `gridrun.spec`,
`gridrun.errors`.
"""
from .frames import cells_frame, factor_levels, factors, runs_frame
from .render import FORMATS, render
from .status import grid_as_launched, grid_status
from .study import Study, cost, importance, read_study
from .tables import effects_table, pivot_table, read_reference, table, tabulate

__all__ = ["FORMATS", "Study", "cells_frame", "cost", "effects_table", "factor_levels", "factors",
           "grid_as_launched", "grid_status", "importance", "pivot_table", "read_reference",
           "read_study", "render", "runs_frame", "table", "tabulate"]
