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
- Timers run on the selector's timeout, at each connection's
  :meth:`~wsmachine.adapters.session.Session.next_deadline`: the session decides what the
  open, close, linger and keepalive timeouts do, and when TCP is closed (RFC 6455 §7.1.1).
- :meth:`Loop.shutdown` (:meth:`Server.shutdown`) stops accepting and closes every connection
  with 1001.
- A server's port answers plain HTTP requests through :meth:`Handler.on_http` (a page, a
  health check); the ``origin_policy`` setting refuses upgrades from other origins (403).
- Settings: ``options=ServerOptions(...)`` / ``ClientOptions(...)``, or any of their
  settings by name.

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

import abc
import contextlib
import errno
import heapq
import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Self, TypeVar

from ..broadcast import prepare
from ..connection import Connection
from ..events import Handshake, HTTPRequest
from ..state import State
from ._common import ConnectionClosed, HTTPResponse, parse_url, upgrade_required
from .options import DEFAULT_CLOSE_TIMEOUT, FLUSH_BYTES, ClientOptions, ServerOptions, resolve
from .session import PongCallback, Session, SessionView

__all__ = ["Endpoint", "Handler", "Loop", "Peer", "Server", "Timer"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")  # what a timer's tick is called with: a Peer, an HTTP/2 stream

#: Connections accepted per wake-up of the listening socket (others wait for the next round).
MAX_ACCEPTS_PER_ROUND = 64
#: Small queued chunks are joined into one ``send`` of up to this many bytes.
COALESCE_SIZE = 256 * 1024

_CONNECTING = State.CONNECTING
_R = selectors.EVENT_READ
_W = selectors.EVENT_WRITE
_OPEN = State.OPEN
_now = time.monotonic
#: What ``connect_ex`` answers for a non-blocking connection under way.
_IN_PROGRESS = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}


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


