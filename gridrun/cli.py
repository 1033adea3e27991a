"""The `gridrun` command. Thin: each command parses options and calls one library function.

Exit codes: 0 success; 1 some cells failed (launch) or not every cell finished (status);
2 bad input (grid file, --set, data directory); 130 interrupted.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import sys

import click

from .errors import GridError


def error_line(problem: str, where: str | None = None) -> str:
    """The one format of every error the CLI prints: `error: <where>: <what>; <allowed>`,
    on one line, with what the user typed escaped (no newline or terminal escape gets
    through)."""
    text = f"{where}: {problem}" if where else problem
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return f"error: {text}"


def _usage_error(e: click.UsageError) -> None:
    """Click's usage errors (a missing argument, a directory given for a file, an unknown
    option) as one line, like every other error, then exit code 2."""
    where = e.ctx.command_path if e.ctx is not None else "gridrun"
    message = e.format_message().rstrip(".")
    click.echo(error_line(f"{message}; see '{where} --help'", where), err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns a GridError or a usage error anywhere in a command into one line on stderr and exit
    code 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            _usage_error(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            _usage_error(e)
        except GridError as e:
            click.echo(error_line(str(e)), err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: cells in progress are recorded as KILLED with their "
                       "checkpoints; the same command resumes them", err=True)
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
    """MLflow logs its database set-up at INFO and, against a server, prints a link each time a
    run ends; only warnings belong in our output (the launch prints the experiment's link once)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _overrides_option(fn):
    fn = click.option("--sets", "overrides_list", metavar="'K=V;K=V'", default="",
                      help="Several overrides in one argument, separated by ';' (for MLproject "
                           "parameters).")(fn)
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override a setting for every cell (repeatable), e.g. "
                             "--set data.train_size=2000. Validated like the file.")(fn)


def _all_overrides(overrides: tuple[str, ...], overrides_list: str) -> list[str]:
    return list(overrides) + [o.strip() for o in overrides_list.split(";") if o.strip()]


def _execution_options(fn):
    fn = click.option("--keep-checkpoints", is_flag=True, default=None,
                      help="Keep each cell's last checkpoint after its run finished "
                           "[default: the grid's track.keep_checkpoints, else removed].")(fn)
    fn = click.option("--state-dir", type=click.Path(file_okay=False), metavar="DIR",
                      help="Where per-epoch checkpoints live [default: $GRIDRUN_STATE_DIR, else "
                           ".gridrun/ beside a SQLite tracking store, else ./.gridrun].")(fn)
    fn = click.option("--retries", type=click.IntRange(min=0), metavar="N",
                      help="Try a cell that raised (or whose worker died) again from its last "
                           "checkpoint up to N times [default: the grid's execution.retries, "
                           "else 0].")(fn)
    fn = click.option("--figures", type=click.Choice(["best", "all", "none"]),
                      help="Draw the per-cell figures (curves, confusion matrices) for the "
                           "launch's best cell, every cell, or none [default: the grid's "
                           "track.figures, else best].")(fn)
    fn = click.option("--log-model", type=click.Choice(["best", "all", "none"]),
                      help="Log the trained model of the launch's best cell, of every cell, or "
                           "of none [default: the grid's track.log_model, else best].")(fn)
    fn = click.option("--threads", type=click.IntRange(min=1), metavar="N",
                      help="Torch threads per worker [default: cores // workers].")(fn)
    fn = click.option("--workers", type=click.IntRange(min=1), metavar="N",
                      help="Worker processes training cells side by side [default: the grid's "
                           "execution.workers, else one per core (one per GPU)].")(fn)
    fn = click.option("--schedule", type=click.Choice(["all", "asha", "hyperband"]),
                      help="all: every cell to its end; asha: successive halving, cells not "
                           "among the best stop at rungs (outcome pruned); hyperband: searches "
                           "only [default: the grid's schedule:, else all].")(fn)
    fn = click.option("--address", metavar="ADDRESS",
                      help="With --executor ray: the Ray cluster to join, auto (the one "
                           "started on this machine with 'ray start'), host:port or "
                           "ray://host:port [default: the grid's execution.address, else "
                           "$RAY_ADDRESS, else a new local Ray instance for this launch].")(fn)
    return click.option("--executor", type=click.Choice(["auto", "local", "inline", "ray"]),
                        help="local: worker processes; inline: every cell in this process "
                             "(debugging); ray: actors on a Ray cluster (pip install "
                             "'gridrun[ray]'); auto: local, or inline for a single cell "
                             "[default: the grid's execution.executor, else auto].")(fn)


