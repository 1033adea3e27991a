"""Reading a tracking store, and the one MLflow client per process that every read and write
goes through (`client()`), never MLflow's global "active run".

A `Store` only looks things up (summary and status use it), and a read never creates a SQLite
file or restores an experiment; writes are `recorder.py`'s. The URI checks here turn a store that
cannot work into one `error:` line within seconds, before a launch decodes any data.
"""
from __future__ import annotations

import contextlib
import gc
import os

from mlflow import MlflowClient

from ..errors import GridError
from . import tags as T

_CLIENTS: dict[str | None, MlflowClient] = {}


def client(tracking_uri: str | None = None) -> MlflowClient:
    """This process's client for a tracking URI (None: $MLFLOW_TRACKING_URI, else MLflow's
    default, sqlite:///mlflow.db in the working directory). Building one costs ~0.7 s against
    SQLite (engine, schema check), so each process builds one per store and keeps it."""
    if tracking_uri not in _CLIENTS:
        with _schema_lock(tracking_uri) as held:
            if held is not None:
                _start_from_schema(held)
            made = MlflowClient(tracking_uri=tracking_uri)
            made._tracking_client.store  # noqa: B018 - opens the store, creating its schema
        _CLIENTS[tracking_uri] = _CLIENTS[made.tracking_uri] = made
    return _CLIENTS[tracking_uri]


URI_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
REACH_SECONDS = 5.0


def check_tracking_uri(tracking_uri: str | None) -> None:
    """Refuse a tracking URI that cannot work, in one line and within seconds, before a launch
    decodes any data: an unknown scheme, a SQLite file in a folder that does not exist, a
    server that does not answer (MLflow itself would retry for minutes)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    where = "--tracking-uri" if tracking_uri else "$MLFLOW_TRACKING_URI"
    if not tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        return  # MLflow's default, sqlite:///mlflow.db here
    uri = tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
    scheme = urllib.parse.urlparse(uri).scheme.split("+")[0]
    if scheme and len(scheme) > 1 and scheme not in URI_SCHEMES:
        raise GridError(f"unknown scheme '{scheme}://' in {uri!r}; allowed: sqlite:///PATH, "
                        "http(s)://HOST:PORT (an mlflow server), file:///PATH, postgresql://, "
                        "mysql://", where)
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise GridError(f"the folder of the SQLite store {path!r} does not exist; create "
                            "it or give another path", where)
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_SECONDS):
                pass
        except urllib.error.HTTPError:
            pass  # something answers: MLflow reports anything else in its own words
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise GridError(f"no tracking server answers at {uri} within {REACH_SECONDS:.0f} s "
                            f"({reason}); start one (mlflow server) or fix the URI",
                            where) from None
        _check_credentials(uri, where)


def _check_credentials(uri: str, where: str) -> None:
    """A server with authentication (`mlflow server --app-name basic-auth`) that refuses this
    process's credentials, MLflow's own MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
    (or MLFLOW_TRACKING_TOKEN), is one error line before anything is created; MLflow would
    raise its 401 from the launch's first write."""
    import base64
    import urllib.error
    import urllib.request

    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    headers = {}
    if user:
        pair = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]
    probe = urllib.request.Request(
        uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
        headers=headers)
    try:
        with urllib.request.urlopen(probe, timeout=REACH_SECONDS):
            pass
    except urllib.error.HTTPError as e:
        if e.code == 401:
            who = (f"refused user {user!r}" if user else
                   "needs a user and MLFLOW_TRACKING_USERNAME is not set")
            raise GridError(f"the tracking server {who} (401 Unauthorized); allowed: "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD of a user of "
                            "that server", where) from None
        if e.code == 403:
            raise GridError(f"the tracking server gives user {user!r} no permission to read "
                            "experiments (403 Forbidden); allowed: a user with at least READ, "
                            "granted by the server's admin", where) from None
    except (urllib.error.URLError, OSError):
        pass  # it answered /health a moment ago; MLflow reports the rest in its own words


