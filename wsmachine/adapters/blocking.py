"""WebSockets on blocking sockets: a client, :func:`connect`, and a server, :func:`serve`,
with a thread per connection.

Each :class:`WebSocket` has a reader thread that feeds the machine, answers Pings (the
machine queues the Pongs), runs the keepalive and close timers, and queues the messages for
:meth:`WebSocket.recv`. Any thread may send; one thread should receive.

.. code-block:: python

    from wsmachine.adapters.blocking import connect

    with connect("ws://127.0.0.1:8765/") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))

.. code-block:: python

    from wsmachine.adapters.blocking import serve

    def echo(ws):
        for message in ws:      # ends when the client closes
            ws.send(message)

    with serve(echo, "127.0.0.1", 8765) as server:
        server.serve_forever()
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from ..connection import DEFAULT_MAX_MESSAGE_SIZE, ClientConnection, Connection, ServerConnection
from ..events import (
    Accepted,
    Binary,
    Close,
    Event,
    Handshake,
    HTTPRequest,
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
    HandshakeError,
    HTTPHandler,
    OriginCheck,
    forbidden_origin,
    handshake_error,
    parse_url,
    upgrade_required,
)

__all__ = ["Server", "WebSocket", "connect", "serve"]

logger = logging.getLogger("wsmachine.adapters.blocking")

#: Bytes asked of one ``recv``.
RECV_SIZE = 256 * 1024
#: After our FIN, how long to wait for the peer's, at most.
LINGER_SECONDS = 2.0
#: Upper bound on reads during an opening handshake.
MAX_HANDSHAKE_READS = 10_000

_OPEN = State.OPEN


class WebSocket:
    """An open WebSocket connection on a blocking socket, in either role.

    Made by :func:`connect` or handed to a :func:`serve` handler; not built directly.
    ``send``, ``ping`` and ``close`` may be called from any thread; ``recv`` and iteration
    from one thread at a time.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: Connection,
        *,
        handshake: Handshake | None = None,
        accepted: Accepted | None = None,
        subprotocol: str | None = None,
        early_events: Sequence[Event] = (),
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        ping_interval: float | None = None,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        max_queue: int = 16,
    ) -> None:
        self._sock = sock
        self._conn = conn
        #: Server side: the client's upgrade request.
        self.handshake = handshake
        #: Client side: the server's answer.
        self.accepted = accepted
        #: The subprotocol in use, or ``None``.
        self.subprotocol = subprotocol
        #: The peer's address.
        self.remote_address: Any = None
        with contextlib.suppress(OSError):
            self.remote_address = sock.getpeername()
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_queue = max(1, max_queue)
        self._record = CloseRecord()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._out: deque[bytes] = deque()
        self._messages: deque[str | bytes] = deque()
        self._pings: OrderedDict[bytes, threading.Event] = OrderedDict()
        self._closing = False  # close() was called: the reader stops waiting for recv()
        self._done = False  # the reader ended and the socket is closed
        self._close_deadline: float | None = None
        self._next_ping = time.monotonic() + ping_interval if ping_interval is not None else None
        self._pong_deadline: float | None = None
        self._keepalive_payload = b""
        with self._lock:
            self._handle(early_events, True)
            self._queue_output()
        self._drain(wait=True)
        self._reader = threading.Thread(target=self._run, name="wsmachine-reader", daemon=True)
        self._reader.start()

    # -- information ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The machine's state."""
        return self._conn.state

    @property
    def closed(self) -> ConnectionClosed | None:
        """How the connection closed, once its socket is closed; ``None`` before."""
        return self._record.exception() if self._done else None

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the socket is closed; ``False`` on timeout."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    # -- sending --------------------------------------------------------------------------

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message; return once it is written to the socket.

        :raises ConnectionClosed: the connection is closing or closed.
        """
        with self._lock:
            if self._conn.state is not _OPEN or self._done:
                raise self._record.exception()
            if isinstance(message, str):
                self._conn.send_text(message)
            else:
                self._conn.send_binary(message)
            self._queue_output()
        self._drain(wait=True)

    def ping(self, payload: bytes | None = None) -> threading.Event:
        """Send a Ping; the returned event is set when its Pong arrives.

        :param payload: up to 125 bytes; by default 4 random bytes.
        :raises ConnectionClosed: the connection is closing or closed.
        """
        if payload is None:
            payload = os.urandom(4)
        waiter = threading.Event()
        with self._lock:
            if self._conn.state is not _OPEN or self._done:
                raise self._record.exception()
            self._conn.ping(payload)
            self._pings[payload] = waiter
            self._queue_output()
        self._drain(wait=True)
        return waiter

    def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        """Close the connection: send a Close, wait for the peer's and for the TCP close.

        Returns at once if already closed; waits at most ``timeout`` seconds (by default
        ``close_timeout``), after which the socket is dropped. Messages that arrive meanwhile
        can still be read with :meth:`recv`. Never raises for a connection already closing.
        """
        self._start_close(code, reason)
        wait = self.close_timeout + LINGER_SECONDS if timeout is None else timeout
        self._reader.join(wait)
        if self._reader.is_alive():  # the reader honours the timers; this is a last resort
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._reader.join(1.0)

    def _start_close(self, code: int, reason: str) -> None:
        with self._lock:
            self._closing = True
            if self._conn.state is _OPEN and not self._done:
                self._record.sent(code, reason)
                self._conn.close(code, reason)
                self._queue_output()
            self._cond.notify_all()
        self._drain(wait=True)

    # -- receiving ------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        :raises TimeoutError: none arrived within ``timeout`` seconds.
        :raises ConnectionClosed: the connection closed and no message is left.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._messages:
                if self._done or self._conn.state is State.CLOSED:
                    raise self._record.exception()
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"no message within {timeout} s")
                    self._cond.wait(left)
            message = self._messages.popleft()
            self._cond.notify_all()
            return message

    def __iter__(self) -> Iterator[str | bytes]:
        """Yield messages until the connection closes; a clean close (1000, 1001) ends the
        loop, any other raises :class:`ConnectionClosed`."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as closed:
                if closed.ok:
                    return
                raise

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(1000 if exc_type is None else 1011)

    # -- the reader thread -----------------------------------------------------------------

    def _handle(self, events: Sequence[Event], was_open: bool) -> None:
        """Act on the machine's events; called with the lock held."""
        for event in events:
            if isinstance(event, Text | Binary):
                self._messages.append(event.data)
            elif isinstance(event, Pong):
                if event.payload == self._keepalive_payload and self._pong_deadline is not None:
                    self._pong_deadline = None
                    if self.ping_interval is not None:
                        self._next_ping = time.monotonic() + self.ping_interval
                if event.payload in self._pings:
                    # A Pong answers its Ping and every earlier one (RFC 6455 §5.5.3).
                    while self._pings:
                        payload, waiter = self._pings.popitem(last=False)
                        waiter.set()
                        if payload == event.payload:
                            break
            elif isinstance(event, Close):
                self._record.received(event, was_open)
        if self._close_deadline is None and self._conn.close_expected():
            self._close_deadline = time.monotonic() + self.close_timeout
        if events:
            self._cond.notify_all()

    def _queue_output(self) -> None:
        """Move the machine's output to the write queue; called with the lock held."""
        data = self._conn.data_to_send()
        if data:
            self._out.append(data)

    def _drain(self, *, wait: bool) -> None:
        """Write the queue in order. With ``wait=False`` (the reader), leave it to a thread
        that is writing already; that thread checks the queue again after it is done."""
        while True:
            if not self._write_lock.acquire(blocking=wait):
                return
            try:
                while True:
                    with self._lock:
                        if not self._out:
                            break
                        data = b"".join(self._out)
                        self._out.clear()
                    try:
                        self._sock.sendall(data)
                    except OSError as exc:
                        with self._lock:
                            if self._conn.state is not State.CLOSED:  # else: closed meanwhile
                                self._record.failed(exc)
                            self._out.clear()
                        with contextlib.suppress(OSError):
                            self._sock.shutdown(socket.SHUT_RDWR)
                        return
            finally:
                self._write_lock.release()
            with self._lock:
                if not self._out:
                    return

    def _deadline(self) -> float | None:
        candidates = [
            d for d in (self._close_deadline, self._next_ping, self._pong_deadline) if d is not None
        ]
        return min(candidates) if candidates else None

    def _on_timers(self) -> bool:
        """Run what is due; ``False`` when the connection must be dropped now."""
        now = time.monotonic()
        with self._lock:
            if self._close_deadline is not None and now >= self._close_deadline:
                if self._conn.state is not State.CLOSED or not self._conn.client:
                    self._record.failed(
                        TimeoutError(f"the closing handshake took over {self.close_timeout} s")
                    )
                return False
            if self._pong_deadline is not None and now >= self._pong_deadline:
                self._pong_deadline = None
                self._record.failed(
                    TimeoutError(f"no Pong within {self.ping_timeout} s of a keepalive Ping")
                )
                if self._conn.state is _OPEN:
                    self._record.sent(1011, "keepalive ping timeout")
                    self._conn.close(1011, "keepalive ping timeout")
            elif self._next_ping is not None and now >= self._next_ping:
                self._next_ping = None
                if self._conn.state is _OPEN:
                    self._keepalive_payload = os.urandom(4)
                    self._conn.ping(self._keepalive_payload)
                    self._pong_deadline = now + self.ping_timeout
            if self._close_deadline is None and self._conn.close_expected():
                self._close_deadline = now + self.close_timeout
            self._queue_output()
        self._drain(wait=False)
        return True

    def _run(self) -> None:
        sock = self._sock
        selector = selectors.DefaultSelector()
        try:
            selector.register(sock, selectors.EVENT_READ)
            self._read_loop(sock, selector)
        except Exception as exc:  # never let the reader die silently
            logger.exception("reader failed")
            with self._lock:
                self._record.failed(exc)
        finally:
            selector.close()
            with contextlib.suppress(OSError):
                sock.close()
            with self._cond:
                self._done = True
                for waiter in self._pings.values():
                    waiter.set()
                self._pings.clear()
                self._cond.notify_all()

    def _read_loop(self, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        conn = self._conn
        tcp_closing = False
        linger_deadline = float("inf")
        while True:
            if tcp_closing and time.monotonic() >= linger_deadline:
                return
            if not self._on_timers():
                return
            deadline = self._deadline()
            if tcp_closing:
                deadline = linger_deadline if deadline is None else min(deadline, linger_deadline)
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            with self._cond:
                if len(self._messages) >= self.max_queue and not self._closing:
                    # Back-pressure: let recv() catch up before reading more.
                    self._cond.wait(timeout if timeout is not None else 1.0)
                    continue
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
            if not pending and not selector.select(timeout):
                continue
            try:
                data = sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                continue
            except OSError as exc:
                with self._lock:
                    self._record.failed(exc)
                data = b""
            with self._lock:
                if tcp_closing:
                    if not data:
                        return
                    continue  # discard: we only wait for the peer's FIN
                was_open = conn.state is _OPEN
                events = conn.receive_data(data) if data else conn.receive_eof()
                self._handle(events, was_open)
                self._queue_output()
                ready_to_close = conn.should_close()
            # Once closing, wait for the writer: the Close must be out before our FIN.
            self._drain(wait=ready_to_close)
            if not data:
                return
            if ready_to_close:
                # RFC 6455 §7.1.1: the server closes TCP first; then read until the FIN.
                tcp_closing = True
                linger_deadline = time.monotonic() + min(LINGER_SECONDS, self.close_timeout)
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    return


def _linger_close(sock: socket.socket, seconds: float = LINGER_SECONDS) -> None:
    """Send our FIN, read (and drop) what still comes until the peer's FIN, then close."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + seconds
        for _ in range(10_000):
            left = end - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            if not sock.recv(65536):
                break
    with contextlib.suppress(OSError):
        sock.close()


def _read_handshake(
    sock: socket.socket, conn: Connection, deadline: float
) -> tuple[Event, list[Event]]:
    """Read until the machine reports the handshake's outcome; return it and the events
    that followed it."""
    for _ in range(MAX_HANDSHAKE_READS):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(RECV_SIZE)
        except TimeoutError:
            break
        events = conn.receive_data(data) if data else conn.receive_eof()
        sock.sendall(conn.data_to_send())  # the machine may have queued an error answer
        if events:
            return events[0], events[1:]
        if not data:
            break
    raise TimeoutError("the opening handshake did not finish in time")


def connect(
    url: str,
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
    max_queue: int = 16,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> WebSocket:
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``).

    :param subprotocols: subprotocols to offer; the chosen one is ``ws.subprotocol``.
    :param extensions: extensions to offer.
    :param origin: the ``Origin`` header, if any.
    :param extra_headers: more request headers.
    :param open_timeout: seconds for the TCP connection and the opening handshake.
    :param close_timeout: seconds for the closing handshake.
    :param ping_interval: seconds between keepalive Pings (``None``: none).
    :param ping_timeout: seconds to wait for a keepalive Pong, then close with 1011.
    :param max_queue: messages buffered before the reader stops reading.
    :param ssl_context: for ``wss://``; by default :func:`ssl.create_default_context`.
    :param sock: an already connected socket to use.
    :raises HandshakeError: the server refused the upgrade or answered wrongly.
    :raises OSError: the TCP connection failed (``TimeoutError`` on timeout).
    """
    target = parse_url(url)
    deadline = time.monotonic() + open_timeout
    if sock is None:
        sock = socket.create_connection((target.host, target.port), timeout=open_timeout)
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.secure:
            context = ssl_context if ssl_context is not None else ssl.create_default_context()
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock = context.wrap_socket(sock, server_hostname=target.host)
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
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(conn.data_to_send())
        try:
            outcome, early = _read_handshake(sock, conn, deadline)
        except TimeoutError as exc:
            raise HandshakeError(str(exc), error=exc) from None
        if not isinstance(outcome, Accepted):
            assert isinstance(outcome, Rejected | Close)
            raise handshake_error(outcome)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return WebSocket(
        sock,
        conn,
        accepted=outcome,
        subprotocol=outcome.subprotocol,
        early_events=early,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_queue=max_queue,
    )


class Server:
    """A WebSocket server with a thread per connection; made by :func:`serve`.

    The handler gets an open :class:`WebSocket`; the connection is closed (1000) when it
    returns, or with 1011 if it raises.
    """

    def __init__(
        self,
        handler: Callable[[WebSocket], None],
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
        http_handler: HTTPHandler | None = None,
        max_queue: int = 16,
        backlog: int = 128,
        sock: socket.socket | None = None,
    ) -> None:
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
        self.http_handler = http_handler
        self.max_queue = max_queue
        if sock is None:
            sock = socket.create_server((host, port), backlog=backlog)
        sock.setblocking(False)
        self._listener = sock
        self._address: tuple[Any, ...] = sock.getsockname()
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._websockets: set[WebSocket] = set()
        self._stopping = False
        self._shutdown: tuple[int, str] | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    @property
    def address(self) -> tuple[Any, ...]:
        """The listening address."""
        return self._address

    @property
    def port(self) -> int:
        """The listening port."""
        return int(self._address[1])

    @property
    def connections(self) -> frozenset[WebSocket]:
        """The open connections."""
        with self._lock:
            return frozenset(self._websockets)

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`; then close every connection and wait
        for their threads (at most ``close_timeout`` and a little more)."""
        selector = selectors.DefaultSelector()
        try:
            selector.register(self._listener, selectors.EVENT_READ, "listener")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping:
                for key, _ in selector.select():
                    if key.data == "wake":
                        break
                    self._accept()
        finally:
            selector.close()
            self._listener.close()
            self._close_all()
            self._done.set()

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept() failed: %s", exc)
                return
            sock.setblocking(True)
            thread = threading.Thread(
                target=self._connection, args=(sock, address), name="wsmachine-conn", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
                self._sockets.add(sock)
            thread.start()

    def _connection(self, sock: socket.socket, address: Any) -> None:
        ws = None
        try:
            ws = self._handshake(sock, address)
            if ws is None:
                return
            with self._lock:
                self._websockets.add(ws)
                shutdown = self._shutdown
            if shutdown is not None:  # it began after the shutdown took its list
                ws._start_close(*shutdown)
            try:
                self.handler(ws)
            except ConnectionClosed:
                pass
            except Exception:
                logger.exception("the handler failed on a connection from %s", address)
                ws.close(1011, "internal error")
            ws.close()
        except Exception as exc:
            logger.debug("connection from %s failed: %s", address, exc)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._threads.discard(threading.current_thread())
                self._sockets.discard(sock)
                if ws is not None:
                    self._websockets.discard(ws)

    def _handshake(self, sock: socket.socket, address: Any) -> WebSocket | None:
        conn = ServerConnection(
            subprotocols=self.subprotocols,
            extensions=self.extensions,
            max_message_size=self.max_message_size,
            max_frame_size=self.max_frame_size,
        )
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            request, _ = _read_handshake(sock, conn, time.monotonic() + self.open_timeout)
        except TimeoutError:
            logger.info("%s did not finish the opening handshake in time", address)
            sock.close()
            return None
        if isinstance(request, HTTPRequest):
            response = self.http_handler(request) if self.http_handler is not None else None
            if response is None:
                response = upgrade_required(request)
            conn.reject(
                request, status=response.status, headers=response.headers, body=response.body
            )
        elif isinstance(request, Handshake):
            if self.check_origin is not None and not self.check_origin(request):
                response = forbidden_origin(request)
                conn.reject(
                    request, status=response.status, headers=response.headers, body=response.body
                )
            else:
                early = conn.accept(request)  # the machine picks from self.subprotocols
                subprotocol = conn.subprotocol
                sock.settimeout(None)
                return WebSocket(
                    sock,
                    conn,
                    handshake=request,
                    subprotocol=subprotocol,
                    early_events=early,
                    close_timeout=self.close_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    max_queue=self.max_queue,
                )
        # A refusal, an HTTP answer, or a broken request the machine answered.
        sock.settimeout(self.close_timeout)
        with contextlib.suppress(OSError):
            sock.sendall(conn.data_to_send())
        _linger_close(sock, min(LINGER_SECONDS, self.close_timeout))
        return None

    def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting and close every connection with ``code``; callable from any
        thread. :meth:`serve_forever` returns once the connections are closed."""
        with self._lock:
            if self._shutdown is None:
                self._shutdown = (code, reason)
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _close_all(self) -> None:
        code, reason = self._shutdown or (1001, "server shutting down")
        with self._lock:
            websockets = list(self._websockets)
        for ws in websockets:  # send every Close first, then wait for all of them
            with contextlib.suppress(Exception):
                ws._start_close(code, reason)
        deadline = time.monotonic() + self.close_timeout + LINGER_SECONDS
        for ws in websockets:
            ws.wait_closed(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            threads = list(self._threads)
            sockets = list(self._sockets)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0) + 1.0)
        for sock in sockets:  # threads still stuck (a handler ignoring the close): unblock
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._wake_r.close()
        self._wake_w.close()

    def start(self) -> threading.Thread:
        """Run :meth:`serve_forever` in a new thread and return it (see :meth:`stop`)."""
        if self._thread is not None:
            raise RuntimeError("the server was already started")
        self._thread = threading.Thread(
            target=self.serve_forever, name="wsmachine-blocking", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        """:meth:`shutdown` and wait for :meth:`serve_forever` to return."""
        self.shutdown()
        if self._thread is not None:
            self._thread.join(
                self.close_timeout + LINGER_SECONDS + 5 if timeout is None else timeout
            )

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self.stop()
        elif not self._done.is_set():
            self._listener.close()
            self._stopping = True
            self._close_all()


def serve(
    handler: Callable[[WebSocket], None],
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Server:
    """Make a :class:`Server` listening on ``host``:``port`` (0: a free port).

    Run it with ``server.serve_forever()`` (or ``server.start()`` for a background thread);
    ``options`` are those of :class:`Server`.
    """
    return Server(handler, host, port, **options)
