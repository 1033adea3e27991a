"""Where gridrun keeps files of its own on a machine, apart from any grid's: one cache folder,
`$GRIDRUN_CACHE_DIR`, default `~/.cache/gridrun`, for decoded datasets (`gridrun.data.cache`)
and the empty tracking-store schema new SQLite stores start from (`gridrun.tracking.store`).
Everything in it can be deleted; it is made again when needed."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("GRIDRUN_CACHE_DIR") or Path.home() / ".cache" / "gridrun")
