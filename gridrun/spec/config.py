"""The settings of one cell: every key a grid may set, its type, range, default and when it applies.

A cell's config is a flat dict of dotted keys (`optim.lr`). `resolve()` fills defaults, drops keys
that do not apply to the cell (momentum under Adam, `model.norm` for a model without that option)
and checks cross-key rules. `check_value()` validates one key's value where the user wrote it, so
an error can name the file and the key path.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import GridError
from . import catalog
from .catalog import ACTIVATIONS, NORMS

DATASETS = ("cifar10", "digits", "imagefolder", "cub200")
NORMALIZE = ("dataset", "symmetric", "centered", "imagenet", "none")
SCHEDULERS = ("none", "step", "plateau", "cosine", "onecycle")
OPTIMIZERS = ("sgd", "adam", "adamw")
MONITORS = ("val_acc", "val_loss", "train_acc", "train_loss")
PRECISIONS = ("fp32", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

FROM_MODEL = object()  # default comes from the model builder's signature


@dataclass(frozen=True)
class Option:
    key: str
    kind: str  # int | float | bool | str | int_list
    default: Any = None
    choices: Callable[[], tuple] | tuple | None = None
    check: tuple[Callable[[Any], bool], str] | None = None  # (predicate, "what is allowed")
    optional: bool = False  # None is a valid value (e.g. "use the whole set")
    applies: Callable[[dict], bool] | None = None
    when: str = ""  # says when `applies` holds, for `gridrun keys`
    hashed: bool = True  # part of the cell id (False for where it runs, not what it computes)
    # False: left out of the cell id while at its default. For keys added after cells were
    # recorded whose default changes nothing, so every existing cell keeps its id (and its runs)
    hash_default: bool = True
    doc: str = ""

    def allowed(self) -> str:
        """A short description of the allowed values, for error messages."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choice_list())
        what = {"int": "an integer", "float": "a number", "bool": "true or false",
                "str": "a string", "int_list": "a list of positive integers"}[self.kind]
        if self.check:
            what += f" {self.check[1]}"
        if self.optional:
            what += " or null"
        return what

    def choice_list(self) -> tuple:
        return self.choices() if callable(self.choices) else self.choices


def _sgd(cfg):
    return cfg.get("optim.name") == "sgd"


def _model_option(name: str, kind: str, **kwargs) -> Option:
    """A `model.*` key: it applies to models whose builder takes `name`, which gives its default."""
    def applies(cfg):
        spec = catalog.models().get(cfg.get("model.name"))
        return spec is not None and name in spec.options
    return Option(f"model.{name}", kind, FROM_MODEL, applies=applies, when="models that take it",
                  **kwargs)


