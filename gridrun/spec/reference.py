"""Every key a grid file may set, as `gridrun keys` prints it and the docs' key reference shows it.

Read from the schema itself (`config.OPTIONS` and the section defaults), so the listing cannot
drift from what the loader accepts: a new `Option` row is a new line here and a new row on the
documentation site, with nothing else to edit.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import config, sections


@dataclass(frozen=True)
class KeyRow:
    """One key as a reader needs it: what to write, what it defaults to, what is allowed."""
    key: str
    default: str
    allowed: str
    applies: str  # when the key means something ("" : always)
    in_cell_id: str  # "yes" (it changes results), "no", or "unless default" (added later)
    doc: str


def cell_keys(options: dict[str, config.Option] | None = None) -> list[KeyRow]:
    """The keys of a cell (`fixed:`, axes, `--set`), in the schema's order."""
    rows = []
    for opt in (config.OPTIONS if options is None else options).values():
        default = "(from the model)" if opt.default is config.FROM_MODEL else yaml_value(opt.default)
        in_id = "no" if not opt.hashed else "yes" if opt.hash_default else "unless default"
        rows.append(KeyRow(opt.key, default, opt.allowed(), opt.when, in_id, opt.doc))
    return rows


def section_keys() -> list[KeyRow]:
    """The keys of `execution:`, `track:` and `schedule:`: how a launch runs and records cells,
    part of no cell id."""
    rows = []
    for section, defaults in (("execution", sections.EXECUTION), ("track", sections.TRACK)):
        for key, allowed in defaults.items():
            rows.append(KeyRow(f"{section}.{key}", *_section_default(allowed), "", "no",
                               sections.SECTION_DOCS[f"{section}.{key}"]))
    rows.append(KeyRow("schedule.name", sections.Schedule().name,
                       "one of " + ", ".join(sections.SCHEDULES),
                       "", "no", sections.SECTION_DOCS["schedule.name"]))
    for key, default in sections.SCHEDULE_DEFAULTS.items():
        rows.append(KeyRow(f"schedule.{key}", yaml_value(default),
                           sections.schedule_allowed(key), "", "no",
                           sections.SECTION_DOCS[f"schedule.{key}"]))
    return rows


def yaml_value(value) -> str:
    """A default as a grid file writes it: `null`, `true`, `cifar10`, `{cpus: 1, gpus: 0}`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _section_default(allowed) -> tuple[str, str]:
    """(default, allowed) of a section key, read as `sections.launch_settings` reads it."""
    if allowed is str:
        return "null", "a string"
    if isinstance(allowed, tuple):
        return allowed[0], "one of " + ", ".join(allowed)
    if isinstance(allowed, dict):
        return yaml_value(allowed), "a mapping of " + ", ".join(allowed) + " to numbers >= 0"
    if isinstance(allowed, bool):
        return yaml_value(allowed), "true or false"
    if allowed == "auto":
        return "auto", "an integer >= 1 or auto"
    return str(allowed), "an integer >= 0"


def keys_text(options: dict[str, config.Option] | None = None) -> str:
    """The plain listing of `gridrun keys`: one key a line, its doc indented below it."""
    lines = []
    for row in cell_keys(options) + section_keys():
        applies = f"  [only for {row.applies}]" if row.applies else ""
        lines.append(f"{row.key:<26} default {row.default:<18} {row.allowed}{applies}")
        if row.doc:
            lines.append(f"{'':<26} {row.doc}")
    return "\n".join(lines) + "\n"


def keys_markdown(options: dict[str, config.Option] | None = None) -> str:
    """The listing as Markdown tables, a table per section (`gridrun keys --format markdown`)."""
    out = []
    groups: dict[str, list[KeyRow]] = {}
    for row in cell_keys(options):
        groups.setdefault(row.key.split(".")[0] if "." in row.key else "cell", []).append(row)
    for name, rows in groups.items():
        out += [f"### `{name}`" if name != "cell" else "### The cell", "",
                "| key | default | allowed | in the cell id | what it does |",
                "|---|---|---|---|---|"]
        out += [_markdown_row(row) for row in rows] + [""]
    out += ["### `execution:`, `track:` and `schedule:`", "",
            "How a launch runs and records its cells. None of them changes a result, so none is "
            "part of a cell id. Each goes under its section at the top of the grid file "
            "(`track: {log_model: none}`), or in one launch's `--set` (`--set "
            "track.log_model=none`).", "",
            "| key | default | allowed | what it does |", "|---|---|---|---|"]
    out += [_markdown_row(row, id_column=False) for row in section_keys()]
    return "\n".join(out) + "\n"


def _markdown_row(row: KeyRow, id_column: bool = True) -> str:
    doc = row.doc + (f" (only for {row.applies})" if row.applies else "")
    cells = [f"`{row.key}`", f"`{row.default}`", row.allowed]
    if id_column:
        cells.append(row.in_cell_id)
    cells.append(doc)
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
