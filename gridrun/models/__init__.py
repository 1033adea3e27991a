"""The networks a cell can train: a registry of builders and the families that fill it.

    registry.py   name -> builder (timm's leaf registry); imports no torch and no family
    layers.py     shared building blocks, `Standardized` (the input normalization every
                  trained model carries, so a logged model needs no preprocessing), and
                  `shape_probe` (a model built on `meta` learns its shapes on the CPU)
    zoo.py        the report architectures (lenet, base4, three_conv, ...)
    backbones.py  torchvision backbones: new heads, local ImageNet weights, freezing

Importing this package registers every family. May import: `gridrun.spec`, `gridrun.errors`.
"""
from . import backbones, zoo  # noqa: F401 - each family registers its builders on import
from .layers import Standardized
from .registry import MODELS, ModelSpec, build_model, count_params, register

__all__ = ["MODELS", "ModelSpec", "Standardized", "build_model", "count_params", "register"]
