"""WebSockets on trio streams: a client, :func:`open_websocket`, and a server, :class:`Server`.

trio is optional: ``pip install wsmachine[trio]``. Only this module imports it.

Each :class:`WebSocket` runs its :class:`~wsmachine.adapters.session.Session` in three tasks:
a reader that feeds it (while it wants input), a writer that writes what it says and ends
the stream when it says, and a timer that wakes it at its next deadline. They run in a
nursery that :func:`open_websocket` and the server provide, so nothing outlives the
``async with`` block. Cancelling a task blocked in :meth:`WebSocket.recv` loses no message;
cancelling :meth:`WebSocket.send` before it returned drops the connection, since a frame
half written (or left for another task to write) cannot be taken back.

.. code-block:: python

    import trio
    from wsmachine.adapters.trio import open_websocket, serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def main():
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, echo, "127.0.0.1", 0)
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hello")
                print(await ws.recv())
            await server.shutdown()

    trio.run(main)
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from ..events import Binary, Text
from ._common import AsyncMessages, ConnectionClosed, HandshakeError, HTTPHandler, parse_url
from .options import GRACE_SECONDS, RECV_SIZE, ClientOptions, ServerOptions, resolve
from .session import Session, SessionView

__all__ = ["PongWaiter", "Server", "WebSocket", "connect", "open_websocket", "serve"]

logger = logging.getLogger(__name__)


_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class PongWaiter:
    """What :meth:`WebSocket.ping` returns: ``await waiter.wait()`` gives the round trip."""

    __slots__ = ("_event", "_latency", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session
        self._event = trio.Event()
        self._latency: float | None = None

    def _answered(self, latency: float | None) -> None:
        self._latency = latency
        self._event.set()

    async def wait(self) -> float:
        """The round trip in seconds, once the Pong arrived.

        :raises ConnectionClosed: the connection ended before it.
        """
        await self._event.wait()
        if self._latency is None:
            raise self._session.closed()
        return self._latency


class WebSocket(SessionView, AsyncMessages):
    """A WebSocket connection on a trio stream, in either role.

    Made by :func:`open_websocket`, :func:`connect` or given to a :class:`Server` handler;
    not built directly.
    """

    def __init__(
        self, stream: trio.abc.Stream, session: Session, http_handler: HTTPHandler | None = None
    ) -> None:
        self._stream = stream
        #: The session of this connection (and through it, ``session.conn``, the machine).
        self.session = session
        self._http_handler = http_handler
        self._send_lock = trio.Lock()  # data is taken from the session and written under it
        self._changed = trio.lowlevel.ParkingLot()  # every task waiting for the session
        self._io_scope = trio.CancelScope()  # the reader, the writer and the timer
        self._done = trio.Event()  # the I/O ended and the stream is closed
        session.wake = self._notify  # recv() took a message: reading or the held Close

    # -- information ----------------------------------------------------------------------

    @property
    def closed(self) -> ConnectionClosed | None:
        """How the connection closed, once the stream is closed; ``None`` before."""
        return self.session.closed() if self._done.is_set() else None

    async def wait_closed(self) -> None:
        """Wait until the stream is closed."""
        await self._done.wait()

    # -- sending --------------------------------------------------------------------------

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message; return once it is written (or, while
        the peer's Close waits for this side's replies, queued before the Close).
        Cancelling it before it returns drops the connection.

        :raises ConnectionClosed: the connection is closing or closed.
        """
        self.session.send(message)
        await self._write()

    async def ping(self, payload: bytes | None = None) -> PongWaiter:
        """Send a Ping; ``await (await ws.ping()).wait()`` gives the round trip in seconds.

        :param payload: up to 125 bytes; by default 4 random bytes.
        :raises ConnectionClosed: the connection is closing or closed.
        """
        waiter = PongWaiter(self.session)
        self.session.ping(trio.current_time(), payload, waiter._answered)
        await self._write()
        return waiter

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection: send a Close, wait for the peer's and for the end of the
        stream, at most the session's ``close_timeout`` (and a little more), then drop the
        stream. Messages not yet read stay readable with :meth:`recv`. Never raises for a
        connection already closing or closed; cancelling it drops the stream at once.
        """
        self._start_close(code, reason)
        options = self.session.options
        try:
            with trio.move_on_after(options.close_wait + GRACE_SECONDS):
                await self._done.wait()
        except BaseException:
            self._abort(ConnectionAbortedError("close() was cancelled"))
            raise
        if not self._done.is_set():
            self._abort(TimeoutError("close() timed out"))

    def _start_close(self, code: int, reason: str) -> None:
        self.session.close(trio.current_time(), code, reason)
        self._notify()

    # -- receiving ------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary (with
        ``stream=True``, the next piece of one: see :meth:`recv_event`). Use
        ``trio.fail_after`` for a timeout; a cancelled ``recv`` loses no message.

        :raises ConnectionClosed: the connection closed and no message is left.
        """
        return (await self.recv_event()).data

    async def recv_event(self) -> Text | Binary:
        """Return the next :class:`~wsmachine.Text` or :class:`~wsmachine.Binary` event; its
        ``final`` flag marks the last piece of a message when the ``stream`` option is on.

        :raises ConnectionClosed: the connection closed and no message is left.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        session = self.session
        while (event := session.take_message(self._done.is_set())) is None:
            await self._changed.park()
        return event

    # -- the I/O tasks --------------------------------------------------------------------

    def _notify(self) -> None:
        """The session changed: every waiting task looks again."""
        self._changed.unpark_all()

    def _abort(self, error: BaseException) -> None:
        """Drop the connection now: the session records ``error``, the I/O ends."""
        self.session.abort(error)
        self._io_scope.cancel()

    async def _wait_open(self) -> None:
        """Wait for the opening handshake to end; raise if it failed."""
        session = self.session
        while not session.opened and session.handshake_error() is None:
            await self._changed.park()
        error = session.handshake_error()
        if error is not None:
            raise error

    async def _write(self) -> None:
        """The application's write. Cancelling it drops the connection: its frame may be
        half written, or queued for another task to write; neither can be taken back."""
        try:
            await self._flush()
        except trio.Cancelled:
            self._abort(ConnectionAbortedError("a send was cancelled"))
            raise

    async def _flush(self) -> None:
        """Write what the session has, then end the stream if it says so. Taking the data
        under the lock keeps the order of every task's writes."""
        session = self.session
        stream = self._stream
        async with self._send_lock:
            try:
                while data := session.data_to_send():
                    await stream.send_all(data)
            except _BROKEN as exc:
                self._abort(exc)
                return
            if session.should_send_eof():
                if not isinstance(stream, trio.abc.HalfCloseableStream):
                    self._io_scope.cancel()  # no half close (TLS): close the stream
                    return
                with contextlib.suppress(*_BROKEN):
                    await stream.send_eof()
                session.eof_sent(trio.current_time())
                self._notify()  # the timer: the linger deadline
            if session.should_close():
                self._notify()  # the writer, if another task wrote the last bytes

    async def _run(self) -> None:
        """The connection's I/O, until the session says to close the stream."""
        session = self.session
        try:
            with self._io_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._timer)
                    await self._writer()
                    nursery.cancel_scope.cancel()
        except Exception as exc:  # never let the I/O end silently
            logger.exception("the connection's I/O failed")
            session.abort(exc)
        finally:
            if session.may_receive or session.can_send:  # cancelled from outside
                session.abort(ConnectionAbortedError("the connection's tasks were cancelled"))
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._stream)
            self._done.set()
            self._notify()

    async def _writer(self) -> None:
        session = self.session
        while True:
            await self._flush()
            if session.should_close():
                return
            await self._changed.park()

    async def _reader(self) -> None:
        session = self.session
        while True:
            if not session.reading():  # back-pressure, or the peer's stream ended
                await self._changed.park()
                continue
            try:
                data = await self._stream.receive_some(RECV_SIZE)
            except _BROKEN as exc:
                self._abort(exc)
                return
            error = session.feed(data, trio.current_time(), on_http=self._http_handler)
            if error is not None:
                logger.error("the HTTP handler failed", exc_info=error)
            self._notify()

    async def _timer(self) -> None:
        session = self.session
        while True:
            deadline = session.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline) as waited:
                await self._changed.park()
            if not waited.cancelled_caught:
                continue  # woken: the deadline may have moved
            session.tick(trio.current_time())
            if session.should_close():
                self._io_scope.cancel()  # a timeout: a write stuck on the peer must not wait
            self._notify()


