"""The `gridrun` command. Thin: each command parses options and calls one library function.

    app.py   the group, the one error line (`error: <where>: <what>; <allowed>`, exit 2), the
             options several commands share, `main`
    run.py   `launch`, `cell`
    read.py  `status`, `summary`, `report`
    info.py  `models`, `keys`

Exit codes: 0 success; 1 some cells failed (launch) or not every cell finished (status);
2 bad input (grid file, --set, data directory); 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.

Torch-free at import, and MLflow only in the commands that read a store: `--dry-run`, `keys`,
`status` and `summary` answer in a fraction of a second (import contracts in setup.cfg).
"""
from . import info, read, run  # noqa: F401 - each module adds its commands to the group
from .app import cli, error_line, main

__all__ = ["cli", "error_line", "main"]
