"""Tables rendered as text: the terminal, Markdown, LaTeX, CSV and HTML. Bold cells travel with
the frame in `df.attrs["bold"]`, a list of (row position, column) pairs."""
from __future__ import annotations

import html
import io
import os
import tempfile
from pathlib import Path

import pandas as pd

from ..errors import GridError

FORMATS = ("term", "markdown", "latex", "csv", "html")

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


def write_atomically(path: str | Path, text: str) -> None:
    """Write via a temporary file beside `path` and a rename: a failure never leaves half a
    table (or half a page) behind."""
    fd, tmp = tempfile.mkstemp(dir=Path(path).resolve().parent, prefix=".gridrun-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
