"""Who trains which cell: claims, heartbeats, stale runs, and where checkpoints live.

Several launches may run one grid at once (two terminals, two machines on one tracking server)
and a launch may die at any moment (kill -9, a closed laptop). The tracking store is the one
place they all see, so it holds the claims (Optuna's trial claims and heartbeats, on MLflow):

- A cell's RUNNING run *is* its claim. Its owner is the launch named by the run's latest tag
  `gridrun.claim.<n>` (value: "token host pid since"). The owner beats the run's tag
  `gridrun.heartbeat` every `HEARTBEAT_SECONDS` (10 s) from a thread of the launching process.
- A RUNNING run is **stale** when its owner is surely gone: its last sign of life (heartbeat,
  claim, start) is older than `STALE_SECONDS` (60 s), or its owner ran on this host and that
  process no longer exists (so a relaunch after kill -9 on the same machine need not wait).
- **Taking over** a stale or KILLED run is a compare-and-set on claim n, for the n claims seen:
  creating the experiment `gridrun-claim/<run id>/<n>`. MLflow keeps experiment names unique,
  deleted ones included (on SQLite and on the PostgreSQL behind an `mlflow server` alike), so
  of two launches racing for the same run exactly one creation lands, and the other launch
  moves on. The winner deletes that experiment at once and writes the claim's tag
  (`ledger.MlflowLedger.claim`): nothing of the protocol is in a run's params, which are the
  researcher's.
- **Creating** a run for a cell nobody holds: create it, then look again; a launch that sees a
  rival (a FINISHED run, or another live RUNNING one) withdraws its own run (ended and moved to
  MLflow's trash) and, if the rival also withdrew, tries again after a random pause. Two
  launches can both withdraw; they cannot both keep a run.

We chose runs, tags and experiment names over a lock file because they work unchanged on a SQLite file
and on an `mlflow server` shared by several machines, and a claim then dies with its heartbeat.

A resumed cell continues into the same run from its checkpoint, a file per cell under the
state directory (`state_folder`) and, with a tracking server, in the run's artifacts
(`checkpoints.py`), which holds the run id it belongs to: a checkpoint is only ever resumed
into its own run.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from mlflow.exceptions import MlflowException

from ..errors import GridError
from . import tags as T
from .checkpoints import Checkpoints
from .ledger import Ledger
from .liveness import HOST, Owner, claims_of, is_stale, last_sign_of_life

if TYPE_CHECKING:
    from ..spec.grid import Cell, Grid
    from ..train.checkpoint import Saved, Where

NO_MORE = object()
HEARTBEAT_SECONDS = float(os.environ.get("GRIDRUN_HEARTBEAT_SECONDS", "10"))
CREATE_ATTEMPTS = 5


# --- where a launch keeps its checkpoints -------------------------------------------------------

def state_root(tracking_uri: str, given: str | None = None) -> Path:
    """The state directory: `given` (--state-dir), else $GRIDRUN_STATE_DIR, else `.gridrun/`
    beside a SQLite tracking store's file, else `.gridrun/` in the working directory."""
    if given or os.environ.get("GRIDRUN_STATE_DIR"):
        return Path(given or os.environ["GRIDRUN_STATE_DIR"]).expanduser().resolve()
    if tracking_uri.startswith("sqlite:///"):
        db = tracking_uri[len("sqlite:///"):].split("?")[0]
        if db and db != ":memory:":
            return Path(db).expanduser().resolve().parent / ".gridrun"
    return Path.cwd().resolve() / ".gridrun"


