"""The figures logged next to runs: what a user would otherwise draw by hand.

Per cell (`cell_figures`, for the cells `track.figures` names): loss and accuracy curves, the
confusion matrix with and without its diagonal, and per-class error rates; every cell's text
and JSON reports are `reports.py`'s. Per grid (`grid_plots`): accuracy by each factor and
accuracy against parameter count. Functions write files into a folder; `gridrun.tracking`
logs the folder.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..train.records import CellResult
from .frames import has_result
from .reports import confusion

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DODGE = 0.04  # sideways offset between labels in accuracy_vs_params, as a share of x


def cell_figures(result: CellResult, out: Path, title: str = "") -> list[Path]:
    """A finished cell's figures: curves, the confusion matrix with and without its diagonal,
    and the error rate of each class."""
    out.mkdir(parents=True, exist_ok=True)
    files = [plot_curves(result, out / "curves.png", title)]
    if result.test_predictions is None:
        return files
    cm, classes = confusion(result)
    files.append(plot_confusion(cm, classes, out / "confusion_matrix.png",
                                f"{title} confusion matrix (test)".strip()))
    errors_only = cm.copy()
    np.fill_diagonal(errors_only, 0)
    files.append(plot_confusion(errors_only, classes, out / "confusion_matrix_errors.png",
                                f"{title} misclassifications (diagonal removed)".strip()))
    files.append(plot_class_errors(cm, classes, out / "per_class_error.png", title))
    return files


def plot_curves(result: CellResult, path: Path, title: str = "") -> Path:
    epochs = [s.epoch for s in result.history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, name in ((ax_loss, "loss", "Loss"), (ax_acc, "acc", "Accuracy")):
        ax.plot(epochs, [getattr(s, f"train_{key}") for s in result.history], "o-", label="train")
        ax.plot(epochs, [getattr(s, f"val_{key}") for s in result.history], "o-",
                label="validation")
        if result.epochs_needed:
            ax.axvline(result.epochs_needed, color="grey", ls="--", lw=1, label="best epoch")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title} ({result.outcome})".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    size = max(5, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 20:
        limit = cm.max() / 2 if cm.max() else 1
        for (i, j), value in np.ndenumerate(cm):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                    color="white" if value > limit else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_class_errors(cm: np.ndarray, classes: list[str], path: Path, title: str = "") -> Path:
    totals = cm.sum(axis=1)
    errors = (totals - np.diag(cm)) / np.maximum(totals, 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(classes) + 2), 4))
    ax.bar(classes, errors * 100, color="tab:red")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{title} error by class".strip())
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_axis(means: pd.Series, stds: pd.Series) -> tuple[float, float]:
    """Y limits (%) that fit the bars and their error bars with a margin, inside 0-100: a
    95-98 % spread is visible, not a sliver at the top of a 0-100 % axis."""
    low = float(((means - stds) * 100).min())
    high = float(((means + stds) * 100).max())
    margin = max(high - low, 1.0) * 0.25
    return max(0.0, low - margin), min(100.0, high + margin)


def grid_plots(cells: pd.DataFrame, levels: dict[str, pd.Series], out: Path) -> list[Path]:
    """Grid-level figures from a `gridrun.summary.cells_frame`: accuracy by factor and by size.

    `levels` maps each factor (axis) to the level of every cell, aligned with `cells`.
    """
    out.mkdir(parents=True, exist_ok=True)
    finished = has_result(cells)  # pruned cells' accuracy is an early epoch's: left out
    done = cells[finished]
    files: list[Path] = []
    if done.empty:
        return files
    if levels:
        fig, axes = plt.subplots(1, len(levels), figsize=(4.5 * len(levels), 4), squeeze=False)
        for ax, (factor, level) in zip(axes[0], levels.items()):
            means = done.groupby(level[finished], sort=False)["test_acc"].agg(
                ["mean", "std", "count"])
            best = int(means["mean"].to_numpy().argmax())
            bars = ax.bar(means.index.astype(str), means["mean"] * 100,
                          yerr=means["std"].fillna(0) * 100, capsize=3,
                          color=["tab:green" if i == best else "tab:blue"
                                 for i in range(len(means))])
            ax.bar_label(bars, labels=[f"{m * 100:.1f}" for m in means["mean"]], fontsize=8,
                         padding=2)
            ax.set_ylim(*accuracy_axis(means["mean"], means["std"].fillna(0)))
            ax.set_title(f"accuracy by {factor} (best level green)")
            ax.set_ylabel("mean test accuracy (%)")
            ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        files.append(out / "accuracy_by_factor.png")
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = list(done.groupby("label", sort=False))
    for i, (label, group) in enumerate(groups):
        # models of the same size (dropout or not) would hide each other: each label gets its
        # own marker, drawn hollow, and is dodged sideways by a few percent on the log axis
        dodge = 1 + DODGE * (i - (len(groups) - 1) / 2)
        ax.scatter(group["params_total"] * dodge, group["test_acc"] * 100, label=str(label),
                   marker=MARKERS[i % len(MARKERS)], facecolors="none",
                   edgecolors=f"C{i % 10}", s=40, linewidths=1.5)
    ax.set_xscale("log")
    sizes = done["params_total"].astype(float)
    if len(sizes) and sizes.min() > 0 and sizes.max() / sizes.min() < 4:
        # at least a factor of 8 on the axis: the dodge reads as an offset, not a size gap
        ax.set_xlim(sizes.min() / 2.8, sizes.max() * 2.8)
    ax.set_xlabel(f"parameters (labels of one size dodged by {DODGE:.0%} apart)"
                  if len(groups) > 1 else "parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs parameter count")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    files.append(out / "accuracy_vs_params.png")
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)
    return files
