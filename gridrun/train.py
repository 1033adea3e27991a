"""The training loop of one cell: fit with early stopping, watch for divergence, score the test set.

Nothing here knows about MLflow or about grids: `train_cell` takes a resolved config and an
in-memory dataset, reports each epoch through a callback, and returns a `CellResult`. That keeps
the loop reusable from a notebook, a worker process or a cluster executor.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import augment
from .data import ImageSet, Split, batches, make_splits, to_float
from .models import Standardized, build_model, count_params

EVAL_BATCH_SIZE = 1000


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    epoch_seconds: float

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "epoch"}


@dataclass
class CellResult:
    outcome: str  # early_stopped | max_epochs | not_converging
    reason: str
    epochs_run: int
    epochs_needed: int  # epoch of the best monitored value (0: never improved on the start)
    best_val_acc: float
    test_acc: float
    test_loss: float
    duration_s: float
    params_total: int
    params_trainable: int
    history: list[EpochStats] = field(default_factory=list)
    test_predictions: torch.Tensor | None = None  # predicted class per test image
    test_targets: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    model: nn.Module | None = None  # best weights, on the CPU; takes float images in [0, 1]
    example_input: torch.Tensor | None = None  # two test images, as the model takes them

    def final_metrics(self) -> dict[str, float]:
        return {"test_acc": self.test_acc, "test_loss": self.test_loss,
                "best_val_acc": self.best_val_acc, "epochs_needed": self.epochs_needed,
                "epochs_run": self.epochs_run, "duration_s": self.duration_s,
                "params_total": self.params_total, "params_trainable": self.params_trainable}


class EarlyStopping:
    """Patience-based stopping on one monitored value.

    `step(value, epoch)` records an epoch and says whether it improved on the best by more than
    `min_delta`; `should_stop` is true once `patience` epochs in a row have not improved.
    """

    def __init__(self, patience: int, mode: str = "max", min_delta: float = 0.0):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best = -math.inf if mode == "max" else math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def step(self, value: float, epoch: int) -> bool:
        better = (value > self.best + self.min_delta if self.mode == "max"
                  else value < self.best - self.min_delta)
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs > 0 and self.bad_epochs >= self.patience


def monitor_mode(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "max" if monitor.endswith("acc") else "min"


def select_device(name: str) -> torch.device:
    """`auto`: CUDA when available, then Apple's MPS, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def build_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    name, lr, wd = cfg["optim.name"], cfg["optim.lr"], cfg["optim.weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["optim.momentum"],
                               nesterov=cfg["optim.nesterov"], weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


class StopTraining(Exception):
    """Raised by an `on_epoch` callback to end a cell early (an Optuna pruner, say)."""

    def __init__(self, outcome: str, reason: str):
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


PRESETS = {"symmetric": ([0.5] * 3, [0.5] * 3), "centered": ([0.5] * 3, [1.0] * 3),
           "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), "none": ([0.0] * 3, [1.0] * 3)}


def input_stats(preset: str, dataset_mean: list[float], dataset_std: list[float],
                channels: int) -> tuple[list, list]:
    """Mean and std the model standardizes its inputs with (`data.normalize`)."""
    if preset == "dataset":
        return list(dataset_mean), list(dataset_std)
    mean, std = PRESETS[preset]
    return mean[:channels], std[:channels]


def build_scheduler(optimizer, cfg: dict, steps_per_epoch: int):
    """(scheduler, steps per batch?) for `train.scheduler`; None when there is none."""
    name = cfg["train.scheduler"]
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg["train.step_size"],
                                               cfg["train.gamma"]), False
    if name == "plateau":
        mode = monitor_mode(cfg["train.monitor"], cfg["train.mode"])
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg["train.gamma"],
            patience=cfg["train.scheduler_patience"]), False
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg["train.max_epochs"]), False
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg["optim.lr"], epochs=cfg["train.max_epochs"],
            steps_per_epoch=max(steps_per_epoch, 1)), True
    return None, False


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # seeds CUDA too
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def resizer(stored: int, wanted: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 batch -> float batch in [0, 1] at the cell's image size."""
    if wanted is None or wanted == stored:
        return to_float
    return lambda x: F.interpolate(to_float(x), size=(wanted, wanted), mode="bilinear",
                                   antialias=True, align_corners=False)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, loss_fn: nn.Module,
             inputs: Callable[[torch.Tensor], torch.Tensor] = to_float
             ) -> tuple[float, float, torch.Tensor]:
    """(mean loss, accuracy, predictions) over a split, in eval mode."""
    model.eval()
    total_loss, predictions = 0.0, []
    for xb, yb in batches(split, EVAL_BATCH_SIZE):
        logits = model(inputs(xb))
        total_loss += loss_fn(logits, yb).item() * len(yb)
        predictions.append(logits.argmax(1))
    pred = torch.cat(predictions)
    n = max(len(split), 1)
    return total_loss / n, (pred == split.y).float().mean().item(), pred