def _options() -> dict[str, Option]:
    """Every key, in the order `gridrun keys` lists them: one row each, so the schema reads as
    a table (long on purpose: a row per key, nothing else)."""
    positive = (lambda v: v > 0, "> 0")
    at_least_1 = (lambda v: v >= 1, ">= 1")
    non_negative = (lambda v: v >= 0, ">= 0")
    # numpy's and sklearn's seeds are 32-bit: a larger one fails inside a run, not here
    seed_range = (lambda v: 0 <= v < 2**32, "in [0, 2^32 - 1]")
    fraction = (lambda v: 0 <= v < 1, "in [0, 1)")
    opts = [
        Option("seed", "int", 0, check=seed_range, doc="random seed of the cell"),
        # data
        Option("data.dataset", "str", "cifar10", choices=DATASETS),
        Option("data.val_fraction", "float", 0.1, check=(lambda v: 0 < v < 1, "in (0, 1)"),
               doc="share of the training set held out for validation (stratified)"),
        Option("data.val_size", "int", None, check=at_least_1, optional=True,
               doc="validation images (stratified); null: val_fraction of the training set, or "
                   "with train_size, train_size * val_fraction / (1 - val_fraction)"),
        Option("data.train_size", "int", None, check=at_least_1, optional=True,
               doc="train on a stratified subset of this many images (after the validation split)"),
        Option("data.test_size", "int", None, check=at_least_1, optional=True,
               doc="score on a stratified subset of this many test images"),
        Option("data.batch_size", "int", 64, check=at_least_1),
        Option("data.shuffle", "bool", True, doc="reshuffle the training set every epoch"),
        Option("data.drop_last", "bool", True,
               doc="skip each epoch's last partial training batch (45,000 % 64 leaves 8 images "
                   "whose step jolts batch norm right before validation); kept when the training "
                   "set is smaller than one batch. Evaluation always sees every image"),
        Option("data.image_size", "int", None, check=at_least_1, optional=True,
               doc="resize images to this size (e.g. 224 for pretrained backbones); null: as stored"),
        Option("data.normalize", "str", "dataset", choices=NORMALIZE,
               doc="dataset: its mean/std; symmetric: mean 0.5 std 0.5; centered: mean 0.5 std 1 "
                   "(inputs in [-0.5, 0.5]); imagenet: ImageNet mean/std; none"),
        Option("data.split_seed", "int", 0, check=seed_range,
               doc="seed of the validation split and subsets, shared by all cells"),
        # model
        Option("model.name", "str", "base4", choices=lambda: tuple(catalog.models())),
        _model_option("conv_activation", "str", choices=ACTIVATIONS),
        _model_option("fc_activation", "str", choices=ACTIVATIONS),
        _model_option("norm", "str", choices=NORMS),
        _model_option("dropout", "float", check=fraction),
        _model_option("filters", "int_list", doc="conv widths, one conv layer each"),
        _model_option("fc", "int_list", doc="hidden widths of the fully connected layers"),
        _model_option("kernels", "int_list", doc="kernel sizes, one per conv layer or branch"),
        _model_option("widths", "int_list", doc="channel widths of the blocks"),
        _model_option("units_per_block", "int", check=at_least_1),
        _model_option("pretrained", "bool", doc="ImageNet weights from the local torch hub cache"),
        _model_option("freeze", "str", choices=("none", "head", "last_block")),
        Option("model.max_params", "int", None, check=at_least_1, optional=True,
               doc="refuse, before training, any cell whose model has more parameters"),
        # optimizer
        Option("optim.name", "str", "sgd", choices=OPTIMIZERS),
        Option("optim.lr", "float", 0.01, check=positive),
        Option("optim.momentum", "float", 0.9, check=fraction, applies=_sgd,
               when="optim.name: sgd"),
        Option("optim.nesterov", "bool", False, applies=_sgd, when="optim.name: sgd"),
        Option("optim.weight_decay", "float", 0.0, check=non_negative),
        # augmentation of training batches
        Option("augment.crop_padding", "int", 0, check=non_negative,
               doc="random crop with this much zero padding (0: off)"),
        Option("augment.flip", "bool", False, doc="random horizontal flip"),
        Option("augment.color_jitter", "float", 0.0, check=(lambda v: 0 <= v <= 1, "in [0, 1]"),
               doc="brightness/contrast/saturation scaled by up to 1 +- this (0: off)"),
        Option("augment.rotation", "float", 0.0, check=(lambda v: 0 <= v <= 180, "in [0, 180]"),
               doc="random rotation of up to this many degrees (0: off)"),
        # training loop
        Option("train.max_epochs", "int", 20, check=at_least_1),
        Option("train.label_smoothing", "float", 0.0, check=fraction),
        Option("train.scheduler", "str", "none", choices=SCHEDULERS,
               doc="learning-rate schedule: StepLR, ReduceLROnPlateau (on the monitored value), "
                   "cosine annealing over max_epochs, one-cycle (max lr = optim.lr)"),
        Option("train.step_size", "int", 5, check=at_least_1,
               applies=lambda c: c.get("train.scheduler") == "step", when="train.scheduler: step",
               doc="epochs between learning-rate decays"),
        Option("train.gamma", "float", 0.1, check=(lambda v: 0 < v < 1, "in (0, 1)"),
               applies=lambda c: c.get("train.scheduler") in ("step", "plateau"),
               when="train.scheduler: step or plateau", doc="factor of each decay"),
        Option("train.scheduler_patience", "int", 2, check=non_negative,
               applies=lambda c: c.get("train.scheduler") == "plateau",
               when="train.scheduler: plateau"),
        Option("train.patience", "int", 5, check=non_negative,
               doc="epochs without improvement of the monitored value before stopping"),
        Option("train.monitor", "str", "val_acc", choices=MONITORS),
        Option("train.mode", "str", "auto", choices=("auto", "max", "min"),
               doc="auto: max for accuracies, min for losses"),
        Option("train.min_delta", "float", 0.0, check=non_negative),
        Option("train.diverge_epochs", "int", 3, check=at_least_1,
               doc="after this many epochs, a best val_acc within chance + margin is not_converging"),
        Option("train.chance_margin", "float", 0.05, check=(lambda v: 0 <= v <= 1, "in [0, 1]")),
        Option("train.abort_below", "float", None, optional=True, hash_default=False,
               check=(lambda v: 0 <= v <= 1, "in [0, 1]"),
               doc="end a cell as not_converging when its best val_acc is still below this at "
                   "epoch train.abort_epoch (cells that cannot win; null: never)"),
        Option("train.abort_epoch", "int", 3, check=at_least_1,
               applies=lambda c: c.get("train.abort_below") is not None,
               when="train.abort_below is set", doc="the epoch train.abort_below is checked at"),
        Option("train.precision", "str", "fp32", choices=PRECISIONS,
               doc="bf16: forward passes under bf16 autocast (CPUs with AMX/AVX512-BF16, GPUs); "
                   "weights stay fp32"),
        Option("train.device", "str", "auto", hashed=False,
               check=(_valid_device, "naming a device: auto, cpu, cuda, cuda:N or mps")),
        Option("train.memory_format", "str", "auto", choices=MEMORY_FORMATS, hashed=False,
               doc="auto: channels_last for conv nets on the CPU, and on CUDA with bf16"),
        Option("train.compile", "bool", False, hashed=False,
               doc="torch.compile the model (compiling costs seconds per cell; off by default)"),
    ]
    return {o.key: o for o in opts}


