"""`gridrun launch` and `gridrun cell`: train cells, with a live view, or list them (`--dry-run`)."""
from __future__ import annotations

import dataclasses
import sys

import click

from .app import all_overrides, cli, execution_options, overrides_option, quiet_mlflow, tracking_uri_option


def _run_launch(grid, options: dict) -> None:
    """Launch with a live progress display (`options`: `LaunchOptions`' fields, as click parsed
    them); report, and exit 1 if any cell failed."""
    from ..executors import choose_executor, warm_up

    if choose_executor(options["executor"] or grid.execution.get("executor"),
                       grid.planned()) == "local":
        warm_up()  # the workers' imports overlap ours
    from ..launch import LaunchOptions, launch
    from ..launch.progress import ConsoleProgress

    quiet_mlflow()
    progress = ConsoleProgress()
    try:
        report = launch(grid, LaunchOptions(**options), progress=progress)
    finally:
        progress.close()
    if report.parent_run_id is None:
        if report.elsewhere:
            click.echo(f"nothing to do here: {report.skipped} of {report.planned} cells already "
                       f"finished in experiment '{grid.name}', {report.elsewhere} being trained "
                       "by another launch (gridrun status shows them)")
        else:
            click.echo(f"nothing to do: all {report.planned} cells already finished in "
                       f"experiment '{grid.name}' (skipped {report.skipped}; --rerun trains "
                       "them again)")
        return
    resumed = f" ({report.resumed} resumed from checkpoints)" if report.resumed else ""
    elsewhere = f", {report.elsewhere} left to another launch" if report.elsewhere else ""
    click.echo(f"experiment '{grid.name}': ran {report.ran} cells{resumed}, skipped "
               f"{report.skipped} already finished{elsewhere}, {report.failed} failed; "
               f"parent run {report.parent_run_id}")
    if report.best is not None:
        from ..tracking.launch_run import describe
        click.echo(f"best cell of the grid: {describe(report.best)}")
    if report.ui_command:
        click.echo(f"see the results: {report.ui_command}, then open\n  {report.ui_url}")
    else:
        click.echo(f"see the results: {report.ui_url}")
    if report.failed:
        sys.exit(1)


@cli.command(epilog="""\b
Examples:
  gridrun launch grids/activation_vs_optim.yaml --dry-run
  gridrun launch grids/activation_vs_optim.yaml --set data.train_size=2000 --set train.max_epochs=1
  gridrun launch grids/activation_vs_optim.yaml --workers 2 --set train.precision=bf16
  gridrun launch grids/activation_vs_optim.yaml --only variant=leaky_nodrop,leaky_drop
  gridrun launch grids/quickstart.yaml --tracking-uri sqlite:///runs.db""")
@click.argument("grid_file", type=click.Path(dir_okay=False))
@overrides_option
@click.option("--only", "only", multiple=True, metavar="AXIS=LEVEL[,LEVEL]",
              help="Launch a slice of the grid: the cells whose AXIS takes one of these levels "
                   "(as --dry-run prints them; repeatable, all must hold). The cells keep their ids, "
                   "so a later launch of the whole grid skips them.")
@click.option("--dry-run", is_flag=True, help="Print the cells and exit; nothing is trained.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset directory [default: $GRIDRUN_DATA_DIR, else ./data].")
@tracking_uri_option
@click.option("--rerun", is_flag=True, help="Train cells again even if they already finished.")
@execution_options
def launch(grid_file, overrides, overrides_list, only, dry_run, **options):
    """Train every cell of GRID_FILE and record each as an MLflow run.

    Run the same command again at any time: cells with a FINISHED run are skipped, cells a
    killed or interrupted launch left continue from their last epoch's checkpoint in their own
    run, and cells another live launch of the grid trains are left to it.
    """
    from ..spec.load import load_grid, with_only, with_schedule

    grid = with_only(with_schedule(load_grid(grid_file, all_overrides(overrides, overrides_list)),
                                   options["schedule"]), only)
    if dry_run:
        click.echo(format_search(grid) if grid.search else format_cells(grid))
        return
    _run_launch(grid, options)


@cli.command(epilog="""\b
Examples:
  gridrun cell --set model.name=lenet --set optim.lr=0.01 --set data.dataset=digits
  gridrun cell --experiment my-cells --set optim.name=adam --set train.max_epochs=5""")
@overrides_option
@click.option("--experiment", default="gridrun-cells", show_default=True,
              help="MLflow experiment for the cell.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset directory [default: $GRIDRUN_DATA_DIR, else ./data].")
@tracking_uri_option
@click.option("--rerun", is_flag=True, help="Train it again even if it already finished.")
@execution_options
def cell(overrides, overrides_list, experiment, **options):
    """Train one configuration given as --set KEY=VALUE settings (the rest are defaults)."""
    from ..spec.load import grid_from_settings

    grid = grid_from_settings(all_overrides(overrides, overrides_list), experiment)
    _run_launch(grid, options)


def format_search(grid) -> str:
    """The --dry-run listing of an Optuna search: its trials and space."""
    spec = grid.search
    lines = [f"{spec.n_trials} trials of an Optuna search ({spec.sampler} sampler, "
             f"{spec.pruner} pruner, seed {spec.seed}) in grid '{grid.name}' ({grid.path})"]
    for key, space in spec.space.items():
        if "choices" in space:
            lines.append(f"  {key}: one of {', '.join(map(str, space['choices']))}")
        else:
            scale = ", log scale" if space["log"] else ""
            lines.append(f"  {key}: {space['low']} .. {space['high']}{scale}")
    return "\n".join(lines)


def format_cells(grid) -> str:
    """The --dry-run listing: the count, then one line per cell with its values on each axis."""
    cells = grid.cells()
    axes = [a.name for a in grid.axes] + (["seed"] if len(grid.seeds) > 1 else [])
    rows = [[str(c.index)] + [c.axes.get(a, "-") if a != "seed" else str(c.config["seed"])
                                  for a in axes] + [c.id] for c in cells]
    header = ["index"] + axes + ["cell id"]  # from 0, as the runs' tag gridrun.index
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    of = f" of the {len(dataclasses.replace(grid, only={}).cells())}" if grid.only else ""
    lines = [f"{len(cells)}{of} cells in grid '{grid.name}' ({grid.path})"]
    if grid.schedule.name == "asha":
        eta, rungs = grid.schedule.reduction_factor, grid.schedule.rungs(
            max(c.config["train.max_epochs"] for c in cells))
        noise = (f", and those within {grid.schedule.within_se:g} standard errors of the last of "
                 "them" if grid.schedule.within_se else "")
        how = ("; a cell waits at a rung (paused) until it ranks there, or until no other cell "
               "can still reach it" if grid.schedule.promote else
               "; each is decided as it arrives")
        lines.append(f"schedule asha: rungs at epochs {', '.join(map(str, rungs)) or 'none'}; "
                     f"past each, only the top 1/{eta} of the cells that reached it go on{noise}"
                     f"{how}")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
