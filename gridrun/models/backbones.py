"""torchvision backbones with a new head, optional ImageNet weights, and freezing policies.

`pretrained: true` loads the weights from the local torch hub cache
(`$TORCH_HOME/hub/checkpoints/`, default `~/.cache/torch/hub/checkpoints/`) and never downloads:
an absent file is a clear error saying which file to put where. Freezing policies:
  none        everything trains
  head        only the new classification head trains
  last_block  the last block of the feature extractor, the head and every normalization layer
              train; the rest is frozen
The `*_cifar` variants adapt EfficientNet-B0 and MobileNetV2 to 32x32 inputs: a stride-1 stem and
one stride-2 stage less, so a 32x32 image ends as a 4x4 map instead of 1x1.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import GridError
from .registry import register

FREEZE = ("none", "head", "last_block")
NORM_TYPES = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)

# name -> (torchvision builder, its weights enum, the modules of its last block: the last stage
# and what follows). Names, not objects: torchvision is imported only when a backbone is built,
# since importing it costs more than a second that grids of small CNNs need not pay.
BACKBONES = {
    "resnet18": ("resnet18", "ResNet18_Weights", ("layer4",)),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", ("features.7", "features.8")),
    "efficientnet_b2": ("efficientnet_b2", "EfficientNet_B2_Weights", ("features.7", "features.8")),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights", ("features.17", "features.18")),
    "mobilenet_v3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights",
                           ("features.11", "features.12")),
    "squeezenet1_1": ("squeezenet1_1", "SqueezeNet1_1_Weights", ("features.12",)),
    "densenet121": ("densenet121", "DenseNet121_Weights", ("features.denseblock4", "features.norm5")),
}


def _tv(attribute: str):
    from torchvision import models
    return getattr(models, attribute)


def weights_file(name: str) -> Path:
    """Where `pretrained: true` looks for a backbone's ImageNet weights."""
    url = _tv(BACKBONES[name][1]).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def check_weights(name: str) -> None:
    path = weights_file(name)
    if not path.is_file():
        url = _tv(BACKBONES[name][1]).DEFAULT.url
        raise GridError(f"model.pretrained: ImageNet weights for {name} not found at {path}; "
                        f"download {url} and put the file there (or set TORCH_HOME), "
                        "or use pretrained: false")


def _get(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = getattr(module, part) if not part.isdigit() else module[int(part)]
    return module


def _new_head(model: nn.Module, name: str, num_classes: int, dropout: float) -> nn.Module:
    """Replace the ImageNet classifier with `dropout` + a layer of `num_classes` outputs."""
    if name == "resnet18":
        model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
        return model.fc
    if name == "squeezenet1_1":
        model.classifier[0] = nn.Dropout(dropout)
        model.classifier[1] = nn.Conv2d(model.classifier[1].in_channels, num_classes, 1)
        return model.classifier
    if name == "mobilenet_v3_small":
        model.classifier[2] = nn.Dropout(dropout)
        model.classifier[3] = nn.Linear(model.classifier[3].in_features, num_classes)
        return model.classifier
    if name == "densenet121":
        model.classifier = nn.Sequential(nn.Dropout(dropout),
                                         nn.Linear(model.classifier.in_features, num_classes))
        return model.classifier
    last = model.classifier[-1]  # efficientnet, mobilenet_v2: Sequential(Dropout, Linear)
    model.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last.in_features, num_classes))
    return model.classifier


def freeze(model: nn.Module, policy: str, head: nn.Module, last_block: list[nn.Module]) -> None:
    if policy == "none":
        return
    for p in model.parameters():
        p.requires_grad = False
    trainable = [head]
    if policy == "last_block":
        trainable += last_block
        trainable += [m for m in model.modules() if isinstance(m, NORM_TYPES)]
    for module in trainable:
        for p in module.parameters():
            p.requires_grad = True


def backbone(name: str, num_classes: int, in_channels: int, dropout: float, pretrained: bool,
             freeze_policy: str) -> nn.Module:
    if in_channels != 3:
        raise ValueError(f"{name} takes 3-channel images, got {in_channels}")
    build, _, last_paths = BACKBONES[name]
    model = _tv(build)(weights=None)
    if pretrained:
        check_weights(name)
        state = torch.load(weights_file(name), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    head = _new_head(model, name, num_classes, dropout)
    freeze(model, freeze_policy, head, [_get(model, p) for p in last_paths])
    return model


@register("resnet18", "efficientnet_b0", "efficientnet_b2", "mobilenet_v2", "mobilenet_v3_small",
          "squeezenet1_1", "densenet121")
def torchvision_backbone(name, num_classes, in_channels, image_size, *, dropout=0.2,
                         pretrained=False, freeze="none"):
    """torchvision {name} with a new head, optional ImageNet weights, freezing none/head/last_block.

    The weights come from the local torch hub cache (`check_weights` says where)."""
    return backbone(name, num_classes, in_channels, dropout, pretrained, freeze)


@register("efficientnet_b0_cifar")
def efficientnet_b0_cifar(num_classes, in_channels, image_size, *, dropout=0.2):
    """EfficientNet-B0 adapted to 32x32: stride-1 stem and stage 2, so less downsampling."""
    model = _tv("efficientnet_b0")(weights=None, num_classes=num_classes, dropout=dropout)
    model.features[0][0].stride = (1, 1)
    model.features[2][0].block[1][0].stride = (1, 1)
    return model


@register("mobilenet_v2_cifar")
def mobilenet_v2_cifar(num_classes, in_channels, image_size, *, dropout=0.2):
    """MobileNetV2 adapted to 32x32: stride-1 stem and first stride-2 stage, less downsampling."""
    model = _tv("mobilenet_v2")(weights=None, num_classes=num_classes, dropout=dropout)
    model.features[0][0].stride = (1, 1)
    model.features[2].conv[1][0].stride = (1, 1)
    return model