def _run_launch(grid, data_dir, tracking_uri, rerun, executor=None, workers=None, threads=None,
                log_model=None, figures=None, retries=None, state_dir=None,
                keep_checkpoints=None, address=None, schedule=None) -> None:
    """Launch with a live progress display; report, and exit 1 if any cell failed."""
    if (executor or grid.execution.get("executor")) not in ("inline", "ray"):
        from .executors import warm_up
        warm_up()  # the workers' imports overlap ours
    from .execute import launch as run_launch
    from .progress import ConsoleProgress

    _quiet_mlflow()
    progress = ConsoleProgress()
    try:
        report = run_launch(grid, data_dir=data_dir, tracking_uri=tracking_uri, rerun=rerun,
                            progress=progress, executor=executor, workers=workers,
                            threads=threads, log_model=log_model, figures=figures,
                            retries=retries, state_dir=state_dir,
                            keep_checkpoints=keep_checkpoints, address=address,
                            schedule=schedule)
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
    if report.tracking_uri.startswith(("http://", "https://")):
        click.echo(f"view: {report.tracking_uri.rstrip('/')}/#/experiments/{report.experiment_id}")
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
@_overrides_option
@click.option("--only", "only", multiple=True, metavar="AXIS=LEVEL[,LEVEL]",
              help="Launch a slice of the grid: the cells whose AXIS takes one of these levels "
                   "(as --dry-run prints them; repeatable, all must hold). The cells keep their ids, "
                   "so a later launch of the whole grid skips them.")
@click.option("--dry-run", is_flag=True, help="Print the cells and exit; nothing is trained.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset directory [default: $GRIDRUN_DATA_DIR, else ./data].")
@click.option("--tracking-uri", metavar="URI",
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db].")
@click.option("--rerun", is_flag=True, help="Train cells again even if they already finished.")
@_execution_options
def launch(grid_file, overrides, overrides_list, only, dry_run, data_dir, tracking_uri, rerun,
           executor, workers, threads, log_model, figures, retries, state_dir, keep_checkpoints,
           address, schedule):
    """Train every cell of GRID_FILE and record each as an MLflow run.

    Run the same command again at any time: cells with a FINISHED run are skipped, cells a
    killed or interrupted launch left continue from their last epoch's checkpoint in their own
    run, and cells another live launch of the grid trains are left to it.
    """
    from .grid import load_grid, with_only, with_schedule

    grid = with_only(with_schedule(load_grid(grid_file, _all_overrides(overrides, overrides_list)),
                                   schedule), only)
    if dry_run:
        click.echo(format_search(grid) if grid.search else format_cells(grid))
        return
    _run_launch(grid, data_dir, tracking_uri, rerun, executor, workers, threads, log_model, figures,
                retries, state_dir, keep_checkpoints, address, schedule)


@cli.command(epilog="""\b
Examples:
  gridrun cell --set model.name=lenet --set optim.lr=0.01 --set data.dataset=digits
  gridrun cell --experiment my-cells --set optim.name=adam --set train.max_epochs=5""")
@_overrides_option
@click.option("--experiment", default="gridrun-cells", show_default=True,
              help="MLflow experiment for the cell.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset directory [default: $GRIDRUN_DATA_DIR, else ./data].")
