"""Reading a grid: the file, `--set` overrides, `--only` slices and `--schedule`, each checked
before anything runs. Every problem is one `GridError` naming the file and the key path.
"""
from __future__ import annotations

import difflib
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import GridError
from . import config
from .grid import Axis, Cell, Grid, format_value
from .safe_yaml import quoted, read_grid_file, read_yaml
from .sections import EXECUTION, MAX_CELLS, TRACK, launch_settings, parse_schedule, parse_search, parse_seeds

TOP_LEVEL = ("name", "description", "fixed", "grid", "exclude", "seeds", "search", "schedule",
             "execution", "track")


def printable(text: str, where: str, multiline: bool = False) -> str:
    """`text`, a name or label that becomes an MLflow experiment or run name, a file name and a
    line on a terminal, refused when it holds a control or format character: a NUL cuts a name
    short in the C code that stores it, an escape sequence repaints a terminal, a right-to-left
    override shows a name backwards. `multiline` text (a description) may hold newlines and tabs."""
    for c in text:
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") and not (multiline and c in "\n\t"):
            raise GridError(f"contains the control character {ascii(c)}; allowed: printable "
                            "characters" + (", newlines and tabs" if multiline else ""), where)
    return text


def _flatten(mapping: Any, where: str, prefix: str = "") -> dict[str, Any]:
    """Nested sections to dotted keys: {"optim": {"lr": 1}} -> {"optim.lr": 1}."""
    if not isinstance(mapping, dict):
        raise GridError(f"must be a mapping of settings, got {type(mapping).__name__}", where)
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise GridError(f"keys must be strings, got {key!r}", where)
        full = f"{prefix}{key}"
        if isinstance(value, dict) and full in config.SECTIONS:
            inner = _flatten(value, f"{where}.{key}", prefix=f"{full}.")
        else:
            inner = {full: value}
        for k in inner:
            if k in flat:
                raise GridError(f"{quoted(k)} is given twice (nested and dotted); keep one",
                                where)
        flat.update(inner)
    return flat


def _settings(mapping: Any, where: str) -> dict[str, Any]:
    """A mapping of settings, each key known and each value valid."""
    return {key: config.check_value(key, value, f"{where}.{key}")
            for key, value in _flatten(mapping, where).items()}


def _axis(name: str, raw: Any, where: str) -> Axis:
    if isinstance(raw, dict):  # a named bundle
        if not raw:
            raise GridError("a bundle needs at least one named value", where)
        values = []
        for label, settings in raw.items():
            if not isinstance(label, (str, int, float)) or isinstance(label, bool):
                raise GridError(f"bundle labels must be names, got {label!r}", where)
            printable(str(label), where)
            if str(label) in (v[0] for v in values):  # 1 and "1": one name, two cells
                raise GridError(f"label {quoted(label)} is given twice", where)
            values.append((str(label), _settings(settings or {}, f"{where}.{label}")))
        return Axis(name, values, bundle=True)
    if name not in config.OPTIONS:
        raise GridError(config.unknown_key_message(
            name, f"{config.KNOWN_KEYS} with a list of values, or a bundle name with a mapping "
            "of labels to settings"), where)
    if not isinstance(raw, list) or not raw:
        raise GridError("an axis needs a non-empty list of values (put single values under "
                        "'fixed:')", where)
    if config.OPTIONS[name].kind == "int_list" and not all(isinstance(v, list) for v in raw):
        raise GridError("an axis over a list-valued key needs a list of lists, e.g. "
                        "[[32, 64], [64, 128]]", where)
    values = [config.check_value(name, v, f"{where}[{i}]") for i, v in enumerate(raw)]
    if len(set(map(repr, values))) != len(values):
        raise GridError(f"repeated value in {raw!r}", where)
    short = name.rsplit(".", 1)[-1]
    labels = [format_value(v) if short == "name" else f"{short}{format_value(v)}"
              for v in values]
    return Axis(name, [(lab, {name: v}) for lab, v in zip(labels, values)], bundle=False)


