"""Grid files: read a YAML grid, validate it, and expand it into cells.

    name: activation_vs_optim          # MLflow experiment (default: the file's stem)
    fixed:                             # settings every cell shares (nested or dotted keys)
      data.dataset: cifar10
    grid:                              # the axes; the cells are their cartesian product
      optim.lr: [0.001, 0.005]         # a list of values for one key
      optimizer:                       # a named bundle: each label sets several keys
        sgd0.9: {optim.name: sgd, optim.momentum: 0.9}
        adam: {optim.name: adam}
    exclude:                           # partial assignments whose cells are dropped
      - {optimizer: adam, optim.lr: 0.005}
    seeds: [0, 1, 2]                   # repeat every cell with each seed
    schedule: asha                     # all (default) | asha: successive halving, gridrun.schedule
    execution: {workers: 2}            # how the launch runs: executor, workers, threads, retries,
                                       # and on Ray address and resources: {cpus: 1, gpus: 0.25}
    track: {log_model: best}           # what it records: log_model, figures, keep_checkpoints,
                                       # system_metrics (seconds between samples, 0: off)

Everything is checked before anything runs; errors are `GridError`s naming the file and key path.
Cells whose resolved configs are equal (an axis over a key that does not apply to them, such as
momentum under Adam) are kept once.
"""
from __future__ import annotations

import difflib
import itertools
import re
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from . import config
from .errors import GridError
from .schedule import DEFAULTS as SCHEDULE_DEFAULTS
from .schedule import SCHEDULES, Schedule

MAX_CELLS = 10_000  # a grid larger than this is refused rather than attempted
MAX_FILE_BYTES = 1_000_000
MAX_YAML_NODES = 100_000  # after alias expansion: refuses "billion laughs" documents
TOP_LEVEL = ("name", "description", "fixed", "grid", "exclude", "seeds", "search", "schedule",
             "execution", "track")
# how a launch runs and records the cells (not part of any cell: they change no result)
EXECUTION = {"executor": ("auto", "local", "inline", "ray"), "workers": "auto", "threads": "auto",
             "retries": 0, "address": str, "resources": {"cpus": 1, "gpus": 0}}
# system_metrics: seconds between samples of each cell's worker (0: none)
TRACK = {"log_model": ("best", "all", "none"), "figures": ("best", "all", "none"),
         "keep_checkpoints": False, "system_metrics": 10}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


@dataclass
class Axis:
    """One dimension of the grid. `values` is a list of (label, settings) pairs."""
    name: str
    values: list[tuple[str, dict[str, Any]]]
    bundle: bool  # True: named values that each set several keys

    def labels(self) -> list[str]:
        return [label for label, _ in self.values]


@dataclass
class Cell:
    index: int  # position in grid order
    config: dict[str, Any]  # resolved, flat, dotted keys
    name: str  # readable run name, e.g. "leaky_nodrop-lr0.005-sgd0.5"
    label: str  # label on the first bundle axis (else the model name): a table's "Model" column
    axes: dict[str, str]  # axis name -> label of the value this cell takes (applicable axes only)
    id: str  # stable hash of config (seed included)
    config_id: str = ""  # the same without the seed: repeats of one configuration share it


@dataclass
class SearchSpec:
    """`search:` in a grid file: an Optuna study instead of a cartesian product."""
    n_trials: int
    sampler: str  # tpe | random
    pruner: str  # median | none
    seed: int
    space: dict[str, dict]  # key -> {"low", "high", "log"} or {"choices": [...]}


