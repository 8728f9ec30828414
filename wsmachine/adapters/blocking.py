"""WebSockets on blocking sockets: a client, :func:`connect`, and a server, :func:`serve`,
with a thread per connection.

Each :class:`WebSocket` has an I/O thread that feeds its
:class:`~wsmachine.adapters.session.Session`, writes what the session says, sleeps until its
next deadline, and queues the messages for :meth:`WebSocket.recv`. Any thread may send; one
thread should receive.

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

import concurrent.futures
import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..events import Binary, Text
from ._common import ConnectionClosed, HandshakeError, HTTPHandler, parse_url
from .options import GRACE_SECONDS, ClientOptions, ServerOptions, resolve
from .session import Session, SessionView

__all__ = ["Server", "WebSocket", "connect", "serve"]

logger = logging.getLogger(__name__)


_now = time.monotonic


class WebSocket(SessionView):
    """A WebSocket connection on a blocking socket, in either role.

    Made by :func:`connect` or handed to a :func:`serve` handler; not built directly.
    ``send``, ``ping`` and ``close`` may be called from any thread; ``recv`` and iteration
    from one thread at a time.
    """

    def __init__(
        self,
        sock: socket.socket,
        session: Session,
        http_handler: HTTPHandler | None = None,
    ) -> None:
        self._sock = sock
        #: The session of this connection (and through it, ``session.conn``, the machine).
        self.session = session
        self._http_handler = http_handler
        #: The peer's address.
        self.remote_address: Any = None
        with contextlib.suppress(OSError):
            self.remote_address = sock.getpeername()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # messages, the opening, the end
        self._write_lock = threading.Lock()
        self._out: deque[bytes] = deque()
        self._done = False  # the I/O thread ended and the socket is closed
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        session.wake = self._output_due
        self._thread = threading.Thread(target=self._run, name="wsmachine-io", daemon=True)
        self._thread.start()

    # -- information ----------------------------------------------------------------------

    @property
    def closed(self) -> ConnectionClosed | None:
        """How the connection closed, once its socket is closed; ``None`` before."""
        return self.session.closed() if self._done else None

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the socket is closed; ``False`` on timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- sending --------------------------------------------------------------------------

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message; return once it is written (or, while
        the peer's Close waits for this side's replies, queued before the Close).

        :raises ConnectionClosed: the connection is closing or closed.
        """
        with self._lock:
            self.session.send(message)
            self._take_output()
        self._drain()

    def ping(self, payload: bytes | None = None) -> concurrent.futures.Future[float]:
        """Send a Ping; the future's result is the round trip in seconds when its Pong
        arrives; it fails with :class:`ConnectionClosed` if the connection ends first.

        :param payload: up to 125 bytes; by default 4 random bytes.
        :raises ConnectionClosed: the connection is closing or closed.
        """
        future: concurrent.futures.Future[float] = concurrent.futures.Future()

        def answered(latency: float | None) -> None:
            if latency is None:
                future.set_exception(self.session.closed())
            else:
                future.set_result(latency)

        with self._lock:
            self.session.ping(_now(), payload, answered)
            self._take_output()
        self._drain()
        return future

    def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        """Close the connection: send a Close, wait for the peer's and for the TCP close, at
        most ``timeout`` seconds (by default the session's ``close_timeout``), then drop the
        socket. Messages not yet read stay readable with :meth:`recv`. Never raises for a
        connection already closing or closed.
        """
        self._start_close(code, reason)
        options = self.session.options
        limit = options.close_wait + GRACE_SECONDS
        self._thread.join(limit if timeout is None else timeout)
        if self._thread.is_alive():
            with self._lock:
                self.session.abort(TimeoutError("close() timed out"))
            self._wake()
            self._thread.join(GRACE_SECONDS)

    def _start_close(self, code: int, reason: str) -> None:
        with self._lock:
            self.session.close(_now(), code, reason)
            self._take_output()
        self._drain()
        self._wake()

    # -- receiving ------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary (with
        ``stream=True``, the next piece of one: see :meth:`recv_event`).

        :raises TimeoutError: none arrived within ``timeout`` seconds.
        :raises ConnectionClosed: the connection closed and no message is left.
        """
        return self.recv_event(timeout).data

    def recv_event(self, timeout: float | None = None) -> Text | Binary:
        """Return the next :class:`~wsmachine.Text` or :class:`~wsmachine.Binary` event; its
        ``final`` flag marks the last piece of a message when the ``stream`` option is on.

        :raises TimeoutError: none arrived within ``timeout`` seconds.
        :raises ConnectionClosed: the connection closed and no message is left.
        """
        deadline = None if timeout is None else _now() + timeout
        session = self.session
        with self._cond:
            while (event := session.take_message(self._done)) is None:
                left = None if deadline is None else deadline - _now()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no message within {timeout} s")
                self._cond.wait(left)
            return event

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

    def __exit__(self, *exc_info: object) -> None:
        self.close(1000 if exc_info[0] is None else 1011)

    # -- the opening handshake ------------------------------------------------------------

    def _wait_open(self) -> None:
        """Wait for the opening handshake to end; raise if it failed."""
        session = self.session
        with self._cond:
            while not session.opened and session.handshake_error() is None and not self._done:
                self._cond.wait()
            error = session.handshake_error()
        if error is not None:
            raise error

    # -- the I/O thread -------------------------------------------------------------------

    def _output_due(self) -> None:
        """The session may release output (recv() took a message); lock held."""
        self._take_output()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed
            self._wake_w.send(b"\0")

    def _take_output(self) -> None:
        """Move the session's output to the write queue; lock held."""
        data = self.session.data_to_send()
        if data:
            self._out.append(data)

    def _drain(self) -> None:
        """Write the queue in order, from whichever thread gets the write lock first."""
        with self._write_lock:
            while True:
                with self._lock:
                    if not self._out:
                        return
                    data = b"".join(self._out)
                    self._out.clear()
                try:
                    self._sock.sendall(data)
                except OSError as exc:
                    with self._lock:
                        self.session.abort(exc)
                        self._out.clear()
                    self._wake()
                    return

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(self._wake_r, selectors.EVENT_READ)
            self._loop(selector)
        except Exception as exc:  # never let the I/O thread die silently
            logger.exception("the I/O thread failed")
            with self._lock:
                self.session.abort(exc)
        finally:
            selector.close()
            with contextlib.suppress(OSError):
                self._sock.close()
            self._wake_r.close()
            self._wake_w.close()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _loop(self, selector: selectors.BaseSelector) -> None:
        sock = self._sock
        session = self.session
        watching = False
        while True:
            with self._lock:
                session.tick(_now())
                self._take_output()
            self._drain()
            with self._lock:
                if not self._out and session.should_send_eof():
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                    session.eof_sent(_now())
                if session.should_close():
                    return
                reading = session.reading()
                deadline = session.next_deadline()
            if reading != watching:
                if reading:
                    selector.register(sock, selectors.EVENT_READ)
                else:
                    selector.unregister(sock)
                watching = reading
            timeout = None if deadline is None else max(deadline - _now(), 0.0)
            pending = reading and isinstance(sock, ssl.SSLSocket) and sock.pending()
            ready = [key.fileobj for key, _ in selector.select(0.0 if pending else timeout)]
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            if pending or sock in ready:
                self._read(sock)

    def _read(self, sock: socket.socket) -> None:
        session = self.session
        # Straight into the machine's receive buffer (only this thread receives, so the read
        # itself needs no lock): no copy in, a large message lands once.
        with self._lock:
            view = session.get_buffer()
        try:
            nbytes = sock.recv_into(view)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return  # the next get_buffer() releases the view
        except OSError as exc:
            with self._cond:
                session.abort(exc)
                self._cond.notify_all()
            return
        with self._cond:
            error = session.feed_into(nbytes, _now(), on_http=self._http_handler)
            if error is not None:
                logger.error("the HTTP handler failed", exc_info=error)
            self._take_output()
            self._cond.notify_all()


