"""The ledger the claims protocol (`claims.py`) reads and writes: runs, their claims, their
heartbeats. As Optuna's storages sit behind `BaseStorage` and its heartbeats behind
`BaseHeartbeat`, the protocol sees only this small interface:

- `MlflowLedger`: the real one, the runs of one experiment in a tracking store (SQLite, or an
  `mlflow server` shared by several machines).
- `MemoryLedger`: the same rules in a dict, for unit tests of the protocol (races, takeovers,
  stale runs) that need no store. Its `claim` is the same compare-and-set as MLflow's: claim n
  of a run can be won once.

A run is read as MLflow returns it: `run.info.run_id`, `.status`, `.start_time` (ms) and
`run.data.tags`; the memory ledger hands out objects of that shape.
"""
from __future__ import annotations

import itertools
import threading
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Protocol

from mlflow.exceptions import MlflowException

from . import tags as T
from .liveness import STALE_SECONDS, Owner

if TYPE_CHECKING:
    from ..spec.grid import Cell, Grid
    from .recorder import Recorder


class Ledger(Protocol):
    # reads
    def cell_runs(self, cell_id: str) -> list: ...  # live runs of a cell, newest first
    def running_cells(self) -> list: ...  # RUNNING cell runs
    def running_launches(self) -> list: ...  # RUNNING launch runs
    def get_run(self, run_id: str): ...
    def logged_steps(self, run_id: str) -> set[int]: ...  # epochs whose metrics a run has

    # writes
    def create_cell_run(self, parent_id: str | None, cell: Cell, grid: Grid, first_claim: str,
                        tags: dict[str, str]) -> str: ...
    def claim(self, run_id: str, n: int, owner: str) -> bool: ...  # compare-and-set
    def reopen(self, run_id: str, tags: dict[str, str]) -> None: ...
    def withdraw(self, run_id: str) -> None: ...
    def end_cell(self, run_id: str, error: str, status: str) -> None: ...
    def close_launch(self, run_id: str, reason: str, status: str) -> None: ...
    def beat(self, run_id: str, now: float) -> None: ...


class MlflowLedger:
    """The claims' ledger on one experiment of a tracking store."""

    def __init__(self, recorder: Recorder, experiment_id: str):
        self.recorder, self.store, self.experiment_id = recorder, recorder.store, experiment_id

    def cell_runs(self, cell_id: str) -> list:
        return self.store.cell_runs(self.experiment_id, cell_id)

    def running_cells(self) -> list:
        return self.store.runs(self.experiment_id,
                               f"{T.of_kind('cell')} and attributes.status = 'RUNNING'")

    def running_launches(self) -> list:
        return self.store.running_launches(self.experiment_id)

    def get_run(self, run_id: str):
        return self.store.get_run(run_id)

    def logged_steps(self, run_id: str) -> set[int]:
        return self.store.logged_steps(run_id)

    def metric_history(self, run_id: str, key: str) -> list[float]:
        return [m.value for m in self.store.client.get_metric_history(run_id, key)]

    def create_cell_run(self, parent_id, cell, grid, first_claim, tags) -> str:
        return self.recorder.cells.start(self.experiment_id, parent_id, cell, grid,
                                         extra_tags={**tags, T.claim(0): first_claim})

    def claim(self, run_id: str, n: int, owner: str) -> bool:
        """Win claim n of a run for `owner`: True when this call won it (or `owner` already
        had), False when another owner did first or the run went to the trash (a rival
        launch withdrew it).

        The compare-and-set is the creation of an experiment named
        `gridrun-claim/<run id>/<n>`: MLflow keeps experiment names unique, the deleted ones
        included (a unique index on SQLite and on the PostgreSQL behind an `mlflow server`),
        so of two launches racing for the same n exactly one creates it. The winner deletes
        it at once (MLflow's experiment list shows it no more; the name stays taken) and
        writes the tag `gridrun.claim.<n>` on the run, where every reader finds the owner.
        Claims used to be params, whose keys MLflow never rewrites; as params they filled the
        researcher's parameter list, and now only the tag is on the run."""
        client = self.recorder.client
        run = client.get_run(run_id)
        if run.info.lifecycle_stage != "active":
            return False
        name = T.claim_experiment(run_id, n)
        try:
            client.delete_experiment(client.create_experiment(name, tags={T.OWNER: owner}))
        except MlflowException as e:
            # RESOURCE_ALREADY_EXISTS, or whatever a server makes of the unique index's
            # error when two creations meet: the name exists, so the claim was someone's
            if e.error_code != "RESOURCE_ALREADY_EXISTS" and \
                    client.get_experiment_by_name(name) is None:
                raise
            return self._lost_claim(run_id, n, name, owner)
        client.set_tag(run_id, T.claim(n), owner)
        return True

    def _lost_claim(self, run_id: str, n: int, name: str, owner: str) -> bool:
        """Claim n was won by the owner named on its experiment. When that was us, the claim
        holds. When its winner died between winning and writing its tag (the run shows fewer
        than n + 1 claims long after), the tag is written for it, so the next claimer asks for
        n + 1 and the run is not blocked for ever."""
        won = self.recorder.client.get_experiment_by_name(name)
        winner = won.tags.get(T.OWNER, "") if won is not None else ""
        if winner == owner:
            self.recorder.client.set_tag(run_id, T.claim(n), owner)
            return True
        parsed = Owner.parse(winner)
        tags = self.recorder.client.get_run(run_id).data.tags
        if parsed is not None and T.claim(n) not in tags and \
                time.time() - parsed.since > STALE_SECONDS:
            self.recorder.client.set_tag(run_id, T.claim(n), winner)
        return False

    def reopen(self, run_id: str, tags: dict[str, str]) -> None:
        """A KILLED (or stale RUNNING) run this launch now owns: RUNNING again, with its tags."""
        self.recorder.set_tags(run_id, tags)
        self.recorder.client.update_run(run_id, status="RUNNING")

    def withdraw(self, run_id: str) -> None:
        """A run created for a claim that lost a race: marked withdrawn first (so no launch
        takes it for a killed run to resume while it goes), ended, and moved to MLflow's
        trash."""
        self.recorder.set_tags(run_id, {T.WITHDRAWN: "true"})
        self.recorder.client.set_terminated(run_id, "KILLED")
        self.recorder.client.delete_run(run_id)

    def end_cell(self, run_id: str, error: str, status: str) -> None:
        self.recorder.cells.fail(run_id, error, status=status)

    def close_launch(self, run_id: str, reason: str, status: str) -> None:
        self.recorder.launch.close(run_id, reason, status)

    def beat(self, run_id: str, now: float) -> None:
        self.recorder.client.set_tag(run_id, T.HEARTBEAT, f"{now:.1f}")