class Handler:
    """The callbacks of a connection. Subclass it and override what you need.

    A :class:`Server` calls its handler for every connection it accepts; a connection opened
    with :meth:`Loop.connect` calls the handler given there. :meth:`on_http` and
    :meth:`on_handshake` concern the server role only.

    Every callback runs in the loop's thread and should not block. An exception in a
    callback is passed to :meth:`on_error` and the connection is closed with 1011.
    """

    def on_http(self, request: HTTPRequest) -> HTTPResponse | None:
        """Answer a plain HTTP request (not an upgrade); ``None`` (the default) answers 426
        Upgrade Required."""
        return upgrade_required(request)

    def on_handshake(self, peer: Peer, handshake: Handshake) -> HTTPResponse | None:
        """Decide on an upgrade whose origin passed: ``None`` accepts, a response refuses."""
        return None

    def on_open(self, peer: Peer) -> None:
        """The connection is open: messages may flow."""

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        """A message arrived: ``str`` for text, ``bytes`` for binary. With the ``stream``
        setting, each piece of a message (``peer.final`` tells the last)."""

    def on_close(self, peer: Peer, closed: ConnectionClosed) -> None:
        """An open connection ended (its TCP connection is closed); ``closed`` says how."""

    def on_error(self, peer: Peer, error: BaseException) -> None:
        """Something failed: a handshake the machine refused, a protocol violation by the
        peer, a timeout, an I/O error, an exception in a callback. By default it is logged.

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


class Endpoint(SessionView, abc.ABC):
    """What a :class:`Handler`'s callbacks get as ``peer``: one WebSocket on a :class:`Loop`,
    on a TCP connection (:class:`Peer`) or on an HTTP/2 stream
    (``wsmachine.adapters.http2.Stream``). The calls queue output in its session and have the
    loop write it. Use it from the loop's thread only."""

    __slots__ = ()

    session: Session
    _finished: bool

    @abc.abstractmethod
    def _service(self) -> None:
        """Write what the session holds and act on its new state."""

    def _idle(self) -> bool:
        """Whether calls no longer take effect (over, or not yet connected)."""
        return self._finished

    @property
    def closed(self) -> ConnectionClosed:
        """How the WebSocket ended (or stands): the Close frames each way and the error."""
        return self.session.closed()

    @property
    def open(self) -> bool:
        """Whether messages can be sent."""
        return self.session.can_send and not self._finished

    @property
    def done(self) -> bool:
        """Whether the WebSocket is over and the loop forgot it."""
        return self._finished

    def send(self, message: str | bytes | bytearray | memoryview) -> bool:
        """Queue a text (``str``) or binary message; ``False`` if the WebSocket is not open
        (the message is dropped: the peer is opening, closing or gone).

        Sent from :meth:`Handler.on_message`, a TCP peer's messages are written once the
        handler has had every message of that read (at once past
        :data:`~wsmachine.adapters.options.FLUSH_BYTES`): an echo costs one ``send()`` per
        read, not one per message."""
        if not self.open:
            return False
        self.session.send(message)
        self._sent(len(message))
        return True

    def _sent(self, size: int) -> None:
        """A message of ``size`` bytes (or characters) was queued: write it."""
        self._service()

    def ping(self, payload: bytes | None = None, on_pong: PongCallback | None = None) -> bool:
        """Queue a Ping (by default 4 random bytes); ``on_pong`` gets the round trip in
        seconds when its Pong arrives, or ``None`` if the connection ends first. ``False``
        if the WebSocket is not open."""
        if not self.open:
            return False
        self.session.ping(_now(), payload, on_pong)
        self._service()
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (no effect unless open); the transport ends when the
        peer answers, or after ``close_timeout``."""
        if self._idle():
            return
        self.session.close(_now(), code, reason)
        self._service()


class Peer(Endpoint):
    """One connection of a :class:`Loop`, in either role: accepted by a :class:`Server`, or
    opened by :meth:`Loop.connect`. Use it from the loop's thread only."""

    __slots__ = (
        "_addresses",
        "_connecting",
        "_finished",
        "_held",
        "_mask",
        "_pending",
        "_reported",
        "_timer",
        "_wbuf",
        "_woff",
        "address",
        "data",
        "final",
        "handler",
        "loop",
        "session",
        "sock",
    )

    def __init__(
        self, loop: Loop, sock: socket.socket, address: Any, session: Session, handler: Handler
    ) -> None:
        #: The loop (for an accepted connection, the :class:`Server`) that runs it.
        self.loop = loop
        self.sock = sock
        #: The other end's address: as ``socket.accept`` gave it, or the address connected to.
        self.address = address
        #: The session (and through it, ``session.conn``, the machine) of this connection.
        self.session = session
        #: The callbacks of this connection.
        self.handler = handler
        #: Free for the application.
        self.data: dict[str, Any] = {}
        #: Whether the message last given to :meth:`Handler.on_message` ended its message
        #: (always, unless the ``stream`` setting is on).
        self.final = True
        # Made when a write waits for the kernel, dropped when it is empty: an empty deque
        # takes 760 bytes, a fifth of what an idle connection costs.
        self._wbuf: deque[bytes] | None = None
        self._woff = 0
        self._pending = 0
        self._held = -1  # bytes sent during a delivery to the handler; -1 outside one
        self._mask = 0
        self._finished = False
        self._reported = False  # on_error was told why the connection never opened
        self._connecting = False  # client: the TCP connection is being made
        self._addresses: list[tuple[Any, ...]] = []  # client: addresses left to try
        self._timer: Timer | None = None

    def __repr__(self) -> str:
        role = "client" if self.client else "server"
        return f"<Peer {role} {self.address} {self.state.name}>"

    @property
    def conn(self) -> Connection:
        """The machine of this connection (``session.conn``)."""
        return self.session.conn

    @property
    def client(self) -> bool:
        """Whether this side is the client (the connection came from :meth:`Loop.connect`)."""
        return self.session.conn.client

    @property
    def buffered(self) -> int:
        """Bytes waiting in the write buffer."""
        return self._pending

    @property
    def paused(self) -> bool:
        """Whether reading is paused because the write buffer went above its high-water mark
        (it resumes below a quarter of it) or ``max_queue`` messages wait."""
        return (
            not self._finished
            and not self._connecting
            and self.session.may_receive
            and not self._mask & _R
        )

    def _service(self) -> None:
        self.loop._flush(self)

    def _sent(self, size: int) -> None:
        # Sent from on_message: written when the handler has had the read's messages (one
        # send() for an echo of 64 of them), or at once past FLUSH_BYTES.
        held = self._held
        if held >= 0:
            held += size
            if held < FLUSH_BYTES:
                self._held = held
                return
            self._held = 0
        self.loop._flush(self)

    def _idle(self) -> bool:
        return self._finished or self._connecting

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
        # Peers a broadcast queued to since the last flush: one flush each, at the end of
        # the step (as for the calls), however many broadcasts came in it.
        self._broadcast_peers: dict[Peer, None] = {}
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
        return self._call_at(_now() + delay, callback)

    def _call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        self._seq += 1
        timer = Timer(when, self._seq, callback)
        heapq.heappush(self._timers, timer)
        return timer

    def _rearm(
        self, timer: Timer | None, when: float | None, tick: Callable[[_T], None], owner: _T
    ) -> Timer | None:
        """The one timer of a session at its next deadline ``when`` (``None``: none), which
        calls ``tick(owner)``: ``timer`` itself when it fires then already, else a new one,
        the old one cancelled."""
        if timer is not None and not timer.cancelled:
            if timer.when == when:
                return timer  # the common case after a write: no callback is built
            timer.cancel()
        return None if when is None else self._call_at(when, partial(tick, owner))

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

        The message is framed once (:func:`wsmachine.broadcast.prepare`) and that frame
        queued on every server connection it fits as it is
        (:meth:`~wsmachine.Connection.send_prepared`: no extension, no fragmented message
        under way); the others frame it themselves. Each connection is written once, at the
        end of the loop's current step, however many broadcasts the step made.
        """
        prepared = prepare(message)
        due = self._broadcast_peers
        if not due:  # the first broadcast since the last flush: flush after this step
            self._calls.append(self._flush_all)
        count = 0
        for peer in self._peers:
            if peer is not exclude and peer.open:
                peer.session.send_prepared(prepared)
                due[peer] = None
                count += 1
        return count

    # -- opening connections --------------------------------------------------------------

    def connect(
        self,
        url: str,
        handler: Handler,
        *,
        options: ClientOptions | None = None,
        sock: socket.socket | None = None,
        **settings: Any,
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

        :param options: the settings (:class:`~wsmachine.adapters.options.ClientOptions`); keyword
            ``settings`` of the same names are laid over them.
        :param sock: a connected (or connecting) socket to use instead of connecting to the
            URL's host and port.
        :raises ValueError: not a ``ws://`` URL (``wss://`` needs TLS, which this adapter
            does not do: use the blocking or trio adapter), or bad settings.
        :raises OSError: the host name does not resolve.
        :raises RuntimeError: the loop is closed or shutting down.
        """
        resolved = resolve(ClientOptions, options, settings)
        target = parse_url(url)
        if target.secure:
            raise ValueError(
                f"{url!r}: the selector adapter does not do TLS (wss://); use "
                "wsmachine.adapters.blocking or wsmachine.adapters.trio"
            )
        if self._closed or self._stopping:
            raise RuntimeError("the loop is closed or shutting down")
        session = Session.client(resolved, target.host_header, target.resource, _now())
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
        peer = Peer(self, sock, address, session, handler)
        peer._addresses = addresses
        peer._connecting = True
        self._peers.add(peer)
        self._longest_close = max(self._longest_close, resolved.close_timeout)
        self._schedule(peer)  # the open timeout covers the TCP connection too
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
            delay = max(timers[0].when - _now(), 0.0)
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
        now = _now()
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
            options = peer.session.options
            longest = max(longest, options.close_timeout + options.linger_timeout)
            if peer.state is _CONNECTING:
                self._abort(peer, ConnectionAbortedError("the loop is shutting down"))
            else:
                peer.close(code, reason)
        self.call_later(longest, self._abort_all)

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
            thread.join(self._longest_close + 5 if timeout is None else timeout)

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

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            self.stop()
        self.close()

    # -- reading --------------------------------------------------------------------------

    def _read(self, peer: Peer) -> None:
        # Straight into the machine's receive buffer: no copy in, a large message lands once.
        session = peer.session
        view = session.get_buffer()
        try:
            nbytes = peer.sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return  # the next get_buffer() releases the view
        except OSError as exc:
            self._abort(peer, exc)
            return
        self._feed(peer, None, read_into=nbytes)

    def _feed(self, peer: Peer, data: bytes | None, *, read_into: int = 0) -> None:
        """Give ``data`` (``None``: the end of the stream), or the ``read_into`` bytes just
        read into the session's buffer, to the peer's session, with the handler's hooks for
        the opening request, and act on the outcome."""
        session = peer.session
        was_open, before = session.opened, session.error
        handler = peer.handler
        on_http = handler.on_http
        on_upgrade = lambda request: handler.on_handshake(peer, request)  # noqa: E731
        if read_into:
            hook_error = session.feed_into(
                read_into, _now(), on_http=on_http, on_upgrade=on_upgrade
            )
        else:  # bytes, or None (also a read of 0 bytes into the buffer): the end
            hook_error = session.feed(data, _now(), on_http=on_http, on_upgrade=on_upgrade)
        if hook_error is not None:
            self._guard(peer, handler.on_error, peer, hook_error)
        self._settle(peer, was_open, before)

    def _settle(self, peer: Peer, was_open: bool, before: BaseException | None) -> None:
        """Tell the handler what the session's last step changed (it opened, it failed),
        hand it the messages, and write."""
        session = peer.session
        if session.opened and not was_open:
            self._flush(peer)  # the 101 goes out before anything on_open sends
            self._guard(peer, peer.handler.on_open, peer)
        error = session.error
        if error is not before and error is not None and not peer._finished:
            if not session.opened:
                self._report(peer, error)  # it never opened: on_error, and no on_close
            elif getattr(error, "close_code", None) != 1006:  # the peer vanished: on_close
                self._guard(peer, peer.handler.on_error, peer, error)
        self._deliver(peer)
        if peer._connecting and session.should_close():
            self._finish(peer)  # the open timeout struck before the TCP connection
            return
        self._flush(peer)

    def _deliver(self, peer: Peer) -> None:
        """Hand the queued messages to the handler; the session learns it answered them."""
        session = peer.session
        on_message = peer.handler.on_message
        peer._held = 0  # what on_message sends waits for the flush after this (_settle)
        try:
            while not peer._finished:
                event = session.next_message()
                if event is None:
                    return
                peer.final = event.final
                self._guard(peer, on_message, peer, event.data)
        finally:
            peer._held = -1

    def _report(self, peer: Peer, error: BaseException | None) -> None:
        """Tell the handler why a connection that never opened failed (once)."""
        if not peer._reported and error is not None:
            peer._reported = True
            self._guard(peer, peer.handler.on_error, peer, error)

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
            elif peer.state is _CONNECTING and not peer._finished:
                peer._reported = True
                self._abort(peer, exc)
            return None

    # -- writing --------------------------------------------------------------------------

    def _flush(self, peer: Peer) -> None:
        """Move the session's output to the write buffer, write, and act on the new state."""
        if peer._finished or peer._connecting:
            return
        data = peer.session.data_to_send()
        if data:
            if peer._wbuf is None:
                self._send_now(peer, data)
            else:
                peer._wbuf.append(data)
                peer._pending += len(data)
                self._write(peer)
        self._after_io(peer)

    def _send_now(self, peer: Peer, data: bytes) -> bool:
        """Send ``data`` on a peer with nothing buffered, and buffer only what the kernel
        did not take (no buffer made and dropped for every message); whether all went."""
        try:
            sent = peer.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._abort(peer, exc)
            return False
        if sent == len(data):
            return True
        peer._wbuf = deque((data,))
        peer._woff = sent
        peer._pending += len(data) - sent
        return False

    def _flush_all(self) -> None:
        """Flush the peers a broadcast queued to (see :meth:`broadcast`)."""
        peers, self._broadcast_peers = self._broadcast_peers, {}
        for peer in peers:
            # The usual case in short: an OPEN connection with nothing buffered whose frames
            # the kernel takes at once. Sending changed nothing else _after_io looks at (the
            # state, the deadlines, the reading), so it is skipped; any other case is a flush.
            if (
                peer._wbuf is None
                and not peer._finished
                and not peer._connecting
                and peer.session.conn.state is _OPEN
            ):
                data = peer.session.data_to_send()
                if data and not self._send_now(peer, data):
                    self._after_io(peer)  # watch for writability, or the end of a failed one
            else:
                self._flush(peer)

    def _write(self, peer: Peer) -> None:
        buf = peer._wbuf
        if buf is None:
            return
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
        peer._wbuf = None  # all written

    def _after_io(self, peer: Peer) -> None:
        """Ask the session what the transport does next: end the stream, close the socket,
        read or not; and when to wake it."""
        if peer._finished:
            return
        session = peer.session
        options = session.options
        if peer._pending > options.write_limit:
            self._abort(
                peer,
                BufferError(
                    f"write buffer of {peer._pending} bytes is over the limit of "
                    f"{options.write_limit}: the peer does not read"
                ),
            )
            return
        if not peer._pending:
            if session.should_send_eof():
                try:
                    peer.sock.shutdown(socket.SHUT_WR)
                except OSError as exc:
                    session.abort(exc)
                session.eof_sent(_now())
            if session.should_close():
                self._finish(peer)
                return
        mask = 0
        if session.reading():
            # Back-pressure between the marks: stop above the high one, resume below a
            # quarter of it.
            high = options.write_high_water
            mark = high if peer._mask & _R else high // 4
            if peer._pending <= mark or not session.may_receive:
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
        self._schedule(peer)

    # -- time -----------------------------------------------------------------------------

    def _schedule(self, peer: Peer) -> None:
        """Wake the session at its next deadline (one timer per connection)."""
        peer._timer = self._rearm(peer._timer, peer.session.next_deadline(), self._tick, peer)

    def _tick(self, peer: Peer) -> None:
        if peer._finished:
            return
        peer._timer = None
        session = peer.session
        was_open, before = session.opened, session.error
        session.tick(_now())
        self._settle(peer, was_open, before)

    # -- closing --------------------------------------------------------------------------

    def _abort(self, peer: Peer, error: BaseException) -> None:
        if peer._finished:
            return
        peer.session.abort(error)
        if not peer.session.opened:
            self._report(peer, error)
        self._finish(peer)

    def _finish(self, peer: Peer) -> None:
        """Close the socket and forget the connection; tell the handler if it was open."""
        if peer._finished:
            return
        peer._finished = True
        if peer._timer is not None:
            peer._timer.cancel()
        self._peers.discard(peer)  # first: once the other end sees the close, it is gone
        if peer._mask:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(peer.sock)
            peer._mask = 0
        peer.sock.close()
        peer._wbuf = None
        peer._pending = 0
        if peer.session.opened:
            self._guard(None, peer.handler.on_close, peer, peer.session.closed())


