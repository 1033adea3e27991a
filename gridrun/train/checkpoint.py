"""A cell's `TrainState` on disk, between two epochs: what a resumed cell needs to continue as if
it had never stopped (torchvision's per-epoch `{model, optimizer, lr_scheduler, epoch}`, plus
everything else our loop keeps).

    blob = to_bytes(state, meta)              # everything that changes as it trains
    write(blob, path)                         # atomically: a temporary file, then a rename
    load_state_dict(state, read(path))        # into a state fresh from `setup`, same config
    read(blob)                                # the same, from bytes (a checkpoint on the move)

Saved: the weights being trained, the optimizer, the scheduler, the early stopper, the best
weights so far, the history, the outcome if the cell already ended, the training time spent,
and every random number generator the loop draws from (the loop's shuffling/augmentation
generator, torch's global CPU and CUDA generators that dropout uses). On the same machine and
the same seed, a cell resumed from any epoch's checkpoint ends with the same numbers as one
that never stopped (tests/test_checkpoint.py).

`meta` is the caller's: the launch stores the cell id and the MLflow run the checkpoint belongs
to, and resumes only into that run.

`Where` tells the loop where a cell's checkpoint comes from and goes to: a file on the worker's
machine, or bytes handed over by the launch (a Ray actor on another machine resumes from them)
and handed back after every epoch (the launch keeps them, and uploads them to the tracking
server's artifact store when there is one).

A checkpoint is data, never code. The state directory may be a shared filesystem that others
can write to, so files are read with torch's safe loader (`weights_only=True`: tensors, numbers,
strings and plain containers; any other object in the pickle is refused before it is built),
and only a dict with this module's `FORMAT` is taken for a checkpoint. Anything else raises
`Refused` with a one-line reason: the launch starts the cell over and tags its run with it.
"""
from __future__ import annotations

import io
import os
import pickle
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .records import EpochStats, Stop
from .state import TrainState

FORMAT = 1


@dataclass(frozen=True)
class Where:
    """Where a cell resumes from and saves to after each epoch: `path`, a file on the worker's
    machine (read when there is no `blob`, rewritten after every epoch), and/or `blob`, a
    checkpoint handed over by the launch; `hand_back`: each epoch's checkpoint goes back to the
    launch as bytes (`Saved.blob`). `meta` is stored in every checkpoint (the run it belongs
    to). `stop`: the planner's answer to the checkpoint's epoch (`stop.epoch`), given before
    the cell resumes: a cell paused at a rung and never promoted ends there, scored on the
    test set without training another epoch."""
    path: str | None = None
    meta: dict = field(default_factory=dict)
    blob: bytes | None = None
    hand_back: bool = False
    stop: Stop | None = None


@dataclass(frozen=True)
class Saved:
    """A checkpoint just written, after `epoch`'s decision: its bytes when they are handed
    back (`Where.hand_back`), else in the file at `path`."""
    epoch: int
    path: str | None = None
    blob: bytes | None = None


class Refused(Exception):
    """A file at a checkpoint's path that gridrun does not load; the message says why, on one
    line (it becomes a run's tag)."""


def state_dict(state: TrainState) -> dict:
    """Everything of `state` that changes as it trains, as plain tensors and numbers."""
    stopper = state.stopper
    return {
        "format": FORMAT,
        "epoch": state.epoch,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "stopper": {"best": stopper.best, "best_epoch": stopper.best_epoch,
                    "bad_epochs": stopper.bad_epochs},
        "best_state": state.best_state,
        "best_val_acc": state.best_val_acc,
        "history": [asdict(s) for s in state.history],
        "outcome": state.outcome, "reason": state.reason, "done": state.done,
        "elapsed_s": time.perf_counter() - state.started,
        "rng": {"loop": state.rng.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []},
    }


def load_state_dict(state: TrainState, saved: dict) -> None:
    """Put `saved` (from `state_dict`) into `state`, a state fresh from `setup`."""
    if saved.get("format") != FORMAT:
        raise ValueError(f"checkpoint format {saved.get('format')!r}, expected {FORMAT}")
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    if state.scheduler is not None and saved["scheduler"] is not None:
        state.scheduler.load_state_dict(saved["scheduler"])
    stopper = saved["stopper"]
    state.stopper.best, state.stopper.best_epoch = stopper["best"], stopper["best_epoch"]
    state.stopper.bad_epochs = stopper["bad_epochs"]
    state.best_state = saved["best_state"]
    state.best_val_acc = saved["best_val_acc"]
    state.history = [EpochStats(**s) for s in saved["history"]]
    state.outcome, state.reason, state.done = saved["outcome"], saved["reason"], saved["done"]
    state.started = time.perf_counter() - saved["elapsed_s"]
    rng = saved["rng"]
    state.rng.set_state(rng["loop"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def to_bytes(state: TrainState, meta: dict | None = None) -> bytes:
    """`state`, with the caller's `meta`, as a checkpoint's bytes."""
    buffer = io.BytesIO()
    torch.save({**state_dict(state), "meta": meta or {}}, buffer)
    return buffer.getvalue()


def write(blob: bytes, path: str | Path) -> None:
    """Write a checkpoint's bytes to `path` atomically: readers see the previous checkpoint or
    this one, never half of one, whenever the process dies. The temporary name is this
    process's and thread's own, so two writers of one path (a launch and an orphaned worker,
    a launch's two threads) never mix bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read(source: str | Path | bytes) -> dict | None:
    """The checkpoint in the file `source` (None when there is none) or in the bytes `source`.
    Raises `Refused` for one that is not a gridrun checkpoint of this `FORMAT`, cannot be read
    (half written by a full disk), or holds anything but tensors and numbers, which is never
    unpickled."""
    try:
        saved = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                           map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except pickle.UnpicklingError as e:
        lines = [ln for ln in str(e).splitlines() if "GLOBAL" in ln or "global" in ln]
        detail = lines[0].strip() if lines else str(e).splitlines()[0]
        raise Refused(f"not loaded: it holds objects other than tensors and numbers "
                      f"({detail[:200]})") from None
    except Exception as e:  # noqa: BLE001 - any damage: the cell starts over, saying why
        first = (str(e).splitlines() or [""])[0][:200]
        raise Refused(f"unreadable: {e.__class__.__name__}: {first}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        found = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
        raise Refused(f"not a gridrun checkpoint of format {FORMAT} (found {found!r})")
    return saved


def read_or_none(source: str | Path | bytes) -> dict | None:
    """The checkpoint in `source` (see `read`), or None when there is none or it is refused: a
    checkpoint is a head start, never a reason for a cell to fail (the launch has already
    tagged a refusal when it decided whether to resume: `meta`)."""
    try:
        return read(source)
    except Refused:
        return None


def meta(source: str | Path | bytes) -> dict | None:
    """The caller's metadata of the checkpoint in `source` (None: no checkpoint; `Refused`:
    one gridrun does not load)."""
    saved = read(source)
    if saved is None:
        return None
    if not isinstance(saved.get("meta", {}), dict) or not isinstance(saved.get("epoch"), int):
        raise Refused("not a gridrun checkpoint (no metadata or epoch)")
    return {**saved.get("meta", {}), "epoch": saved["epoch"]}
