"""Results tables from a grid's MLflow runs: the table a user puts in their report.

    table(grid=load_grid("grids/activation_vs_optim.yaml"))     # -> pandas.DataFrame
    render(df, "markdown")                                      # term | markdown | latex | csv | html

Rows: one per cell in grid order; only the latest FINISHED run of a cell counts, and a cell with no
finished run shows its latest state (Failed, Running, Killed) or "Not run" — never dropped. When a
grid repeats cells over seeds, one row per configuration shows mean ± std and n, and the best
configuration is bold together with every configuration not significantly worse than it: a
one-sided Welch t-test at alpha = 0.05 on the per-seed test accuracies (needs n >= 2 on both).

Bold cells travel with the frame in `df.attrs["bold"]`, a list of (row position, column) pairs.
"""
from __future__ import annotations

import html
import io

import numpy as np
import pandas as pd

from . import config
from .errors import GridError
from .grid import Grid, names_level
from .status import grid_as_launched  # noqa: F401 - summary GRID reads the grid as launched
from .tracking import CELL, CONFIG, KIND, OUTCOME, Recorder, Store, global_tracking_uri

FORMATS = ("term", "markdown", "latex", "csv", "html")
VIEWS = ("results", "params")
ALPHA = 0.05
METRICS = ("test_acc", "best_val_acc", "epochs_needed", "duration_s", "params_total",
           "params_trainable", "epochs_run", "val_acc")  # val_acc: the last epoch's
STATE = {"FAILED": "Failed", "RUNNING": "Running", "SCHEDULED": "Running", "KILLED": "Killed",
         "NOT RUN": "Not run"}


# --- from MLflow to one row per cell ---------------------------------------------------------

