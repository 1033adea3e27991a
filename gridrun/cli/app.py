"""The `gridrun` group, its one error format, and the options several commands share.

Exit codes: 0 success; 1 some cells failed (launch) or not every cell finished (status);
2 bad input (grid file, --set, data directory); 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.
"""
from __future__ import annotations

import atexit
import logging
import os
import sys

import click

from ..errors import GridError


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
        except GridError as e:  # bad input (2), or a launch stopped for its reason (its code)
            click.echo(error_line(str(e)), err=True)
            ctx.exit(getattr(e, "exit_code", 2))
        except KeyboardInterrupt as e:
            from ..launch.signals import Stopped, exit_code  # not at import: `launch` loads torch
            click.echo(f"interrupted{' by ' + str(e) if isinstance(e, Stopped) else ''}: "
                       "cells in progress are recorded as KILLED with their checkpoints; the "
                       "same command resumes them", err=True)
            ctx.exit(exit_code(e))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gridrun")
def cli():
    """Run hyperparameter grids of image-classification CNNs, tracked in MLflow.

    \b
    Example:
      gridrun launch grids/quickstart.yaml
      mlflow ui   # browse the runs (same working directory)
    """


def quiet_mlflow() -> None:
    """MLflow logs its database set-up at INFO and, against a server, prints a link each time a
    run ends, and a progress bar for each artifact it downloads; only warnings belong in our
    output (the launch prints the experiment's link once)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def overrides_option(fn):
    fn = click.option("--sets", "overrides_list", metavar="'K=V;K=V'", default="",
                      help="Several overrides in one argument, separated by ';' (for MLproject "
                           "parameters).")(fn)
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help="Override a setting for every cell (repeatable), e.g. "
                             "--set data.train_size=2000, or one of the file's execution, "
                             "track and schedule keys, e.g. --set track.log_model=none. "
                             "Validated like the file.")(fn)


def all_overrides(overrides: tuple[str, ...], overrides_list: str) -> list[str]:
    return list(overrides) + [o.strip() for o in overrides_list.split(";") if o.strip()]


def execution_options(fn):
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


def tracking_uri_option(fn):
    return click.option("--tracking-uri", metavar="URI",
                        help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///mlflow.db].")(fn)


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