def train_cell(cfg: dict, images: ImageSet,
               on_epoch: Callable[[EpochStats], None] | None = None) -> CellResult:
    """Train and score one cell. `cfg` is a resolved config (see `gridrun.config`)."""
    started = time.perf_counter()
    device = select_device(cfg["train.device"])
    seed_everything(cfg["seed"])
    splits = make_splits(images, cfg["data.val_fraction"], cfg["data.train_size"],
                         cfg["data.test_size"], cfg["data.split_seed"])
    train, val, test = splits.train.to(device), splits.val.to(device), splits.test.to(device)

    channels, stored_size, _ = images.image_shape
    size = cfg["data.image_size"] or stored_size
    inputs = resizer(stored_size, size)
    mean, std = input_stats(cfg["data.normalize"], splits.mean, splits.std, channels)
    model = Standardized(build_cell_model(cfg, images.num_classes, channels, size), mean, std)
    model = model.to(device)
    params_total, params_trainable = count_params(model)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    steps_per_epoch = math.ceil(len(train) / cfg["data.batch_size"])
    scheduler, per_batch = build_scheduler(optimizer, cfg, steps_per_epoch)
    train_loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg["train.label_smoothing"])
    loss_fn = nn.CrossEntropyLoss()
    rng = torch.Generator().manual_seed(cfg["seed"])  # shuffling and augmentation
    augmenting = augment.enabled(cfg)

    monitor = cfg["train.monitor"]
    stopper = EarlyStopping(cfg["train.patience"], monitor_mode(monitor, cfg["train.mode"]),
                            cfg["train.min_delta"])
    chance = 1.0 / images.num_classes
    chance_line = chance + cfg["train.chance_margin"]
    best_state = _cpu_state(model)
    best_val_acc = 0.0
    history: list[EpochStats] = []
    outcome, reason = "max_epochs", f"reached train.max_epochs={cfg['train.max_epochs']}"

    for epoch in range(1, cfg["train.max_epochs"] + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        seen, loss_sum, correct, finite = 0, 0.0, 0, True
        for xb, yb in batches(train, cfg["data.batch_size"], rng if cfg["data.shuffle"] else None):
            xb = inputs(xb)
            if augmenting:
                xb = augment.augment(xb, cfg, rng)
            logits = model(xb)
            loss = train_loss_fn(logits, yb)
            if not torch.isfinite(loss):
                finite = False
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_batch:
                scheduler.step()
            loss_sum += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(yb)
        if not finite:
            outcome, reason = "not_converging", f"non-finite training loss in epoch {epoch}"
            break
        val_loss, val_acc, _ = evaluate(model, val, loss_fn, inputs)
        stats = EpochStats(epoch, loss_sum / seen, correct / seen, val_loss, val_acc, lr,
                           time.perf_counter() - t0)
        history.append(stats)
        stop = None
        if on_epoch is not None:
            try:
                on_epoch(stats)
            except StopTraining as e:
                stop = e
        if not math.isfinite(val_loss):
            outcome, reason = "not_converging", f"non-finite validation loss in epoch {epoch}"
            break
        best_val_acc = max(best_val_acc, val_acc)
        if stopper.step(getattr(stats, monitor), epoch):
            best_state = _cpu_state(model)
        if scheduler is not None and not per_batch:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(getattr(stats, monitor))
            else:
                scheduler.step()
        if stop is not None:
            outcome, reason = stop.outcome, stop.reason
            break
        if epoch >= cfg["train.diverge_epochs"] and best_val_acc <= chance_line:
            outcome = "not_converging"
            reason = (f"best val_acc {best_val_acc:.4f} still within chance {chance:.3f} + "
                      f"margin {cfg['train.chance_margin']} after {epoch} epochs")
            break
        if stopper.should_stop and epoch < cfg["train.max_epochs"]:
            outcome = "early_stopped"
            reason = (f"no {monitor} improvement for {stopper.bad_epochs} epochs "
                      f"(patience {cfg['train.patience']}); best at epoch {stopper.best_epoch}")
            break

    model.load_state_dict(best_state)
    test_loss, test_acc, predictions = evaluate(model, test, loss_fn, inputs)
    return CellResult(
        outcome=outcome, reason=reason, epochs_run=len(history),
        epochs_needed=stopper.best_epoch, best_val_acc=best_val_acc,
        test_acc=test_acc, test_loss=test_loss, duration_s=time.perf_counter() - started,
        params_total=params_total, params_trainable=params_trainable, history=history,
        test_predictions=predictions.cpu(), test_targets=test.y.cpu(), classes=splits.classes,
        model=model.cpu().eval(), example_input=inputs(splits.test.x[:2]),
    )


def build_cell_model(cfg: dict, num_classes: int, channels: int, size: int) -> nn.Module:
    """The cell's network (without input standardization) from its `model.*` keys."""
    options = {k.split(".", 1)[1]: v for k, v in cfg.items()
               if k.startswith("model.") and k not in ("model.name", "model.max_params")}
    return build_model(cfg["model.name"], num_classes, channels, size, **options)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
