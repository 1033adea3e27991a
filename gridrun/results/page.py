"""A study as one self-contained HTML page (`gridrun report`), and its figures for a notebook.

    figures_of(study)          # {"curves": Figure, "factor:variant": Figure, ...}: matplotlib
    study_page(study)          # the page: every figure inline as SVG, no script or font fetched

Why matplotlib and not an interactive library: the figures go into papers (SVG and PNG at print
quality, the same code as the per-cell figures), the page stays a few hundred kilobytes, opens
offline and prints; the one thing interaction buys here, sorting the results table, is a dozen
lines of inline script.
"""
from __future__ import annotations

import html
import io
import platform
import tempfile
import time
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import GridError
from ..tracking.recorder import log_folder_on_latest_launch
from .figures import accuracy_axis
from .frames import BEST_RULE, has_result
from .render import render, write_atomically
from .study import Study, cost, importance, read_study

OUTCOME_MARKS = {"early_stopped": ("|", "early stopped"), "pruned": ("v", "pruned"),
                 "not_converging": ("x", "not converging")}


def figures_of(study: Study, color_by: str | None = None) -> dict[str, plt.Figure]:
    """Every figure of the page, by name: `curves`, `factor:<name>` for each factor,
    `parallel`, and `best` (when a cell finished)."""
    figures = {"curves": learning_curves(study, color_by)}
    for factor in study.factors:
        figures[f"factor:{factor}"] = factor_view(study, factor)
    if study.factors:
        figures["parallel"] = parallel_coordinates(study)
    if study.best is not None:
        figures["best"] = best_cell_figure(study)
    return figures


def _colors(levels: pd.Series) -> dict[str, str]:
    order = list(dict.fromkeys(levels))
    return {level: f"C{i % 10}" for i, level in enumerate(order)}


def learning_curves(study: Study, color_by: str | None = None) -> plt.Figure:
    """Validation accuracy and training loss by epoch of every cell, coloured by a factor's
    level, with how each cell ended marked at its last epoch."""
    color_by = color_by or (study.factors[0] if study.factors else None)
    levels = study.levels(color_by) if color_by else pd.Series(["cell"] * len(study.cells))
    colors = _colors(levels)
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, cell in study.cells.iterrows():
        curve = study.curves.get(cell["run_id"])
        if curve is None or curve.empty:
            continue
        color = colors[levels.iloc[i]]
        for ax, metric in ((acc_ax, "val_acc"), (loss_ax, "train_loss")):
            values = curve[metric].replace([np.inf, -np.inf], np.nan)
            ax.plot(curve["epoch"], values, color=color, alpha=0.75, lw=1.2)
            mark = OUTCOME_MARKS.get(cell.get("outcome"))
            if mark and values.notna().any():
                last = values.last_valid_index()
                ax.plot(curve["epoch"][last], values[last], marker=mark[0], color=color, ms=8,
                        mew=1.8)
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    loss_ax.set_yscale("log")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [plt.Line2D([], [], color=c, lw=2, label=str(level)) for level, c in colors.items()]
    handles += [plt.Line2D([], [], color="0.3", marker=m, ls="", ms=8, mew=1.8, label=label)
                for m, label in OUTCOME_MARKS.values()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8,
               title=color_by or "", title_fontsize=8)
    fig.set_layout_engine("constrained")
    return fig


def factor_view(study: Study, factor: str) -> plt.Figure:
    """One factor: test accuracy of every finished cell by level (each dot a cell or seed, the
    bar the mean), and the empirical distribution of the error per level (the design-spaces
    EDF: a curve further left and higher is a better level, over all the other factors)."""
    done = has_result(study.cells)
    levels = study.levels(factor)[done]
    accuracy = study.cells.loc[done, "test_acc"] * 100
    order = list(dict.fromkeys(study.levels(factor)))
    colors = _colors(study.levels(factor))
    fig, (dots, edf) = plt.subplots(1, 2, figsize=(11, 3.8))
    rng = np.random.default_rng(0)
    for x, level in enumerate(order):
        values = accuracy[levels == level].to_numpy()
        if len(values):
            dots.bar(x, values.mean(), color=colors[level], alpha=0.25, width=0.6)
            dots.scatter(x + rng.uniform(-0.15, 0.15, len(values)), values, color=colors[level],
                         s=22, zorder=3)
            errors = np.sort(100 - values)
            edf.step(np.concatenate([[errors[0]], errors]),
                     np.concatenate([[0], np.arange(1, len(errors) + 1) / len(errors)]),
                     where="post", color=colors[level], lw=2, label=f"{level} (n={len(values)})")
    dots.set_xticks(range(len(order)), [str(o) for o in order], rotation=30, ha="right")
    dots.set(ylabel="test accuracy (%)", title=f"test accuracy by {factor} (dots: cells)")
    if len(accuracy):
        dots.set_ylim(*accuracy_axis(accuracy / 100, accuracy * 0))
    edf.set(xlabel="test error (%)", ylabel="share of cells with error ≤ x",
            title=f"error distribution by {factor}", ylim=(0, 1.02))
    edf.legend(fontsize=8)
    for ax in (dots, edf):
        ax.grid(alpha=0.3)
    fig.set_layout_engine("constrained")
    return fig