@contextlib.contextmanager
def global_tracking_uri(tracking_uri: str):
    """MLflow's process-wide tracking URI set to `tracking_uri` meanwhile: some MLflow calls
    (logging a model, registering one from `models:/ID`) resolve the store globally, whatever
    their client's URI."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def sqlite_path(tracking_uri: str | None) -> str:
    """The file of a SQLite tracking URI (None: MLflow's default), else ""."""
    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    path = uri[len("sqlite:///"):].split("?")[0] if uri.startswith("sqlite:///") else ""
    return "" if path == ":memory:" else path


def _missing_sqlite(tracking_uri: str | None) -> bool:
    path = sqlite_path(tracking_uri)
    return bool(path) and not os.path.exists(path)


@contextlib.contextmanager
def _schema_lock(tracking_uri: str | None):
    """Hold an exclusive lock on a SQLite store's file while MLflow opens it: MLflow creates a
    new store's tables on first open, and several launches opening one new store at once
    otherwise fail with "table ... already exists". An advisory flock on the database file
    itself: SQLite's own locks are fcntl locks, which flock does not touch, and no lock file
    is left beside the store. Yields the file, open for appending (None: not a SQLite file)."""
    path = sqlite_path(tracking_uri)
    if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        yield None
        return
    import fcntl
    with open(path, "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield held
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def _start_from_schema(held) -> None:
    """A new SQLite store (`held`: its file, empty, locked) starts as a copy of the empty
    schema MLflow's migrations build. MLflow otherwise runs all of them (over 60 alembic
    revisions) for every new file: 3-7 s on this project's 2-core machine against 0.04 s for
    the copy, paid by every first launch and by every test's store. The schema is built once
    per MLflow version into the cache folder, by MLflow's own table initialization, without
    the Default experiment, which MLflow then adds at the store's own place as it opens it.
    Should anything fail, the file is left empty and MLflow builds the schema itself."""
    if os.fstat(held.fileno()).st_size:
        return
    try:
        with open(_schema_template(), "rb") as template:
            held.write(template.read())
        held.flush()
    except Exception:  # noqa: BLE001 - MLflow's own path still works, only slower
        held.truncate(0)


def _schema_template() -> str:
    """The empty schema of this MLflow version's stores, built on first use."""
    import mlflow
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    from ..spec.places import cache_dir

    path = cache_dir() / f"mlflow-{mlflow.__version__}-schema.db"
    if not _is_sqlite(path):  # not built yet, or something else wrote there
        path.parent.mkdir(parents=True, exist_ok=True)
        building = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        engine = sqlalchemy.create_engine(f"sqlite:///{building}")
        try:
            _initialize_tables(engine)
        except BaseException:
            building.unlink(missing_ok=True)  # no half-built schema left in the cache
            raise
        finally:
            engine.dispose()
        os.replace(building, path)  # whole or not at all, whoever builds it at the same time
    return str(path)


def _is_sqlite(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


class Store:
    """Read-only view of a tracking store: experiments, runs, finished cells, launches.

    A SQLite store that does not exist yet is read as empty, not created: `gridrun status` or
    `summary` typed in the wrong folder leaves no stray mlflow.db behind (`create=True` is for
    the writer)."""

    def __init__(self, tracking_uri: str | None = None, create: bool = False):
        if not create and _missing_sqlite(tracking_uri):
            import mlflow
            self.client = None
            self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
            return
        self.client = client(tracking_uri)
        self.tracking_uri = self.client.tracking_uri

    def experiment_id(self, name: str) -> str | None:
        """The id of a live experiment, or None (also when it was deleted: reads restore nothing)."""
        if self.client is None:
            return None
        exp = self.client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage == "deleted":
            return None
        return exp.experiment_id

    def runs(self, experiment_id: str, filter_string: str = "") -> list:
        """All runs of an experiment matching a filter, across result pages.

        The cyclic garbage collector is paused meanwhile: a page of 1,000 runs builds ~50,000
        short-lived ORM objects, and collections triggered by them took more than half of the
        search time (1.8 s -> 0.75 s for 1,000 runs, benchmarks/summary_speed.py).
        """
        found, token = [], None
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            while True:
                page = self.client.search_runs([experiment_id], filter_string=filter_string,
                                               max_results=1000, page_token=token)
                found += list(page)
                token = page.token
                if not token:
                    return found
        finally:
            if was_enabled:
                gc.enable()

    def finished_cells(self, experiment_id: str) -> set[str]:
        """Ids of cells that already have a FINISHED run: a relaunch skips them."""
        runs = self.runs(experiment_id, f"{T.of_kind('cell')} and attributes.status = 'FINISHED'")
        return {r.data.tags[T.CELL] for r in runs if T.CELL in r.data.tags}

    def cell_runs(self, experiment_id: str, cell_id: str) -> list:
        """Every live (not deleted) run of one cell, newest first."""
        runs = self.client.search_runs([experiment_id], f"tags.`{T.CELL}` = '{cell_id}'",
                                       order_by=["attributes.start_time DESC"], max_results=1000)
        return [r for r in runs if r.data.tags.get(T.KIND) == "cell" and T.WITHDRAWN not in r.data.tags]

    def running_launches(self, experiment_id: str) -> list:
        return self.client.search_runs(
            [experiment_id], f"{T.of_kind('launch')} and attributes.status = 'RUNNING'",
            max_results=1000)

    def histories(self, experiment_id: str, metrics: dict[str, str]) -> dict[str, list[float]]:
        """Per cell id in `metrics` (cell id -> metric name): that metric's per-epoch values
        (epoch 1 first) from the cell's run with the longest history. What a schedule that
        compares cells (`gridrun.schedule`) replays when a launch starts."""
        out: dict[str, list[float]] = {}
        for run in self.runs(experiment_id, T.of_kind("cell")):
            cell_id = run.data.tags.get(T.CELL)
            if cell_id not in metrics or T.WITHDRAWN in run.data.tags:
                continue
            by_step = {m.step: m.value for m in
                       self.client.get_metric_history(run.info.run_id, metrics[cell_id])}
            values = [by_step[step] for step in sorted(by_step)]
            if len(values) > len(out.get(cell_id, [])):
                out[cell_id] = values
        return out

    def logged_steps(self, run_id: str) -> set[int]:
        """The epochs whose metrics a run has."""
        return {m.step for m in self.client.get_metric_history(run_id, "val_acc")}

    def logged_epochs(self, run_id: str) -> int:
        """The last epoch whose metrics a run has (0: none)."""
        return max(self.logged_steps(run_id), default=0)

    def get_run(self, run_id: str):
        return self.client.get_run(run_id)

    def latest_launch(self, experiment_id: str):
        """The most recent parent run of an experiment, or None."""
        runs = self.client.search_runs([experiment_id], T.of_kind("launch"),
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None