def _exclusions(raw: Any, axes: list[Axis], where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise GridError("must be a list of partial assignments, e.g. [{optim.lr: 0.1}]", where)
    by_name = {a.name: a for a in axes}
    rules = []
    for i, rule in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(rule, dict) or not rule:
            raise GridError("each exclusion is a non-empty mapping of axis -> value", w)
        checked = {}
        for key, value in rule.items():
            if key in by_name and by_name[key].bundle:
                if str(value) not in by_name[key].labels():
                    raise GridError(f"unknown label {value!r}; allowed: "
                                    f"{', '.join(by_name[key].labels())}", f"{w}.{key}")
                checked[key] = str(value)
            elif key in config.OPTIONS:
                checked[key] = config.check_value(key, value, f"{w}.{key}")
            else:
                raise GridError(f"unknown axis or key '{key}'; axes: "
                                f"{', '.join(by_name) or '(none)'}", f"{w}.{key}")
        rules.append(checked)
    return rules


def with_schedule(grid: Grid, name: str | None, where: str = "--schedule") -> Grid:
    """`grid` with its schedule named `name` (its other settings kept): `--schedule`."""
    if name is None or name == grid.schedule.name:
        return grid
    settings = {**grid.schedule.__dict__, "name": name}
    grid = replace(grid, schedule=parse_schedule(settings, grid.search is not None, where))
    if grid.search is None:
        check_settings_act(grid, where)
    return grid


def names_level(given: str, label: str, value: Any = None) -> bool:
    """Whether `given` names an axis level: its label as `--dry-run` prints it (`lr0.005`), or,
    on an axis over one key, that key's plain value (`0.005`, compared as a number). `--only`
    and `summary --compare` name levels this way."""
    if given == label:
        return True
    try:
        return value is not None and not isinstance(value, bool) and float(given) == float(value)
    except (TypeError, ValueError):
        return False


def with_only(grid: Grid, selections: Sequence[str], where: str = "--only") -> Grid:
    """`grid` restricted to a slice: each selection is `AXIS=LEVEL[,LEVEL...]`, with the levels as
    `--dry-run` prints them (`variant=leaky_nodrop`, `optim.lr=lr0.005`; a plain-value axis also
    takes its value, `optim.lr=0.005`). Selections on different axes must all hold."""
    if not selections:
        return grid
    if grid.search is not None:
        raise GridError("a search has no axes to select from; allowed: grids with a grid: section",
                        where)
    axes = {axis.name: axis for axis in grid.axes}
    only: dict[str, tuple[str, ...]] = {}
    for selection in selections:
        name, sep, levels = selection.partition("=")
        name = name.strip()
        if not sep or not name or not levels.strip():
            raise GridError(f"'{selection}' is not AXIS=LEVEL[,LEVEL]; e.g. "
                            f"{grid.axes[0].name if grid.axes else 'variant'}="
                            f"{grid.axes[0].labels()[0] if grid.axes else 'leaky_nodrop'}", where)
        if name not in axes:
            raise GridError(f"no axis '{name}' in grid '{grid.name}'; allowed: "
                            f"{', '.join(axes) or 'none (the grid has no axes)'}", where)
        axis = axes[name]
        kept = []
        for level in (part.strip() for part in levels.split(",")):
            label = next((label for label, settings in axis.values if names_level(
                level, label, None if axis.bundle else next(iter(settings.values()), None))),
                None)
            if label is None:
                raise GridError(f"axis '{name}' has no level '{level}'; allowed: "
                                f"{', '.join(axis.labels())}", where)
            kept.append(label)
        only[name] = tuple(dict.fromkeys(only.get(name, ()) + tuple(kept)))
    narrowed = replace(grid, only=only)
    if not narrowed.cells():
        raise GridError(f"no cell of grid '{grid.name}' takes all of "
                        f"{'; '.join(selections)}", where)
    return narrowed


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from --set; the value is read as YAML (`0.1`, `true`, `[32, 64]`, `null`)."""
    where = f"--set {text}"
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise GridError("expected KEY=VALUE, e.g. --set train.max_epochs=1", where)
    return key, read_yaml(value, where)


def _top_level(text: str, where: str) -> dict:
    """The file's mapping, each top-level key known (a typo gets a "did you mean")."""
    raw = read_yaml(text, where)
    if raw is None or raw == {}:
        raise GridError("the grid file is empty; a grid needs at least 'fixed:', 'grid:' or "
                        "'search:' (see grids/quickstart.yaml)", where)
    if not isinstance(raw, dict):
        raise GridError("a grid file is a mapping with keys " + ", ".join(TOP_LEVEL), where)
    for key in raw:
        if key not in TOP_LEVEL:
            close = difflib.get_close_matches(str(key), TOP_LEVEL, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise GridError(f"unknown top-level key '{key}'{hint}; allowed: {', '.join(TOP_LEVEL)}",
                            where)
    return raw


def _axes(raw: dict, fixed: dict[str, Any], where: str) -> list[Axis]:
    """The `grid:` section's axes; a scalar under `grid:` is a fixed setting (put in `fixed`)."""
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, dict):
        raise GridError("must be a mapping of axes", f"{where}: grid")
    axes = []
    for axis_name, axis_raw in grid_raw.items():
        w = f"{where}: grid.{axis_name}"
        printable(str(axis_name), w)
        if not isinstance(axis_raw, (list, dict)):
            fixed[axis_name] = config.check_value(str(axis_name), axis_raw, w)
            continue
        axes.append(_axis(str(axis_name), axis_raw, w))
    return axes


def _overridden(raw: dict, axes: list[Axis], seeds: list[int], overrides: Sequence[str]
                ) -> tuple[dict[str, Any], list[Axis], list[int]]:
    """`--set` applied: (the settings it fixes, the axes left, the seeds). A fixed value
    replaces the axis over its key; `seeds` and `search.n_trials`/`search.seed` are the file's
    sections, changed in `raw`."""
    applied: dict[str, Any] = {}
    for text_override in overrides:
        key, value = parse_override(text_override)
        w = f"--set {key}"
        if key == "seeds":
            seeds = parse_seeds(value if isinstance(value, list) else [value], w)
            continue
        if key in ("search.n_trials", "search.seed"):
            if not isinstance(raw.get("search"), dict):
                raise GridError("the grid has no 'search:' section", w)
            raw["search"][key.split(".", 1)[1]] = value
            continue
        if config.is_launch_key(key):
            _set_launch_setting(raw, key, value)
            continue
        applied[key] = config.check_value(key, value, w)
        axes = [a for a in axes if a.name != key]
        if key == "seed":
            seeds = []
    return applied, axes, seeds


def _set_launch_setting(raw: dict, key: str, value: Any) -> None:
    """`--set track.log_model=none`, `--set execution.workers=2`, `--set schedule.min_epochs=3`:
    a key of the launch sections `gridrun keys` lists beside the cells' keys, checked under
    the `--set` that gives it, then put into the file's section (its other keys stay), so the
    section is read as though the file had said so. The launch's own options (`--workers`,
    `--log-model`, `--schedule`) still come before it."""
    section, _, name = key.partition(".")
    where = f"--set {section}"  # a bad value reads `--set track.log_model: unknown value ...`
    if section == "schedule":
        parse_schedule({name: value}, raw.get("search") is not None, where)
    else:
        launch_settings({name: value}, {"execution": EXECUTION, "track": TRACK}[section], where)
    given = raw.get(section)
    if section == "schedule" and isinstance(given, str):  # `schedule: asha`
        given = {"name": given}
    if given is None or isinstance(given, dict):  # else the file's section is the error
        raw[section] = {**(given or {}), name: value}


def load_grid(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Grid:
    """Read, validate and return a grid; `overrides` are `key=value` strings from --set.
    Every cell is resolved and checked here, before anything runs."""
    path = Path(path)
    where = str(path)
    text = read_grid_file(path, where)
    raw = _top_level(text, where)
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise GridError("must be a non-empty string", f"{where}: name")
    printable(name, f"{where}: name")
    printable(str(raw.get("description") or ""), f"{where}: description", multiline=True)
    fixed = _settings(raw.get("fixed") or {}, f"{where}: fixed")
    axes = _axes(raw, fixed, where)
    seeds = parse_seeds(raw.get("seeds"), f"{where}: seeds")
    if seeds and "seed" in fixed:
        raise GridError("set either 'seeds' (a list) or 'seed' (in fixed), not both", where)
    if seeds and any("seed" in settings for a in axes for _, settings in a.values):
        raise GridError("set either 'seeds' (a list) or a 'seed' axis, not both", where)
    applied, axes, seeds = _overridden(raw, axes, seeds, overrides)
    exclude = _exclusions(raw.get("exclude"), axes, f"{where}: exclude")
    search = None
    if raw.get("search") is not None:
        if axes or seeds:
            raise GridError("a grid with 'search:' takes no 'grid:' axes or 'seeds:'; put fixed "
                            "settings under 'fixed:'", where)
        search = parse_search(raw["search"], {**fixed, **applied}, f"{where}: search")
    if not {"fixed", "grid", "search"} & set(raw):  # every default: 20 epochs of CIFAR-10
        raise GridError("the grid sets nothing to train; a grid needs at least 'fixed:', "
                        "'grid:' or 'search:'", where)
    grid = Grid(str(path), name.strip(), str(raw.get("description") or ""), fixed, axes,
                exclude, seeds, overrides=applied, override_args=list(overrides), text=text,
                search=search,
                schedule=parse_schedule(raw.get("schedule"), search is not None,
                                        f"{where}: schedule"),
                execution=launch_settings(raw.get("execution"), EXECUTION,
                                          f"{where}: execution"),
                track=launch_settings(raw.get("track"), TRACK, f"{where}: track"))
    if search is not None:
        return grid
    if grid.size() > MAX_CELLS:
        raise GridError(f"the grid has {grid.size():,} combinations; the limit is {MAX_CELLS:,} "
                        "(split it into several grids)", where)
    cells = grid.cells()  # every cell resolved and checked: seconds for the largest grids
    if not cells:
        raise GridError("every cell is excluded; nothing to run", where)
    check_settings_act(grid, where, cells)
    return grid


def check_settings_act(grid: Grid, where: str, cells: list[Cell] | None = None) -> None:
    """Refuse a setting the grid gives that can do nothing in any of its cells, rather than
    train without a word: a key that applies to none of them (`optim.momentum` where no cell
    uses SGD), an ASHA schedule with no rung below any cell's `train.max_epochs` (nothing can
    ever be pruned), a step schedule that never steps, an abort check after the last epoch.
    `cells`: the grid's, when the caller has them already."""
    configs = [c.config for c in (grid.cells() if cells is None else cells)]
    given = {*grid.fixed, *grid.overrides,
             *(key for axis in grid.axes for _, settings in axis.values for key in settings)}
    for key in sorted(given):
        option = config.OPTIONS[key]
        if option.applies is not None and not any(key in cfg for cfg in configs):
            raise GridError(f"{key} does nothing here: it needs {option.when}, which no cell of "
                            "the grid has; allowed: remove it, or give cells what it needs", where)
    if grid.schedule.name == "asha" and not any(grid.schedule.rungs(cfg["train.max_epochs"])
                                                for cfg in configs):
        most = max(cfg["train.max_epochs"] for cfg in configs)
        raise GridError(f"schedule asha can never prune: its first rung, schedule.min_epochs "
                        f"{grid.schedule.min_epochs}, is not below any cell's train.max_epochs "
                        f"(at most {most}); allowed: schedule.min_epochs below {most}, or "
                        "schedule: all", where)
    for key, limit, what in (("train.step_size", "train.max_epochs", "the learning rate never "
                              "decays"),
                             ("train.abort_epoch", "train.max_epochs", "the check never runs")):
        strict = key == "train.step_size"  # a step at epoch max_epochs comes after training
        acting = [cfg for cfg in configs if key in cfg]
        if key in given and acting and all(cfg[key] >= cfg[limit] if strict
                                           else cfg[key] > cfg[limit] for cfg in acting):
            raise GridError(f"{key} {acting[0][key]} does nothing: {what} within "
                            f"{limit} {acting[0][limit]}; allowed: {key} "
                            f"{'below' if strict else 'at most'} {limit}", where)


def grid_from_settings(overrides: list[str] | tuple[str, ...], name: str) -> Grid:
    """A one-cell grid from `key=value` settings alone: `gridrun cell` and MLproject's `cell`.

    Each setting is a one-value axis, so the run is named after the settings given
    (`lenet-adam-lr0.001-max_epochs5`) the way a grid's cells are.
    """
    printable(name, "--experiment")
    settings, sections = {}, {}
    for text_override in overrides:
        key, value = parse_override(text_override)
        if key.startswith("schedule."):  # one cell: nothing to compare it with at a rung
            raise GridError("a single cell has no schedule; allowed: the cells' keys, "
                            "execution.* and track.*", f"--set {key}")
        if config.is_launch_key(key):
            _set_launch_setting(sections, key, value)
            continue
        settings[key] = config.check_value(key, value, f"--set {key}")
    axes = [_axis(key, [list(v) if isinstance(v, tuple) else v], f"--set {key}")
            for key, v in settings.items()]
    text = yaml.safe_dump({"name": name, "fixed": config.nest(settings), **sections},
                          sort_keys=False)
    grid = Grid("<command line>", name, "", {}, axes, [], [], text=text,
                execution=launch_settings(sections.get("execution"), EXECUTION, "--set execution"),
                track=launch_settings(sections.get("track"), TRACK, "--set track"))
    grid.cells()  # validates the resolved cell
    return grid
