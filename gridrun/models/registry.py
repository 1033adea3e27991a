"""The model registry, as timm's `_registry.py`: a name to a builder, and nothing else.

A builder is a plain function `builder(num_classes, in_channels, image_size, *, option=default,
...)` returning an `nn.Module`. Its keyword-only arguments are the `model.*` keys a grid may set
for that architecture, and their defaults are the architecture's defaults: the signature is the
single source of truth, so a key that a model does not take is simply not part of its cells'
configs (`gridrun.spec.catalog` reads the same signatures from the source, without torch).

This module imports no torch and no model family: the families (`zoo`, `backbones`) import it
and register themselves; `gridrun.models` imports every family.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., Any]  # returns an nn.Module
    options: dict[str, Any]  # option name -> default, read from the builder's signature
    summary: str


MODELS: dict[str, ModelSpec] = {}


def register(*names: str):
    """Add a builder to the registry under `name` (timm-style `@register_model`). A builder
    registered under several names (a family, such as the torchvision backbones) takes the name
    as its first argument, and its docstring may say `{name}`."""

    def decorate(fn):
        params = inspect.signature(fn).parameters.values()
        options = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "{name}"
        for name in names:
            build = functools.partial(fn, name) if len(names) > 1 else fn
            MODELS[name] = ModelSpec(name, build, options, summary.format(name=name))
        return fn

    return decorate


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                **options):
    """Build a registered model; `options` are the cell's `model.*` keys other than `name`."""
    return MODELS[name].build(num_classes, in_channels, image_size, **options)


def count_params(model) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