def _valid_device(v: str) -> bool:
    # ASCII digits only: str.isdigit() also takes "cuda:٣" (an Arabic-Indic three)
    return v in ("auto", "cpu", "cuda", "mps") or (
        v.startswith("cuda:") and v[5:].isascii() and v[5:].isdigit())


OPTIONS = _options()
SECTIONS = sorted({k.split(".")[0] for k in OPTIONS if "." in k})
# the grid file's sections of launch settings: a launch's, not a cell's (`gridrun keys` lists both)
LAUNCH_SECTIONS = ("execution", "track", "schedule")


def is_launch_key(key: str) -> bool:
    """`track.log_model`, not `track` alone: a key of a launch section."""
    section, _, name = key.partition(".")
    return bool(name) and section in LAUNCH_SECTIONS


# what users write for a key, by meaning rather than spelling (the last part of a dotted key)
SYNONYMS = {
    "learning_rate": "optim.lr", "learningrate": "optim.lr", "lr": "optim.lr", "eta": "optim.lr",
    "optimizer": "optim.name", "optimiser": "optim.name", "wd": "optim.weight_decay",
    "l2": "optim.weight_decay", "weight_decay": "optim.weight_decay",
    "epochs": "train.max_epochs", "max_epochs": "train.max_epochs", "num_epochs":
    "train.max_epochs", "n_epochs": "train.max_epochs", "early_stopping": "train.patience",
    "patience": "train.patience", "batch": "data.batch_size", "batchsize": "data.batch_size",
    "batch_size": "data.batch_size", "bs": "data.batch_size", "architecture": "model.name",
    "arch": "model.name", "network": "model.name", "net": "model.name", "model": "model.name",
    "dataset": "data.dataset", "data": "data.dataset", "random_seed": "seed", "seed": "seed",
    "scheduler": "train.scheduler", "lr_scheduler": "train.scheduler", "device": "train.device",
    "precision": "train.precision", "dtype": "train.precision", "momentum": "optim.momentum",
    "drop_out": "model.dropout", "dropout_rate": "model.dropout", "activation":
    "model.conv_activation",
}


