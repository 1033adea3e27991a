"""Whether a run's owner is alive: claims as a run's params, heartbeats, staleness. Read by the
claims protocol (`claims.py`) and by `gridrun status`; torch-free, store-free (a run as MLflow
returns it)."""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from . import tags as T

STALE_SECONDS = float(os.environ.get("GRIDRUN_STALE_SECONDS", "60"))
HOST = socket.gethostname()

@dataclass(frozen=True)
class Owner:
    token: str
    host: str
    pid: int
    since: float

    def param(self) -> str:
        return f"{self.token} {self.host} {self.pid} {self.since:.1f}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        try:
            token, host, pid, since = text.split(" ")
            return cls(token, host, int(pid), float(since))
        except ValueError:
            return None


def claims_of(run) -> list[Owner | None]:
    """A run's owners, in order (index n: tag gridrun.claim.<n>; None where a claim was won
    but its owner never wrote the tag)."""
    skip = len(T.CLAIM_PREFIX)
    found = {int(k[skip:]): v for k, v in run.data.tags.items()
             if k.startswith(T.CLAIM_PREFIX) and k[skip:].isdigit()}
    count = max(found, default=-1) + 1
    return [Owner.parse(found[n]) if n in found else None for n in range(count)]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def last_sign_of_life(run) -> float:
    """Unix seconds of a run's latest heartbeat, claim or start."""
    owners = [o for o in claims_of(run) if o is not None]
    signs = [run.info.start_time / 1000, *(o.since for o in owners)]
    try:
        signs.append(float(run.data.tags.get(T.HEARTBEAT, "")))
    except ValueError:
        pass
    return max(signs)


def is_stale(run, now: float | None = None) -> bool:
    """A RUNNING run nobody will finish: see the module docstring."""
    if run.info.status != "RUNNING":
        return False
    owners = claims_of(run)
    owner = owners[-1] if owners else None
    tags = run.data.tags
    host = owner.host if owner else tags.get(T.HOST)
    pid = owner.pid if owner else int(tags.get(T.PID, "0") or 0)
    if host == HOST and pid and not process_alive(pid):
        return True
    return (now or time.time()) - last_sign_of_life(run) > STALE_SECONDS