def check_state_root(root: Path) -> None:
    """The state directory exists (or can be made) and takes files: checked before a launch
    creates anything in the tracking store."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise GridError(f"cannot write checkpoints to {root}: {e.strerror or e}; give a "
                        "writable folder", "--state-dir") from None


def state_folder(root: Path, tracking_uri: str, experiment_id: str, name: str) -> Path:
    """One folder per experiment of one tracking store (two stores beside each other may both
    have an experiment 1), with a note of which it is."""
    digest = hashlib.sha1(tracking_uri.encode()).hexdigest()[:8]
    folder = root / f"experiment-{experiment_id}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)  # `root` was checked by check_state_root
    note = folder / "experiment.json"
    if not note.exists():
        note.write_text(json.dumps({"tracking_uri": tracking_uri, "experiment_id": experiment_id,
                                    "experiment": name}, indent=1) + "\n")
    return folder


# --- liveness -------------------------------------------------------------------------------------


# --- this launch's claims -------------------------------------------------------------------------

@dataclass
class Claim:
    """A cell this launch owns: its run, and whether it continues an earlier one."""
    cell: Cell
    run_id: str
    resumed: bool = False  # continues a run a dead or interrupted launch left
    logged: set[int] = field(default_factory=set)  # epochs whose metrics the run has
    tries: int = 0  # tries that failed so far (--retries)
    from_epoch: int = 0  # the epoch of the checkpoint its latest try started from
    saved_epoch: int = 0  # the epoch of its newest checkpoint (a retry starts there)
    pauses: int = 0  # times the plan paused it at a rung in this launch (ASHA's promotion)


class Claims:
    """The claims of one launch: taken as cells are pulled, beaten while held, released when
    each cell's run ends. `checkpoint_for` tells the executor where each cell resumes from;
    `saved` takes each new checkpoint (`checkpoints.Checkpoints`: the state directory's
    files, and the runs' artifacts with a tracking server)."""

    def __init__(self, ledger: Ledger, grid: Grid, folder: Path, rerun: bool = False,
                 checkpoints: Checkpoints | None = None):
        self.ledger, self.grid, self.folder, self.rerun = ledger, grid, folder, rerun
        self.checkpoints = checkpoints or Checkpoints(folder)
        self.owner = Owner(uuid.uuid4().hex[:12], HOST, os.getpid(), time.time())
        self.parent_run_id: str | None = None
        self.held: dict[int, Claim] = {}  # cell index -> claim
        self._lock = threading.Lock()  # no beat on a run after it is released
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def launch_tags(self) -> dict[str, str]:
        """Tags of this launch's parent run: whose it is, so a later launch can tell it died."""
        return {T.HOST: HOST, T.PID: str(self.owner.pid), T.OWNER: self.owner.token,
                T.HEARTBEAT: f"{time.time():.1f}"}

    def _owner_tags(self, refused: str | None = None) -> dict[str, str]:
        """The tags of a run this launch now trains; with why its checkpoint was refused."""
        tags = {T.HOST: HOST, T.PID: str(self.owner.pid), T.HEARTBEAT: f"{time.time():.1f}",
                T.OUTCOME: "running", T.LAUNCH: self.parent_run_id or ""}
        if refused:
            tags[T.CHECKPOINT_REFUSED] = refused
        return tags

    def checkpoint_path(self, cell: Cell) -> Path:
        return self.checkpoints.path(cell)

    def checkpoint_for(self, cell: Cell) -> Where:
        """Where `cell` starts from and saves to: its newest checkpoint (a retry's too)."""
        claim = self.held[cell.index]
        claim.from_epoch = claim.saved_epoch
        return self.checkpoints.where(cell, claim.run_id)

    def saved(self, cell: Cell, saved: Saved) -> None:
        """A worker's new checkpoint of a cell this launch holds (`checkpoints.take`)."""
        claim = self.held.get(cell.index)
        if claim is not None:
            claim.saved_epoch = saved.epoch
            self.checkpoints.take(cell, claim.run_id, saved)

    # --- reading what others do

    def busy_elsewhere(self) -> set[str]:
        """Cell ids another live launch is training now."""
        return {r.data.tags.get(T.CELL) for r in self.ledger.running_cells() if not is_stale(r)}

    def others_running(self) -> bool:
        """Whether another launch of this grid is alive now."""
        return any(r.info.run_id != self.parent_run_id and not is_stale(r)
                   for r in self.ledger.running_launches())

    def close_stale_launches(self) -> list[str]:
        """End as KILLED the parent runs of launches that died (kill -9): their cells are
        resumed by this launch or a later one."""
        closed = []
        for run in self.ledger.running_launches():
            if run.info.run_id != self.parent_run_id and is_stale(run):
                seen = time.strftime("%Y-%m-%d %H:%M:%S",
                                     time.localtime(last_sign_of_life(run)))
                self.ledger.close_launch(run.info.run_id, f"the launch died (last heartbeat "
                                           f"{seen}); closed by a later launch", "KILLED")
                closed.append(run.info.run_id)
        return closed

    # --- claiming

    def claim(self, cell: Cell) -> Claim | None:
        """Own `cell` for this launch, or None when it is finished or someone else has it."""
        for _ in range(CREATE_ATTEMPTS):
            refused = None  # why a checkpoint left here was not loaded
            runs = self.ledger.cell_runs(cell.id)
            if not self.rerun and any(r.info.status == "FINISHED" for r in runs):
                return None
            if any(r.info.status == "RUNNING" and not is_stale(r) for r in runs):
                return None
            if not self.rerun:
                left = next((r for r in runs if r.info.status in ("RUNNING", "KILLED")), None)
                saved, refused = (self._own_checkpoint(left, cell) if left is not None
                                  else (None, None))
                if left is not None and (saved is not None or
                                         max(self.ledger.logged_steps(left.info.run_id), default=0) <= 1):
                    return self._take_over(left, cell, saved, refused)
            for run in runs:  # stale runs nobody can resume: closed, then a new run
                if run.info.status == "RUNNING" and not self._close(run):
                    return None
            claim = self._create(cell, refused)
            if claim is not None:
                return claim
            time.sleep(random.uniform(0.05, 0.5))  # both of a racing pair withdrew: try again
        return None

    def _own_checkpoint(self, run, cell: Cell) -> tuple[dict | None, str | None]:
        """The metadata of the run's newest checkpoint, here or in its artifacts (None: none),
        and why a file was refused, if it was (`checkpoint.Refused`: not a gridrun
        checkpoint, or one that would run code when unpickled; the cell starts over).
        A run is continued when its checkpoint is here, or when it has at most one epoch
        logged: a launch killed between recording a cell's first epoch and the worker writing
        that epoch's checkpoint leaves exactly that, and training the epoch again gives the
        same numbers (the run keeps the ones it has)."""
        return self.checkpoints.latest(cell, run)

    def _take_over(self, run, cell: Cell, saved: dict | None,
                   refused: str | None = None) -> Claim | None:
        """Own `run` (compare-and-set on its next claim param) and continue it from `saved`,
        its checkpoint's metadata (None: from the start; any other checkpoint is removed)."""
        run_id = run.info.run_id
        if not self.ledger.claim(run_id, len(claims_of(run)), self.owner.param()):
            return None
        if saved is None:
            self.checkpoints.forget_here(cell)
        tags = {**self._owner_tags(refused), T.RESUMED: str(len(claims_of(run))),
                T.REASON: "", T.SIGNAL: ""}  # what ended the last try is history now
        try:
            self.ledger.reopen(run_id, tags)
        except MlflowException:  # the run went to the trash under us: not ours after all
            return None
        epoch = saved["epoch"] if saved else 0
        return self._hold(Claim(cell, run_id, resumed=True,
                                logged=self.ledger.logged_steps(run_id), from_epoch=epoch,
                                saved_epoch=epoch))

    def _close(self, run) -> bool:
        """End a stale run that cannot be resumed (no checkpoint of it here or in its
        artifacts)."""
        if not self.ledger.claim(run.info.run_id, len(claims_of(run)), self.owner.param()):
            return False
        self.ledger.end_cell(run.info.run_id, "Stale: its launch died and no checkpoint of it "
                             "is on this machine or in its artifacts; a new run trains the "
                             "cell", status="KILLED")
        return True

    def _create(self, cell: Cell, refused: str | None = None) -> Claim | None:
        run_id = self.ledger.create_cell_run(self.parent_run_id, cell, self.grid,
                                             self.owner.param(), self._owner_tags(refused))
        rivals = [r for r in self.ledger.cell_runs(cell.id)
                  if r.info.run_id != run_id and (
                      (r.info.status == "FINISHED" and not self.rerun)
                      or (r.info.status == "RUNNING" and not is_stale(r)))]
        if rivals:
            self.ledger.withdraw(run_id)
            return None
        self.checkpoints.forget_here(cell)  # another run's: never resumed here
        return self._hold(Claim(cell, run_id))

    def _hold(self, claim: Claim) -> Claim:
        with self._lock:
            self.held[claim.cell.index] = claim
        return claim

    def owns(self, run_id: str) -> bool:
        """Whether this launch is still the run's latest owner (a launch stalled for longer
        than STALE_SECONDS may have been taken over)."""
        owners = claims_of(self.ledger.get_run(run_id))
        return bool(owners) and owners[-1] is not None and owners[-1].token == self.owner.token

    def release(self, cell: Cell, keep_checkpoint: bool = True) -> None:
        """Stop beating the cell's run (it is about to end) and drop its checkpoint unless kept."""
        with self._lock:
            claim = self.held.pop(cell.index, None)
        if not keep_checkpoint and claim is not None:
            self.checkpoints.drop(cell, claim.run_id)

    # --- heartbeats

    def start_beating(self) -> None:
        self._beater = threading.Thread(target=self._beat_forever, daemon=True,
                                        name="gridrun-heartbeat")
        self._beater.start()

    def stop_beating(self) -> None:
        self._stop.set()
        if self._beater is not None:
            self._beater.join(timeout=30)

    def _beat_forever(self) -> None:
        """Beat every held run and the launch's run. The lock guards only the list of held
        runs, never a call to the store: a store that is away (a server restarting) must not
        hold up `release`, which the launch's one writing thread calls."""
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._lock:
                runs = [c.run_id for c in self.held.values()]
            if self.parent_run_id:
                runs.append(self.parent_run_id)
            for run_id in runs:
                with self._lock:  # released meanwhile: its run is ending, no more beats
                    if run_id != self.parent_run_id and all(
                            c.run_id != run_id for c in self.held.values()):
                        continue
                try:
                    self.ledger.beat(run_id, time.time())
                except Exception:  # noqa: BLE001 - a busy or absent store: the next beat comes
                    pass


class ClaimedCells:
    """The cells this launch trains, in its plan's order, each claimed when an executor pulls
    it (when a worker is free). Cells someone else holds or finished are passed over. A failed
    cell queued with `retry` comes out again before the next new one. A cell this launch
    already holds (a paused cell the plan promotes or ends) comes out as it is, and a None
    from the plan (nothing to start yet) is passed on. `on_dry` is called once, when the plan
    has no cell left to start."""

    def __init__(self, cells: Iterator[Cell], claims: Claims, passed_over=None,
                 on_dry: Callable[[], None] | None = None):
        self.source, self.claims, self.passed_over = cells, claims, passed_over
        self.on_dry = on_dry
        self.retries: deque[Cell] = deque()
        self.unclaimed: deque[Cell] = deque()  # a claim the store did not answer: asked again

    def __iter__(self) -> ClaimedCells:
        return self

    def __next__(self) -> Cell | None:
        if self.retries:
            return self.retries.popleft()
        while True:
            cell = self.unclaimed.popleft() if self.unclaimed else next(self.source, NO_MORE)
            if cell is NO_MORE:
                if self.on_dry is not None:
                    self.on_dry, on_dry = None, self.on_dry
                    on_dry()
                break
            if cell is None or cell.index in self.claims.held:
                return cell
            try:
                claimed = self.claims.claim(cell)
            except Exception:
                self.unclaimed.appendleft(cell)  # the next call asks again (a server outage)
                raise
            if claimed is not None:
                return cell
            if self.passed_over is not None:
                self.passed_over(cell)
        raise StopIteration

    def retry(self, cell: Cell) -> None:
        self.retries.append(cell)