def connect(
    url: str,
    *,
    options: ClientOptions | None = None,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
    **settings: Any,
) -> WebSocket:
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``).

    :param options: the settings (:class:`~wsmachine.adapters.options.ClientOptions`); keyword
        ``settings`` of the same names are laid over them, e.g. ``max_message_size=...``,
        ``subprotocols=[...]``, ``ping_interval=20``.
    :param ssl_context: for ``wss://``; by default :func:`ssl.create_default_context`.
    :param sock: an already connected socket to use.
    :raises HandshakeError: the server refused the upgrade, answered wrongly, or too late.
    :raises OSError: the TCP connection failed (``TimeoutError`` on timeout).
    """
    options = resolve(ClientOptions, options, settings)
    target = parse_url(url)
    session = Session.client(options, target.host_header, target.resource, _now())
    if sock is None:
        sock = socket.create_connection((target.host, target.port), options.open_timeout)
    try:
        if target.secure:
            context = ssl_context if ssl_context is not None else ssl.create_default_context()
            sock.settimeout(options.open_timeout)
            sock = context.wrap_socket(sock, server_hostname=target.host)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    ws = WebSocket(sock, session)  # its I/O thread writes the upgrade request
    ws._wait_open()
    return ws


class Server:
    """A WebSocket server with a thread per connection; made by :func:`serve`.

    The handler gets an open :class:`WebSocket`; the connection is closed (1000) when it
    returns, or with 1011 if it raises.

    :param handler: called with each open connection, in its own thread.
    :param options: the settings (:class:`~wsmachine.adapters.options.ServerOptions`); keyword
        ``settings`` of the same names are laid over them.
    :param http_handler: answers plain HTTP requests (a page, a health check); ``None``
        from it, or no handler, answers 426 Upgrade Required.
    :param backlog: the listen backlog.
    :param sock: a listening socket to use instead of binding ``host`` and ``port``.
    """

    def __init__(
        self,
        handler: Callable[[WebSocket], None],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        options: ServerOptions | None = None,
        http_handler: HTTPHandler | None = None,
        backlog: int = 128,
        sock: socket.socket | None = None,
        **settings: Any,
    ) -> None:
        self.handler = handler
        #: The settings of every connection.
        self.options = resolve(ServerOptions, options, settings)
        self.http_handler = http_handler
        if sock is None:
            sock = socket.create_server((host, port), backlog=backlog)
        sock.setblocking(False)
        self._listener = sock
        #: The listening address.
        self.address: tuple[Any, ...] = sock.getsockname()
        #: The listening port.
        self.port = int(self.address[1])
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._websockets: set[WebSocket] = set()
        self._stopping = False
        self._shutdown: tuple[int, str] | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    @property
    def connections(self) -> frozenset[WebSocket]:
        """The connections alive now (opening, open or closing)."""
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
            thread.start()

    def _connection(self, sock: socket.socket, address: Any) -> None:
        ws = WebSocket(sock, Session.server(self.options, _now()), self.http_handler)
        with self._lock:
            self._websockets.add(ws)
            shutdown = self._shutdown
        try:
            try:
                ws._wait_open()
            except HandshakeError as exc:
                logger.debug("connection from %s did not open: %s", address, exc)
                ws.wait_closed()
                return
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
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                self._websockets.discard(ws)

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
            ws._start_close(code, reason)
        options = self.options
        deadline = _now() + options.close_wait + GRACE_SECONDS
        for ws in websockets:
            ws.wait_closed(max(deadline - _now(), 0.0))
        with self._lock:
            threads = list(self._threads)
        for thread in threads:  # handlers that ignore the close are left to end by themselves
            thread.join(max(deadline - _now(), 0.0) + GRACE_SECONDS)
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
            options = self.options
            limit = options.close_timeout + options.linger_timeout + 5
            self._thread.join(limit if timeout is None else timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
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
    ``options`` are those of :class:`Server`: ``options=ServerOptions(...)`` and any of its
    settings by name.
    """
    return Server(handler, host, port, **options)
