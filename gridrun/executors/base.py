"""What every executor is besides its `run`: a context that stops its workers on the way out,
whatever ends the launch (its end, an error, Ctrl-C)."""
from __future__ import annotations


class Stoppable:
    """`with executor:` ... stops the executor's workers on leaving; `stop()` is idempotent."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> bool:
        self.stop()
        return False
