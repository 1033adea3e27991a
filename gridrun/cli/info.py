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


@cli.command(epilog="\b\nExamples:\n  gridrun keys\n  gridrun keys --format markdown > keys.md")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text",
              show_default=True, help="markdown: a table per section, as on the docs site")
def keys(fmt):
    """List every setting a grid may use, with its default and allowed values."""
    from ..spec.reference import keys_markdown, keys_text

    click.echo(keys_markdown() if fmt == "markdown" else keys_text(), nl=False)
