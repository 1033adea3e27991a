"""What every writer of a run shares: MLflow's limits, params as strings, and the plain writes
(tags, text, files) that any run kind makes."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

from mlflow import MlflowClient
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException

MAX_PARAM_LENGTH = 6000
BATCH = 100  # MLflow accepts at most 100 params or tags in one log_batch call


def now_ms() -> int:
    return int(time.time() * 1000)


def chunks(items: list, size: int = BATCH) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def format_param(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def lost_insert_race(error: Exception) -> bool:
    """Whether a write failed because a concurrent writer inserted the same row first."""
    text = str(error)
    return any(sign in text for sign in ("UNIQUE constraint failed", "duplicate key value",
                                         "IntegrityError"))


class RunWrites:
    """Writes on any run, through one client."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def set_experiment_tags(self, experiment_id: str, tags: dict[str, str]) -> None:
        """Tags on the grid's experiment, which concurrent launches of the grid write at the
        same moment. MLflow's stores insert a tag the experiment does not have yet without an
        upsert, so of two first writes one fails on the unique key (SQLite's "UNIQUE constraint
        failed", PostgreSQL's "duplicate key"): the loser writes again, an update now."""
        for key, value in tags.items():
            try:
                self.client.set_experiment_tag(experiment_id, key, value)
            except MlflowException as e:
                if not lost_insert_race(e):
                    raise
                self.client.set_experiment_tag(experiment_id, key, value)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_params(self, run_id: str, params: dict[str, Any],
                   skip: dict[str, str] | None = None) -> None:
        """`params` as strings cut to MLflow's length, 100 a call; those in `skip` (a run's
        params already logged, which MLflow refuses to change) left out."""
        rows = [Param(k, format_param(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()
                if k not in (skip or {})]
        for chunk in chunks(rows):
            self.client.log_batch(run_id, params=chunk)

    def log_artifact_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_files(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path)
