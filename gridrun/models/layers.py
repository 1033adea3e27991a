"""The building blocks the model families share: activations, normalizations, heads, and the
input standardization every trained model carries."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..spec.catalog import ACTIVATIONS

ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "gelu": nn.GELU,
    "elu": lambda: nn.ELU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "tanh": nn.Tanh,
}
assert tuple(ACTIVATION_LAYERS) == ACTIVATIONS, "spec.catalog.ACTIVATIONS names these layers"


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
    return ACTIVATION_LAYERS[name]()


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


def mlp_head(in_features: int, hidden: list[int], num_classes: int, act: str, dropout: float, *,
             dropout_first: bool = False, dropout_after_last: bool = True,
             batch_norm: bool = False) -> nn.Sequential:
    """Fully connected layers: Linear -> activation [-> BatchNorm1d] [-> dropout] for each hidden
    width, then the output layer. The reports differ only in where dropout goes: before the
    first layer (`dropout_first`) and/or after each hidden layer but the last."""
    layers: list[nn.Module] = [nn.Flatten()]
    if dropout > 0 and dropout_first:
        layers.append(nn.Dropout(dropout))
    for i, width in enumerate(hidden):
        layers += [nn.Linear(in_features, width), activation(act)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        if dropout > 0 and (dropout_after_last or i < len(hidden) - 1):
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
