"""Model registry: one decorated builder per architecture.

A builder is a plain function `builder(num_classes, in_channels, image_size, *, option=default, ...)`
returning an `nn.Module`. Its keyword-only arguments are the `model.*` keys a grid may set for that
architecture, and their defaults are the architecture's defaults: the signature is the single
source of truth, so a key that a model does not take is simply not part of its cells' configs.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "gelu": nn.GELU,
    "elu": lambda: nn.ELU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "tanh": nn.Tanh,
}

NORMS = ("none", "batch", "group", "layer")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    options: dict[str, Any]  # option name -> default, read from the builder's signature
    summary: str


MODELS: dict[str, ModelSpec] = {}


def register(name: str):
    """Add a builder to the registry under `name` (timm-style `@register_model`)."""

    def decorate(fn):
        params = inspect.signature(fn).parameters.values()
        options = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        MODELS[name] = ModelSpec(name, fn, options, summary)
        return fn

    return decorate


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                **options) -> nn.Module:
    """Build a registered model; `options` are the cell's `model.*` keys other than `name`."""
    return MODELS[name].build(num_classes, in_channels, image_size, **options)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


class Standardized(nn.Module):
    """`net` behind per-channel standardization: takes float images in [0, 1], shape [N, C, H, W].

    Training wraps every model in this, so the model logged to MLflow carries its dataset's mean
    and std and needs no separate preprocessing to be used.
    """

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


# --- building blocks -------------------------------------------------------------------------

def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def norm2d(kind: str, channels: int) -> nn.Module:
    """Normalization after a convolution. `layer` normalizes over (C, H, W) of each sample."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def mlp_head(in_features: int, hidden: list[int], num_classes: int, act: str,
             dropout: float) -> nn.Sequential:
    """Fully connected layers: Linear -> activation -> dropout for each hidden width, then the output."""
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Size of the flattened feature map, found by running one dummy image through `features`."""
    with torch.no_grad():
        was_training = features.training
        features.eval()
        out = features(torch.zeros(1, in_channels, image_size, image_size))
        features.train(was_training)
    return out.numel()


class Classifier(nn.Module):
    """A convolutional feature extractor followed by a fully connected head."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --- architectures ---------------------------------------------------------------------------

@register("lenet")
def lenet(num_classes, in_channels, image_size, *, conv_activation="relu", fc_activation="relu"):
    """The classic 2-conv lab network: conv 6@5x5, pool, conv 16@5x5, pool, FC 120, 84 (62,006 params)."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5), activation(conv_activation), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), activation(conv_activation), nn.MaxPool2d(2),
    )
    head = mlp_head(flat_features(features, in_channels, image_size), [120, 84], num_classes,
                    fc_activation, dropout=0.0)
    return Classifier(features, head)


@register("base4")
def base4(num_classes, in_channels, image_size, *, conv_activation="relu", fc_activation="relu",
          norm="none", dropout=0.0, filters=(32, 64, 128), fc=(256, 128)):
    """The activation/optimizer study network: 3x3 convs (32, 64, 128), 2x2 pooling, 3 FC layers.

    The report describes "4 convolutional layers with 3, 32, 64, 128 filters". We read the four
    numbers as the channel widths of the four feature maps (the RGB input, then three conv outputs),
    so the network has three 3x3 convolutions with padding 1; each is followed by the chosen
    normalization, the conv activation and a 2x2 max pool that halves the size (32 -> 16 -> 8 -> 4).
    `filters: [32, 64, 128, 128]` gives a variant with a fourth convolution.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for width in filters:
        layers += [nn.Conv2d(channels, width, 3, padding=1), norm2d(norm, width),
                   activation(conv_activation), nn.MaxPool2d(2)]
        channels = width
    features = nn.Sequential(*layers)
    head = mlp_head(flat_features(features, in_channels, image_size), list(fc), num_classes,
                    fc_activation, dropout)
    return Classifier(features, head)
