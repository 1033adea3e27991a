"""The building blocks the model families share: activations, normalizations, heads, and the
input standardization every trained model carries."""
from __future__ import annotations

import copy
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


# a module this small, on images this small, takes one image on the CPU in milliseconds; the
# first pass on PyTorch's `meta` device imports torch._dynamo for its decompositions (1.5-2 s of
# a launch's head, where models are built on `meta` to be checked before anything exists)
CPU_PROBE_LIMITS = {"params": 25_000_000, "image_size": 256}


def shape_probe(module: nn.Module, image_size: int) -> tuple[nn.Module, torch.device]:
    """What to pass one dummy image through to learn `module`'s output shapes, and on which
    device: the module itself where it is; but a small module (`CPU_PROBE_LIMITS`) built on the
    `meta` device (shapes, no memory) is copied to the CPU, its weights allocated and never set.
    Its outputs are garbage; their shapes are the module's."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), torch.empty(0, device="cpu"))
    if tensor.device.type != "meta" or image_size > CPU_PROBE_LIMITS["image_size"] or \
            sum(p.numel() for p in module.parameters()) > CPU_PROBE_LIMITS["params"]:
        return module, tensor.device
    cpu = torch.device("cpu")
    # Module.to_empty's own body, with torch.empty: empty_like of a meta tensor imports sympy
    return copy.deepcopy(module)._apply(
        lambda t: torch.empty(t.shape, dtype=t.dtype, device=cpu)), cpu


def flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Size of the flattened feature map, found by running one dummy image through `features`
    (`shape_probe`)."""
    probe, device = shape_probe(features, image_size)
    with torch.no_grad(), torch.device(device):
        was_training = probe.training
        probe.eval()
        out = probe(torch.zeros(1, in_channels, image_size, image_size))
        probe.train(was_training)
    return out.numel()


class Classifier(nn.Module):
    """A convolutional feature extractor followed by a fully connected head."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
