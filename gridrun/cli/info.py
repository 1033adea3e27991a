"""`gridrun models` and `gridrun keys`: what a grid can name."""
from __future__ import annotations

import click

from .app import cli


@cli.command(epilog="\b\nExample:\n  gridrun models")
def models():
    """List the registered architectures with their parameter counts (32x32x3, 10 classes)."""
    from ..models import MODELS, build_model, count_params

    width = max(len(n) for n in MODELS)
    for name, spec in MODELS.items():
        total, _ = count_params(build_model(name, 10))
        click.echo(f"{name.ljust(width)}  {total:>12,}  {spec.summary}")


@cli.command(epilog="\b\nExample:\n  gridrun keys")
def keys():
    """List every setting a grid may use, with its default and allowed values."""
    from ..spec.config import FROM_MODEL, OPTIONS

    for opt in OPTIONS.values():
        default = "(from the model)" if opt.default is FROM_MODEL else repr(opt.default)
        applies = f"  [only for {opt.when}]" if opt.when else ""
        click.echo(f"{opt.key:<22} default {default:<18} {opt.allowed()}{applies}")
        if opt.doc:
            click.echo(f"{'':<22} {opt.doc}")
