"""A cell's `TrainState` on disk, between two epochs: what a resumed cell needs to continue as if
it had never stopped (torchvision's per-epoch `{model, optimizer, lr_scheduler, epoch}`, plus
everything else our loop keeps).

    save(state, path, meta)                   # atomically: a temporary file, then a rename
    load_state_dict(state, read(path))        # into a state fresh from `setup`, same config

Saved: the weights being trained, the optimizer, the scheduler, the early stopper, the best
weights so far, the history, the outcome if the cell already ended, the training time spent,
and every random number generator the loop draws from (the loop's shuffling/augmentation
generator, torch's global CPU and CUDA generators that dropout uses). On the same machine and
the same seed, a cell resumed from any epoch's checkpoint ends with the same numbers as one
that never stopped (tests/test_checkpoint.py).

`meta` is the caller's: the launch stores the cell id and the MLflow run the checkpoint belongs
to, and resumes only into that run.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .records import EpochStats
from .state import TrainState

FORMAT = 1


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


def save(state: TrainState, path: str | Path, meta: dict | None = None) -> None:
    """Write `state` to `path` atomically: readers see the previous checkpoint or this one,
    never half of one, whenever the process dies. The temporary name is this process's own,
    so two processes writing one path (a launch and an orphaned worker) never mix bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({**state_dict(state), "meta": meta or {}}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read(path: str | Path) -> dict | None:
    """The checkpoint at `path`, or None when there is none (or it cannot be read: a
    checkpoint is a head start, never a reason for a cell to fail)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - e.g. written by another version: start the cell over
        return None


def meta(path: str | Path) -> dict | None:
    """The caller's metadata of the checkpoint at `path` (None: no usable checkpoint)."""
    saved = read(path)
    return None if saved is None else {**saved.get("meta", {}), "epoch": saved["epoch"]}