def runs_frame(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every cell run of an experiment, one row each: tags, typed params and final metrics."""
    store = Store(tracking_uri)
    exp_id = store.experiment_id(experiment)
    if exp_id is None:
        raise GridError(f"no experiment '{experiment}' in {store.tracking_uri}; launch the grid "
                        "first, or pass the --tracking-uri it was launched with")
    records = []
    for run in store.runs(exp_id, f"tags.`{KIND}` = 'cell'"):
        tags, info = run.data.tags, run.info
        record = {"run_id": info.run_id, "name": info.run_name, "status": info.status,
                  "start_time": info.start_time, "end_time": info.end_time,
                  "cell": tags.get(CELL), "config": tags.get(CONFIG) or tags.get(CELL),
                  "index": int(tags.get("gridrun.index", -1)), "label": tags.get("gridrun.label"),
                  "outcome": tags.get(OUTCOME), "reason": tags.get("gridrun.reason")}
        record.update({f"axis:{k[len('gridrun.axis.'):]}": v for k, v in tags.items()
                       if k.startswith("gridrun.axis.")})
        record.update(run.data.params)
        record.update({m: run.data.metrics.get(m, np.nan) for m in METRICS})
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    for key, opt in config.OPTIONS.items():  # params come back as strings
        if key in frame and opt.kind in ("int", "float"):
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
    return frame


def cells_frame(experiment: str | None = None, grid: Grid | None = None,
                tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per cell: its latest FINISHED run, else its latest run, else "NOT RUN" (grid only)."""
    name = grid.name if grid is not None else experiment
    if grid is not None and grid.search is not None:  # trials are not known in advance
        grid = None
    runs = runs_frame(name, tracking_uri)
    if runs.empty:
        runs = pd.DataFrame(columns=["run_id", "status", "start_time", "cell", "config", "index"])
    runs["_finished"] = runs["status"] == "FINISHED"
    latest = (runs.sort_values(["_finished", "start_time"], ascending=False)
              .drop_duplicates("cell").drop(columns="_finished"))
    if grid is None:
        return latest.sort_values(["index", "start_time"]).reset_index(drop=True)
    planned = pd.DataFrame([{"cell": c.id, "config": c.config_id, "index": c.index,
                             "label": c.label, "name": c.name,
                             **{f"axis:{a}": v for a, v in c.axes.items()}, **c.config}
                            for c in grid.cells()])
    run_cols = ["cell", "run_id", "status", "start_time", "end_time", "outcome", "reason",
                *[m for m in METRICS if m in latest]]
    merged = planned.merge(latest.reindex(columns=run_cols), on="cell", how="left")
    merged["status"] = merged["status"].fillna("NOT RUN")
    return merged.sort_values("index").reset_index(drop=True)


def log_rendered(experiment: str, text: str, artifact_file: str,
                 tracking_uri: str | None = None) -> str | None:
    """Attach a rendered table to the experiment's latest parent run; returns that run's id."""
    recorder = Recorder(tracking_uri)
    exp_id = recorder.store.experiment_id(experiment)
    latest = recorder.store.latest_launch(exp_id) if exp_id else None
    if latest is None:
        return None
    recorder.log_artifact_text(latest.info.run_id, text, artifact_file)
    return latest.info.run_id


def register_best(name: str, experiment: str | None = None, grid: Grid | None = None,
                  tracking_uri: str | None = None):
    """Register the logged model of the best finished cell (highest test accuracy, pruned cells
    left out) as a new version of `name` in MLflow's model registry, tagged with the cell's id,
    name and test accuracy. Refused when that cell has no logged model (launched with
    `log_model: none`, or another launch's best). Returns MLflow's ModelVersion."""
    cells = cells_frame(experiment, grid, tracking_uri)
    done = _finished_accuracy(cells)
    done = done[done["outcome"] != "pruned"]
    where = "--register"
    if done.empty:
        raise GridError(f"no finished cell in experiment '{grid.name if grid else experiment}' "
                        "to register", where)
    best = done.loc[done["test_acc"].idxmax()]
    store = Store(tracking_uri)
    run = store.get_run(best["run_id"])
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise GridError(f"the best cell {best['name']} (run {best['run_id']}, test accuracy "
                        f"{best['test_acc']:.4f}) has no logged model; relaunch it with "
                        "--log-model all, or log_model: best in one launch of the grid", where)
    model_id = outputs[-1].model_id
    client = store.client
    from mlflow.exceptions import MlflowException
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise GridError(f"cannot register '{name}': {e.message}", where) from None
    tags = {"gridrun.cell": best["cell"], "gridrun.cell_name": best["name"],
            "test_acc": f"{best['test_acc']:.4f}", "gridrun.experiment": run.info.experiment_id}
    with global_tracking_uri(store.tracking_uri):  # the registry finds models:/ID globally
        return client.create_model_version(
            name, f"models:/{model_id}", run_id=run.info.run_id, tags=tags, model_id=model_id,
            description=run.data.tags.get("mlflow.note.content"))


# --- tables ----------------------------------------------------------------------------------

def table(experiment: str | None = None, grid: Grid | None = None,
          tracking_uri: str | None = None, view: str = "results", sort: str | None = None,
          pivot: tuple[str, str] | None = None, effects: bool = False,
          compare: str | None = None) -> pd.DataFrame:
    """The summary table of a grid (or of an experiment by name) as a DataFrame; `compare`, a
    CSV file of published results (`read_reference`), adds them beside ours."""
    if grid is None and experiment is None:
        raise GridError("give a grid file or --experiment NAME")
    if view not in VIEWS:
        raise GridError(f"unknown view '{view}'; allowed: {', '.join(VIEWS)}", "--view")
    reference = read_reference(compare) if compare else None
    return tabulate(cells_frame(experiment, grid, tracking_uri), view, sort, pivot, effects,
                    reference)


def read_reference(path: str) -> pd.DataFrame:
    """A CSV of published results to compare with: one row per configuration, columns named
    after the grid's axes (levels as `--dry-run` prints them, or plain values: `lr0.005` or
    `0.005`) and an `accuracy` column (`75.69`, `75.69%`, or a word such as `Not Converging`).
    Other columns are ignored."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise GridError("file not found", path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise GridError(f"not a readable CSV file ({str(e).splitlines()[0][:120]})", path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if "accuracy" not in frame.columns:
        raise GridError(f"no 'accuracy' column (columns: {', '.join(frame.columns)}); allowed: "
                        "the grid's axes and accuracy", path)
    frame.attrs["path"] = path
    return frame


def _reference_columns(rows: pd.DataFrame, configs: pd.DataFrame,
                       reference: pd.DataFrame) -> pd.DataFrame:
    """`rows` with the reference's accuracy ("Report") and ours minus it ("Δ", points) after
    our Accuracy, matched on the reference's axis columns."""
    path = reference.attrs.get("path", "--compare")
    axes = [c[len("axis:"):] for c in configs.columns if c.startswith("axis:")]
    keys = [c for c in reference.columns if c != "accuracy" and c in axes]
    unknown = [c for c in reference.columns if c not in axes and c not in (
        "accuracy", "epochs_needed", "duration", "note")]
    if not keys or unknown:
        raise GridError(f"columns {', '.join(unknown) or '(none)'} are not axes of the grid; "
                        f"allowed: {', '.join(axes)}, accuracy, epochs_needed, duration, note",
                        path)

    published, delta = [], []
    for row in configs.to_dict("records"):
        match = reference[[all(names_level(str(r[k]).strip(), str(row[f"axis:{k}"]),
                                           row.get(f"value:{k}")) for k in keys)
                           for r in reference.to_dict("records")]]
        text = str(match["accuracy"].iloc[0]).strip() if len(match) else ""
        number = pd.to_numeric(text.rstrip("%").strip(), errors="coerce")
        ours = row.get("acc_mean")
        published.append(f"{number:.2f}%" if pd.notna(number) else text)
        delta.append(f"{ours * 100 - number:+.2f}" if pd.notna(number) and pd.notna(ours)
                     else "")
    at = rows.columns.get_loc("Accuracy") + 1
    rows.insert(at, "Report", published)
    rows.insert(at + 1, "Δ", delta)
    return rows


def tabulate(cells: pd.DataFrame, view: str = "results", sort: str | None = None,
             pivot: tuple[str, str] | None = None, effects: bool = False,
             reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """`table` from a `cells_frame` already read, so one MLflow search serves several tables."""
    if effects:
        return effects_table(cells)
    if pivot:
        return pivot_table(cells, *pivot)
    configs = configurations(cells)
    rows = pd.DataFrame([_row(c, view) for c in configs.itertuples(index=False)])
    if reference is not None:
        rows = _reference_columns(rows, configs, reference)
    if configs["pruned_at"].notna().any():  # a schedule cut some short: their last val_acc
        rows.insert(rows.columns.get_loc("Accuracy") + 1, "Last Val Acc",
                    [f"{v * 100:.2f}%" if pd.notna(v) else "" for v in configs["last_val"]])
        rows["_Last Val Acc"] = configs["last_val"].to_numpy()
    rows["_best"] = _bold_rows(configs)
    if not (configs["runs"] > 1).any():
        rows = rows.drop(columns="n")
    if sort:
        rows = _sorted(rows, sort)
    bold_rows = np.flatnonzero(rows.pop("_best").to_numpy())
    out = rows[[c for c in rows.columns if not c.startswith("_")]].reset_index(drop=True)
    out.attrs["bold"] = [(int(i), "Accuracy") for i in bold_rows]
    return out


def configurations(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (a cell's repeats over seeds together), in grid order.

    Accuracy statistics use finished runs that converged and were not pruned; "Not Converging"
    shows where every finished run diverged, "Pruned at epoch k" where a schedule stopped them
    at a rung (their last validation accuracy is in `last_val`); a configuration with no
    finished run shows its latest run's state.
    """
    cells = cells.assign(**{m: np.nan for m in METRICS if m not in cells})  # e.g. nothing ran
    finished_runs = cells["status"] == "FINISHED"
    cells = cells.assign(
        _finished=finished_runs,
        _diverged=finished_runs & (cells["outcome"] == "not_converging"),
        _pruned=finished_runs & (cells["outcome"] == "pruned"))
    cells["_acc"] = cells["test_acc"].where(cells["_finished"] & ~cells["_diverged"]
                                            & ~cells["_pruned"])
    cells["_pruned_at"] = cells["epochs_run"].where(cells["_pruned"])
    cells["_last_val"] = cells["val_acc"].where(cells["_finished"])
    finished = cells[cells["_finished"]]
    by = cells.groupby("config", sort=False)
    out = by[["label", "optim.lr", "optim.name"]].first().rename(
        columns={"optim.lr": "lr", "optim.name": "optimizer"})
    out["momentum"] = by["optim.momentum"].first() if "optim.momentum" in cells else np.nan
    out["runs"] = by.size()
    out["acc_mean"] = by["_acc"].mean()
    out["acc_std"] = by["_acc"].std(ddof=1).fillna(0.0)
    out["acc_n"] = by["_acc"].count()
    out["accs"] = by["_acc"].agg(lambda a: a.dropna().to_numpy())
    out["any_diverged"] = by["_diverged"].any()
    out["pruned_at"] = by["_pruned_at"].max()
    out["last_val"] = by["_last_val"].mean()
    latest = cells.sort_values("start_time", ascending=False, na_position="last")
    out["latest_status"] = latest.groupby("config", sort=False)["status"].first()
    for column in [c for c in cells.columns if c.startswith("axis:")]:  # for --compare
        out[column] = by[column].first()
        key = column[len("axis:"):]
        if key in cells.columns:  # an axis over one key: its plain value too
            out[f"value:{key}"] = by[key].first()
    fin = finished.groupby("config", sort=False)
    for column, metric, how in (("duration", "duration_s", "mean"),
                                ("epochs", "epochs_needed", "mean"),
                                ("params_total", "params_total", "max"),
                                ("params_trainable", "params_trainable", "max")):
        out[column] = fin[metric].agg(how) if len(finished) else np.nan
    out["finished"] = fin.size() if len(finished) else 0
    out["finished"] = out["finished"].fillna(0).astype(int)
    return out.reset_index()


def _state(c) -> str | None:
    """What to print instead of an accuracy, if the configuration has none to show."""
    if c.acc_n:
        return None
    if c.any_diverged:
        return "Not Converging"
    if pd.notna(c.pruned_at):
        return f"Pruned at epoch {int(c.pruned_at)}"
    return STATE.get(c.latest_status, str(c.latest_status).title())


def _momentum_or_optimizer(name: str, momentum: float) -> str:
    if name == "sgd":
        return f"{momentum:g}" if pd.notna(momentum) else "SGD"
    return {"adam": "Adam", "adamw": "AdamW"}.get(name, str(name))


def _row(c, view: str) -> dict:
    state = _state(c)
    if state is not None:
        accuracy = state
    elif c.runs > 1:
        accuracy = f"{c.acc_mean * 100:.2f} ± {c.acc_std * 100:.2f}%"
    else:
        accuracy = f"{c.acc_mean * 100:.2f}%"
    epochs = c.epochs
    if pd.isna(epochs):
        epochs_text = ""
    else:
        epochs_text = f"{epochs:.1f}" if epochs != int(epochs) else f"{int(epochs)}"
    row = {"Model": c.label}
    if view == "params":
        for column, value in (("Trainable Params", c.params_trainable),
                              ("Total Params", c.params_total)):
            row[column] = "" if pd.isna(value) else f"{int(value):,}"
            row[f"_{column}"] = value
    else:
        row["Duration"] = _duration(c.duration)
        row["_Duration"] = c.duration
        row["Learning Rate"] = f"{c.lr:g}"
        row["_Learning Rate"] = c.lr
        row["Momentum/Adam"] = _momentum_or_optimizer(c.optimizer, c.momentum)
    row["Accuracy"] = accuracy
    row["_Accuracy"] = c.acc_mean
    row["Epochs Needed"] = epochs_text
    row["_Epochs Needed"] = epochs
    row["n"] = f"{c.acc_n}/{c.runs}"
    return row


def _duration(seconds: float) -> str:
    if pd.isna(seconds):
        return ""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _bold_rows(configs: pd.DataFrame) -> list[bool]:
    """The best configuration, and every one not significantly worse (Welch, one-sided)."""
    means = configs["acc_mean"].to_numpy(dtype=float)
    if not len(means) or np.isnan(means).all():
        return [False] * len(means)
    best = int(np.nanargmax(means))
    best_sample = configs["accs"].iloc[best]
    bold = []
    for i, sample in enumerate(configs["accs"]):
        if means[i] == means[best]:
            bold.append(True)
        elif len(sample) >= 2 and len(best_sample) >= 2:
            from scipy.stats import ttest_ind  # only with repeats: importing it takes ~1 s

            p = ttest_ind(best_sample, sample, equal_var=False, alternative="greater").pvalue
            bold.append(bool(p >= ALPHA) if not np.isnan(p) else False)
        else:
            bold.append(False)
    return bold


def _sorted(rows: pd.DataFrame, sort: str) -> pd.DataFrame:
    columns = {c.lower(): c for c in rows.columns if not c.startswith("_")}
    column = columns.get(sort.lower())
    if column is None:
        raise GridError(f"cannot sort by '{sort}'; allowed: {', '.join(columns.values())}",
                        "--sort")
    key = f"_{column}" if f"_{column}" in rows else column
    descending = column in ("Accuracy", "Last Val Acc")  # best first; the rest smallest first
    return rows.sort_values(key, ascending=not descending, kind="stable", na_position="last")


def factor_levels(cells: pd.DataFrame, factor: str) -> pd.Series:
    """A factor's level per cell: a bundle's label, or a key's value."""
    if factor in config.OPTIONS and factor in cells:
        return cells[factor].map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    if f"axis:{factor}" in cells:
        return cells[f"axis:{factor}"]
    raise GridError(f"unknown factor '{factor}'; allowed: {', '.join(factors(cells))}")


def factors(cells: pd.DataFrame) -> list[str]:
    """The grid's axes, by name."""
    return [c[len("axis:"):] for c in cells.columns if c.startswith("axis:")]


def _finished_accuracy(cells: pd.DataFrame) -> pd.DataFrame:
    done = cells[(cells["status"] == "FINISHED") & cells["test_acc"].notna()].copy()
    done["accuracy"] = done["test_acc"] * 100
    return done


def pivot_table(cells: pd.DataFrame, rows: str, cols: str) -> pd.DataFrame:
    """Mean test accuracy (%) of finished runs for each (rows, cols) level pair."""
    done = _finished_accuracy(cells)
    done["_r"], done["_c"] = factor_levels(done, rows), factor_levels(done, cols)
    order_r = list(dict.fromkeys(factor_levels(cells, rows).dropna()))
    order_c = list(dict.fromkeys(factor_levels(cells, cols).dropna()))
    means = done.pivot_table(index="_r", columns="_c", values="accuracy", aggfunc="mean")
    means = means.reindex(index=order_r, columns=order_c)
    out = means.map(lambda v: "" if pd.isna(v) else f"{v:.2f}%")
    out.insert(0, f"{rows} \\ {cols}", out.index)
    out = out.reset_index(drop=True)
    out.columns = [str(c) for c in out.columns]
    best = np.nanmax(means.to_numpy()) if means.notna().any().any() else None
    out.attrs["bold"] = [(i, str(c)) for i, r in enumerate(means.index)
                         for c in means.columns if best is not None and means.loc[r, c] == best]
    return out


def effects_table(cells: pd.DataFrame) -> pd.DataFrame:
    """The marginal mean accuracy of each level of each factor (its main effect)."""
    done = _finished_accuracy(cells)
    rows, bold = [], []
    for factor in factors(cells):
        levels = list(dict.fromkeys(factor_levels(cells, factor).dropna()))
        if len(levels) < 2:
            continue
        stats = done.groupby(factor_levels(done, factor))["accuracy"].agg(["mean", "std",
                                                                            "count"])
        best = stats["mean"].max() if len(stats) else None
        for level in levels:
            mean, std, n = (stats.loc[level] if level in stats.index else (np.nan, np.nan, 0))
            if best is not None and mean == best:
                bold.append((len(rows), "Mean Accuracy"))
            rows.append({"Factor": factor, "Level": level,
                         "Mean Accuracy": "" if pd.isna(mean) else f"{mean:.2f}%",
                         "Std": "" if pd.isna(std) else f"{std:.2f}", "n": int(n)})
    out = pd.DataFrame(rows, columns=["Factor", "Level", "Mean Accuracy", "Std", "n"])
    out.attrs["bold"] = bold
    return out


# --- rendering -------------------------------------------------------------------------------

def render(df: pd.DataFrame, fmt: str = "markdown", color: bool = False) -> str:
    """The table as text in one of FORMATS; bold cells come from `df.attrs["bold"]`."""
    if fmt not in FORMATS:
        raise GridError(f"unknown format '{fmt}'; allowed: {', '.join(FORMATS)}", "--format")
    bold = {(i, c) for i, c in df.attrs.get("bold", [])}
    cells = [[str(v) for v in row] for row in df.itertuples(index=False)]
    header = [str(c) for c in df.columns]
    is_bold = [[(i, c) in bold for c in df.columns] for i in range(len(df))]
    return {"term": _term, "markdown": _markdown, "latex": _latex, "csv": _csv,
            "html": _html}[fmt](header, cells, is_bold, color)


def _markdown(header, cells, is_bold, color) -> str:
    def esc(text):
        return text.replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row, marks in zip(cells, is_bold):
        lines.append("| " + " | ".join(f"**{esc(v)}**" if b and v else esc(v)
                                       for v, b in zip(row, marks)) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$"}


def _latex(header, cells, is_bold, color) -> str:
    def esc(text):
        return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    lines = [r"\begin{tabular}{" + "l" * len(header) + "}", r"\toprule",
             " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
    for row, marks in zip(cells, is_bold):
        lines.append(" & ".join(rf"\textbf{{{esc(v)}}}" if b and v else esc(v)
                                for v, b in zip(row, marks)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _csv(header, cells, is_bold, color) -> str:
    frame = pd.DataFrame(cells, columns=header)
    frame["best"] = [any(marks) for marks in is_bold]  # CSV has no bold: a column says it
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def _html(header, cells, is_bold, color) -> str:
    lines = ['<table class="gridrun-summary">', "  <thead><tr>" +
             "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>", "  <tbody>"]
    for row, marks in zip(cells, is_bold):
        lines.append("    <tr>" + "".join(
            f"<td><b>{html.escape(v)}</b></td>" if b and v else f"<td>{html.escape(v)}</td>"
            for v, b in zip(row, marks)) + "</tr>")
    lines += ["  </tbody>", "</table>"]
    return "\n".join(lines) + "\n"


def _term(header, cells, is_bold, color) -> str:
    """The terminal table, drawn as rich draws one (heavy head rule, light column rules, no
    outer edge) but directly: rich's layout took a second for 1,000 rows, a quarter of what a
    `gridrun summary` of that size may cost. The best cells are bold green, or marked `*`
    without color."""
    bold_green, bold, reset = "\x1b[1;32m", "\x1b[1m", "\x1b[0m"
    rows = [[v + ("" if color or not (b and v) else " *") for v, b in zip(row, marks)]
            for row, marks in zip(cells, is_bold)]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(values, separator, styles=None):
        parts = []
        for i, (value, width) in enumerate(zip(values, widths)):
            padded = value.ljust(width)
            if color and styles and styles[i]:
                padded = f"{styles[i]}{value}{reset}" + " " * (width - len(value))
            parts.append(f" {padded} ")
        return separator.join(parts)

    lines = [line(header, "┃", [bold] * len(header)),
             "╇".join("━" * (w + 2) for w in widths)]
    lines += [line(row, "│", [bold_green if b and v else None for v, b in zip(row, marks)])
              for row, marks in zip(rows, is_bold)]
    text = "\n".join(lines) + "\n"
    if not color and any(any(m) for m in is_bold):
        text += "* best\n"
    return text
