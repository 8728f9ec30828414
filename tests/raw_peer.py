"""A raw peer for the adapters' tests: one connection whose opening handshake the bare machine
answers, after which the test's own code does whatever a misbehaving peer does."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from wsmachine import Handshake, ServerConnection
from wsmachine.adapters import ConnectionClosed

__all__ = ["Behaviour", "assert_gave_up", "deaf", "raw_server"]

#: What the peer does after the handshake: with the socket, the machine, and an event set when
#: the test is done (so that a peer that only waits can end).
Behaviour = Callable[[socket.socket, ServerConnection, threading.Event], None]


@contextlib.contextmanager
def raw_server(behaviour: Behaviour, **settings: Any) -> Iterator[int]:
    """Serve one connection in a thread: the handshake by a bare
    :class:`~wsmachine.ServerConnection` (``settings`` are its own), then ``behaviour``.
    Yields the port; every wait is bounded (10 s)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    ended = threading.Event()

    def serve_one() -> None:
        with contextlib.suppress(OSError):
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(10)
                conn = ServerConnection(**settings)
                events = []
                for _ in range(100):
                    events = conn.receive_data(sock.recv(65536))
                    if events:
                        break
                assert events and isinstance(events[0], Handshake), events
                conn.accept(events[0])
                sock.sendall(conn.data_to_send())
                behaviour(sock, conn, ended)

    thread = threading.Thread(target=serve_one, name="raw-peer")
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        ended.set()
        listener.close()
        thread.join(10)


def deaf(sock: socket.socket, conn: ServerConnection, ended: threading.Event) -> None:
    """A :data:`Behaviour`: read nothing, answer nothing, keep TCP open until the test ends,
    so that a write stalls once the buffers fill and a Close is never answered."""
    ended.wait(10)


def assert_gave_up(closed: ConnectionClosed | None) -> None:
    """``closed`` is how a client ended that stopped waiting for a :func:`deaf` peer's Close:
    none came, and the wait timed out."""
    assert closed is not None
    assert closed.remote is None  # the peer's Close never came
    assert isinstance(closed.error, TimeoutError)
