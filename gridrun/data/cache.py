"""The decode-once cache: a dataset decoded once into a tensor file (`$GRIDRUN_CACHE_DIR`,
default `~/.cache/gridrun`), memory-mapped by every process that reads it, rebuilt when its
source changes (a fingerprint of every file's path, size and mtime)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import torch

from ..errors import GridError
from ..spec.places import cache_dir
from .images import ImageSet

CACHE_VERSION = 1


def fingerprint(path: Path) -> str:
    """Changes when any file below `path` is added, removed, resized or touched."""
    h = hashlib.sha256(f"{CACHE_VERSION}:{path.resolve()}".encode())
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(filenames):
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError as e:  # e.g. a symlink whose target is gone
                raise GridError(f"cannot read this file ({e.strerror}); remove or fix it",
                                os.path.join(dirpath, name)) from None
            h.update(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def digits_fingerprint() -> str:
    """Changes with scikit-learn's version (read without importing it: a second or more)."""
    from importlib.metadata import version
    return hashlib.sha256(f"{CACHE_VERSION}:digits:{version('scikit-learn')}".encode()
                          ).hexdigest()[:20]


def open_cached(file: str | os.PathLike) -> ImageSet:
    """A dataset from its decode-cache file, memory-mapped: the images stay in the page cache,
    shared by every process that maps the same file, instead of one private copy each."""
    blob = torch.load(file, weights_only=True, mmap=True)
    blob.pop("cache_file", None)
    return ImageSet(**blob, cache_file=str(file))


def cached(name: str, digest: str, build: Callable[[], ImageSet], source: str) -> ImageSet:
    """The dataset `name` from its cache file, built by `build` first if there is none (or it
    is broken). Processes that miss it at the same time (launches started together on a new
    machine, a test run's workers) build it once: the first holds a lock beside the file while
    it decodes, and the others wait for it, then map what it wrote. A process killed while
    building lets go of the lock with its life, and the next one builds."""
    file = cache_dir() / f"{name}-{digest}.pt"
    found = _open_if_whole(file)
    if found is not None:
        return found
    import fcntl

    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_name(f"{file.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes, or its process ends
        found = _open_if_whole(file)  # built by whoever held the lock before
        if found is not None:
            return found
        images = build()
        images.source = source
        write_whole(file, lambda tmp: torch.save(
            {k: v for k, v in images.__dict__.items() if k != "cache_file"}, tmp))
    return open_cached(file)


def _open_if_whole(file: Path) -> ImageSet | None:
    if not file.exists():
        return None
    try:
        return open_cached(file)
    except Exception:  # noqa: BLE001 - a broken cache file is rebuilt, not fatal
        return None


def write_whole(file: Path, save: Callable[[Path], None]) -> None:
    """`save` into a temporary file of this process's beside `file`, then rename it onto
    `file`: a concurrent or killed launch sees the whole file or none (the temporary one is
    removed if `save` fails)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.name}.tmp{os.getpid()}")
    try:
        save(tmp)
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
