"""Results tables from a grid's MLflow runs: the table a user puts in their report.

    table(grid=load_grid("grids/activation_vs_optim.yaml"))     # -> pandas.DataFrame
    render(df, "markdown")              # render.py: term | markdown | latex | csv | html

Rows: one per cell in grid order; only the latest FINISHED run of a cell counts, and a cell with no
finished run shows its latest state (Failed, Running, Killed) or "Not run" — never dropped. When a
grid repeats cells over seeds, one row per configuration shows mean ± std and n, and the best
configuration is bold together with every configuration not significantly worse than it: a
one-sided Welch t-test at alpha = 0.05 on the per-seed test accuracies (needs n >= 2 on both).

Bold cells travel with the frame in `df.attrs["bold"]`, a list of (row position, column) pairs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import GridError
from ..spec.grid import Grid
from ..spec.load import names_level
from .frames import METRICS, cells_frame, factor_levels, factors, finished_accuracy

VIEWS = ("results", "params")
ALPHA = 0.05
STATE = {"FAILED": "Failed", "RUNNING": "Running", "SCHEDULED": "Running", "KILLED": "Killed",
         "NOT RUN": "Not run"}


def table(experiment: str | None = None, grid: Grid | None = None,
          tracking_uri: str | None = None, view: str = "results", sort: str | None = None,
          pivot: tuple[str, str] | None = None, effects: bool = False,
          compare: str | None = None, all_cells: bool = False) -> pd.DataFrame:
    """The summary table of a grid (or of an experiment by name) as a DataFrame; `compare`, a
    CSV file of published results (`read_reference`), adds them beside ours.

    Cells no launch has run yet are left out (a slice of 4 is 4 rows, not 24 of which 20 say
    "Not run") and counted in `df.attrs["not_run"]`; `all_cells` keeps them, and so does a
    grid none of whose cells ran (the table is then the plan)."""
    if grid is None and experiment is None:
        raise GridError("give a grid file or --experiment NAME")
    if view not in VIEWS:
        raise GridError(f"unknown view '{view}'; allowed: {', '.join(VIEWS)}", "--view")
    reference = read_reference(compare) if compare else None
    cells = cells_frame(experiment, grid, tracking_uri)
    not_run = cells["status"] == "NOT RUN"
    left_out = 0
    if not all_cells and not not_run.all():
        cells, left_out = cells[~not_run].reset_index(drop=True), int(not_run.sum())
    out = tabulate(cells, view, sort, pivot, effects, reference)
    out.attrs["not_run"] = left_out
    return out


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








def pivot_table(cells: pd.DataFrame, rows: str, cols: str) -> pd.DataFrame:
    """Mean test accuracy (%) of finished runs for each (rows, cols) level pair."""
    done = finished_accuracy(cells)
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
    done = finished_accuracy(cells)
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
