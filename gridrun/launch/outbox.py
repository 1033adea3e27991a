"""What a launch does while its tracking server is away (a restart, a network blip): it keeps
what it could not record, in order, and records it when the server is back.

    events from the executor -> Outbox.put(event) -> the writer, now or once the store answers

MLflow's client retries each request for minutes on its own (seven tries, doubling waits),
during which the one thread that records everything would block and no event would be read.
A launch against a server turns those retries down (`quick_failures`: two tries, one second
apart), so a request fails within seconds and the event waits in the outbox instead. Workers
train on meanwhile: their epochs and results wait in the outbox, and each later event first
replays the ones before it, so every run receives its writes in the order they happened (an
epoch before the next, every epoch before FINISHED). No new cell is claimed while the outbox
holds anything: a claim is itself a write.

Past `track.outage_limit` seconds (default 300) without an answer, the launch stops cleanly:
the workers stop, and what was not recorded stays in the cells' checkpoints (each holds its
history), which the next launch resumes once the server is back, logging the epochs its run
lacks. One line says why.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from typing import Callable, Iterable, Iterator, TypeVar

from ..errors import GridError
from ..executors.events import Event

OUTAGE_LIMIT_SECONDS = 300
RETRY_SECONDS = 5.0
# MLflow's client, turned down for a launch (unless the user set them): requests that fail
# within seconds, so the outbox (not a blocked thread) waits out an outage
QUICK_FAILURES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# what the errors of a server that cannot be reached say, the most telling first
_SIGNS = ("Connection refused", "Read timed out", "Temporary failure in name resolution",
          "RemoteDisconnected", "Connection reset", "Connection aborted", "too many 502",
          "too many 503", "too many 504", "Failed to establish", "Max retries exceeded")

T = TypeVar("T")


class StoreOutage(GridError):
    """The tracking server did not answer for longer than the launch's limit."""
    exit_code = 1


def unreachable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the tracking server could not be reached, as
    opposed to a request it answered and refused."""
    return _why(error) is not None


def _why(error: BaseException | None) -> str | None:
    """What says the server could not be reached ("Connection refused"), or None."""
    chain = []
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__ or error.__context__
    for sign in _SIGNS:
        if any(sign in str(e) for e in chain):
            return sign
    found = next((e for e in chain if isinstance(e, (ConnectionError, TimeoutError))), None)
    return found.__class__.__name__ if found is not None else None


@contextlib.contextmanager
def quick_failures(tracking_uri: str) -> Iterator[None]:
    """MLflow's HTTP retries turned down for the duration of a launch against a server."""
    if not tracking_uri.startswith(("http://", "https://")):
        yield
        return
    set_here = {k: v for k, v in QUICK_FAILURES.items() if k not in os.environ}
    os.environ.update(set_here)
    try:
        yield
    finally:
        for key in set_here:
            os.environ.pop(key, None)


class Outbox:
    """The events the store could not take yet, handed to `handle` in order once it answers.
    `note` hears when an outage starts and ends (one line each); every attempt to write runs
    inside `guard()` (the launch's `StopSignals.deferred`: no signal lands inside a write),
    and the waits between attempts outside it."""

    def __init__(self, handle: Callable[[Event], None], limit_s: float = OUTAGE_LIMIT_SECONDS,
                 note: Callable[[str], None] = lambda line: None, where: str = "tracking",
                 guard: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.handle, self.limit_s, self.note, self.where = handle, limit_s, note, where
        self.guard = guard
        self.pending: deque[Event] = deque()
        self.since: float | None = None  # when the current outage began

    def put(self, event: Event) -> None:
        self.pending.append(event)
        self.drain()

    def drain(self) -> bool:
        """Hand over what waits, oldest first; False when the store is still away."""
        while self.pending:
            try:
                with self.guard():
                    self.handle(self.pending[0])
            except Exception as e:
                if not unreachable(e):
                    raise
                self.away(e)
                return False
            self.pending.popleft()
        self.back()
        return True

    def call(self, write: Callable[[], T]) -> T:
        """`write()` once everything before it is recorded, tried again until the store
        answers (or the limit passes)."""
        while True:
            if self.drain():
                try:
                    with self.guard():
                        return write()
                except Exception as e:
                    if not unreachable(e):
                        raise
                    self.away(e)
            time.sleep(RETRY_SECONDS)

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """`items`, each taken once the outbox is empty (taking one claims a cell, a write),
        and taken again when the store did not answer."""
        iterator = iter(items)
        while True:
            try:
                item = self.call(lambda: next(iterator))
            except StopIteration:
                return
            yield item

    def away(self, error: BaseException) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.note(f"tracking server unreachable ({_why(error)}); training goes on and its "
                      f"records wait here (at most {self.limit_s:.0f} s: track.outage_limit)")
        if now - self.since > self.limit_s:
            raise StoreOutage(
                f"no answer for {now - self.since:.0f} s (track.outage_limit: "
                f"{self.limit_s:.0f}); the launch stopped: cells in progress keep their "
                f"checkpoints, and the same command resumes them once the server is back",
                self.where) from None

    def back(self) -> None:
        if self.since is not None:
            self.note(f"tracking server back after {time.monotonic() - self.since:.0f} s; "
                      "every record that waited is written")
            self.since = None
