"""Where a launch keeps its cells' checkpoints: a file per cell in the state directory, and, when
the tracking store is a server, the same checkpoint in the cell run's artifacts, which every
machine that reaches the server can read (Ray Tune's `storage_path`, on the store gridrun
already has).

    checkpoints.where(cell, run_id)          # what the executor gets: the file, the run
    checkpoints.take(cell, run_id, saved)    # a worker's new checkpoint: kept here, uploaded
    checkpoints.latest(cell, run)            # the newest of the run's: here, else downloaded
    checkpoints.drop(cell, run_id, keep)     # the run ended: its checkpoints go

With a tracking server (`http(s)://`), the state directory is a cache:
- After an epoch the launch uploads the cell's checkpoint to its run as
  `checkpoints/epoch-NNNN.pt`, then points the run's tag `gridrun.checkpoint` at it, then
  deletes the run's older checkpoint files: a run holds one checkpoint, and the tag never
  names a file half uploaded. Uploads run on a thread of the launching process, never on a
  worker's way: the worker hands its checkpoint over and trains on.
- A cell's checkpoints go up at most every `UPLOAD_SECONDS` (10 s): with epochs of a few
  seconds, uploading each would cost more than it saves (8.7 MB a cell every 2 s measured 12 %
  on the epochs of a 2-core machine that also ran the server: benchmarks/cluster_throughput.py).
  One that comes sooner is held back; the next one due goes up instead, and a launch that stops
  (Ctrl-C, SIGTERM) uploads every held-back one before it ends. When uploads fall behind, only a
  cell's newest checkpoint is sent. A cell whose node dies resumes from the launch's file, which
  every epoch's checkpoint reaches; only a launch killed outright leaves its cells' last
  uploaded checkpoint, at most about `UPLOAD_SECONDS` of training old.
- A launch that takes over a run (its launch died, on this machine or another) resumes from
  the newer of its file here and the one the tag names, downloading it if needed: any
  machine resumes any cell, into the same run, from its last uploaded epoch.
- An upload the server refuses or misses (an outage) is skipped: the next epoch's replaces
  it, and the file here is still the newest.
- When the run is FINISHED its checkpoint files and tag are deleted, unless
  `track.keep_checkpoints` (then its last checkpoint stays, as with a local store).

With a local store (SQLite) the file in the state directory is all there is.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import tags as T

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ..spec.grid import Cell
    from ..train.checkpoint import Saved, Where

ARTIFACT_DIR = "checkpoints"
_NAME = re.compile(r"^checkpoints/epoch-(\d+)\.pt$")
UPLOAD_SECONDS = float(os.environ.get("GRIDRUN_UPLOAD_SECONDS", "10"))  # per cell, at most


def served(tracking_uri: str) -> bool:
    """Whether checkpoints go to the store's artifacts too: the store is a tracking server."""
    return tracking_uri.startswith(("http://", "https://"))


def artifact_name(epoch: int) -> str:
    return f"{ARTIFACT_DIR}/epoch-{epoch:04d}.pt"


def artifact_epoch(name: str | None) -> int | None:
    """The epoch of a run's checkpoint artifact, from its name (None: not one of ours)."""
    found = _NAME.match(name or "")
    return int(found.group(1)) if found else None


@dataclass
class UploadStats:
    """What the uploads of a launch cost, for its report and the benchmarks."""
    uploads: int = 0
    seconds: float = 0.0  # upload, tag and prune, summed over uploads
    bytes: int = 0
    failed: int = 0
    skipped: int = 0  # never uploaded: a newer one of the cell came first, or its run ended

    def per_upload(self) -> float:
        return self.seconds / self.uploads if self.uploads else 0.0


