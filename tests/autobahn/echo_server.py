"""A blocking-socket echo server on :class:`wsmachine.ServerConnection`, for the Autobahn cases.

One thread per connection, the ``socket`` module only. Every handshake is accepted, Text is
echoed as Text and Binary as Binary; the machine answers Ping and Close itself. The module
also holds :func:`run_connection`, the socket pump that the Autobahn client reuses.

Run it alone with ``python -m tests.autobahn.echo_server [--port N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from wsmachine import (
    Binary,
    Connection,
    Handshake,
    HTTPRequest,
    ServerConnection,
    Text,
)
from wsmachine.events import Event
from wsmachine.extensions import Extension

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "EchoServer",
    "EventHandler",
    "ServerStats",
    "echo_events",
    "run_connection",
]

#: Autobahn 9.* sends messages of up to 16 MiB; leave room above that.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
#: Bytes asked of one ``recv``; large reads keep the 16 MiB cases fast.
RECV_SIZE = 256 * 1024
#: Upper bound on reads per connection (a 16 MiB message in 1-byte reads is far below it).
MAX_READS = 50_000_000
#: Upper bound on events handled from one read (9.3/9.4 send up to 65,536 fragments).
MAX_EVENTS_PER_READ = 1_000_000
#: After our side closes its writing half, how long to read on for the peer's FIN.
LINGER_SECONDS = 1.0

#: Handles the events of one read; may queue data on the connection.
EventHandler = Callable[[Connection, Sequence[Event]], None]


def _flush(sock: socket.socket, conn: Connection, deadline: float) -> bool:
    """Write everything the machine has queued; False if the peer is gone or time ran out."""
    out = conn.data_to_send()
    if not out:
        return True
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        sock.sendall(out)
    except OSError:  # includes TimeoutError, BrokenPipeError, ConnectionResetError
        return False
    return True


def _linger_close(sock: socket.socket) -> None:
    """Send FIN, read what the peer still sends (briefly) and close, so no RST is sent."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + LINGER_SECONDS
        for _ in range(1000):
            left = end - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            if not sock.recv(RECV_SIZE):
                break
    sock.close()


def run_connection(
    sock: socket.socket,
    conn: Connection,
    handle: EventHandler,
    *,
    deadline: float,
    close_timeout: float = 5.0,
    stop: threading.Event | None = None,
) -> str:
    """Pump bytes between ``sock`` and ``conn`` until the machine says to close.

    Writes ``conn.data_to_send()`` after every read (and once before the first, for a
    client's queued request). Ends when ``conn.should_close()``, at EOF, on a socket error,
    when a close started by either side takes longer than ``close_timeout``, at ``deadline``
    (a ``time.monotonic()`` value), or when ``stop`` is set. Closes the socket.

    :returns: why it ended: ``"closed"``, ``"eof"``, ``"reset"``, ``"close-timeout"``,
        ``"deadline"`` or ``"stopped"``.
    """
    reason = "deadline"
    close_at: float | None = None
    try:
        if not _flush(sock, conn, deadline):
            return "reset"
        for _ in range(MAX_READS):
            if stop is not None and stop.is_set():
                reason = "stopped"
                break
            now = time.monotonic()
            if close_at is None and conn.close_expected():
                close_at = now + close_timeout
            limit = deadline if close_at is None else min(deadline, close_at)
            if now >= limit:
                reason = "deadline" if limit == deadline else "close-timeout"
                break
            # Wake at least twice a second to notice ``stop``.
            sock.settimeout(min(limit - now, 0.5))
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                continue
            except OSError:
                reason = "reset"
                break
            events = conn.receive_data(data) if data else conn.receive_eof()
            handle(conn, events)
            if not _flush(sock, conn, deadline):
                reason = "reset"
                break
            if conn.should_close():
                reason = "closed"
                break
            if not data:
                reason = "eof"
                break
    finally:
        _linger_close(sock)
    return reason


