"""`gridrun status`, `summary` and `report`: what a grid's runs say, read-only (`--log` and
`--register` write through the tracking layer)."""
from __future__ import annotations

import sys

import click

from ..errors import GridError
from .app import all_overrides, cli, overrides_option, quiet_mlflow, tracking_uri_option


@cli.command(epilog="""\b
Examples:
  gridrun status grids/activation_vs_optim.yaml
  gridrun status grids/activation_vs_optim.yaml --set data.train_size=2000 --format json

\b
Without --set, the grid is read with the --set of its latest launch, as summary reads it.
States: finished, pruned (stopped at an ASHA rung), running (its launch is alive: heartbeat
age and host), stale (its launch died: the next launch resumes it), killed (interrupted: the
next launch resumes it), failed (the next launch trains it again), pending (no run yet).""")
@click.argument("grid_file", type=click.Path(dir_okay=False))
@overrides_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@tracking_uri_option
def status(grid_file, overrides, overrides_list, fmt, tracking_uri):
    """Show where every cell of GRID_FILE stands. Reads the store, never writes it.

    Exit code 0 only when every cell is finished (1 otherwise), so scripts can wait on it.
    """
    from ..results import status as statuses
    from ..spec.load import load_grid
    from ..tracking.store import check_tracking_uri

    quiet_mlflow()
    given = all_overrides(overrides, overrides_list)
    load_grid(grid_file, given)  # a bad file or --set is an error before the store is read
    check_tracking_uri(tracking_uri)
    grid = statuses.grid_as_launched(grid_file, given or None, tracking_uri)
    found = statuses.grid_status(grid, tracking_uri)
    click.echo(statuses.render_json(found) if fmt == "json" else statuses.render(found), nl=False)
    if not found["complete"]:
        sys.exit(1)