@click.option("--tracking-uri", metavar="URI",
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db].")
@click.option("--rerun", is_flag=True, help="Train it again even if it already finished.")
@_execution_options
def cell(overrides, overrides_list, experiment, data_dir, tracking_uri, rerun, executor, workers,
         threads, log_model, figures, retries, state_dir, keep_checkpoints, address, schedule):
    """Train one configuration given as --set KEY=VALUE settings (the rest are defaults)."""
    from .grid import grid_from_settings

    grid = grid_from_settings(_all_overrides(overrides, overrides_list), experiment)
    _run_launch(grid, data_dir, tracking_uri, rerun, executor, workers, threads, log_model, figures,
                retries, state_dir, keep_checkpoints, address, schedule)


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
@_overrides_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--tracking-uri", metavar="URI",
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db].")
def status(grid_file, overrides, overrides_list, fmt, tracking_uri):
    """Show where every cell of GRID_FILE stands. Reads the store, never writes it.

    Exit code 0 only when every cell is finished (1 otherwise), so scripts can wait on it.
    """
    from . import status as statuses
    from .grid import load_grid
    from .tracking import check_tracking_uri

    _quiet_mlflow()
    given = _all_overrides(overrides, overrides_list)
    load_grid(grid_file, given)  # a bad file or --set is an error before the store is read
    check_tracking_uri(tracking_uri)
    grid = statuses.grid_as_launched(grid_file, given or None, tracking_uri)
    found = statuses.grid_status(grid, tracking_uri)
    click.echo(statuses.render_json(found) if fmt == "json" else statuses.render(found), nl=False)
    if not found["complete"]:
        sys.exit(1)


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
    rows = [[str(c.index + 1)] + [c.axes.get(a, "-") if a != "seed" else str(c.config["seed"])
                                  for a in axes] + [c.id] for c in cells]
    header = ["#"] + axes + ["cell id"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    of = f" of the {len(dataclasses.replace(grid, only={}).cells())}" if grid.only else ""
    lines = [f"{len(cells)}{of} cells in grid '{grid.name}' ({grid.path})"]
    if grid.schedule.name == "asha":
        eta, rungs = grid.schedule.reduction_factor, grid.schedule.rungs(
            max(c.config["train.max_epochs"] for c in cells))
        lines.append(f"schedule asha: rungs at epochs {', '.join(map(str, rungs)) or 'none'}; "
                     f"past each, only the top 1/{eta} of the cells that reached it go on")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


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
@click.option("--register", "register_as", metavar="NAME",
              help="Register the best cell's logged model as a new version of NAME in MLflow's "
                   "model registry (tags: its cell id and test accuracy).")
@click.option("--log", "log_table", is_flag=True,
              help="Also log the rendered table on the latest launch's parent run "
                   "(summary/<view>.<ext>). Off by default: reading a table changes no run.")
@_overrides_option
@click.option("--tracking-uri", metavar="URI",
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db].")
def summary(grid_file, experiment, fmt, output, sort, pivot, effects, view, compare,
            register_as, log_table, overrides, overrides_list, tracking_uri):
    """Print the results table of a grid's runs (the grid file, or --experiment NAME).

    Rows follow the grid's order; only the latest finished run of each cell counts; failed,
    running and not-yet-run cells are shown as such. Without --set, the grid is read with the
    --set overrides of its latest launch. It only reads the store, unless --log asks it to log
    the rendered table on that launch's parent run, or --register NAME to register the best
    cell's model.
    """
    from . import summary as summaries
    from .tracking import check_tracking_uri

    _quiet_mlflow()
    if (grid_file is None) == (experiment is None):
        raise GridError("give either a grid file or --experiment NAME", "summary")
    check_tracking_uri(tracking_uri)
    given = _all_overrides(overrides, overrides_list)
    grid = (summaries.grid_as_launched(grid_file, given or None, tracking_uri)
            if grid_file else None)
    df = summaries.table(experiment=experiment, grid=grid, tracking_uri=tracking_uri, view=view,
                         sort=sort, pivot=tuple(pivot) if pivot else None, effects=effects,
                         compare=compare)
    color = fmt == "term" and output is None and sys.stdout.isatty()
    text = summaries.render(df, fmt, color=color)
    if output:
        _write_atomically(output, text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
    if log_table:
        kind = "effects" if effects else ("pivot" if pivot else view)
        ext = {"term": "txt", "markdown": "md", "latex": "tex"}.get(fmt, fmt)
        name = grid.name if grid is not None else experiment
        summaries.log_rendered(name, summaries.render(df, fmt) if color else text,
                               f"summary/{kind}.{ext}", tracking_uri)
    if register_as:
        version = summaries.register_best(register_as, experiment, grid, tracking_uri)
        click.echo(f"registered {version.tags['gridrun.cell_name']} (test accuracy "
                   f"{version.tags['test_acc']}) as models:/{register_as}/{version.version}",
                   err=True)


def _write_atomically(path: str, text: str) -> None:
    """Write via a temporary file and a rename: a failure never leaves half a table behind."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gridrun-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
    """The `gridrun` command. Once a command is done, the exit handlers run (logging, MLflow,
    multiprocessing) and the process ends without tearing its modules down one by one: with
    torch, MLflow and matplotlib loaded that teardown took 2-3 s after the last line of output."""
    try:
        cli(prog_name="gridrun")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
