"""WebSockets on asyncio: a client, :func:`connect`, and a server, :func:`serve`.

Each :class:`WebSocket` is an :class:`asyncio.BufferedProtocol`'s companion: the transport
reads into one buffer per connection, the bytes go to the connection's
:class:`~wsmachine.adapters.session.Session`, and what the session says is written, ended or
closed; one loop timer per connection wakes the session at its next deadline. Works on the
standard event loop and on uvloop.

.. code-block:: python

    import asyncio
    from wsmachine.adapters.asyncio import connect, serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def main():
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hello")
                print(await ws.recv())
                print("round trip:", await ws.ping())

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any, cast

from ..broadcast import prepare
from ..events import Binary, Handshake, HTTPRequest, Text
from ..state import State
from ._common import AsyncMessages, ConnectionClosed, HandshakeError, HTTPResponse, parse_url
from .options import FLUSH_BYTES, GRACE_SECONDS, ClientOptions, ServerOptions, resolve
from .session import Session, SessionView

__all__ = [
    "FLUSH_BYTES",
    "DeadlineTimer",
    "ProcessRequest",
    "Server",
    "WebSocket",
    "WriteBatch",
    "broadcast",
    "connect",
    "follow_reading",
    "run_batches",
    "serve",
    "write_parts",
]

logger = logging.getLogger(__name__)

_OPEN = State.OPEN


#: Answers a plain HTTP request (``None``: 426) or decides on an upgrade (``None`` accepts,
#: a response refuses), as a server's ``process_request``.
ProcessRequest = Callable[[Handshake | HTTPRequest], HTTPResponse | None]


class DeadlineTimer:
    """One loop timer at a session's next deadline, moved only when the deadline moves.

    :param loop: the event loop.
    :param callback: called at the deadline (then the timer is unset).
    """

    __slots__ = ("_callback", "_loop", "handle", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        #: The loop's handle while the timer is set.
        self.handle: asyncio.TimerHandle | None = None
        #: When it fires (``None``: unset).
        self.when: float | None = None

    def set(self, when: float | None) -> None:
        """Fire at ``when`` (``None``: not at all)."""
        if when == self.when:
            return
        self.cancel()
        self.when = when
        if when is not None:
            self.handle = self._loop.call_at(when, self._fire)

    def cancel(self) -> None:
        """Unset the timer."""
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.when = None

    def _fire(self) -> None:
        self.handle = self.when = None
        self._callback()


class WriteBatch:
    """Writes at the end of the loop's current iteration what an application sends in one
    step: an echo of 64 pipelined messages costs one ``write()`` system call, not 64.

    Past ``limit`` bytes of messages (:data:`~wsmachine.adapters.options.FLUSH_BYTES`) it
    writes at once, so that the transport's flow control (``pause_writing``) still sees a
    fast sender in time.

    :param loop: the event loop.
    :param flush: writes everything the session holds (the adapter's pump); it calls
        :meth:`written`.
    """

    __slots__ = ("_flush", "_loop", "_pending", "_scheduled", "limit")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        flush: Callable[[], None],
        limit: int = FLUSH_BYTES,
    ) -> None:
        self._loop = loop
        self._flush = flush
        self._pending = 0
        self._scheduled = False
        #: Bytes of messages after which :meth:`add` writes at once.
        self.limit = limit

    def add(self, size: int) -> None:
        """A message of ``size`` bytes was queued in the session: write it soon."""
        if self.add_shared(size):
            self._loop.call_soon(self.run)

    def add_shared(self, size: int) -> bool:
        """As :meth:`add`, for a caller that schedules one callback for many batches (a
        broadcast: one loop callback, not one per connection): ``True`` when this batch
        joins it, and the callback must then call :meth:`run`."""
        self._pending += size
        if self._pending >= self.limit:
            self._flush()
            return False
        if self._scheduled:
            return False
        self._scheduled = True
        return True

    def written(self) -> None:
        """Everything queued was written (by the pump, whatever called it)."""
        self._pending = 0

    def run(self) -> None:
        """Write now what was added: the callback :meth:`add` schedules."""
        self._scheduled = False
        # Not "if self._pending": an empty message adds 0 bytes and must go out too. A pump
        # that finds nothing to write costs little.
        self._flush()


def run_batches(batches: list[WriteBatch]) -> None:
    """Run every batch of ``batches`` (those :meth:`WriteBatch.add_shared` joined)."""
    for batch in batches:
        batch.run()


def write_parts(transport: asyncio.WriteTransport, parts: list[bytes]) -> None:
    """Write the session's pieces in order: one ``write`` for one piece, else one
    ``writelines``, which uvloop (and asyncio from Python 3.12) turns into a gathering
    ``sendmsg`` without joining them."""
    if len(parts) == 1:
        transport.write(parts[0])
    else:
        transport.writelines(parts)


def follow_reading(transport: asyncio.BaseTransport, reading: bool) -> None:
    """Resume or pause reading on ``transport``, as the session's ``reading()`` says."""
    with contextlib.suppress(RuntimeError, AttributeError):  # closing, or a test double
        if reading:
            transport.resume_reading()  # type: ignore[attr-defined]
        else:
            transport.pause_reading()  # type: ignore[attr-defined]


class _Protocol(asyncio.BufferedProtocol):
    """The transport's side: reads into the machine's own receive buffer.

    :meth:`~wsmachine.Connection.get_buffer` gives it: nothing is copied in, a large message
    lands once where it stays, and a connection with nothing pending holds no buffer (a
    read-sized one comes from, and goes back to, a pool the readers share), so idle
    connections stay small. (It replaced a receive buffer per thread handed to
    ``receive_data``, which copied every unfinished frame once more.)
    """

    __slots__ = ("_made", "_tls", "ws")

    def __init__(self, ws: WebSocket, made: Callable[[WebSocket], object] | None = None) -> None:
        self.ws = ws
        self._made = made  # a server's: start the connection's task
        self._tls = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Only once TLS is up: a failed TLS handshake never gets here, nor to connection_lost.
        self._tls = transport.get_extra_info("sslcontext") is not None
        # A cast, not an isinstance check: uvloop's transports do not derive from asyncio's.
        self.ws._made(cast(asyncio.Transport, transport))
        if self._made is not None:
            self._made(self.ws)

    def get_buffer(self, sizehint: int) -> memoryview:
        # The transport's hint is ignored: the machine sizes reads by what is pending.
        return self.ws.session.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.ws._received_into(nbytes)

    def eof_received(self) -> bool:
        self.ws._received(None)
        # We end our side ourselves, when the session says; TLS cannot half-close (and
        # asyncio logs a warning if we ask it to).
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws._lost(exc)

    def pause_writing(self) -> None:
        self.ws._can_write = False

    def resume_writing(self) -> None:
        self.ws._can_write = True
        self.ws._wake(self.ws._drained)


class WebSocket(SessionView, AsyncMessages):
    """A WebSocket connection on asyncio, in either role.

    Made by :func:`connect` or handed to a :func:`serve` handler; not built directly.
    """

    def __init__(
        self,
        session: Session,
        process_request: ProcessRequest | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        #: The session of this connection (and through it, ``session.conn``, the machine).
        self.session = session
        self._loop = loop
        self._process_request = process_request
        self._transport: asyncio.Transport | None = None
        # Both made when first needed, the timer dropped when unset: an idle connection
        # without keepalive holds neither.
        self._timer: DeadlineTimer | None = None
        self._batch_: WriteBatch | None = None
        self._reading = True
        self._can_write = True
        self._readable: asyncio.Future[None] | None = None  # recv() waiting
        self._drained: asyncio.Future[None] | None = None  # send() waiting for the buffer
        # Set when the handshake ends either way, then dropped (an idle connection holds
        # no future: see _wait_open).
        self._opened: asyncio.Future[None] | None = loop.create_future()
        self._done = False  # the transport is closed
        # One future per wait_closed() or close() waiting, made by _until_done: a waiter
        # cancelled cancels only its own, and an idle connection holds none.
        self._done_waiters: list[asyncio.Future[None]] | None = None
        #: The peer's address.
        self.remote_address: Any = None
        session.wake = self._pump  # recv() took a message: reading or the held Close

    @property
    def _batch(self) -> WriteBatch:
        batch = self._batch_
        if batch is None:
            batch = self._batch_ = WriteBatch(self._loop, self._flush)
        return batch

    # -- information ----------------------------------------------------------------------

    @property
    def request(self) -> Handshake | None:
        """Server side: the client's upgrade request (path, headers); ``handshake`` too."""
        return self.session.handshake

    @property
    def closed(self) -> ConnectionClosed | None:
        """How the connection closed, once its transport is closed; ``None`` before."""
        return self.session.closed() if self._done else None

    @property
    def close_code(self) -> int | None:
        """The peer's close code (1006 when none came), once closed; ``None`` before."""
        closed = self.closed
        return None if closed is None else closed.code

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason, once closed; ``None`` before."""
        closed = self.closed
        return None if closed is None else closed.reason

    async def wait_closed(self) -> None:
        """Wait until the transport is closed."""
        if not self._done:
            await self._until_done()

    def _until_done(self) -> asyncio.Future[None]:
        """A future of this caller's own, set when the transport is closed."""
        future = self._loop.create_future()
        if self._done:
            future.set_result(None)
        elif self._done_waiters is None:
            self._done_waiters = [future]
        else:
            waiters = self._done_waiters
            waiters[:] = [w for w in waiters if not w.done()]  # drop those cancelled
            waiters.append(future)
        return future

    # -- sending --------------------------------------------------------------------------

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message; wait while the transport's write buffer
        is above ``write_high_water``.

        :raises ConnectionClosed: the connection is closing or closed.
        """
        self.session.send(message)
        self._batch.add(len(message))
        while not self._can_write and not self._done:
            if self._drained is None or self._drained.done():
                self._drained = self._loop.create_future()
            # One future for every sender waiting; shielded, so that a cancelled send does
            # not cancel it under the others.
            await asyncio.shield(self._drained)

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a Ping (by default 4 random bytes) and return the round trip in seconds
        when its Pong arrives.

        :raises ConnectionClosed: the connection closed (or was closing) before the Pong.
        """
        answer: asyncio.Future[float | None] = self._loop.create_future()

        def answered(latency: float | None) -> None:
            if not answer.done():
                answer.set_result(latency)

        self.session.ping(self._loop.time(), payload, answered)
        self._pump()
        latency = await answer
        if latency is None:
            raise self.session.closed()
        return latency

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close: send a Close, wait for the peer's and for the end of the connection, at
        most ``close_timeout`` (then it is dropped). Messages not yet received stay
        readable with :meth:`recv`. Never raises for a connection already closing."""
        self.session.close(self._loop.time(), code, reason)
        self._pump()
        options = self.session.options
        limit = options.close_wait + GRACE_SECONDS
        if self._done:
            return
        try:
            await asyncio.wait_for(self._until_done(), limit)
        except TimeoutError:
            self._abort(TimeoutError("close() timed out"))

    # -- receiving ------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary (with the
        ``stream`` setting, the next piece of one: see :meth:`recv_event`). A cancelled
        ``recv`` loses no message.

        :raises ConnectionClosed: the connection closed and no message is left.
        """
        return (await self.recv_event()).data

    async def recv_event(self) -> Text | Binary:
        """Return the next :class:`~wsmachine.Text` or :class:`~wsmachine.Binary` event; its
        ``final`` flag marks the last piece of a message when ``stream`` is on.

        :raises ConnectionClosed: the connection closed and no message is left.
        """
        session = self.session
        while (event := session.take_message(self._done)) is None:
            if self._readable is None or self._readable.done():
                self._readable = self._loop.create_future()
            await asyncio.shield(self._readable)  # shared, as in send()
        return event

    # -- the transport's events -----------------------------------------------------------

    def _made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.remote_address = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=self.session.options.write_high_water)
        self._pump()  # a client's upgrade request

    def _received_into(self, nbytes: int) -> None:
        session = self.session
        hook = self._process_request
        error = session.feed_into(nbytes, self._loop.time(), on_http=hook, on_upgrade=hook)
        self._after_input(error)

    def _received(self, data: memoryview | None) -> None:
        session = self.session
        hook = self._process_request
        error = session.feed(data, self._loop.time(), on_http=hook, on_upgrade=hook)
        self._after_input(error)

    def _after_input(self, error: Exception | None) -> None:
        session = self.session
        if error is not None:
            logger.error("process_request failed", exc_info=error)
        if session.queued or not session.may_receive:
            self._wake(self._readable)
        self._pump()

    def _lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.session.abort(exc)
        elif not self.session.should_close():
            self.session.abort(ConnectionResetError("the connection was lost"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._done = True
        for future in (self._readable, self._drained, self._opened):
            self._wake(future)
        self._opened = None
        waiters, self._done_waiters = self._done_waiters, None
        for future in waiters or ():
            self._wake(future)

    def _wake(self, future: asyncio.Future[None] | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    def _abort(self, error: BaseException) -> None:
        self.session.abort(error)
        self._pump()

    # -- doing what the session says ------------------------------------------------------

    def _pump(self) -> None:
        """Write the session's output; end, close or pause the transport as it says; wake
        the session at its next deadline."""
        transport = self._transport
        if transport is None or self._done:
            return
        session = self.session
        if session.opened and self._opened is not None:
            self._wake(self._opened)
            self._opened = None
        if self._batch_ is not None:
            self._batch_.written()
        parts = session.data_to_send_parts()
        if parts:
            write_parts(transport, parts)
            self._check_write_limit(transport)
        if session.should_send_eof():
            try:
                if transport.can_write_eof():
                    transport.write_eof()  # after what is buffered
                else:
                    transport.close()
            except OSError as exc:  # the peer is gone already
                session.abort(exc)
            session.eof_sent(self._loop.time())
        if session.should_close():
            if session.aborted:
                transport.abort()
            else:
                transport.close()
            return
        reading = session.reading()
        if reading != self._reading:
            self._reading = reading
            follow_reading(transport, reading)
        deadline = session.next_deadline()
        timer = self._timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
        else:
            if timer is None:
                timer = self._timer = DeadlineTimer(self._loop, self._tick)
            timer.set(deadline)

    def _check_write_limit(self, transport: asyncio.Transport) -> bool:
        """Drop the connection if its write buffer is over ``write_limit`` (e.g. Pongs to a
        peer that does not read); whether it did."""
        size = transport.get_write_buffer_size()
        limit = self.session.options.write_limit
        if size <= limit:
            return False
        self.session.abort(BufferError(f"write buffer of {size} bytes over write_limit {limit}"))
        return True

    def _flush(self) -> None:
        """The :class:`WriteBatch`'s write: only the messages sent, while the connection is
        OPEN and opened (sending changes nothing else the pump looks at); else the pump."""
        session = self.session
        transport = self._transport
        if (
            session.conn.state is not _OPEN
            or self._opened is not None
            or transport is None
            or session.aborted
            or self._done
        ):
            self._pump()
            return
        self._batch.written()
        parts = session.data_to_send_parts()
        if parts:
            write_parts(transport, parts)
            if self._check_write_limit(transport):
                self._pump()  # close the transport

    def _tick(self) -> None:
        self.session.tick(self._loop.time())
        if self.session.queued or not self.session.may_receive:
            self._wake(self._readable)
        self._pump()
        if self.session.should_close() and not self.session.opened:
            self._wake(self._opened)
            self._opened = None

    async def _wait_open(self) -> None:
        opened = self._opened
        if opened is not None:
            await asyncio.shield(opened)
        error = self.session.handshake_error()
        if error is not None:
            raise error


class connect:  # noqa: N801 - used as a function: `await connect(...)`, `async with connect(...)`
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``):
    ``ws = await connect(url)``, or ``async with connect(url) as ws:`` to close it (1000, or
    1011 after an exception) on the way out.

    :param options: the settings (:class:`~wsmachine.adapters.options.ClientOptions`);
        keyword ``settings`` of the same names are laid over them.
    :param ssl: for ``wss://``; by default :func:`ssl.create_default_context`.
    :param sock: an already connected socket to use.
    :raises HandshakeError: the server refused the upgrade, answered wrongly, or too late.
    :raises OSError: the TCP connection failed.
    """

    def __init__(
        self,
        url: str,
        *,
        options: ClientOptions | None = None,
        ssl: ssl_module.SSLContext | None = None,
        sock: socket.socket | None = None,
        **settings: Any,
    ) -> None:
        self._url = url
        self._options = resolve(ClientOptions, options, settings)
        self._ssl = ssl
        self._sock = sock
        self._ws: WebSocket | None = None

    async def _open(self) -> WebSocket:
        options = self._options
        target = parse_url(self._url)
        loop = asyncio.get_running_loop()
        session = Session.client(options, target.host_header, target.resource, loop.time())
        ws = WebSocket(session)
        context = None
        if target.secure:
            context = self._ssl if self._ssl is not None else ssl_module.create_default_context()
        where: dict[str, Any] = (
            {"sock": self._sock}
            if self._sock is not None
            else {"host": target.host, "port": target.port}
        )
        if context is not None:
            where["server_hostname"] = target.host
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(ws), ssl=context, **where),
                options.open_timeout,
            )
        except TimeoutError as exc:
            raise HandshakeError(
                f"the TCP connection took over {options.open_timeout} s", error=exc
            ) from None
        try:
            await ws._wait_open()
        except asyncio.CancelledError:  # e.g. a timeout around connect(): leave nothing open
            ws._abort(ConnectionAbortedError("connect() was cancelled"))
            raise
        return ws

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._open().__await__()

    async def __aenter__(self) -> WebSocket:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._ws is not None
        await self._ws.close(1000 if exc_info[0] is None else 1011)


class Server:
    """A WebSocket server on asyncio: a task per open connection runs the handler; the
    connection is closed (1000) when it returns, or with 1011 if it raises. Made by
    :func:`serve`; ``async with serve(...) as server`` listens until the block ends.

    :param handler: ``async def handler(ws)``, called with each open connection.
    :param process_request: answers plain HTTP requests (``None``: 426) and may refuse
        upgrades (return a response; ``None`` accepts).
    :param options: the settings (:class:`~wsmachine.adapters.options.ServerOptions`);
        keyword ``settings`` of the same names are laid over them.
    :param ssl: serve ``wss://`` with this context.
    """

    def __init__(
        self,
        handler: Callable[[WebSocket], Awaitable[None]],
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        process_request: ProcessRequest | None = None,
        options: ServerOptions | None = None,
        ssl: ssl_module.SSLContext | None = None,
        sock: socket.socket | None = None,
        **settings: Any,
    ) -> None:
        self.handler = handler
        #: The settings of every connection.
        self.options = resolve(ServerOptions, options, settings)
        self.process_request = process_request
        self._where = {"sock": sock} if sock is not None else {"host": host, "port": port}
        self._ssl = ssl
        self._server: asyncio.Server | None = None
        self._connections: set[WebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Bound once, not once per connection.
        self._start_task = self._start
        self._forget_task = self._tasks.discard
        self._closing: tuple[int, str] | None = None
        self._closed: asyncio.Event | None = None
        #: The listening port, once listening.
        self.port = 0

    @property
    def connections(self) -> frozenset[WebSocket]:
        """The open connections."""
        return frozenset(self._connections)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return () if self._server is None else tuple(self._server.sockets)

    async def start(self) -> Server:
        """Start listening (``async with`` does it)."""
        loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        self._server = await loop.create_server(self._protocol, ssl=self._ssl, **self._where)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def _protocol(self) -> _Protocol:
        session = Session.server(self.options, asyncio.get_running_loop().time())
        return _Protocol(WebSocket(session, self.process_request), self._start_task)

    def _start(self, ws: WebSocket) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(ws))
        self._tasks.add(task)
        task.add_done_callback(self._forget_task)

    async def _serve(self, ws: WebSocket) -> None:
        try:
            await ws._wait_open()
        except HandshakeError:
            return  # an HTTP answer, a refusal or a broken request: the session ended it
        except asyncio.CancelledError:  # close() gave up on the opening handshake
            ws._abort(ConnectionAbortedError("the server closed during the opening handshake"))
            raise
        self._connections.add(ws)
        try:
            if self._closing is not None:  # opened after close() took its list
                await ws.close(*self._closing)
            await self.handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("the handler failed on a connection from %s", ws.remote_address)
            await ws.close(1011, "internal error")
        finally:
            await ws.close()
            self._connections.discard(ws)

    async def serve_forever(self) -> None:
        """Serve until :meth:`close`."""
        if self._closed is None:
            await self.start()
        assert self._closed is not None
        await self._closed.wait()

    async def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop listening, close every connection with ``code``, and wait for them (each
        at most its ``close_timeout``); then cancel the handlers that did not return within
        ``GRACE_SECONDS`` and drop the connections still in the opening handshake."""
        if self._closing is None:
            self._closing = (code, reason)
        if self._server is not None:
            self._server.close()
        await asyncio.gather(
            *(ws.close(code, reason) for ws in list(self._connections)), return_exceptions=True
        )
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=GRACE_SECONDS)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
        if self._closed is not None:
            self._closed.set()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def serve(
    handler: Callable[[WebSocket], Awaitable[None]],
    host: str | None = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Server:
    """A :class:`Server` for ``host``:``port`` (0: a free port):
    ``async with serve(handler, host, port) as server: await server.serve_forever()``.
    ``options`` are those of :class:`Server`."""
    return Server(handler, host, port, **options)


def broadcast(connections: Iterable[WebSocket], message: str | bytes) -> int:
    """Send ``message`` to every open connection whose write buffer is not above its
    high-water mark (a slow peer misses it, rather than growing a buffer without bound);
    return how many got it. Does not wait.

    The message is framed once (:func:`wsmachine.broadcast.prepare`) and that frame queued
    on every server connection it fits as it is (no extension, not in the middle of a
    fragmented message: :meth:`~wsmachine.Connection.send_prepared`); the others frame it
    themselves. The writes happen in one loop callback for the whole broadcast, as the
    sends of one step do (:class:`WriteBatch`): broadcasts made in the same step share a
    write per connection.
    """
    prepared = prepare(message)
    size = len(prepared)
    due: list[WriteBatch] = []
    count = 0
    for ws in connections:
        session = ws.session
        if ws._can_write and session.can_send:
            session.send_prepared(prepared)
            batch = ws._batch
            if batch.add_shared(size):
                due.append(batch)
            count += 1
    if due:
        due[0]._loop.call_soon(run_batches, due)
    return count