class Checkpoints:
    """The checkpoints of one launch's cells (see the module docstring). `client` (and the
    server's `tracking_uri`) are given when the store is a tracking server: checkpoints then go
    to the runs' artifacts too."""

    def __init__(self, folder: Path, client: MlflowClient | None = None,
                 tracking_uri: str | None = None):
        self.folder, self.client, self.tracking_uri = folder, client, tracking_uri
        self.stats = UploadStats()
        self._queue: OrderedDict[str, tuple] = OrderedDict()  # run id -> its newest job
        self._last_upload: dict[str, float] = {}  # run id -> when its last upload was queued
        self._held_back: dict[str, Cell] = {}  # run id -> its cell, with a newer checkpoint
        self._busy = threading.Condition()
        self._working = False
        self._thread: threading.Thread | None = None

    def path(self, cell: Cell) -> Path:
        return self.folder / f"{cell.id}.pt"

    def where(self, cell: Cell, run_id: str) -> Where:
        from ..train.checkpoint import Where
        return Where(str(self.path(cell)), {"cell": cell.id, "run": run_id})

    # --- a worker's new checkpoint

    def take(self, cell: Cell, run_id: str, saved: Saved) -> None:
        """Keep `saved` (a worker's checkpoint after an epoch): its bytes written here when it
        came as bytes (the file is otherwise the worker's own writing), and queued for upload
        (or held back when the cell's last upload was queued less than UPLOAD_SECONDS ago)."""
        from ..train import checkpoint
        if saved.blob is not None:
            checkpoint.write(saved.blob, self.path(cell))
        if self.client is None:
            return
        if time.monotonic() - self._last_upload.get(run_id, -UPLOAD_SECONDS) < UPLOAD_SECONDS:
            self.stats.skipped += run_id in self._held_back
            self._held_back[run_id] = cell
            return
        self._upload_newest(cell, run_id, saved.blob)

    def _upload_newest(self, cell: Cell, run_id: str, blob: bytes | None = None) -> None:
        """Queue the cell's newest checkpoint (`blob`, else the file here) for upload."""
        self._held_back.pop(run_id, None)
        if blob is None:
            try:
                blob = self.path(cell).read_bytes()
            except FileNotFoundError:
                return
        self._last_upload[run_id] = time.monotonic()
        self._put(run_id, ("upload", blob))

    def upload_held_back(self) -> None:
        """The launch stops: every checkpoint held back goes up now (`wait` for them)."""
        for run_id, cell in list(self._held_back.items()):
            self._upload_newest(cell, run_id)

    # --- resuming

    def latest(self, cell: Cell, run) -> tuple[dict | None, str | None]:
        """The metadata of the run's newest checkpoint (None: none, or not the run's), and why
        a file was refused, if one was. The one here is used unless the run's artifacts hold
        a newer one, which is downloaded here first."""
        from ..train import checkpoint
        run_id, refused = run.info.run_id, None
        try:
            here = checkpoint.meta(self.path(cell))
        except checkpoint.Refused as e:
            here, refused = None, str(e)
        if here is not None and here.get("run") != run_id:
            here = None
        if self.client is None:
            return here, refused
        name = run.data.tags.get(T.CHECKPOINT)
        epoch = artifact_epoch(name)
        if epoch is None:
            return here, refused
        if here is not None and here["epoch"] >= epoch:
            return here, None
        try:
            downloaded = self._download(run, name)
            saved = checkpoint.meta(downloaded)
        except checkpoint.Refused as e:
            return here, str(e)
        except Exception as e:  # noqa: BLE001 - gone or unreachable: the file here, if any
            warnings.warn(f"could not download {name} of run {run_id}: {e}", stacklevel=2)
            return here, refused
        if saved is None or saved.get("run") != run_id:
            return here, refused
        checkpoint.write(downloaded, self.path(cell))
        return saved, None

    def _download(self, run, name: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="gridrun-checkpoint-") as folder:
            local = self._repository(run.info.run_id, run).download_artifacts(name, folder)
            return Path(local).read_bytes()

    # --- the end of a run

    def drop(self, cell: Cell, run_id: str, keep: bool = False) -> None:
        """The run ended: its file here goes unless `keep`; so do its uploaded checkpoint and
        tag (after an upload of it in progress; instead of one still queued)."""
        if keep:
            return
        self.path(cell).unlink(missing_ok=True)
        self.stats.skipped += self._held_back.pop(run_id, None) is not None
        self._last_upload.pop(run_id, None)
        if self.client is not None:
            self._put(run_id, ("drop",))

    def forget_here(self, cell: Cell) -> None:
        """The file here belongs to another run: never resumed from."""
        self.path(cell).unlink(missing_ok=True)

    # --- the upload thread

    def _put(self, run_id: str, job: tuple) -> None:
        """Queue `job` for the run, in place of the one queued before (a newer checkpoint
        replaces an older one; a drop replaces an upload that would only be deleted)."""
        with self._busy:
            old = self._queue.pop(run_id, None)
            self.stats.skipped += old is not None and old[0] == "upload"
            self._queue[run_id] = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, daemon=True,
                                                name="gridrun-checkpoint-upload")
                self._thread.start()
            self._busy.notify_all()

    def _work(self) -> None:
        while True:
            with self._busy:
                while not self._queue:
                    self._working = False
                    self._busy.notify_all()
                    self._busy.wait()
                run_id, job = self._queue.popitem(last=False)
                self._working = True
            try:
                if job[0] == "upload":
                    self._upload(run_id, job[1])
                elif job[0] == "drop":
                    self._delete(run_id)
            except Exception:  # noqa: BLE001 - an outage or a refusal: the next one replaces it
                self.stats.failed += 1

    def _upload(self, run_id: str, blob: bytes) -> None:
        from ..train import checkpoint
        t0 = time.perf_counter()
        name = artifact_name(checkpoint.meta(blob)["epoch"])  # what the bytes hold
        repository = self._repository(run_id)
        with tempfile.TemporaryDirectory(prefix="gridrun-checkpoint-") as folder:
            local = Path(folder) / Path(name).name
            local.write_bytes(blob)
            repository.log_artifact(str(local), ARTIFACT_DIR)
        self.client.set_tag(run_id, T.CHECKPOINT, name)
        for older in {a.path for a in self.client.list_artifacts(run_id, ARTIFACT_DIR)}:
            if older != name and artifact_epoch(older) is not None:
                repository.delete_artifacts(older)
        self.stats.uploads += 1
        self.stats.bytes += len(blob)
        self.stats.seconds += time.perf_counter() - t0

    def _delete(self, run_id: str) -> None:
        names = {a.path for a in self.client.list_artifacts(run_id, ARTIFACT_DIR)}
        repository = self._repository(run_id)
        for name in names:
            if artifact_epoch(name) is not None:
                repository.delete_artifacts(name)
        self.client.delete_tag(run_id, T.CHECKPOINT)

    def _repository(self, run_id: str, run=None):
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        run = run or self.client.get_run(run_id)
        return get_artifact_repository(run.info.artifact_uri, tracking_uri=self.tracking_uri)

    def wait(self, timeout: float) -> bool:
        """Wait for the queued uploads and deletions (at most `timeout` seconds); whether all
        are done."""
        deadline = time.monotonic() + timeout
        with self._busy:
            while self._queue or self._working:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._busy.wait(left)
        return True