async def connect(
    nursery: trio.Nursery,
    url: str,
    *,
    options: ClientOptions | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **settings: Any,
) -> WebSocket:
    """Open a WebSocket connection to ``url`` whose tasks run in ``nursery``; close it
    yourself (:func:`open_websocket` does both).

    :param options: the settings (:class:`~wsmachine.adapters.options.ClientOptions`); keyword
        ``settings`` of the same names are laid over them, e.g. ``max_message_size=...``,
        ``subprotocols=[...]``, ``ping_interval=20``.
    :param ssl_context: for ``wss://``; by default :func:`ssl.create_default_context`.
    :raises HandshakeError: the server refused the upgrade, answered wrongly, or too late.
    :raises OSError: the TCP connection failed (``TimeoutError`` after ``open_timeout``).
    """
    options = resolve(ClientOptions, options, settings)
    target = parse_url(url)
    session = Session.client(options, target.host_header, target.resource, trio.current_time())
    try:
        with trio.fail_after(options.open_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
    except trio.TooSlowError:
        raise TimeoutError(f"no TCP connection within {options.open_timeout} s") from None
    if target.secure:
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        # https_compatible: a peer that closes TCP without a TLS close_notify (most do, once
        # the Close frames are exchanged) ends the stream rather than breaking it.
        stream = trio.SSLStream(stream, context, server_hostname=target.host, https_compatible=True)
    ws = WebSocket(stream, session)
    nursery.start_soon(ws._run)  # it writes the upgrade request
    try:
        await ws._wait_open()
    except BaseException:
        ws._abort(ConnectionAbortedError("the opening handshake did not end"))
        raise
    return ws


@contextlib.asynccontextmanager
async def open_websocket(
    url: str,
    *,
    options: ClientOptions | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **settings: Any,
) -> AsyncIterator[WebSocket]:
    """``async with open_websocket(url) as ws:`` connect, and close on the way out (1000,
    or 1011 after an exception; at once when cancelled). The parameters are those of
    :func:`connect`; exceptions come out as themselves, not in an exception group.
    """
    try:
        async with trio.open_nursery() as nursery:
            ws = await connect(nursery, url, options=options, ssl_context=ssl_context, **settings)
            try:
                yield ws
            except Exception:
                with trio.CancelScope(shield=True):
                    await ws.close(1011, "internal error")
                raise
            except BaseException:  # cancelled, KeyboardInterrupt...: drop the connection
                ws._abort(ConnectionAbortedError("cancelled"))
                raise
            await ws.close()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class Server:
    """A WebSocket server on trio: one task per connection, the handler awaited in it.

    Start it with ``await nursery.start(server.run)`` (or :func:`serve`); the value started
    is the server itself, with ``port`` set. The connection is closed (1000) when the
    handler returns, or with 1011 if it raises.

    :param handler: awaited with each open connection.
    :param options: the settings (:class:`~wsmachine.adapters.options.ServerOptions`); keyword
        ``settings`` of the same names are laid over them.
    :param http_handler: answers plain HTTP requests (a page, a health check); ``None``
        from it, or no handler, answers 426 Upgrade Required; 500 if it raises.
    """

    def __init__(
        self,
        handler: Callable[[WebSocket], Awaitable[None]],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        options: ServerOptions | None = None,
        http_handler: HTTPHandler | None = None,
        **settings: Any,
    ) -> None:
        self.handler = handler
        self.host = host
        #: The listening port (set by :meth:`run` when 0 was asked).
        self.port = port
        #: The settings of every connection.
        self.options = resolve(ServerOptions, options, settings)
        self.http_handler = http_handler
        self._connections: set[WebSocket] = set()
        self._shutdown: tuple[int, str] | None = None
        self._accepting = trio.CancelScope()
        self._everything = trio.CancelScope()
        self._stopped = trio.Event()

    @property
    def connections(self) -> frozenset[WebSocket]:
        """The connections alive now (opening, open or closing)."""
        return frozenset(self._connections)

    async def run(self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until :meth:`shutdown` (or cancellation)."""
        try:
            with self._everything:
                listeners = await trio.open_tcp_listeners(self.port, host=self.host)
                self.port = int(listeners[0].socket.getsockname()[1])
                async with trio.open_nursery() as nursery:
                    with self._accepting:
                        task_status.started(self)
                        await trio.serve_listeners(
                            self._connection, listeners, handler_nursery=nursery
                        )
        finally:
            self._stopped.set()

    async def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, close every connection with ``code`` (waiting at most the
        session's close and linger timeouts), then end :meth:`run`."""
        if self._shutdown is None:
            self._shutdown = (code, reason)
        self._accepting.cancel()
        websockets = list(self._connections)
        for ws in websockets:  # send every Close first, then wait for all of them
            ws._start_close(code, reason)
        options = self.options
        with trio.move_on_after(options.close_wait + GRACE_SECONDS):
            for ws in websockets:
                await ws.wait_closed()
        self._everything.cancel()  # handlers that ignore the close
        await self._stopped.wait()

    async def _connection(self, stream: trio.abc.Stream) -> None:
        ws = WebSocket(stream, Session.server(self.options, trio.current_time()), self.http_handler)
        self._connections.add(ws)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws._run)
                await self._serve(ws)
        finally:
            self._connections.discard(ws)

    async def _serve(self, ws: WebSocket) -> None:
        try:
            await ws._wait_open()
        except HandshakeError as exc:
            logger.debug("a connection did not open: %s", exc)
            return  # the session answers and ends it
        if self._shutdown is not None:  # it opened after the shutdown took its list
            ws._start_close(*self._shutdown)
        code, reason = 1000, ""
        try:
            await self.handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("the handler failed on a connection")
            code, reason = 1011, "internal error"
        await ws.close(code, reason)


async def serve(
    handler: Callable[[WebSocket], Awaitable[None]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Run a :class:`Server`: ``server = await nursery.start(serve, handler, host, port)``;
    ``options`` are those of :class:`Server` (``options=ServerOptions(...)``, ``http_handler``
    and any setting by name)."""
    await Server(handler, host, port, **options).run(task_status=task_status)
