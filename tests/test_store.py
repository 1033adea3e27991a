"""The tracking store's reads and its new SQLite files: a new store starts from MLflow's schema,
built once per MLflow version, and is then an ordinary MLflow store."""
from __future__ import annotations

import mlflow
import sqlalchemy
from mlflow import MlflowClient
from mlflow.store.db.utils import _all_tables_exist, _get_latest_schema_revision

from gridrun.tracking import store


def _revision(path) -> str:
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text("select version_num from alembic_version")
                                      ).scalar_one()
    finally:
        engine.dispose()


def test_a_new_sqlite_store_starts_from_mlflows_schema_built_once_per_version(
        tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDRUN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    store.client(f"sqlite:///{tmp_path / 'first.db'}")
    template, = (tmp_path / "cache").glob("mlflow-*-schema.db")
    built = template.stat().st_mtime_ns

    uri = f"sqlite:///{tmp_path / 'second.db'}"
    client = store.client(uri)
    assert template.stat().st_mtime_ns == built  # copied, not built again
    engine = sqlalchemy.create_engine(uri)
    assert _all_tables_exist(engine)
    engine.dispose()
    assert _revision(tmp_path / "second.db") == _get_latest_schema_revision()
    # the Default experiment is this store's own, made as MLflow opened it (the schema has none)
    default, = client.search_experiments()
    assert (default.experiment_id, default.name) == ("0", "Default")
    assert default.artifact_location == str(tmp_path / "mlruns" / "0")
    # an ordinary store: another process's plain MLflow client reads what this one wrote
    run = client.create_run(client.create_experiment("x"))
    client.log_metric(run.info.run_id, "val_acc", 0.5, step=1)
    assert MlflowClient(uri).get_metric_history(run.info.run_id, "val_acc")[0].value == 0.5


def test_a_damaged_schema_in_the_cache_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDRUN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    template = tmp_path / "cache" / f"mlflow-{mlflow.__version__}-schema.db"
    template.write_bytes(b"not a database")  # a disk filled up, a stray write
    client = store.client(f"sqlite:///{tmp_path / 'new.db'}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert template.read_bytes().startswith(b"SQLite format 3\x00")
