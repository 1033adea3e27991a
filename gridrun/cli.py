"""The `gridrun` command. Thin: each command parses options and calls one library function.

Exit codes: 0 success; 1 some cells failed; 2 bad input (grid file, --set, data directory);
130 interrupted.
"""
from __future__ import annotations

import logging
import sys

import click

from .errors import GridError


class _Group(click.Group):
    """Turns a GridError anywhere in a command into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GridError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: the cell in progress is recorded as KILLED", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gridrun")
def cli():
    """Run hyperparameter grids of image-classification CNNs, tracked in MLflow.

    \b
    Example:
      gridrun launch grids/quickstart.yaml
      mlflow ui   # browse the runs (same working directory)
    """


def _quiet_mlflow() -> None:
    """MLflow logs its database set-up at INFO; only warnings belong in our output."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _overrides_option(fn):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override a setting for every cell (repeatable), e.g. "
                             "--set data.train_size=2000. Validated like the file.")(fn)


@cli.command(epilog="""\b
Examples:
  gridrun launch grids/activation_vs_optim.yaml --dry-run
  gridrun launch grids/activation_vs_optim.yaml --set data.train_size=2000 --set train.max_epochs=1
  gridrun launch grids/quickstart.yaml --tracking-uri sqlite:///runs.db""")
@click.argument("grid_file", type=click.Path(dir_okay=False))
@_overrides_option
@click.option("--dry-run", is_flag=True, help="Print the cells and exit; nothing is trained.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset directory [default: $GRIDRUN_DATA_DIR, else ./data].")
@click.option("--tracking-uri", metavar="URI",
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db].")
@click.option("--rerun", is_flag=True, help="Train cells again even if they already finished.")
def launch(grid_file, overrides, dry_run, data_dir, tracking_uri, rerun):
    """Train every cell of GRID_FILE and record each as an MLflow run.

    Cells that already have a FINISHED run in the grid's experiment are skipped, so an
    interrupted launch is resumed by running the same command again.
    """
    from .grid import load_grid

    grid = load_grid(grid_file, overrides)
    if dry_run:
        click.echo(format_cells(grid))
        return
    from .execute import launch as run_launch
    from .progress import ConsoleProgress

    _quiet_mlflow()

    progress = ConsoleProgress()
    try:
        report = run_launch(grid, data_dir=data_dir, tracking_uri=tracking_uri, rerun=rerun,
                            progress=progress)
    finally:
        progress.close()
    if report.parent_run_id is None:
        click.echo(f"nothing to do: all {report.planned} cells already finished in experiment "
                   f"'{grid.name}' (skipped {report.skipped}; --rerun trains them again)")
        return
    click.echo(f"experiment '{grid.name}': ran {report.ran} cells, skipped {report.skipped} "
               f"already finished, {report.failed} failed; parent run {report.parent_run_id}")
    if report.failed:
        sys.exit(1)


def format_cells(grid) -> str:
    """The --dry-run listing: the count, then one line per cell with its values on each axis."""
    cells = grid.cells()
    axes = [a.name for a in grid.axes] + (["seed"] if len(grid.seeds) > 1 else [])
    rows = [[str(c.index + 1)] + [c.axes.get(a, "-") if a != "seed" else str(c.config["seed"])
                                  for a in axes] + [c.id] for c in cells]
    header = ["#"] + axes + ["cell id"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = [f"{len(cells)} cells in grid '{grid.name}' ({grid.path})",
             "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


@cli.command(epilog="\b\nExample:\n  gridrun models")
def models():
    """List the registered architectures with their parameter counts (32x32x3, 10 classes)."""
    from .models import MODELS, build_model, count_params

    width = max(len(n) for n in MODELS)
    for name, spec in MODELS.items():
        total, _ = count_params(build_model(name, 10))
        click.echo(f"{name.ljust(width)}  {total:>12,}  {spec.summary}")


@cli.command(epilog="\b\nExample:\n  gridrun keys")
def keys():
    """List every setting a grid may use, with its default and allowed values."""
    from .config import FROM_MODEL, OPTIONS

    for opt in OPTIONS.values():
        default = "(from the model)" if opt.default is FROM_MODEL else repr(opt.default)
        applies = f"  [only for {opt.when}]" if opt.when else ""
        click.echo(f"{opt.key:<22} default {default:<18} {opt.allowed()}{applies}")
        if opt.doc:
            click.echo(f"{'':<22} {opt.doc}")


def main():
    cli(prog_name="gridrun")


if __name__ == "__main__":
    main()