class MemoryLedger:
    """The ledger in memory, shared by several `Claims` in one process (a test's rival
    launches). Runs are SimpleNamespaces shaped as MLflow's; every operation holds one lock, as
    a database transaction would."""

    def __init__(self):
        self.runs: dict[str, SimpleNamespace] = {}
        self.steps: dict[str, set[int]] = {}
        self.claims: dict[tuple[str, int], str] = {}  # (run, n) -> its owner: won once
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def add_run(self, kind: str, status: str = "RUNNING", tags: dict[str, str] | None = None,
                params: dict[str, str] | None = None, start_time: float | None = None) -> str:
        """A run as another launch would have left it (a test's setup)."""
        run_id = f"run{next(self._ids)}"
        started = int(1000 * (time.time() if start_time is None else start_time))
        self.runs[run_id] = SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, status=status, start_time=started,
                                 lifecycle_stage="active"),
            data=SimpleNamespace(tags={T.KIND: kind, **(tags or {})}, params=dict(params or {})))
        self.steps[run_id] = set()
        return run_id

    def _live(self) -> list[SimpleNamespace]:
        return [r for r in self.runs.values() if r.info.lifecycle_stage == "active"]

    def cell_runs(self, cell_id: str) -> list:
        with self._lock:
            found = [r for r in self._live() if r.data.tags.get(T.KIND) == "cell"
                     and r.data.tags.get(T.CELL) == cell_id and T.WITHDRAWN not in r.data.tags]
            return sorted(found, key=lambda r: r.info.start_time, reverse=True)

    def running_cells(self) -> list:
        with self._lock:
            return [r for r in self._live() if r.data.tags.get(T.KIND) == "cell"
                    and r.info.status == "RUNNING"]

    def running_launches(self) -> list:
        with self._lock:
            return [r for r in self._live() if r.data.tags.get(T.KIND) == "launch"
                    and r.info.status == "RUNNING"]

    def get_run(self, run_id: str):
        return self.runs[run_id]

    def logged_steps(self, run_id: str) -> set[int]:
        return set(self.steps.get(run_id, ()))

    def create_cell_run(self, parent_id, cell, grid, first_claim, tags) -> str:
        run_id = self.add_run("cell", tags={T.CELL: cell.id, **tags, T.claim(0): first_claim})
        self.runs[run_id].info.start_time += next(self._ids)  # newest first, also within a ms
        return run_id

    def claim(self, run_id: str, n: int, owner: str) -> bool:
        with self._lock:
            run = self.runs[run_id]
            if run.info.lifecycle_stage != "active":
                return False
            held = self.claims.setdefault((run_id, n), owner)
            if held == owner:
                run.data.tags[T.claim(n)] = owner
            return held == owner

    def reopen(self, run_id: str, tags: dict[str, str]) -> None:
        with self._lock:
            self.runs[run_id].data.tags.update(tags)
            self.runs[run_id].info.status = "RUNNING"

    def withdraw(self, run_id: str) -> None:
        with self._lock:
            run = self.runs[run_id]
            run.data.tags[T.WITHDRAWN] = "true"
            run.info.status, run.info.lifecycle_stage = "KILLED", "deleted"

    def end_cell(self, run_id: str, error: str, status: str) -> None:
        with self._lock:
            run = self.runs[run_id]
            run.data.tags.update({T.OUTCOME: "failed" if status == "FAILED" else "killed",
                                  T.REASON: error, T.ERROR: error})
            run.info.status = status

    def close_launch(self, run_id: str, reason: str, status: str) -> None:
        with self._lock:
            self.runs[run_id].data.tags[T.REASON] = reason
            self.runs[run_id].info.status = status

    def beat(self, run_id: str, now: float) -> None:
        with self._lock:
            self.runs[run_id].data.tags[T.HEARTBEAT] = f"{now:.1f}"