@dataclass
class Grid:
    path: str
    name: str
    description: str
    fixed: dict[str, Any]
    axes: list[Axis]
    exclude: list[dict[str, Any]]
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    override_args: list[str] = field(default_factory=list)  # the --set strings, as given
    search: SearchSpec | None = None
    text: str = ""  # the file as written, logged with each launch
    execution: dict[str, Any] = field(default_factory=dict)  # executor, workers, threads
    track: dict[str, Any] = field(default_factory=dict)  # log_model
    schedule: Schedule = field(default_factory=Schedule)  # all cells to the end, or ASHA
    only: dict[str, tuple[str, ...]] = field(default_factory=dict)  # --only: axis -> levels kept

    def size(self) -> int:
        """Number of combinations before exclusions and de-duplication."""
        return math.prod(len(a.values) for a in self.axes) * max(len(self.seeds), 1)

    def cells(self) -> list[Cell]:
        """The cells in grid order; with `only`, those whose axes take one of the kept levels
        (each keeps its place and id in the whole grid, so its runs are the whole grid's)."""
        cells = expand(self)
        if not self.only:
            return cells
        return [c for c in cells
                if all(c.axes.get(axis) in levels for axis, levels in self.only.items())]


# --- reading ---------------------------------------------------------------------------------

class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no python/object tags) that also counts nodes through aliases,
    refuses a key given twice in one mapping (YAML would silently keep the last), and reads
    `1e-3` as the number users mean (YAML 1.1 wants `1.0e-3`)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise GridError(f"key {_quoted(key)} given twice in one mapping (lines "
                                        f"{seen[key] + 1} and {key_node.start_mark.line + 1})")
                    seen[key] = key_node.start_mark.line
                except TypeError:  # an unhashable key: the constructor reports it
                    pass
        return super().construct_mapping(node, deep)


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _quoted(text) -> str:
    """What the user typed, safe to print on one line: quoted, with newlines and control
    characters (ANSI escapes) escaped."""
    return repr(str(text)) if any(not c.isprintable() for c in str(text)) else f"'{text}'"