class Server(Loop):
    """A WebSocket server: a :class:`Loop` that also accepts connections.

    It can open client connections too, with :meth:`~Loop.connect`, on the same thread.

    :param handler: the callbacks of the connections it accepts.
    :param host: the address to listen on.
    :param port: the port; 0 picks a free one (see :attr:`address`).
    :param options: the settings of every connection
        (:class:`~wsmachine.adapters.options.ServerOptions`); keyword ``settings`` of the same names
        are laid over them, e.g. ``max_message_size=...``, ``origin_policy=...``.
    :param backlog: the listen backlog.
    :param sock: a listening socket to use instead of binding ``host`` and ``port``.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        options: ServerOptions | None = None,
        backlog: int = 128,
        sock: socket.socket | None = None,
        **settings: Any,
    ) -> None:
        self.handler = handler
        #: The settings of every connection it accepts.
        self.options: ServerOptions = resolve(ServerOptions, options, settings)
        if sock is None:
            sock = socket.create_server((host, port), backlog=backlog)
        try:
            super().__init__()
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self._listener: socket.socket | None = sock
        #: The listening address, e.g. ``("127.0.0.1", 54321)``.
        self.address: tuple[Any, ...] = sock.getsockname()
        #: The listening port.
        self.port = int(self.address[1])
        self._selector.register(sock, _R, None)
        self._longest_close = self.options.close_timeout

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
            peer = Peer(self, sock, address, Session.server(self.options, _now()), self.handler)
            self._peers.add(peer)
            peer._mask = _R
            self._selector.register(sock, _R, peer)
            self._schedule(peer)