KNOWN_KEYS = "a key `gridrun keys` lists"  # what an unknown key's error allows


def unknown_key_message(key: str, allowed: str = KNOWN_KEYS) -> str:
    """`unknown key 'optim.learning_rate' (did you mean 'optim.lr'?); allowed: ...`: by meaning
    first (a known synonym of the key's last part), then by spelling. A launch setting among a
    cell's (`execution.workers` under `fixed:`) is told where it goes."""
    shown = repr(key) if any(not c.isprintable() for c in key) else f"'{key}'"
    if is_launch_key(key):
        return (f"{shown} is a launch setting, not a cell's; allowed: under "
                f"'{key.partition('.')[0]}:' at the top of the file, or --set {key}=VALUE")
    last = key.rsplit(".", 1)[-1].lower().replace("-", "_")
    meant = SYNONYMS.get(last) or SYNONYMS.get(last.replace("_", ""))
    if meant is not None and meant in OPTIONS and meant != key:
        close = [meant]
    else:
        close = difflib.get_close_matches(key, list(OPTIONS), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key {shown}{hint}; allowed: {allowed}"


def check_value(key: str, value: Any, where: str) -> Any:
    """Validate one value for `key`; return it normalized (ints accepted as floats, lists as tuples)."""
    opt = OPTIONS.get(key)
    if opt is None:
        raise GridError(unknown_key_message(key), where)

    def bad(got_desc: str):
        return GridError(f"must be {opt.allowed()}, got {got_desc}", where)

    if value is None:
        if opt.optional:
            return None
        raise bad("null")
    kind = opt.kind
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(repr(value))
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(repr(value))
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise bad(repr(value))
    elif kind == "bool":
        if not isinstance(value, bool):
            raise bad(repr(value))
    elif kind == "str":
        if not isinstance(value, str):
            raise bad(repr(value))
    elif kind == "int_list":
        if (not isinstance(value, (list, tuple)) or not value
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
            raise bad(repr(value))
        value = tuple(value)
    if opt.choices is not None and value not in opt.choice_list():
        raise GridError(f"unknown value {value!r}; allowed: {', '.join(opt.choice_list())}", where)
    if opt.check is not None and not opt.check[0](value):
        raise bad(repr(value))
    return value


def resolve(settings: dict[str, Any]) -> dict[str, Any]:
    """Complete a cell's settings: defaults filled, inapplicable keys dropped, keys in schema order.

    `settings` holds already-checked values. Model option defaults come from the model's builder.
    """
    cfg: dict[str, Any] = {}
    for key, opt in OPTIONS.items():
        cfg[key] = settings[key] if key in settings else opt.default
    model = catalog.models()[cfg["model.name"]]
    for key, opt in OPTIONS.items():
        if opt.applies is not None and not opt.applies(cfg):
            del cfg[key]
        elif cfg[key] is FROM_MODEL:
            cfg[key] = model.options[key.split(".", 1)[1]]
            if isinstance(cfg[key], list):
                cfg[key] = tuple(cfg[key])
    return cfg


def check_cell(cfg: dict[str, Any], where: str) -> None:
    """Rules that involve several keys of a resolved cell."""
    if cfg.get("optim.nesterov") and cfg.get("optim.momentum", 0) <= 0:
        raise GridError("optim.nesterov: true requires optim.momentum > 0", where)


def cell_id(cfg: dict[str, Any], with_seed: bool = True) -> str:
    """A stable hash of what the cell computes: the resolved config with its seed, minus `device`.

    `with_seed=False` gives the configuration's id, shared by its repeats over seeds.
    """
    hashed = {k: v for k, v in cfg.items() if OPTIONS[k].hashed and (with_seed or k != "seed")
              and (OPTIONS[k].hash_default or v != OPTIONS[k].default)}
    blob = json.dumps(hashed, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def monitor_mode(monitor: str, mode: str) -> str:
    """`train.mode` resolved: `auto` is max for accuracies, min for losses."""
    if mode != "auto":
        return mode
    return "max" if monitor.endswith("acc") else "min"


def nest(cfg: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys to a nested dict, e.g. for printing a config as YAML."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return out
