"""The recipe of a cell: its network, optimizer, learning-rate schedule, input normalization and
stopping rule, each built from the cell's config keys. The loop (`gridrun.train.loop`) only runs
what these build, the way torchvision's classification reference keeps recipe and loop apart.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..models import build_model
from ..spec.config import monitor_mode

# the fixed `data.normalize` presets: (mean, std) per channel; `dataset` uses the data's own
PRESETS = {"symmetric": ([0.5] * 3, [0.5] * 3), "centered": ([0.5] * 3, [1.0] * 3),
           "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), "none": ([0.0] * 3, [1.0] * 3)}


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


def input_stats(preset: str, dataset_mean: list[float], dataset_std: list[float],
                channels: int) -> tuple[list, list]:
    """Mean and std the model standardizes its inputs with (`data.normalize`)."""
    if preset == "dataset":
        return list(dataset_mean), list(dataset_std)
    mean, std = PRESETS[preset]
    return mean[:channels], std[:channels]


def build_cell_model(cfg: dict, num_classes: int, channels: int, size: int) -> nn.Module:
    """The cell's network (without input standardization) from its `model.*` keys."""
    options = {k.split(".", 1)[1]: v for k, v in cfg.items()
               if k.startswith("model.") and k not in ("model.name", "model.max_params")}
    return build_model(cfg["model.name"], num_classes, channels, size, **options)