def parallel_coordinates(study: Study) -> plt.Figure:
    """Every finished cell as a line through its level on each of the grid's axes (its own
    levels, in grid order) to its test accuracy, coloured by that accuracy."""
    done = has_result(study.cells)
    cells = study.cells[done]
    accuracy = cells["test_acc"].to_numpy() * 100
    fig, ax = plt.subplots(figsize=(11, 4.2))
    positions = {}
    for j, factor in enumerate(study.factors):
        order = list(dict.fromkeys(study.levels(factor)))
        positions[factor] = {level: k / max(len(order) - 1, 1) for k, level in enumerate(order)}
        for level, y in positions[factor].items():
            ax.text(j, y, f" {level}", fontsize=8, va="center", ha="left")
    low, high = (accuracy.min(), accuracy.max()) if len(accuracy) else (0, 1)
    span = max(high - low, 1e-9)
    cmap = plt.get_cmap("viridis")
    x = list(range(len(study.factors) + 1))
    for i in np.argsort(accuracy):
        ys = [positions[f][study.levels(f)[done].iloc[i]] for f in study.factors]
        ys.append((accuracy[i] - low) / span)
        ax.plot(x, ys, color=cmap((accuracy[i] - low) / span), lw=1.8, alpha=0.85)
    ax.set_xticks(x, [*study.factors, "test accuracy"])
    ax.set_yticks([])
    for j in x:
        ax.axvline(j, color="0.6", lw=0.8)
    ax.text(x[-1], 1, f" {high:.2f}%", fontsize=8, va="center")
    ax.text(x[-1], 0, f" {low:.2f}%", fontsize=8, va="center")
    ax.set_xlim(-0.1, x[-1] + 0.4)
    ax.set_title("every finished cell: its levels and its test accuracy (colour: accuracy)")
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.set_layout_engine("constrained")
    return fig


def best_cell_figure(study: Study) -> plt.Figure:
    """The best cell: its curves, its confusion matrix (test set) and its accuracy per class."""
    best, reports = study.best, study.reports
    curve = study.curves.get(best["run_id"], pd.DataFrame())
    fig, (curves, matrix, classes) = plt.subplots(1, 3, figsize=(14, 4.2),
                                                  width_ratios=[1.1, 1, 0.9])
    if not curve.empty:
        curves.plot(curve["epoch"], curve["train_acc"], label="train accuracy", color="C0", ls="--")
        curves.plot(curve["epoch"], curve["val_acc"], label="validation accuracy", color="C0")
        twin = curves.twinx()
        twin.plot(curve["epoch"], curve["train_loss"], label="train loss", color="C3", ls="--")
        twin.plot(curve["epoch"], curve["val_loss"], label="validation loss", color="C3")
        twin.set_ylabel("loss")
        if pd.notna(best.get("epochs_needed")):
            curves.axvline(best["epochs_needed"], color="0.5", ls=":", label="best epoch")
        curves.legend(fontsize=7, loc="lower right")
        twin.legend(fontsize=7, loc="upper right")
    curves.set(xlabel="epoch", ylabel="accuracy", title=f"{best['name']}: curves")
    curves.xaxis.get_major_locator().set_params(integer=True)
    cm = reports.get("confusion_matrix.json")
    if cm:
        names, values = cm["classes"], np.array(cm["matrix"])
        matrix.imshow(values, cmap="Blues")
        matrix.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        matrix.set_yticks(range(len(names)), names, fontsize=7)
        for (r, c), v in np.ndenumerate(values):
            matrix.text(c, r, str(v), ha="center", va="center", fontsize=6,
                        color="white" if v > values.max() / 2 else "black")
        matrix.set(xlabel="predicted", ylabel="true", title="confusion matrix (test)")
        per_class = np.diag(values) / values.sum(axis=1).clip(min=1) * 100
        classes.barh(range(len(names)), per_class, color="C0")
        classes.set_yticks(range(len(names)), names, fontsize=7)
        classes.invert_yaxis()
        classes.set(xlabel="accuracy (%)", title="accuracy per class (test)")
        classes.grid(alpha=0.3, axis="x")
    fig.set_layout_engine("constrained")
    return fig


