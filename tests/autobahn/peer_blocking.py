"""The Autobahn peers on :mod:`wsmachine.adapters.blocking`, through its public API only.

Server role: :func:`~wsmachine.adapters.blocking.serve` with a handler that echoes each
message. Client role: :func:`~wsmachine.adapters.blocking.connect` for each case.
"""

from __future__ import annotations

import contextlib

from wsmachine.adapters import ConnectionClosed
from wsmachine.adapters.blocking import WebSocket, connect, serve

from .common import (
    POLL_SECONDS,
    AdapterPeers,
    EchoServer,
    Limits,
    PeerSettings,
    SessionResult,
    in_thread,
)

__all__ = ["PEERS", "session", "start_echo_server"]


def _echo(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)


def start_echo_server(settings: PeerSettings) -> EchoServer:
    """A blocking :class:`~wsmachine.adapters.blocking.Server` on 127.0.0.1, a port the OS
    picks, accepting in its own thread."""
    return in_thread(serve(_echo, "127.0.0.1", 0, **settings.options()))


def session(url: str, settings: PeerSettings, *, echo: bool, limits: Limits) -> SessionResult:
    """Connect to ``url`` and echo (or keep) messages until the connection is closed."""
    received: list[str | bytes] = []
    with connect(url, **settings.options()) as ws:
        while (left := limits.left()) > 0:
            try:
                # Bounded waits, so that the deadline and the stop flag are noticed.
                message = ws.recv(timeout=min(left, POLL_SECONDS))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return SessionResult("closed", received)
            if not echo:
                received.append(message)
                continue
            # Closing meanwhile: the next recv() says so.
            with contextlib.suppress(ConnectionClosed):
                ws.send(message)
    return SessionResult("deadline", received)


PEERS = AdapterPeers(start_echo_server, session)
