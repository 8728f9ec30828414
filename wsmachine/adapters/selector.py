"""One thread, many WebSocket connections, on the standard library's :mod:`selectors`.

A :class:`Loop` runs WebSocket connections in one thread: it feeds every byte it reads to the
connection's machine and calls a :class:`Handler` back with what happened. It owns the
sockets, the write buffers and the timers; the machine owns the protocol. A :class:`Server`
is a loop that also accepts connections (:class:`~wsmachine.ServerConnection`); any loop,
a server's included, opens outgoing ones with :meth:`Loop.connect`
(:class:`~wsmachine.ClientConnection`). Both roles are :class:`Peer` objects.

- Partial writes: each connection has a write buffer; the loop writes what the kernel
  takes and waits for the socket to be writable for the rest.
- Back-pressure: a peer whose buffer holds more than ``write_high_water`` bytes is not read
  from until it drains below a quarter of that; above ``write_limit`` it is dropped.
- Timers run on the selector's timeout: the opening handshake (for a client, the TCP
  connection too) must end within ``open_timeout``, the closing handshake and TCP close within
  ``close_timeout``, and with ``ping_interval`` a keepalive Ping must be answered within
  ``ping_timeout``.
- Closing TCP follows the machine (RFC 6455 §7.1.1): the server closes first; a client
  waits for it, and closes the socket itself only when ``close_timeout`` runs out.
- :meth:`Loop.shutdown` (:meth:`Server.shutdown`) stops accepting and closes every connection
  with 1001.
- A server's port answers plain HTTP requests through :meth:`Handler.on_http` (a page, a
  health check) and refuses upgrades from other origins through ``check_origin`` (403).

Everything, the handler's callbacks included, runs in the thread that calls
:meth:`Loop.run_forever` (:meth:`Server.serve_forever`); another thread talks to the loop
only through :meth:`Loop.call_soon_threadsafe` and :meth:`Loop.shutdown`.

.. code-block:: python

    from wsmachine.adapters.selector import Handler, Server

    class Echo(Handler):
        def on_message(self, peer, message):
            peer.send(message)

    with Server(Echo(), "127.0.0.1", 8765) as server:
        server.serve_forever()   # Ctrl-C, or server.shutdown() from elsewhere, ends it

.. code-block:: python

    from wsmachine.adapters.selector import Handler, Loop

    class Hello(Handler):
        def on_open(self, peer):
            peer.send("hello")

        def on_message(self, peer, message):
            print(message)
            peer.close(1000, "thanks")

    with Loop() as loop:
        peer = loop.connect("ws://127.0.0.1:8765/", Hello())
        while not peer.done:
            loop.run_once()
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import heapq
import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from ..connection import DEFAULT_MAX_MESSAGE_SIZE, ClientConnection, Connection, ServerConnection
from ..events import (
    Accepted,
    Binary,
    Close,
    Event,
    Handshake,
    HTTPRequest,
    Ping,
    Pong,
    Rejected,
    Text,
)
from ..extensions.base import Extension
from ..handshake import HeaderInput
from ..state import State
from ._common import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_TIMEOUT,
    CloseRecord,
    ConnectionClosed,
    HTTPResponse,
    OriginCheck,
    forbidden_origin,
    handshake_error,
    parse_url,
    upgrade_required,
)

__all__ = ["Handler", "Loop", "Peer", "Server", "Timer"]

logger = logging.getLogger("wsmachine.adapters.selector")

#: Bytes asked of one ``recv``.
RECV_SIZE = 256 * 1024
#: Connections accepted per wake-up of the listening socket (others wait for the next round).
MAX_ACCEPTS_PER_ROUND = 64
#: Small queued chunks are joined into one ``send`` of up to this many bytes.
COALESCE_SIZE = 256 * 1024
#: How long to wait for the peer's FIN after ours, at most (bounded by ``close_timeout`` too).
LINGER_SECONDS = 2.0
#: Default write buffer above which a peer is no longer read from.
DEFAULT_WRITE_HIGH_WATER = 1 << 20
#: Default write buffer above which a peer is dropped.
DEFAULT_WRITE_LIMIT = 16 << 20

_OPEN = State.OPEN
_CONNECTING = State.CONNECTING
_CLOSED = State.CLOSED
_R = selectors.EVENT_READ
_W = selectors.EVENT_WRITE
#: What ``connect_ex`` answers for a non-blocking connection under way.
_IN_PROGRESS = frozenset(
    {
        0,
        errno.EINPROGRESS,
        errno.EWOULDBLOCK,
        errno.EAGAIN,
        errno.EALREADY,
        getattr(errno, "WSAEWOULDBLOCK", errno.EWOULDBLOCK),
    }
)


def _gone(peer: Peer) -> bool:
    """Whether the connection was finished (a call may have finished it; mypy can't tell)."""
    return peer._finished


class Timer:
    """A callback scheduled on a :class:`Loop`; :meth:`cancel` it to drop it."""

    __slots__ = ("callback", "cancelled", "seq", "when")

    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        """Do not run the callback (no effect once it ran)."""
        self.cancelled = True


class _Settings(Protocol):
    """The timers and buffer marks of a connection: a :class:`Server`'s for the connections it
    accepts, a :class:`_ClientSettings` for each :meth:`Loop.connect`."""

    @property
    def open_timeout(self) -> float: ...
    @property
    def close_timeout(self) -> float: ...
    @property
    def ping_interval(self) -> float | None: ...
    @property
    def ping_timeout(self) -> float: ...
    @property
    def write_high_water(self) -> int: ...
    @property
    def write_low_water(self) -> int: ...
    @property
    def write_limit(self) -> int: ...


@dataclasses.dataclass(frozen=True, slots=True)
class _ClientSettings:
    open_timeout: float
    close_timeout: float
    ping_interval: float | None
    ping_timeout: float
    write_high_water: int
    write_low_water: int
    write_limit: int


class Handler:
    """The callbacks of a connection. Subclass it and override what you need.

    A :class:`Server` calls its handler for every connection it accepts; a connection opened
    with :meth:`Loop.connect` calls the handler given there. :meth:`on_http` and
    :meth:`on_handshake` concern the server role only.

    Every callback runs in the loop's thread and should not block. An exception in a
    callback is passed to :meth:`on_error` and the connection is closed with 1011.
    """

    def on_http(self, request: HTTPRequest) -> HTTPResponse:
        """Answer a plain HTTP request (not an upgrade). By default: 426 Upgrade Required."""
        return upgrade_required(request)

    def on_handshake(self, peer: Peer, handshake: Handshake) -> HTTPResponse | None:
        """Decide on an upgrade whose origin passed: ``None`` accepts, a response refuses."""
        return None

    def on_open(self, peer: Peer) -> None:
        """The connection is open: messages may flow."""

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        """A whole message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_close(self, peer: Peer, closed: ConnectionClosed) -> None:
        """An open connection ended (its TCP connection is closed); ``closed`` says how."""

    def on_error(self, peer: Peer, error: BaseException) -> None:
        """Something failed: a handshake the machine refused, a timeout, an I/O error, an
        exception in a callback. By default it is logged.

        A connection that never opened gets this call and no :meth:`on_close`. For a client
        that is an :class:`OSError` when the TCP connection fails, a :class:`TimeoutError`
        at ``open_timeout``, or a :class:`~wsmachine.adapters.HandshakeError` when the server
        refuses the upgrade (with its ``status_code`` and ``body``), answers wrongly, or
        closes the connection during the handshake.
        """
        logger.warning(
            "%s: %s: %s",
            peer.address,
            type(error).__name__,
            error,
            exc_info=error if not isinstance(error, TimeoutError | OSError) else None,
        )


class Peer:
    """One connection of a :class:`Loop`, in either role: accepted by a :class:`Server`, or
    opened by :meth:`Loop.connect`. Use it from the loop's thread only."""

    __slots__ = (
        "_addresses",
        "_close_timer",
        "_connecting",
        "_finished",
        "_mask",
        "_open_timer",
        "_opened",
        "_pending",
        "_ping_payload",
        "_ping_timer",
        "_pong_timer",
        "_read_eof",
        "_reported",
        "_settings",
        "_tcp_closing",
        "_wbuf",
        "_woff",
        "accepted",
        "address",
        "conn",
        "data",
        "handler",
        "handshake",
        "loop",
        "record",
        "sock",
        "subprotocol",
    )

    def __init__(
        self,
        loop: Loop,
        sock: socket.socket,
        address: Any,
        conn: Connection,
        *,
        handler: Handler,
        settings: _Settings,
    ) -> None:
        #: The loop (for an accepted connection, the :class:`Server`) that runs it.
        self.loop = loop
        self.sock = sock
        #: The other end's address: as ``socket.accept`` gave it, or the address connected to.
        self.address = address
        #: The machine of this connection.
        self.conn = conn
        #: The callbacks of this connection.
        self.handler = handler
        #: Server side: the upgrade request, once it arrived.
        self.handshake: Handshake | None = None
        #: Client side: the server's answer, once the handshake succeeded.
        self.accepted: Accepted | None = None
        #: The subprotocol chosen at the handshake.
        self.subprotocol: str | None = None
        #: Free for the application.
        self.data: dict[str, Any] = {}
        #: The Close frames each way so far.
        self.record = CloseRecord()
        self._settings = settings
        self._wbuf: deque[bytes] = deque()
        self._woff = 0
        self._pending = 0
        self._mask = 0
        self._finished = False
        self._opened = False
        self._reported = False  # on_error was told why the connection never opened
        self._connecting = False  # client: the TCP connection is being made
        self._addresses: list[tuple[Any, ...]] = []  # client: addresses left to try
        self._read_eof = False
        self._tcp_closing = False
        self._open_timer: Timer | None = None
        self._close_timer: Timer | None = None
        self._ping_timer: Timer | None = None
        self._pong_timer: Timer | None = None
        self._ping_payload = b""

    def __repr__(self) -> str:
        role = "client" if self.conn.client else "server"
        return f"<Peer {role} {self.address} {self.conn.state.name}>"

    @property
    def server(self) -> Loop:
        """The same as :attr:`loop` (its older name)."""
        return self.loop

    @property
    def client(self) -> bool:
        """Whether this side is the client (the connection came from :meth:`Loop.connect`)."""
        return self.conn.client

    @property
    def state(self) -> State:
        """The machine's state."""
        return self.conn.state

    @property
    def open(self) -> bool:
        """Whether messages can be sent."""
        return self.conn.can_send and not self._finished

    @property
    def done(self) -> bool:
        """Whether the connection is over: its socket is closed and the loop forgot it."""
        return self._finished

    @property
    def buffered(self) -> int:
        """Bytes waiting in the write buffer."""
        return self._pending

    @property
    def paused(self) -> bool:
        """Whether reading is paused because the write buffer went above its high-water mark
        (it resumes below a quarter of it)."""
        return (
            not self._finished
            and not self._connecting
            and not self._read_eof
            and not self._mask & _R
        )

    def send(self, message: str | bytes | bytearray | memoryview) -> bool:
        """Queue a text (``str``) or binary message; ``False`` if the connection is not open
        (the message is dropped: the peer is opening, closing or gone)."""
        if not self.open:
            return False
        if isinstance(message, str):
            self.conn.send_text(message)
        else:
            self.conn.send_binary(message)
        self._flush_unless_replying()
        return True

    def ping(self, payload: bytes = b"") -> bool:
        """Queue a Ping; ``False`` if the connection is not open."""
        if not self.open:
            return False
        self.conn.ping(payload)
        self._flush_unless_replying()
        return True

    def _flush_unless_replying(self) -> None:
        # A read that ended the connection (the peer's Close, or a violation) leaves the
        # machine accepting replies to that read's messages until the next flush, which then
        # adds its Close frame. Those replies wait for the flush after the read's events.
        if self.conn.state is _OPEN:
            self.loop._flush(self)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (no effect unless open); the TCP connection ends when
        the peer answers, or after ``close_timeout``."""
        if not self.open or self.conn.state is not _OPEN:
            return
        self.record.sent(code, reason)
        self.conn.close(code, reason)
        self.loop._flush(self)

    def abort(self) -> None:
        """Close the TCP connection at once, without a closing handshake (also while a
        client is still connecting)."""
        self.loop._abort(self, ConnectionAbortedError("aborted by the application"))


class Loop:
    """An event loop for WebSocket connections: one thread, many connections, on
    :mod:`selectors`.

    On its own it runs the client connections that :meth:`connect` opens; a :class:`Server`
    is a loop that also accepts connections. Run it with :meth:`run_forever`, with
    :meth:`run_once` in a loop of your own, or in a background thread with :meth:`start`.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _R, self._wake_r)
        self._peers: set[Peer] = set()
        self._timers: list[Timer] = []
        self._seq = 0
        self._calls: deque[Callable[[], None]] = deque()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._longest_close = DEFAULT_CLOSE_TIMEOUT  # bounds the wait in stop()

    # -- information ----------------------------------------------------------------------

    @property
    def peers(self) -> frozenset[Peer]:
        """The connections alive now (opening, open or closing), both roles."""
        return frozenset(self._peers)

    # -- scheduling -----------------------------------------------------------------------

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` in the loop's thread after ``delay`` seconds (that thread only)."""
        self._seq += 1
        timer = Timer(time.monotonic() + delay, self._seq, callback)
        heapq.heappush(self._timers, timer)
        return timer

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the loop's thread soon; callable from any thread."""
        self._calls.append(callback)
        with contextlib.suppress(OSError):  # full (already woken) or closed
            self._wake_w.send(b"\0")

    def broadcast(
        self, message: str | bytes | bytearray | memoryview, *, exclude: Peer | None = None
    ) -> int:
        """Send ``message`` to every open connection of this loop but ``exclude``; return how
        many.

        Call it from the loop's thread (from a callback, or via
        :meth:`call_soon_threadsafe`). It reaches the connections of both roles: filter on
        :attr:`Peer.client` with :meth:`Peer.send` to reach only one.
        """
        count = 0
        for peer in list(self._peers):
            if peer is not exclude and peer.send(message):
                count += 1
        return count

    # -- opening connections --------------------------------------------------------------

    def connect(
        self,
        url: str,
        handler: Handler,
        *,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[Extension] = (),
        origin: str | None = None,
        extra_headers: HeaderInput = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        ping_interval: float | None = None,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
        write_limit: int = DEFAULT_WRITE_LIMIT,
        sock: socket.socket | None = None,
    ) -> Peer:
        """Open a WebSocket connection to ``url`` (``ws://``) on this loop; return its
        :class:`Peer` at once, still connecting.

        The TCP connection is made without blocking, then the opening handshake; ``handler``
        gets :meth:`~Handler.on_open` when it succeeds and :meth:`~Handler.on_error` (and
        nothing else) when it fails. Call it from the loop's thread (a callback, or
        :meth:`call_soon_threadsafe`), or before the loop runs.

        The host name is resolved here with :func:`socket.getaddrinfo`, which blocks: pass an
        IP address, or resolve it beforehand, if the loop must never wait on DNS. Every
        address found is tried in turn.

        :param subprotocols: subprotocols to offer; the chosen one is ``peer.subprotocol``.
        :param extensions: extensions to offer (e.g. permessage-deflate).
        :param origin: the ``Origin`` header, if any.
        :param extra_headers: more request headers.
        :param max_message_size: largest incoming message (1009 above).
        :param max_frame_size: largest incoming frame; by default ``max_message_size``.
        :param open_timeout: seconds for the TCP connection and the opening handshake.
        :param close_timeout: seconds for the closing handshake and for the server to close
            TCP after it; then the socket is closed.
        :param ping_interval: seconds between keepalive Pings (``None``: no keepalive).
        :param ping_timeout: seconds to wait for the Pong; then the connection is closed
            (1011).
        :param write_high_water: write-buffer size above which the server is not read from.
        :param write_limit: write-buffer size above which the connection is dropped.
        :param sock: a connected (or connecting) socket to use instead of connecting to the
            URL's host and port.
        :raises ValueError: not a ``ws://`` URL (``wss://`` needs TLS, which this adapter
            does not do: use the blocking or trio adapter), or bad settings.
        :raises OSError: the host name does not resolve.
        :raises RuntimeError: the loop is closed or shutting down.
        """
        target = parse_url(url)
        if target.secure:
            raise ValueError(
                f"{url!r}: the selector adapter does not do TLS (wss://); use "
                "wsmachine.adapters.blocking or wsmachine.adapters.trio"
            )
        if write_limit < write_high_water:
            raise ValueError("write_limit must be at least write_high_water")
        if self._closed or self._stopping:
            raise RuntimeError("the loop is closed or shutting down")
        conn = ClientConnection(
            target.host_header,
            target.resource,
            subprotocols=subprotocols,
            extensions=extensions,
            origin=origin,
            extra_headers=extra_headers,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
        )
        settings = _ClientSettings(
            open_timeout,
            close_timeout,
            ping_interval,
            ping_timeout,
            write_high_water,
            write_high_water // 4,
            write_limit,
        )
        connected = sock is not None
        if sock is None:
            addresses = [
                (family, kind, proto, address)
                for family, kind, proto, _, address in socket.getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM
                )
            ]
            family, kind, proto, address = addresses.pop(0)
            sock = socket.socket(family, kind, proto)
        else:
            addresses = []
            try:
                address = sock.getpeername()
            except OSError:
                address = (target.host, target.port)
        peer = Peer(self, sock, address, conn, handler=handler, settings=settings)
        peer._addresses = addresses
        peer._connecting = True
        self._peers.add(peer)
        self._longest_close = max(self._longest_close, close_timeout)
        peer._open_timer = self.call_later(open_timeout, self._open_timer_callback(peer))
        error = self._start_connect(peer, None if connected else address)
        if error is not None:  # reported from the loop, not before this call returns
            self.call_later(0.0, lambda: self._connect_failed(peer, error))
        return peer

    def _start_connect(self, peer: Peer, address: Any) -> OSError | None:
        """Start connecting ``peer.sock`` to ``address`` (``None``: it is connected already);
        watch for it to become writable. Return the error of a connection that failed at
        once."""
        sock = peer.sock
        sock.setblocking(False)
        if address is not None:
            try:
                code = sock.connect_ex(address)
            except OSError as exc:  # e.g. an address of the wrong family
                return exc
            if code not in _IN_PROGRESS:
                return OSError(code, os.strerror(code))
        peer._mask = _W
        self._selector.register(sock, _W, peer)
        return None

    def _connected(self, peer: Peer) -> None:
        """The connecting socket became writable: connected, or failed."""
        code = peer.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._connect_failed(peer, OSError(code, os.strerror(code)))
            return
        peer._connecting = False
        peer._addresses = []
        with contextlib.suppress(OSError):
            peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            peer.address = peer.sock.getpeername()
        self._flush(peer)  # the upgrade request, which the machine queued at its creation

    def _connect_failed(self, peer: Peer, error: OSError) -> None:
        """Try the next address, if any; else report ``error``."""
        while not peer._finished and peer._addresses:
            if peer._mask:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(peer.sock)
                peer._mask = 0
            peer.sock.close()
            family, kind, proto, address = peer._addresses.pop(0)
            try:
                peer.sock = socket.socket(family, kind, proto)
            except OSError as exc:
                error = exc
                continue
            peer.address = address
            failed = self._start_connect(peer, address)
            if failed is None:
                return
            error = failed
        self._abort(peer, error)

    # -- running --------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run until :meth:`shutdown` has closed every connection; then release everything."""
        try:
            while not (self._stopping and not self._peers):
                self.run_once()
        finally:
            self.close()

    def run_once(self, max_wait: float | None = None) -> None:
        """Wait for I/O or a timer (at most ``max_wait`` seconds) and handle what is ready."""
        if self._closed:
            raise RuntimeError("the loop is closed")
        timeout = max_wait
        timers = self._timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        if timers:
            delay = max(timers[0].when - time.monotonic(), 0.0)
            timeout = delay if timeout is None else min(timeout, delay)
        if self._calls:
            timeout = 0.0
        for key, mask in self._selector.select(timeout):
            data = key.data
            if isinstance(data, Peer):
                if data._finished:
                    continue
                if data._connecting:
                    if key.fileobj is data.sock:  # not an old socket of a failed attempt
                        self._connected(data)
                    continue
                if mask & _W:
                    self._write(data)
                    self._after_io(data)
                if mask & _R and not data._finished:
                    self._read(data)
            elif data is None:
                self._accept()
            else:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
        self._run_timers()
        calls = self._calls
        for _ in range(len(calls)):
            callback = calls.popleft()
            self._guard(None, callback)

    def _run_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        due = []
        while timers and (timers[0].cancelled or timers[0].when <= now):
            timer = heapq.heappop(timers)
            if not timer.cancelled:
                due.append(timer)
        for timer in due:
            if not timer.cancelled:
                timer.cancelled = True
                self._guard(None, timer.callback)
        if len(timers) > 256 and len(timers) > 8 * (len(self._peers) + 16):
            self._timers = [t for t in timers if not t.cancelled]
            heapq.heapify(self._timers)

    def shutdown(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every connection with ``code`` (and a server stops accepting); callable from
        any thread (a signal handler included). :meth:`run_forever` returns once all are
        closed, or after ``close_timeout``."""
        self.call_soon_threadsafe(lambda: self._begin_shutdown(code, reason))

    def _begin_shutdown(self, code: int, reason: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_listening()
        longest = 0.0
        for peer in list(self._peers):
            longest = max(longest, peer._settings.close_timeout)
            if peer.open:
                peer.close(code, reason)
            elif peer.conn.state is _CONNECTING:
                self._abort(peer, ConnectionAbortedError("the loop is shutting down"))
        self.call_later(longest + LINGER_SECONDS, self._abort_all)

    def _stop_listening(self) -> None:
        """Stop accepting connections (a :class:`Server` does)."""

    def _accept(self) -> None:
        """Accept connections (a :class:`Server`'s listening socket is ready)."""

    def _abort_all(self) -> None:
        for peer in list(self._peers):
            self._abort(peer, TimeoutError("the loop shut down before the peer closed"))

    def start(self) -> threading.Thread:
        """Run :meth:`run_forever` in a new thread and return it (see :meth:`stop`)."""
        if self._thread is not None:
            raise RuntimeError("the loop was already started")
        thread = threading.Thread(target=self.run_forever, name="wsmachine-selector")
        thread.daemon = True
        self._thread = thread
        thread.start()
        return thread

    def stop(self, timeout: float | None = None) -> None:
        """:meth:`shutdown` the loop started by :meth:`start` and wait for its thread."""
        thread = self._thread
        if thread is None:
            self.close()
            return
        if thread.is_alive():
            self.shutdown()
            thread.join(self._longest_close + LINGER_SECONDS + 5 if timeout is None else timeout)

    def close(self) -> None:
        """Drop every connection at once and release the sockets (no closing handshake)."""
        if self._closed:
            return
        self._abort_all()
        self._closed = True
        self._stopping = True
        self._stop_listening()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self.stop()
        self.close()

    # -- reading --------------------------------------------------------------------------

    def _read(self, peer: Peer) -> None:
        try:
            data = peer.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            peer.record.failed(exc)
            self._eof(peer)
            self._finish(peer)
            return
        if not data:
            self._eof(peer)
            self._flush(peer)  # write what is still buffered (bounded by the close timer)
            return
        if peer._tcp_closing:
            return  # our side is closed: read on only to see the peer's FIN
        was_open = peer.conn.state is _OPEN
        self._dispatch(peer, peer.conn.receive_data(data), was_open)
        self._flush(peer)

    def _eof(self, peer: Peer) -> None:
        peer._read_eof = True
        was_open = peer.conn.state is _OPEN
        self._dispatch(peer, peer.conn.receive_eof(), was_open)

    def _dispatch(self, peer: Peer, events: Iterable[Event], was_open: bool) -> None:
        handler = peer.handler
        for event in events:
            if peer._finished:
                return
            if isinstance(event, Text | Binary):
                self._guard(peer, handler.on_message, peer, event.data)
            elif isinstance(event, Ping):
                pass  # the machine queued the Pong
            elif isinstance(event, Pong):
                if peer._pong_timer is not None and event.payload == peer._ping_payload:
                    self._pong_received(peer)
            elif isinstance(event, Close):
                peer.record.received(event, was_open)
                if not peer._opened:
                    if peer.conn.client:  # the connection ended during the handshake
                        self._handshake_failed(peer, event)
                elif event.error is not None and event.code != 1006:
                    self._guard(peer, handler.on_error, peer, event.error)
            elif isinstance(event, Accepted):
                was_open = True  # for the frames that came with the answer
                self._accepted(peer, event)
            elif isinstance(event, Handshake):
                self._handshake(peer, event)
            elif isinstance(event, HTTPRequest):
                response = self._guard(peer, handler.on_http, event)
                if _gone(peer):
                    return
                if response is None:
                    response = HTTPResponse(500, [], b"internal error\n")
                if isinstance(peer.conn, ServerConnection) and peer.conn.state is _CONNECTING:
                    peer.conn.reject(
                        event, status=response.status, headers=response.headers, body=response.body
                    )
            elif isinstance(event, Rejected):
                if peer.conn.client:
                    self._handshake_failed(peer, event)
                elif event.error is not None:
                    peer._reported = True
                    self._guard(peer, handler.on_error, peer, event.error)

    def _handshake(self, peer: Peer, event: Handshake) -> None:
        """Answer an upgrade request (only a :class:`Server`'s connections get one)."""
        # A plain Loop opens client connections only, which never receive a request.
        raise RuntimeError("only a Server answers upgrade requests; this Loop has no listener")

    def _accepted(self, peer: Peer, event: Accepted) -> None:
        """Client side: the server accepted the upgrade."""
        peer.accepted = event
        peer.subprotocol = peer.conn.subprotocol
        self._mark_open(peer)
        self._guard(peer, peer.handler.on_open, peer)

    def _handshake_failed(self, peer: Peer, event: Rejected | Close) -> None:
        """Client side: report a refused, invalid or interrupted opening handshake."""
        error = handshake_error(event)
        peer.record.failed(error)
        peer._reported = True
        self._guard(peer, peer.handler.on_error, peer, error)

    def _mark_open(self, peer: Peer) -> None:
        peer._opened = True
        if peer._open_timer is not None:
            peer._open_timer.cancel()
            peer._open_timer = None
        interval = peer._settings.ping_interval
        if interval is not None:
            peer._ping_timer = self.call_later(interval, lambda: self._keepalive(peer))

    def _guard(self, peer: Peer | None, function: Callable[..., Any], *args: Any) -> Any:
        """Call back the application; report an exception and close that connection."""
        try:
            return function(*args)
        except Exception as exc:
            if peer is None:
                logger.exception("callback %r failed", function)
                return None
            if function is not peer.handler.on_error:
                with contextlib.suppress(Exception):
                    peer.handler.on_error(peer, exc)
            if peer.open:
                peer.close(1011, "internal error")
            elif peer.conn.state is _CONNECTING and not peer._finished:
                peer._reported = True
                self._abort(peer, exc)
            return None

    # -- writing --------------------------------------------------------------------------

    def _flush(self, peer: Peer) -> None:
        """Move the machine's output to the write buffer, write, and act on the new state."""
        if peer._finished or peer._connecting:
            return
        data = peer.conn.data_to_send()
        if data:
            peer._wbuf.append(data)
            peer._pending += len(data)
            self._write(peer)
        self._after_io(peer)

    def _write(self, peer: Peer) -> None:
        buf = peer._wbuf
        sock = peer.sock
        while buf:
            chunk = buf[0]
            if len(buf) > 1 and len(chunk) - peer._woff < COALESCE_SIZE:
                parts = [chunk[peer._woff :] if peer._woff else chunk]
                size = len(parts[0])
                buf.popleft()
                while buf and size < COALESCE_SIZE:
                    part = buf.popleft()
                    parts.append(part)
                    size += len(part)
                chunk = b"".join(parts)
                buf.appendleft(chunk)
                peer._woff = 0
            try:
                sent = sock.send(memoryview(chunk)[peer._woff :])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._abort(peer, exc)
                return
            peer._pending -= sent
            peer._woff += sent
            if peer._woff < len(chunk):
                return  # the kernel's buffer is full
            buf.popleft()
            peer._woff = 0

    def _after_io(self, peer: Peer) -> None:
        if peer._finished:
            return
        conn = peer.conn
        settings = peer._settings
        if peer._open_timer is not None and conn.state is not _CONNECTING:
            peer._open_timer.cancel()
            peer._open_timer = None
        if peer._pending > settings.write_limit:
            self._abort(
                peer,
                BufferError(
                    f"write buffer of {peer._pending} bytes is over the limit of "
                    f"{settings.write_limit}: the peer does not read"
                ),
            )
            return
        if peer._close_timer is None and conn.close_expected():
            peer._close_timer = self.call_later(
                settings.close_timeout, lambda: self._close_timed_out(peer)
            )
        if peer._pending == 0 and conn.should_close() and not peer._tcp_closing:
            self._close_tcp(peer)
            if _gone(peer):
                return
        mask = 0
        if not peer._read_eof:
            reading = peer._tcp_closing or peer._pending <= settings.write_low_water
            if not reading and peer._mask & _R:
                reading = peer._pending <= settings.write_high_water  # between the marks
            if reading:
                mask |= _R
        if peer._pending:
            mask |= _W
        if mask != peer._mask:
            if peer._mask == 0:
                self._selector.register(peer.sock, mask, peer)
            elif mask == 0:
                self._selector.unregister(peer.sock)
            else:
                self._selector.modify(peer.sock, mask, peer)
            peer._mask = mask
        if peer._read_eof and not peer._pending:
            self._finish(peer)

    # -- closing --------------------------------------------------------------------------

    def _close_tcp(self, peer: Peer) -> None:
        """Send our FIN and read on until the peer's, briefly (the machine said to close)."""
        peer._tcp_closing = True
        try:
            peer.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._finish(peer)
            return
        if peer._read_eof:
            self._finish(peer)
            return
        self.call_later(
            min(LINGER_SECONDS, peer._settings.close_timeout), lambda: self._finish(peer)
        )

    def _abort(self, peer: Peer, error: BaseException) -> None:
        if peer._finished:
            return
        peer.record.failed(error)
        if not peer._opened and not peer._reported:
            peer._reported = True
            with contextlib.suppress(Exception):
                peer.handler.on_error(peer, error)
        self._finish(peer)

    def _finish(self, peer: Peer) -> None:
        """Close the socket and forget the connection; tell the handler if it was open."""
        if peer._finished:
            return
        peer._finished = True
        for timer in (peer._open_timer, peer._close_timer, peer._ping_timer, peer._pong_timer):
            if timer is not None:
                timer.cancel()
        self._peers.discard(peer)  # first: once the other end sees the close, it is gone
        if peer._mask:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(peer.sock)
            peer._mask = 0
        peer.sock.close()
        peer._wbuf.clear()
        peer._pending = 0
        if peer._opened:
            self._guard(None, peer.handler.on_close, peer, peer.record.exception())

    # -- timers ---------------------------------------------------------------------------

    def _open_timer_callback(self, peer: Peer) -> Callable[[], None]:
        return lambda: self._open_timed_out(peer)

    def _open_timed_out(self, peer: Peer) -> None:
        peer._open_timer = None
        if peer.conn.state is _CONNECTING:
            timeout = peer._settings.open_timeout
            what = "the TCP connection" if peer._connecting else "the opening handshake"
            self._abort(peer, TimeoutError(f"{what} took over {timeout} s"))

    def _close_timed_out(self, peer: Peer) -> None:
        peer._close_timer = None
        conn = peer.conn
        if conn.client and conn.state is _CLOSED and not conn.should_close():
            # The closing handshake ended cleanly, but the server did not close TCP in time
            # (RFC 6455 §7.1.1): the client closes it, and that is no error.
            logger.debug("%s: the server did not close the TCP connection", peer.address)
            self._finish(peer)
            return
        self._abort(
            peer,
            TimeoutError(f"the closing handshake took over {peer._settings.close_timeout} s"),
        )

    def _keepalive(self, peer: Peer) -> None:
        peer._ping_timer = None
        if not peer.open:
            return
        peer._ping_payload = os.urandom(4)
        peer._pong_timer = self.call_later(
            peer._settings.ping_timeout, lambda: self._pong_timed_out(peer)
        )
        peer.ping(peer._ping_payload)

    def _pong_received(self, peer: Peer) -> None:
        if peer._pong_timer is not None:
            peer._pong_timer.cancel()
            peer._pong_timer = None
        interval = peer._settings.ping_interval
        if interval is not None and peer.open:
            peer._ping_timer = self.call_later(interval, lambda: self._keepalive(peer))

    def _pong_timed_out(self, peer: Peer) -> None:
        peer._pong_timer = None
        error = TimeoutError(f"no Pong within {peer._settings.ping_timeout} s of a keepalive Ping")
        peer.record.failed(error)
        with contextlib.suppress(Exception):
            peer.handler.on_error(peer, error)
        peer.close(1011, "keepalive ping timeout")


class Server(Loop):
    """A WebSocket server: a :class:`Loop` that also accepts connections.

    It can open client connections too, with :meth:`~Loop.connect`, on the same thread.

    :param handler: the callbacks of the connections it accepts.
    :param host: the address to listen on.
    :param port: the port; 0 picks a free one (see :attr:`address`).
    :param subprotocols: subprotocols to speak, in order of preference.
    :param extensions: extensions to accept (e.g. permessage-deflate).
    :param max_message_size: largest incoming message (1009 above).
    :param max_frame_size: largest incoming frame; by default ``max_message_size``.
    :param open_timeout: seconds for a client to finish the opening handshake.
    :param close_timeout: seconds for the closing handshake and the TCP close.
    :param ping_interval: seconds between keepalive Pings (``None``: no keepalive).
    :param ping_timeout: seconds to wait for the Pong; then the connection is closed (1011).
    :param check_origin: decides on each upgrade's ``Origin``; refused ones get a 403.
    :param write_high_water: write-buffer size above which a peer is not read from.
    :param write_limit: write-buffer size above which a peer is dropped.
    :param backlog: the listen backlog.
    :param sock: a listening socket to use instead of binding ``host`` and ``port``.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[Extension] = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        ping_interval: float | None = None,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        check_origin: OriginCheck | None = None,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
        write_limit: int = DEFAULT_WRITE_LIMIT,
        backlog: int = 128,
        sock: socket.socket | None = None,
    ) -> None:
        if write_limit < write_high_water:
            raise ValueError("write_limit must be at least write_high_water")
        self.handler = handler
        self.subprotocols = tuple(subprotocols)
        self.extensions = tuple(extensions)
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.check_origin = check_origin
        self.write_high_water = write_high_water
        self.write_low_water = write_high_water // 4
        self.write_limit = write_limit
        if sock is None:
            sock = socket.create_server((host, port), backlog=backlog)
        try:
            super().__init__()
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self._listener: socket.socket | None = sock
        self._address: tuple[Any, ...] = sock.getsockname()
        self._selector.register(sock, _R, None)
        self._longest_close = close_timeout

    # -- information ----------------------------------------------------------------------

    @property
    def address(self) -> tuple[Any, ...]:
        """The listening address, e.g. ``("127.0.0.1", 54321)``."""
        return self._address

    @property
    def port(self) -> int:
        """The listening port."""
        return int(self._address[1])

    # -- running --------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` has closed every connection; then release everything
        (the same as :meth:`~Loop.run_forever`)."""
        self.run_forever()

    def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting and close every connection with ``code``; callable from any thread
        (a signal handler included). :meth:`serve_forever` returns once all are closed, or
        after ``close_timeout``."""
        super().shutdown(code, reason)

    def _stop_listening(self) -> None:
        listener = self._listener
        if listener is not None:
            self._listener = None
            if not self._closed:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(listener)
            listener.close()

    # -- connections ----------------------------------------------------------------------

    def _accept(self) -> None:
        listener = self._listener
        for _ in range(MAX_ACCEPTS_PER_ROUND):
            if listener is None:
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: try again next round
                logger.warning("accept() failed: %s", exc)
                return
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = ServerConnection(
                subprotocols=self.subprotocols,
                extensions=self.extensions,
                max_message_size=self.max_message_size,
                max_frame_size=self.max_frame_size,
            )
            peer = Peer(self, sock, address, conn, handler=self.handler, settings=self)
            self._peers.add(peer)
            peer._mask = _R
            self._selector.register(sock, _R, peer)
            peer._open_timer = self.call_later(self.open_timeout, self._open_timer_callback(peer))

    def _handshake(self, peer: Peer, event: Handshake) -> None:
        peer.handshake = event
        if self.check_origin is not None and not self._guard(peer, self.check_origin, event):
            response: HTTPResponse | None = forbidden_origin(event)
        else:
            response = self._guard(peer, peer.handler.on_handshake, peer, event)
        conn = peer.conn
        if peer._finished or conn.state is not _CONNECTING:
            return
        assert isinstance(conn, ServerConnection)
        if response is not None:
            conn.reject(event, status=response.status, headers=response.headers, body=response.body)
            return
        more = conn.accept(event)  # the machine picks from self.subprotocols
        peer.subprotocol = conn.subprotocol
        self._mark_open(peer)
        self._flush(peer)
        self._guard(peer, peer.handler.on_open, peer)
        if more:
            self._dispatch(peer, more, True)