def svg(fig: plt.Figure) -> str:
    """A figure as an inline `<svg>` element: text stays text, lines stay sharp in print."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):  # text as text: selectable, searchable, small
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def write_report(grid, tracking_uri: str | None = None, output: str | Path | None = None,
                 compare: str | None = None, log: bool = False, color_by: str | None = None,
                 command: str = "") -> dict:
    """`gridrun report`: read the study, write its page to `output` (default
    `<grid name>-report.html`), and with `log` put the page and every figure (PNG and SVG) on
    the latest launch run under `report/`. Returns what was written, for the caller to say."""
    axes = [axis.name for axis in grid.axes]
    if color_by is not None and color_by not in axes:  # before the store is read
        raise GridError(f"grid '{grid.name}' has no axis '{color_by}'; allowed: "
                        f"{', '.join(axes) or 'none (the grid has no axes)'}", "--color-by")
    study = read_study(grid, tracking_uri, compare)
    figures = figures_of(study, color_by)
    try:
        page = study_page(study, {name: svg(fig) for name, fig in figures.items()}, command)
        path = Path(output or f"{grid.name}-report.html")
        write_atomically(path, page)
        logged_on = None
        if log:
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "study.html").write_text(page)
                for name, fig in figures.items():
                    stem = name.replace(":", "-")
                    fig.savefig(Path(folder) / f"{stem}.png", dpi=150)
                    fig.savefig(Path(folder) / f"{stem}.svg")
                logged_on = log_folder_on_latest_launch(grid.name, Path(folder), "report",
                                                        tracking_uri)
    finally:
        for fig in figures.values():
            plt.close(fig)
    return {"path": path, "bytes": len(page.encode()), "cells": len(study.cells),
            "not_run": study.not_run, "figures": sorted(figures), "logged_on": logged_on}


def study_page(study: Study, figures: dict[str, str] | None = None, command: str = "",
               color_by: str | None = None) -> str:
    """The page: every section of a study's results, self-contained; `figures` as inline SVG
    (drawn here when not given)."""
    if figures is None:
        drawn = figures_of(study, color_by)
        figures = {name: svg(fig) for name, fig in drawn.items()}
        for fig in drawn.values():
            plt.close(fig)
    grid, best = study.grid, study.best
    spent = cost(study)
    ranked, note = importance(study)
    sections = []

    def section(anchor: str, title: str, body: str) -> None:
        sections.append((anchor, title, f'<section id="{anchor}"><h2>{html.escape(title)}</h2>'
                                        f"{body}</section>"))

    not_run = (f"<p>{study.not_run} cells of the grid have not run yet.</p>"
               if study.not_run else "")
    section("results", "Results", not_run + _sortable(render(study.table, "html")) +
            "<p class=note>Click a column to sort. Bold: the best configuration and every one "
            "not significantly worse (one-sided Welch t-test, α = 0.05, over seeds).</p>")
    section("curves", "Learning curves", figures["curves"] +
            "<p class=note>Marks at a cell's last epoch: | early stopped, v pruned by the "
            "schedule, x not converging. The loss axis is logarithmic.</p>")
    views = "".join(figures[f"factor:{f}"] for f in study.factors)
    section("factors", "Factors", views + "<h3>Marginal effects</h3>" +
            render(study.effects, "html"))
    section("importance", "Which factor mattered",
            (render(ranked.assign(Importance=[f"{v:.2f}" for v in ranked["Importance"]]),
                    "html") if len(ranked) else "") + f"<p class=note>{html.escape(note)}</p>" +
            figures.get("parallel", ""))
    if best is not None:
        pairs = study.reports.get("top_confusions.json", [])
        pairs_table = pd.DataFrame([{"true": p["true"], "predicted": p["predicted"],
                                     "count": p["count"],
                                     "share of true": f"{p['share_of_true']:.1%}"}
                                    for p in pairs])
        section("best", f"The best cell: {best['name']}",
                f"<p>Test accuracy <b>{best['test_acc'] * 100:.2f}%</b>, best epoch "
                f"{int(best['epochs_needed'])} of {int(best['epochs_run'])} "
                f"({html.escape(str(best['outcome']))}); chosen by {BEST_RULE}. Run "
                f"<code>{best['run_id']}</code>.</p>" + figures["best"] +
                "<h3>Most confused pairs</h3>" + (pairs_table.to_html(index=False, border=0)
                                                  if len(pairs_table) else "<p>not logged</p>"))
    section("cost", "Cost", _cost_table(spent))
    section("provenance", "Provenance", _provenance(study, command))
    nav = " · ".join(f'<a href="#{a}">{html.escape(t.split(":")[0])}</a>'
                     for a, t, _ in sections)
    body = "".join(s for _, _, s in sections)
    title = html.escape(f"{grid.name}: results")
    description = f"<p>{html.escape(grid.description)}</p>" if grid.description else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{title}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{title}</h1>{description}<nav>{nav}</nav></header>{body}"
            f"<footer>gridrun report, {time.strftime('%Y-%m-%d %H:%M %Z')}</footer>"
            f"<script>{SORT_SCRIPT}</script></body></html>")


def _sortable(table_html: str) -> str:
    return table_html.replace("<table", '<table class="sortable"', 1)


def _cost_table(spent: dict) -> str:
    rows = [("launches", f"{spent['launches']}"),
            ("wall time of the launches", _duration(spent["wall_s"])),
            ("epochs trained", f"{spent['epochs_trained']:,}"),
            ("epochs saved by early stopping", f"{spent['epochs_saved_early_stopping']:,}"),
            ("epochs saved by the schedule (pruned cells)", f"{spent['epochs_saved_schedule']:,}"),
            ("epochs saved by ending cells that did not converge",
             f"{spent['epochs_saved_not_converging']:,}")]
    rows += [(f"cell time, {outcome} ({spent['cells'][outcome]} cells)", _duration(seconds))
             for outcome, seconds in spent["cell_seconds"].items()]
    return ("<table><tbody>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
                                       for k, v in rows) + "</tbody></table>"
            "<p class=note>Epochs saved: each stopped cell's epochs short of train.max_epochs. "
            "Cell time is the training time of the cells, summed over workers.</p>")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _provenance(study: Study, command: str) -> str:
    launches = pd.DataFrame([{
        "launch": run["name"], "status": run["status"],
        "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime(run["start"] / 1000)),
        "wall": _duration((run["end"] - run["start"]) / 1000) if run["end"] else "",
        "cells ran": run["ran"], "command": run["command"], "host": run["host"],
        "versions": run["versions"] or "not recorded",
        "machine": run["machine"] or "not recorded"}
        for run in study.launches])
    data = pd.DataFrame(study.inputs)
    here = (f"gridrun {_version('gridrun')}, MLflow {_version('mlflow')}, pandas "
            f"{_version('pandas')}, Python {platform.python_version()}")
    return ("<h3>Launches</h3>" + (launches.to_html(index=False, border=0) if len(launches)
                                   else "") +
            "<p class=note>The command as the launch run records it: the grid file, --set, "
            "--only and --schedule (the options that choose cells); --data-dir and the store "
            "are not part of it.</p><h3>Data</h3>" +
            (data.to_html(index=False, border=0) if len(data) else "<p>not recorded</p>")
            + "<h3>The grid file</h3><pre>" + html.escape(study.grid.text) + "</pre>"
            + f"<p class=note>This page: <code>{html.escape(command)}</code>, with {here}, "
            f"from {html.escape(study.tracking_uri)}.</p>")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:1180px;margin:0 auto;padding:0 24px;
  color:#222}
header{border-bottom:1px solid #ddd;margin-bottom:12px}nav a{margin-right:4px}
h1{font-size:1.6em;margin:18px 0 4px}
h2{font-size:1.25em;margin-top:30px;border-bottom:1px solid #eee}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
table.sortable th{cursor:pointer;background:#f5f5f7}table.sortable th:hover{background:#e8e8f0}
svg{max-width:100%;height:auto}pre{background:#f7f7f7;padding:10px;overflow:auto;font-size:12px}
.note{color:#555;font-size:13px}footer{color:#888;font-size:12px;margin:30px 0}
@media print{nav{display:none}section{break-inside:avoid}}
"""

# sort a table by a clicked column: numbers by value ("12.5%", "1.2 min", "76.1 ± 0.4"), the
# rest as text; a second click reverses
SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var up = th.dataset.order !== 'up'; th.dataset.order = up ? 'up' : 'down';
      function key(row) {
        var text = row.cells[column].textContent.trim(), n = parseFloat(text);
        return isNaN(n) ? [1, text] : [0, text.indexOf('min') > 0 ? n * 60 : n];
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        return up ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""
