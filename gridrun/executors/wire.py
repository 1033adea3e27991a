"""What the launching process and its workers say to each other over a pipe: pickled messages.
Light on purpose: the launching process imports this, never the worker module with its training
imports."""
from __future__ import annotations

import pickle
from multiprocessing.connection import Connection


def send(conn: Connection, message) -> None:
    # plain pickle, by value: torch's multiprocessing reductions would pass tensors as shared
    # memory handles, which die with a worker that is killed before they are read
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def recv(conn: Connection):
    return pickle.loads(conn.recv_bytes())
