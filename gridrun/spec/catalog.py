"""What the model registry holds, known without importing torch.

Checking a grid needs each architecture's `model.*` options and their defaults, never the model
itself; but the builders (`gridrun/models/zoo.py`, `backbones.py`) import torch, and torch with torchvision
takes seconds to import. So this module reads the same builders' signatures from their source
with `ast`: a `@register("name")` function's keyword-only arguments and their literal defaults,
and its docstring's first line. The builders stay the single source of truth (the tests check
that this reading and `inspect.signature` of the imported builders agree), and `--dry-run`,
`keys`, `status` and `summary` answer without loading torch.

A model registered at run time (`gridrun.models.register` in a notebook) is known here too, once
`gridrun.models` is imported. This module reads those files as text and imports nothing of
`gridrun.models`: the spec layer stays below it.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "elu", "silu", "tanh")
NORMS = ("none", "batch", "group", "layer")
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
BUILDER_MODULES = ("zoo.py", "backbones.py")  # the files whose @register builders ship


@dataclass(frozen=True)
class ModelInfo:
    name: str
    options: dict[str, Any]  # option name -> default, as the builder's signature has it
    summary: str  # the first line of the builder's docstring


def models() -> dict[str, ModelInfo]:
    """Every registered architecture by name, in registration order."""
    known = dict(_shipped())
    runtime = sys.modules.get("gridrun.models.registry")
    for name, spec in getattr(runtime, "MODELS", {}).items():
        known.setdefault(name, ModelInfo(name, spec.options, spec.summary))
    return known


@cache
def _shipped() -> dict[str, ModelInfo]:
    found: dict[str, ModelInfo] = {}
    for file in BUILDER_MODULES:
        tree = ast.parse((MODELS_DIR / file).read_text(), file)
        for node in tree.body:
            names = _registered_names(node)
            if not names:
                continue
            args = node.args
            options = {a.arg: ast.literal_eval(d) for a, d in zip(args.kwonlyargs,
                                                                   args.kw_defaults)
                       if d is not None}  # (a keyword without a default is no grid option)
            doc = ast.get_docstring(node)
            summary = doc.strip().splitlines()[0] if doc else "{name}"
            for name in names:
                found[name] = ModelInfo(name, options, summary.format(name=name))
    return found


def _registered_names(node: ast.stmt) -> tuple[str, ...]:
    """("base4",) for a function decorated `@register("base4")`, else ()."""
    if isinstance(node, ast.FunctionDef):
        for decorator in node.decorator_list:
            if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Name)
                    and decorator.func.id == "register"):
                return tuple(ast.literal_eval(arg) for arg in decorator.args)
    return ()
