"""User-facing errors.

A `GridError` is bad input from the user (a grid file, a --set override, a data directory). The CLI
prints its message as one line and exits with code 2, without a traceback. Everything else is a bug
or a failure inside a cell, and is reported as such.
"""


class GridError(Exception):
    """Bad input: the message names where (file, key) and what is allowed. A subclass with an
    `exit_code` is a launch stopped for a reason outside it (a tracking server away too long)."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