@cli.command(epilog="""\b
Examples:
  gridrun summary grids/activation_vs_optim.yaml
  gridrun summary grids/activation_vs_optim.yaml --format latex --output table1.tex
  gridrun summary --experiment activation_vs_optim --pivot variant optimizer
  gridrun summary grids/activation_vs_optim.yaml --effects
  gridrun summary grids/activation_vs_optim.yaml --compare grids/activation_vs_optim.report001.csv
  gridrun summary grids/activation_vs_optim.yaml --view params --sort accuracy

\b
Repeats over seeds are one row per configuration: mean ± std of the test accuracy and n
(converged runs / runs). The best configuration is bold, and so is every configuration not
significantly worse than it: a one-sided Welch t-test, alpha 0.05, on the per-seed accuracies
(both need n >= 2).""")
@click.argument("grid_file", required=False, type=click.Path(dir_okay=False))
@click.option("--experiment", metavar="NAME", help="Summarize an experiment by name instead.")
@click.option("--format", "fmt", type=click.Choice(["term", "markdown", "latex", "csv", "html"]),
              default="term", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the table to a file.")
@click.option("--sort", metavar="COLUMN", help="Sort by a column (accuracy: best first).")
@click.option("--pivot", nargs=2, metavar="ROWS COLS",
              help="Mean accuracy for each pair of levels of two factors, e.g. variant optimizer.")
@click.option("--effects", is_flag=True, help="Marginal mean accuracy of each level of each factor.")
@click.option("--view", type=click.Choice(["results", "params"]), default="results",
              show_default=True, help="params: parameter counts next to accuracy.")
@click.option("--compare", type=click.Path(dir_okay=False), metavar="FILE.csv",
              help="Published results to set beside ours: a CSV with the grid's axes and an "
                   "accuracy column (e.g. grids/activation_vs_optim.report001.csv); adds the "
                   "columns Report and Δ (ours minus it, in points).")
@click.option("--all", "all_cells", is_flag=True,
              help="Show the grid's cells no launch has run yet too (as 'Not run').")
@click.option("--register", "register_as", metavar="NAME",
              help="Register the best cell's logged model as a new version of NAME in MLflow's "
                   "model registry: the highest test accuracy; on a tie, the higher best "
                   "validation accuracy, then the cell first in grid order (a tie is named).")
@click.option("--log", "log_table", is_flag=True,
              help="Also log the rendered table on the latest launch's parent run "
                   "(summary/<view>.<ext>). Off by default: reading a table changes no run.")
@overrides_option
@tracking_uri_option
def summary(grid_file, experiment, fmt, output, sort, pivot, effects, view, compare,
            all_cells, register_as, log_table, overrides, overrides_list, tracking_uri):
    """Print the results table of a grid's runs (the grid file, or --experiment NAME).

    Rows follow the grid's order; only the latest finished run of each cell counts; failed
    and running cells are shown as such, cells not run yet are counted (--all shows them).
    Without --set, the grid is read with the --set overrides of its latest launch. It only
    reads the store, unless --log asks it to log the rendered table on that launch's parent
    run, or --register NAME to register the best cell's model.
    """
    from ..results.render import render, write_atomically
    from ..results.status import grid_as_launched
    from ..results.tables import table
    from ..spec.load import printable
    from ..tracking.store import check_tracking_uri

    quiet_mlflow()
    if (grid_file is None) == (experiment is None):
        raise GridError("give either a grid file or --experiment NAME", "summary")
    if register_as is not None:
        printable(register_as, "--register")  # a registered model's name, shown everywhere
    check_tracking_uri(tracking_uri)
    given = all_overrides(overrides, overrides_list)
    grid = grid_as_launched(grid_file, given or None, tracking_uri) if grid_file else None
    df = table(experiment=experiment, grid=grid, tracking_uri=tracking_uri, view=view,
               sort=sort, pivot=tuple(pivot) if pivot else None, effects=effects,
               compare=compare, all_cells=all_cells)
    color = fmt == "term" and output is None and sys.stdout.isatty()
    text = render(df, fmt, color=color)
    if output:
        write_atomically(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
    if df.attrs.get("not_run"):
        click.echo(f"({df.attrs['not_run']} cells of the grid not run yet; --all shows them)",
                   err=True)
    if log_table:
        kind = "effects" if effects else ("pivot" if pivot else view)
        ext = {"term": "txt", "markdown": "md", "latex": "tex"}.get(fmt, fmt)
        name = grid.name if grid is not None else experiment
        from ..tracking.recorder import log_on_latest_launch
        log_on_latest_launch(name, render(df, fmt) if color else text, f"summary/{kind}.{ext}",
                             tracking_uri)
    if register_as:
        from ..results.registry import register_best
        from ..tracking.launch_run import describe
        best, version = register_best(register_as, experiment, grid, tracking_uri)
        click.echo(f"registered models:/{register_as}/{version.version}: {describe(best)}",
                   err=True)


@cli.command(epilog="""\b
Examples:
  gridrun report grids/activation_vs_optim.yaml
  gridrun report grids/activation_vs_optim.yaml -o table1.html \\
      --compare grids/activation_vs_optim.report001.csv --color-by optimizer --log

\b
The page holds the results table (sortable), every cell's learning curves, each factor's
accuracy by level and error distribution, which factor mattered (Optuna's fANOVA) with the
marginal effects, parallel coordinates over the grid's axes, the best cell's curves,
confusion matrix and per-class accuracy, what the study cost, and its provenance. It is one
file: it opens offline and fetches nothing.""")
@click.argument("grid_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="FILE.html",
              help="Where to write the page [default: <grid name>-report.html].")
@click.option("--compare", type=click.Path(dir_okay=False), metavar="FILE.csv",
              help="Published results beside ours in the results table, as in summary.")
@click.option("--color-by", metavar="FACTOR",
              help="The axis whose levels colour the learning curves [default: the first].")
@click.option("--log", "log_page", is_flag=True,
              help="Also log the page and its figures (PNG and SVG) on the latest launch's "
                   "parent run (report/), where mlflow ui shows them.")
@overrides_option
@tracking_uri_option
def report(grid_file, output, compare, color_by, log_page, overrides, overrides_list,
           tracking_uri):
    """Write a grid's results as one self-contained HTML page, to read, share and cite."""
    from ..results.page import write_report
    from ..results.status import grid_as_launched
    from ..spec.load import load_grid
    from ..tracking.store import check_tracking_uri

    quiet_mlflow()
    given = all_overrides(overrides, overrides_list)
    load_grid(grid_file, given)  # a bad file or --set is an error before the store is read
    check_tracking_uri(tracking_uri)
    grid = grid_as_launched(grid_file, given or None, tracking_uri)
    done = write_report(grid, tracking_uri, output, compare, log_page, color_by,
                        command=" ".join(["gridrun", *sys.argv[1:]]))
    more = f", {done['not_run']} not run yet" if done["not_run"] else ""
    click.echo(f"wrote {done['path']} ({done['bytes'] / 1e3:.0f} kB): {done['cells']} cells"
               f"{more}; open it in a browser", err=True)
    if done["logged_on"]:
        click.echo(f"logged it on launch run {done['logged_on']} (report/)", err=True)