def echo_events(conn: Connection, events: Sequence[Event]) -> None:
    """Echo Text and Binary messages; accept every handshake; leave Ping/Close to the machine.

    Messages that came in the same read as the peer's Close (or a bad frame) are still
    echoed: the machine accepts replies until the next ``data_to_send()`` (``can_send``) and
    writes its Close after them. Later messages cannot be echoed and are dropped.
    """
    pending: deque[Event] = deque(events)
    for _ in range(MAX_EVENTS_PER_READ):
        if not pending:
            break
        event = pending.popleft()
        if isinstance(event, Handshake):
            assert isinstance(conn, ServerConnection)
            # Frames the client pipelined after its request come before the rest.
            pending.extendleft(reversed(conn.accept(event)))
        elif isinstance(event, HTTPRequest):
            assert isinstance(conn, ServerConnection)
            conn.reject(
                event,
                status=426,
                headers=[("upgrade", "websocket"), ("content-type", "text/plain")],
                body=b"this is a WebSocket echo server\n",
            )
        elif not conn.can_send:
            continue
        elif isinstance(event, Text):
            conn.send_text(event.data)
        elif isinstance(event, Binary):
            conn.send_binary(event.data)
    if pending:
        raise RuntimeError(f"more than {MAX_EVENTS_PER_READ} events from one read")


@dataclass
class ServerStats:
    """What the server saw: connections by how they ended, and unexpected exceptions."""

    connections: int = 0
    endings: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class EchoServer:
    """The echo server, in threads of this process.

    ``with EchoServer() as server: ... server.url ...``; or :meth:`start` and :meth:`stop`.

    :param port: 0 lets the OS choose; read the real one from :attr:`port`.
    :param connection_timeout: the longest one connection may live, in seconds.
    :param close_timeout: how long to wait for the peer's part of a closing handshake.
    :param max_connections: accept at most this many connections, then stop accepting.
    :param extensions: extensions the server may accept (e.g. permessage-deflate).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        connection_timeout: float = 120.0,
        close_timeout: float = 5.0,
        max_connections: int = 100_000,
        extensions: Sequence[Extension] = (),
    ) -> None:
        self._host = host
        self._extensions = tuple(extensions)
        self._requested_port = port
        self._max_message_size = max_message_size
        self._connection_timeout = connection_timeout
        self._close_timeout = close_timeout
        self._max_connections = max_connections
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self.stats = ServerStats()

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._listener is None:
            raise RuntimeError("the server is not started")
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``ws://host:port`` of the running server."""
        return f"ws://{self._host}:{self.port}"

    def start(self) -> EchoServer:
        """Bind, listen and start accepting in a background thread."""
        if self._listener is not None:
            raise RuntimeError("the server is already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, self._requested_port))
        listener.listen(128)
        listener.settimeout(0.2)  # to notice ``stop`` while waiting in accept()
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept_loop, name="echo-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, cut open connections and join every thread (bounded by ``timeout``)."""
        self._stop.set()
        end = time.monotonic() + timeout
        if self._acceptor is not None:
            self._acceptor.join(max(end - time.monotonic(), 0.0))
        with self._lock:
            workers = list(self._workers)
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for worker in workers:
            worker.join(max(end - time.monotonic(), 0.0))
        if self._listener is not None:
            self._listener.close()
        alive = [w.name for w in workers if w.is_alive()]
        if alive:
            self.stats.errors.append(f"threads still running after stop(): {alive}")

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set() and self.stats.connections < self._max_connections:
            try:
                sock, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break  # the listener was closed
            with self._lock:
                self.stats.connections += 1
                worker = threading.Thread(
                    target=self._serve,
                    args=(sock,),
                    name=f"echo-{self.stats.connections}",
                    daemon=True,
                )
                self._workers.add(worker)
                self._sockets.add(sock)
            worker.start()

    def _serve(self, sock: socket.socket) -> None:
        reason = "error"
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = ServerConnection(
                extensions=self._extensions, max_message_size=self._max_message_size
            )
            reason = run_connection(
                sock,
                conn,
                echo_events,
                deadline=time.monotonic() + self._connection_timeout,
                close_timeout=self._close_timeout,
                stop=self._stop,
            )
        except Exception:  # recorded for the report; a thread must not die loud
            with self._lock:
                self.stats.errors.append(traceback.format_exc())
        finally:
            sock.close()
            with self._lock:
                self.stats.endings[reason] = self.stats.endings.get(reason, 0) + 1
                self._sockets.discard(sock)
                self._workers.discard(threading.current_thread())


def main() -> None:
    """Serve until interrupted (or ``--seconds`` pass)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    args = parser.parse_args()
    with EchoServer(port=args.port) as server:
        print(f"echo server on {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.seconds)
    print(f"connections: {server.stats.connections}, endings: {server.stats.endings}")


if __name__ == "__main__":
    main()
