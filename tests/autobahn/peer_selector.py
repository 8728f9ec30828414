"""The Autobahn peers on :mod:`wsmachine.adapters.selector`, through its public API only.

Server role: a :class:`~wsmachine.adapters.selector.Server` whose :class:`Handler` echoes each
message. Client role: one :class:`~wsmachine.adapters.selector.Loop` per case, running the
connection that :meth:`Loop.connect` opens until it is done.
"""

from __future__ import annotations

from wsmachine import RemoteProtocolError
from wsmachine.adapters.selector import Handler, Loop, Peer, Server

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


def _write_limit(settings: PeerSettings) -> int:
    # Echoing a 16 MiB message (9.*) buffers all of it at once; at the default write_limit
    # (16 MiB) the adapter would drop the connection.
    return 2 * settings.max_message_size


def _provoked(error: BaseException) -> bool:
    """Whether ``error`` is one the fuzzer provokes on purpose, and grades itself: a protocol
    violation, a dropped connection, a close timeout."""
    return isinstance(error, RemoteProtocolError | OSError)


class _Echo(Handler):
    """Sends every message back on the connection it came from; keeps unexpected errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        peer.send(message)

    def on_error(self, peer: Peer, error: BaseException) -> None:
        # Not the default, which logs: hundreds of cases break the protocol on purpose.
        if not _provoked(error):
            self.errors.append(f"{peer.address}: {error!r}")


def start_echo_server(settings: PeerSettings) -> EchoServer:
    """A selector :class:`Server` on 127.0.0.1, a port the OS picks, in its own thread."""
    handler = _Echo()
    server = Server(
        handler, "127.0.0.1", 0, **settings.options(), write_limit=_write_limit(settings)
    )
    running = in_thread(server)

    def stop(timeout: float) -> list[str]:
        return running.stop(timeout) + handler.errors

    return EchoServer(running.url, stop)


class _CaseHandler(Handler):
    """Echoes (or keeps) the messages of one case, and remembers a failure of our own side."""

    def __init__(self, *, echo: bool) -> None:
        self.echo = echo
        self.received: list[str | bytes] = []
        self.opened = False
        self.failure: BaseException | None = None

    def on_open(self, peer: Peer) -> None:
        self.opened = True

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        if self.echo:
            peer.send(message)
        else:
            self.received.append(message)

    def on_error(self, peer: Peer, error: BaseException) -> None:
        # Before on_open the case could not run at all; after it, only what the fuzzer did
        # not provoke is ours.
        if not self.opened or not _provoked(error):
            self.failure = error


def session(url: str, settings: PeerSettings, *, echo: bool, limits: Limits) -> SessionResult:
    """Open ``url`` on a new :class:`Loop` and run it until the connection is done."""
    handler = _CaseHandler(echo=echo)
    with Loop() as loop:
        peer = loop.connect(url, handler, **settings.options(), write_limit=_write_limit(settings))
        while not peer.done:
            left = limits.left()
            if left <= 0:
                # Leaving the block drops the connection: the error that reports is ours.
                return SessionResult("deadline", handler.received)
            loop.run_once(min(left, POLL_SECONDS))
    if handler.failure is not None:
        raise handler.failure
    return SessionResult("closed", handler.received)


PEERS = AdapterPeers(start_echo_server, session)
