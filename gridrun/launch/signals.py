"""How a launch stops when it is asked to: Ctrl-C (SIGINT) and SIGTERM alike.

SIGTERM is what SLURM sends at preemption and at a job's time limit (SIGKILL follows after a
grace period, 30 s by default), and what `docker stop` and Kubernetes send. A launch treats it
as Ctrl-C: the workers are stopped (the epoch in progress is dropped, the last checkpoint
stands), every cell in progress ends KILLED with the signal on its tags, the claims stop
beating, and the process exits with 128 + the signal's number (130, 143). A KILLED run with its
checkpoint is resumed by the next launch at once; nothing waits for a heartbeat to go stale.

A signal never lands inside a write to the tracking store: an exception raised in the middle of
a SQLite transaction can leave the transaction's lock with the exception's frames, and then
every write of the launch's own clean-up waits on it and fails ("database is locked"). The
launch marks its writes `deferred()`; a signal that arrives during one takes effect when it
ends. Once the launch is stopping, further signals are ignored until its clean-up is done
(seconds), well inside SLURM's grace period.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A launch stopped by a signal. A KeyboardInterrupt, so code that handles Ctrl-C handles
    SIGTERM the same way; `exit_code` is the shell's 128 + the signal's number."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(self.name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The exit code of a process that ends on `interrupt` (130 for a plain Ctrl-C)."""
    return interrupt.exit_code if isinstance(interrupt, Stopped) else 128 + signal.SIGINT


def signal_name(interrupt: BaseException) -> str | None:
    """SIGINT or SIGTERM for an interrupt, None for any other exception."""
    if isinstance(interrupt, Stopped):
        return interrupt.name
    return "SIGINT" if isinstance(interrupt, KeyboardInterrupt) else None


class StopSignals:
    """SIGINT and SIGTERM as `Stopped`, raised outside `deferred()` sections, while in effect
    (`with StopSignals() as signals:`). Only in the main thread (the only one Python gives
    signals to); a signal this process ignores (a launch under `nohup`, a background job's
    SIGINT) stays ignored."""

    def __init__(self):
        self._depth = 0
        self._pending: int | None = None
        self.received: int | None = None
        self._saved: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            return  # stopping already: the clean-up goes on
        if self._depth:
            self._pending = signum
            return
        self.received = signum
        raise Stopped(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A section no signal interrupts; one that arrived meanwhile is raised at its end."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None and self.received is None:
                self.received, self._pending = self._pending, None
                raise Stopped(self.received)

    def stopping(self) -> None:
        """From now on, signals are ignored: the launch is cleaning up."""
        if self.received is None:
            self.received = self._pending or signal.SIGINT