def _expanded_size(node, memo: dict) -> int:
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle counts once (and would be refused by the walk below anyway)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def read_yaml(text: str, where: str) -> Any:
    """Parse YAML safely: only plain data, and no document that grows huge through aliases."""
    if len(text.encode()) > MAX_FILE_BYTES:
        raise GridError(f"file is larger than {MAX_FILE_BYTES:,} bytes", where)
    try:
        loader = _SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            size = _expanded_size(node, {})
            if size > MAX_YAML_NODES:
                raise GridError(f"YAML expands to {size:,} nodes through aliases "
                                f"(limit {MAX_YAML_NODES:,}); refusing it", where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except RecursionError:
        raise GridError("YAML nested too deeply (over about 900 levels); refusing it",
                        where) from None
    except GridError as e:  # from the loader: a key given twice
        raise GridError(str(e), where) from None
    except yaml.constructor.ConstructorError as e:
        tag = getattr(e.problem_mark, "line", None)
        line = f" (line {tag + 1})" if tag is not None else ""
        raise GridError(f"unsafe or unsupported YAML{line}: {e.problem}", where) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise GridError(f"invalid YAML:{line} {problem}", where) from None


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
                raise GridError(f"{_quoted(k)} is given twice (nested and dotted); keep one",
                                where)
        flat.update(inner)
    return flat


def _settings(mapping: Any, where: str) -> dict[str, Any]:
    """A mapping of settings, each key known and each value valid."""
    return {key: config.check_value(key, value, f"{where}.{key}")
            for key, value in _flatten(mapping, where).items()}


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def _axis(name: str, raw: Any, where: str) -> Axis:
    if isinstance(raw, dict):  # a named bundle
        if not raw:
            raise GridError("a bundle needs at least one named value", where)
        values = []
        for label, settings in raw.items():
            if not isinstance(label, (str, int, float)) or isinstance(label, bool):
                raise GridError(f"bundle labels must be names, got {label!r}", where)
            if str(label) in (v[0] for v in values):  # 1 and "1": one name, two cells
                raise GridError(f"label {_quoted(label)} is given twice", where)
            values.append((str(label), _settings(settings or {}, f"{where}.{label}")))
        return Axis(name, values, bundle=True)
    if name not in config.OPTIONS:
        raise GridError(config.unknown_key_message(name) + "; an axis is a known key with a list "
                        "of values, or a bundle name with a mapping of labels to settings", where)
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
    labels = [_format_value(v) if short == "name" else f"{short}{_format_value(v)}"
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


def _seeds(raw: Any, where: str) -> list[int]:
    if raw is None:
        return []
    if (not isinstance(raw, list) or not raw
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32
                   for s in raw)):
        raise GridError(f"must be a non-empty list of integers in [0, 2^32 - 1], got {raw!r}",
                        where)
    if len(set(raw)) != len(raw):
        raise GridError(f"repeated seed in {raw!r}", where)
    return list(raw)


def _check_keys(raw: dict, allowed, where: str) -> None:
    """A section's keys are among `allowed`; the first unknown one (sorted) is the error."""
    unknown = set(raw) - set(allowed)
    if unknown:
        raise GridError(f"unknown key '{sorted(map(str, unknown))[0]}'; allowed: "
                        f"{', '.join(allowed)}", where)


def _search(raw: Any, fixed: dict[str, Any], where: str) -> SearchSpec:
    """Validate `search:`: sampler, pruner, n_trials and a space of ranges and choices."""
    if not isinstance(raw, dict):
        raise GridError("must be a mapping with n_trials, sampler, pruner, seed, space", where)
    _check_keys(raw, ("n_trials", "sampler", "pruner", "seed", "space"), where)
    n_trials = raw.get("n_trials", 20)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or not 1 <= n_trials <= MAX_CELLS:
        raise GridError(f"must be an integer in [1, {MAX_CELLS}], got {n_trials!r}",
                        f"{where}.n_trials")
    sampler, pruner = raw.get("sampler", "tpe"), raw.get("pruner", "median")
    if sampler not in SAMPLERS:
        raise GridError(f"unknown value {sampler!r}; allowed: {', '.join(SAMPLERS)}",
                        f"{where}.sampler")
    if pruner not in PRUNERS:
        raise GridError(f"unknown value {pruner!r}; allowed: {', '.join(PRUNERS)}",
                        f"{where}.pruner")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise GridError(f"must be an integer in [0, 2^32 - 1], got {seed!r}", f"{where}.seed")
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise GridError("needs a mapping of keys to ranges {low, high, log} or lists of choices",
                        f"{where}.space")
    space = {}
    for key, spec in space_raw.items():
        w = f"{where}.space.{key}"
        if key not in config.OPTIONS:
            raise GridError(config.unknown_key_message(str(key)), w)
        if isinstance(spec, list) and spec:
            space[key] = {"choices": [config.check_value(key, v, f"{w}[{i}]")
                                      for i, v in enumerate(spec)]}
            continue
        kind = config.OPTIONS[key].kind
        if not isinstance(spec, dict) or set(spec) - {"low", "high", "log"} or \
                not {"low", "high"} <= set(spec) or kind not in ("int", "float"):
            raise GridError("must be a list of choices, or {low, high, log} for a numeric key",
                            w)
        low = config.check_value(key, spec["low"], f"{w}.low")
        high = config.check_value(key, spec["high"], f"{w}.high")
        if not low < high:
            raise GridError(f"low must be below high, got {low} and {high}", w)
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise GridError(f"must be true or false, got {log!r}", f"{w}.log")
        if log and low <= 0:
            raise GridError(f"a log-scale range needs low > 0, got {low}", w)
        space[key] = {"low": low, "high": high, "log": log}
    # every corner of the space must make a valid cell
    corner = {k: (v["choices"][0] if "choices" in v else v["low"]) for k, v in space.items()}
    config.check_cell(config.resolve({**fixed, **corner}), where)
    return SearchSpec(n_trials, sampler, pruner, seed, space)


def launch_settings(raw: Any, defaults: dict[str, Any], where: str) -> dict[str, Any]:
    """`execution:` or `track:`: each key one of its choices, a boolean (keys whose default is
    one), an integer >= 0 (keys whose default is one), a string (keys whose default is `str`,
    else None), Ray resources (the key whose default is a mapping), or an integer >= 1 or auto
    ("auto" keys). Missing keys take their default (the first choice, or the default itself)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise GridError(f"must be a mapping with keys {', '.join(defaults)}", where)
    _check_keys(raw, defaults, where)
    settings = {}
    for key, allowed in defaults.items():
        if allowed is str:
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise GridError(f"must be a non-empty string, got {value!r}", f"{where}.{key}")
            settings[key] = value
            continue
        if isinstance(allowed, dict):
            settings[key] = ray_resources(raw.get(key), allowed, f"{where}.{key}")
            continue
        value = raw.get(key, allowed[0] if isinstance(allowed, tuple) else allowed)
        if isinstance(allowed, tuple):
            if value not in allowed:
                raise GridError(f"unknown value {value!r}; allowed: {', '.join(allowed)}",
                                f"{where}.{key}")
        elif isinstance(allowed, bool):
            if not isinstance(value, bool):
                raise GridError(f"must be true or false, got {value!r}", f"{where}.{key}")
        elif isinstance(allowed, int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise GridError(f"must be an integer >= 0, got {value!r}", f"{where}.{key}")
        elif value != "auto" and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise GridError(f"must be an integer >= 1 or auto, got {value!r}", f"{where}.{key}")
        settings[key] = value
    return settings


def parse_schedule(raw: Any, search: bool, where: str) -> Schedule:
    """`schedule:` a name (`all`, `asha`; `hyperband` for searches) or a mapping with `name`,
    `min_epochs` (>= 1) and `reduction_factor` (>= 2)."""
    if raw is None:
        return Schedule()
    if not isinstance(raw, dict):
        raw = {"name": raw}
    allowed = ("name", *SCHEDULE_DEFAULTS)
    _check_keys(raw, allowed, where)
    names = SCHEDULES if search else tuple(s for s in SCHEDULES if s != "hyperband")
    name = raw.get("name", "all")
    if name not in names:
        raise GridError(f"unknown schedule {_quoted(name)}; allowed: {', '.join(names)}"
                        + ("" if search else " (hyperband: for search: grids)"), where)
    settings = {}
    for key, least in (("min_epochs", 1), ("reduction_factor", 2)):
        value = raw.get(key, SCHEDULE_DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise GridError(f"must be an integer >= {least}, got {value!r}",
                            f"{where}.{key}")
        settings[key] = value
    return Schedule(name, **settings)


def with_schedule(grid: Grid, name: str | None, where: str = "--schedule") -> Grid:
    """`grid` with its schedule named `name` (its other settings kept): `--schedule`."""
    if name is None or name == grid.schedule.name:
        return grid
    settings = {**grid.schedule.__dict__, "name": name}
    return replace(grid, schedule=parse_schedule(settings, grid.search is not None, where))


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


def ray_resources(raw: Any, defaults: dict[str, float], where: str) -> dict[str, float]:
    """`execution.resources`: what one cell asks of a Ray cluster. `cpus` > 0 (also its torch
    threads, rounded down, at least 1); `gpus` >= 0, a fraction (0.25: four cells share a GPU)
    or a whole number (Ray's rule: no fractions above 1)."""
    if raw is None:
        return dict(defaults)
    if not isinstance(raw, dict):
        raise GridError(f"must be a mapping with keys {', '.join(defaults)}, e.g. "
                        "{cpus: 1, gpus: 0.25}", where)
    _check_keys(raw, defaults, where)
    resources = dict(defaults)
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value) or value < 0 or (key == "cpus" and value == 0):
            least = "> 0" if key == "cpus" else ">= 0"
            raise GridError(f"must be a number {least}, got {value!r}", f"{where}.{key}")
        if value > 1 and value != int(value):
            raise GridError(f"must be a whole number above 1 (Ray shares a device only in "
                            f"fractions up to 1), got {value!r}", f"{where}.{key}")
        resources[key] = value
    return resources


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from --set; the value is read as YAML (`0.1`, `true`, `[32, 64]`, `null`)."""
    where = f"--set {text}"
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise GridError("expected KEY=VALUE, e.g. --set train.max_epochs=1", where)
    return key, read_yaml(value, where)


def _read_grid_file(path: Path, where: str) -> str:
    """The text of a grid file: a regular file (a FIFO would block forever, /dev/zero never
    ends) of at most MAX_FILE_BYTES, checked before a byte is read."""
    import stat
    try:
        info = path.stat()
    except FileNotFoundError:
        raise GridError("no such grid file", where) from None
    except OSError as e:
        raise GridError(f"cannot read grid file: {e.strerror or e}", where) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise GridError(f"{kind}; give a YAML grid file", where)
    if info.st_size > MAX_FILE_BYTES:
        raise GridError(f"file is larger than {MAX_FILE_BYTES:,} bytes", where)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except UnicodeDecodeError:
        raise GridError("not UTF-8 text; give a YAML grid file", where) from None
    except OSError as e:
        raise GridError(f"cannot read grid file: {e.strerror or e}", where) from None


def load_grid(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Grid:
    """Read, validate and return a grid; `overrides` are `key=value` strings from --set."""
    path = Path(path)
    where = str(path)
    text = _read_grid_file(path, where)
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
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise GridError("must be a non-empty string", f"{where}: name")
    description = raw.get("description") or ""
    fixed = _settings(raw.get("fixed") or {}, f"{where}: fixed")
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, dict):
        raise GridError("must be a mapping of axes", f"{where}: grid")
    axes = []
    for axis_name, axis_raw in grid_raw.items():
        w = f"{where}: grid.{axis_name}"
        if not isinstance(axis_raw, (list, dict)):  # a scalar under grid: a fixed setting
            fixed[axis_name] = config.check_value(str(axis_name), axis_raw, w)
            continue
        axes.append(_axis(str(axis_name), axis_raw, w))
    seeds = _seeds(raw.get("seeds"), f"{where}: seeds")
    if seeds and "seed" in fixed:
        raise GridError("set either 'seeds' (a list) or 'seed' (in fixed), not both", where)
    if seeds and any("seed" in settings for a in axes for _, settings in a.values):
        raise GridError("set either 'seeds' (a list) or a 'seed' axis, not both", where)

    applied: dict[str, Any] = {}
    for text_override in overrides:
        key, value = parse_override(text_override)
        w = f"--set {key}"
        if key == "seeds":
            seeds = _seeds(value if isinstance(value, list) else [value], w)
            continue
        if key in ("search.n_trials", "search.seed"):
            if not isinstance(raw.get("search"), dict):
                raise GridError("the grid has no 'search:' section", w)
            raw["search"][key.split(".", 1)[1]] = value
            continue
        applied[key] = config.check_value(key, value, w)
        axes = [a for a in axes if a.name != key]  # a fixed value replaces that axis
        if key == "seed":
            seeds = []

    exclude = _exclusions(raw.get("exclude"), axes, f"{where}: exclude")
    search = None
    if raw.get("search") is not None:
        if axes or seeds:
            raise GridError("a grid with 'search:' takes no 'grid:' axes or 'seeds:'; put fixed "
                            "settings under 'fixed:'", where)
        search = _search(raw["search"], {**fixed, **applied}, f"{where}: search")
    if not {"fixed", "grid", "search"} & set(raw):  # every default: 20 epochs of CIFAR-10
        raise GridError("the grid sets nothing to train; a grid needs at least 'fixed:', "
                        "'grid:' or 'search:'", where)
    grid = Grid(str(path), name.strip(), str(description), fixed, axes, exclude, seeds,
                overrides=applied, override_args=list(overrides), text=text, search=search,
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
    cells = grid.cells()  # validates every resolved cell now, before anything runs
    if not cells:
        raise GridError("every cell is excluded; nothing to run", where)
    return grid


def grid_from_settings(overrides: list[str] | tuple[str, ...], name: str) -> Grid:
    """A one-cell grid from `key=value` settings alone: `gridrun cell` and MLproject's `cell`.

    Each setting is a one-value axis, so the run is named after the settings given
    (`lenet-adam-lr0.001-max_epochs5`) the way a grid's cells are.
    """
    settings = {}
    for text_override in overrides:
        key, value = parse_override(text_override)
        settings[key] = config.check_value(key, value, f"--set {key}")
    axes = [_axis(key, [list(v) if isinstance(v, tuple) else v], f"--set {key}")
            for key, v in settings.items()]
    text = yaml.safe_dump({"name": name, "fixed": config.nest(settings)}, sort_keys=False)
    grid = Grid("<command line>", name, "", {}, axes, [], [], text=text,
                execution=launch_settings(None, EXECUTION, "execution"),
                track=launch_settings(None, TRACK, "track"))
    grid.cells()  # validates the resolved cell
    return grid


# --- expansion -------------------------------------------------------------------------------

def _excluded(rule: dict[str, Any], bundle_labels: dict[str, str], cfg: dict[str, Any]) -> bool:
    """A rule matches when every key matches: bundle axes by label, config keys by resolved value."""
    for key, value in rule.items():
        if key in bundle_labels:
            if bundle_labels[key] != value:
                return False
        elif key not in cfg or cfg[key] != value:
            return False
    return True


def expand(grid: Grid) -> list[Cell]:
    """The cells of a grid in grid order (first axis outermost), without duplicates."""
    cells: list[Cell] = []
    seen: set[str] = set()
    matched: set[int] = set()  # exclusion rules that matched some combination
    seeds = grid.seeds or [None]
    for combo in itertools.product(*(a.values for a in grid.axes), seeds):
        *choices, seed = combo
        settings = dict(grid.fixed)
        for _, axis_settings in choices:
            settings.update(axis_settings)
        settings.update(grid.overrides)
        if seed is not None:
            settings["seed"] = seed
        cfg = config.resolve(settings)
        config.check_cell(cfg, grid.path)
        # axes whose keys all fall away for this cell (momentum under Adam) do not name it
        chosen = {axis.name: label for axis, (label, s) in zip(grid.axes, choices)
                  if axis.bundle or all(k in cfg for k in s)}
        bundle_values = {axis.name: label for axis, (label, _) in zip(grid.axes, choices)
                         if axis.bundle}
        hits = {i for i, rule in enumerate(grid.exclude) if _excluded(rule, bundle_values, cfg)}
        matched |= hits
        if hits:
            continue
        cid = config.cell_id(cfg)
        if cid in seen:
            continue
        seen.add(cid)
        parts = list(chosen.values())
        if len(grid.seeds) > 1:
            parts.append(f"s{seed}")
        # the first bundle axis names the cell in tables (the "Model" column)
        labels = [bundle_values[a.name] for a in grid.axes if a.bundle][:1]
        cells.append(Cell(
            index=len(cells),
            config=cfg,
            name="-".join(parts) or grid.name,
            label=labels[0] if labels else str(cfg["model.name"]),
            axes=chosen,
            id=cid,
            config_id=config.cell_id(cfg, with_seed=False),
        ))
    unused = [i for i in range(len(grid.exclude)) if i not in matched]
    if unused:
        i = unused[0]
        raise GridError(f"exclude[{i}] {grid.exclude[i]} matches no cell of the grid (a typo?); "
                        "each rule names axis values that occur together", grid.path)
    return cells
