"""The reports logged next to every cell's run: its confusion matrix (JSON), the most-confused
class pairs, and precision, recall, F1 and support per class as text and JSON (the layout of
scikit-learn's `classification_report`, which tests/test_reports.py checks them against).

Text and JSON only, from numpy: the launching process writes them for every cell while the
workers train, and scikit-learn's metrics would cost it a second of imports on their cores.
The figures (`figures.py`, matplotlib) are drawn only for the cells `track.figures` names.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..train.records import CellResult

TOP_CONFUSIONS = 5
REPORT_DIGITS = 4


def cell_reports(result: CellResult, out: Path) -> list[Path]:
    """Write a finished cell's reports into `out`; return the files written (none for a cell
    without test predictions). They cost milliseconds; the figures (`figures.cell_figures`)
    about half a second of matplotlib per cell."""
    out.mkdir(parents=True, exist_ok=True)
    if result.test_predictions is None:
        return []
    cm, classes = confusion(result)
    (out / "confusion_matrix.json").write_text(json.dumps({"classes": classes,
                                                          "matrix": cm.tolist()}))
    pairs = most_confused(cm, classes)
    (out / "top_confusions.json").write_text(json.dumps(pairs, indent=2))
    (out / "top_confusions.txt").write_text(
        "".join(f"{p['true']:>12} -> {p['predicted']:<12} {p['count']:>6}  "
                f"({p['share_of_true']:.1%} of {p['true']})\n" for p in pairs))
    report = classification_report(cm, classes)
    (out / "classification_report.txt").write_text(report_text(report))
    (out / "classification_report.json").write_text(json.dumps(report, indent=2))
    return [out / name for name in (
        "confusion_matrix.json", "top_confusions.json", "top_confusions.txt",
        "classification_report.txt", "classification_report.json")]


def confusion(result: CellResult) -> tuple[np.ndarray, list[str]]:
    """The test set's confusion matrix (rows: true class, columns: predicted) and the classes."""
    classes = result.classes
    n = len(classes)
    pairs = result.test_targets.numpy().astype(np.int64) * n + result.test_predictions.numpy()
    return np.bincount(pairs, minlength=n * n).reshape(n, n), classes


def most_confused(cm: np.ndarray, classes: list[str], top: int = TOP_CONFUSIONS) -> list[dict]:
    """The `top` off-diagonal cells of a confusion matrix, largest first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None, kind="stable")[::-1][:top]
    pairs = []
    for flat in order:
        i, j = np.unravel_index(flat, off.shape)
        if off[i, j] == 0:
            break
        pairs.append({"true": classes[i], "predicted": classes[j], "count": int(off[i, j]),
                      "share_of_true": float(off[i, j] / max(cm[i].sum(), 1))})
    return pairs


def classification_report(cm: np.ndarray, classes: list[str]) -> dict:
    """Precision, recall, F1 and support of each class, then accuracy and the macro and
    support-weighted averages, from a confusion matrix; a ratio with nothing to divide by is
    0 (a class never predicted has precision 0)."""
    hits = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * hits, support + predicted)
    rows = np.stack([precision, recall, f1])
    report = {name: _row(*rows[:, i], support[i]) for i, name in enumerate(classes)}
    total = int(support.sum())
    report["accuracy"] = float(hits.sum() / total) if total else 0.0
    report["macro avg"] = _row(*rows.mean(axis=1), total)
    weighted = np.average(rows, axis=1, weights=support) if total else np.zeros(3)
    report["weighted avg"] = _row(*weighted, total)
    return report


def report_text(report: dict, digits: int = REPORT_DIGITS) -> str:
    """`classification_report`'s dict as scikit-learn's text table."""
    names = [k for k in report if k not in ("accuracy", "macro avg", "weighted avg")]
    width = max([len(n) for n in names] + [len("weighted avg"), digits])
    row = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    text = ("{:>{width}s} " + " {:>9}" * 4).format(
        "", "precision", "recall", "f1-score", "support", width=width) + "\n\n"
    for name in names:
        r = report[name]
        text += row.format(name, r["precision"], r["recall"], r["f1-score"], int(r["support"]),
                           width=width, digits=digits)
    total = int(report["macro avg"]["support"])
    text += "\n" + ("{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f} {:>9}\n").format(
        "accuracy", "", "", report["accuracy"], total, width=width, digits=digits)
    for name in ("macro avg", "weighted avg"):
        r = report[name]
        text += row.format(name, r["precision"], r["recall"], r["f1-score"], total,
                           width=width, digits=digits)
    return text


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return np.divide(top, bottom, out=np.zeros(len(top)), where=bottom > 0)


def _row(precision: float, recall: float, f1: float, support) -> dict:
    return {"precision": float(precision), "recall": float(recall), "f1-score": float(f1),
            "support": float(support)}  # a float, as scikit-learn's dict has it
