"""WebSockets on trio streams: a client, :func:`open_websocket`, and a server, :class:`Server`.

trio is optional: ``pip install wsmachine[trio]``. Only this module imports it.

Each :class:`WebSocket` runs a reader task (and a keepalive task when ``ping_interval`` is
set) in a nursery; :func:`open_websocket` and the server provide that nursery, so nothing
outlives the ``async with`` block. Cancelling a task blocked in :meth:`WebSocket.recv` loses
no message; cancelling one in the middle of :meth:`WebSocket.send` drops the connection,
since a frame half written cannot be taken back.

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
import os
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import trio

from ..connection import DEFAULT_MAX_MESSAGE_SIZE, ClientConnection, Connection, ServerConnection
from ..events import Accepted, Binary, Close, Event, Handshake, HTTPRequest, Pong, Rejected, Text
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

__all__ = ["Server", "WebSocket", "connect", "open_websocket", "serve"]

logger = logging.getLogger("wsmachine.adapters.trio")

#: Bytes asked of one ``receive_some``.
RECV_SIZE = 256 * 1024
#: After our EOF, how long to wait for the peer's, at most.
LINGER_SECONDS = 2.0
#: Upper bound on reads during an opening handshake.
MAX_HANDSHAKE_READS = 10_000

_OPEN = State.OPEN
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class WebSocket:
    """An open WebSocket connection on a trio stream, in either role.

    Made by :func:`open_websocket`, :func:`connect` or given to a :class:`Server` handler.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Connection,
        nursery: trio.Nursery,
        *,
        handshake: Handshake | None = None,
        accepted: Accepted | None = None,
        subprotocol: str | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        ping_interval: float | None = None,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        max_queue: int = 16,
    ) -> None:
        self._stream = stream
        self._conn = conn
        self._nursery = nursery
        #: Server side: the client's upgrade request.
        self.handshake = handshake
        #: Client side: the server's answer.
        self.accepted = accepted
        #: The subprotocol in use, or ``None``.
        self.subprotocol = subprotocol
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._record = CloseRecord()
        self._send_lock = trio.Lock()
        self._to_user, self._from_reader = trio.open_memory_channel[str | bytes](max(1, max_queue))
        self._pings: OrderedDict[bytes, trio.Event] = OrderedDict()
        self._closing = False
        self._delivery = trio.CancelScope()
        self._done = trio.Event()
        self._close_timer_started = False
        self._scope = trio.CancelScope()  # the tasks of this connection

    async def _start(self, early: Sequence[Event]) -> None:
        await self._handle(early, True)
        await self._flush()
        self._nursery.start_soon(self._tasks)

    # -- information ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The machine's state."""
        return self._conn.state

    @property
    def closed(self) -> ConnectionClosed | None:
        """How the connection closed, once the stream is closed; ``None`` before."""
        return self._record.exception() if self._done.is_set() else None

    async def wait_closed(self) -> None:
        """Wait until the stream is closed."""
        await self._done.wait()

    # -- sending --------------------------------------------------------------------------

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message.

        :raises ConnectionClosed: the connection is closing or closed.
        """
        if self._conn.state is not _OPEN or self._done.is_set():
            raise self._record.exception()
        if isinstance(message, str):
            self._conn.send_text(message)
        else:
            self._conn.send_binary(message)
        await self._flush()

    async def ping(self, payload: bytes | None = None) -> trio.Event:
        """Send a Ping; the returned event is set when its Pong arrives (or on close).

        :raises ConnectionClosed: the connection is closing or closed.
        """
        if payload is None:
            payload = os.urandom(4)
        if self._conn.state is not _OPEN or self._done.is_set():
            raise self._record.exception()
        waiter = trio.Event()
        self._conn.ping(payload)
        self._pings[payload] = waiter
        await self._flush()
        return waiter

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close: send a Close, wait for the peer's and for the end of the stream, at most
        ``close_timeout`` (then the stream is dropped). Messages not yet received are
        dropped. Cancelling it drops the stream at once."""
        self._closing = True
        self._delivery.cancel()
        try:
            if self._conn.state is _OPEN and not self._done.is_set():
                self._record.sent(code, reason)
                self._conn.close(code, reason)
                await self._flush()
            with trio.move_on_after(self.close_timeout + LINGER_SECONDS):
                await self._done.wait()
        finally:
            if not self._done.is_set():
                await self._abort()

    async def _abort(self) -> None:
        """Drop the stream now; the reader then ends."""
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)
        self._scope.cancel()

    # -- receiving ------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary. Use
        ``trio.fail_after`` for a timeout; a cancelled ``recv`` loses no message.

        :raises ConnectionClosed: the connection closed and no message is left.
        """
        try:
            return await self._from_reader.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._record.exception() from None

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Yield messages until the connection closes; a clean close (1000, 1001) ends the
        loop, any other raises :class:`ConnectionClosed`."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed as closed:
                if closed.ok:
                    return
                raise

    # -- internals ------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Write what the machine queued. Taking the output inside the lock keeps order."""
        async with self._send_lock:
            data = self._conn.data_to_send()
            if not data:
                return
            try:
                await self._stream.send_all(data)
            except _BROKEN as exc:
                if self._conn.state is not State.CLOSED:
                    self._record.failed(exc)
            except trio.Cancelled:
                self._record.failed(ConnectionAbortedError("a send was cancelled midway"))
                await self._abort()
                raise

    async def _handle(self, events: Sequence[Event], was_open: bool) -> None:
        for event in events:
            if isinstance(event, Text | Binary):
                await self._deliver(event.data)
            elif isinstance(event, Pong):
                if event.payload in self._pings:
                    # A Pong answers its Ping and every earlier one (RFC 6455 §5.5.3).
                    while self._pings:
                        payload, waiter = self._pings.popitem(last=False)
                        waiter.set()
                        if payload == event.payload:
                            break
            elif isinstance(event, Close):
                self._record.received(event, was_open)
        if self._conn.close_expected() and not self._close_timer_started:
            self._close_timer_started = True
            self._nursery.start_soon(self._close_timer)

    async def _deliver(self, message: str | bytes) -> None:
        if self._closing:
            with contextlib.suppress(trio.WouldBlock, *_BROKEN):
                self._to_user.send_nowait(message)
            return
        scope = self._delivery = trio.CancelScope()  # close() cancels it: drop the message
        with scope, contextlib.suppress(*_BROKEN):
            await self._to_user.send(message)  # back-pressure: wait for recv()

    async def _tasks(self) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                if self.ping_interval is not None:
                    nursery.start_soon(self._keepalive)
                await self._reader()
                nursery.cancel_scope.cancel()

    async def _reader(self) -> None:
        conn = self._conn
        stream = self._stream
        tcp_closing = False
        try:
            while True:
                try:
                    data = await stream.receive_some(RECV_SIZE)
                except _BROKEN as exc:
                    if conn.state is not State.CLOSED:
                        self._record.failed(exc)
                    data = b""
                if tcp_closing:
                    if not data:
                        return
                    continue  # discard: only the peer's EOF matters now
                was_open = conn.state is _OPEN
                events = conn.receive_data(data) if data else conn.receive_eof()
                await self._handle(events, was_open)
                await self._flush()
                if not data:
                    return
                if conn.should_close():
                    # RFC 6455 §7.1.1: the server ends TCP first, then reads until EOF.
                    tcp_closing = True
                    if not isinstance(stream, trio.abc.HalfCloseableStream):
                        return
                    try:
                        await stream.send_eof()
                    except _BROKEN:
                        return
                    self._nursery.start_soon(self._linger)
        finally:
            self._to_user.close()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            for waiter in self._pings.values():
                waiter.set()
            self._pings.clear()
            self._done.set()

    async def _linger(self) -> None:
        with trio.move_on_after(min(LINGER_SECONDS, self.close_timeout)):
            await self._done.wait()
            return
        await self._abort()

    async def _close_timer(self) -> None:
        with trio.move_on_after(self.close_timeout):
            await self._done.wait()
            return
        if self._conn.state is not State.CLOSED or not self._conn.client:
            self._record.failed(
                TimeoutError(f"the closing handshake took over {self.close_timeout} s")
            )
        await self._abort()

    async def _keepalive(self) -> None:
        assert self.ping_interval is not None
        while self._conn.state is _OPEN:
            await trio.sleep(self.ping_interval)
            if self._conn.state is not _OPEN:
                return
            waiter = await self.ping()
            with trio.move_on_after(self.ping_timeout):
                await waiter.wait()
                continue
            self._record.failed(
                TimeoutError(f"no Pong within {self.ping_timeout} s of a keepalive Ping")
            )
            if self._conn.state is _OPEN:
                self._record.sent(1011, "keepalive ping timeout")
                self._conn.close(1011, "keepalive ping timeout")
                await self._flush()
                if not self._close_timer_started:
                    self._close_timer_started = True
                    self._nursery.start_soon(self._close_timer)
            return


async def _read_handshake(stream: trio.abc.Stream, conn: Connection) -> tuple[Event, list[Event]]:
    for _ in range(MAX_HANDSHAKE_READS):
        data = await stream.receive_some(RECV_SIZE)
        events = conn.receive_data(data) if data else conn.receive_eof()
        out = conn.data_to_send()
        if out:
            await stream.send_all(out)
        if events:
            return events[0], events[1:]
    raise HandshakeError("the opening handshake did not end")


async def _client_handshake(
    url: str,
    *,
    subprotocols: Sequence[str],
    extensions: Sequence[Extension],
    origin: str | None,
    extra_headers: HeaderInput,
    max_message_size: int,
    max_frame_size: int | None,
    open_timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> tuple[trio.abc.Stream, ClientConnection, Accepted, list[Event]]:
    target = parse_url(url)
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(open_timeout):
            tcp = await trio.open_tcp_stream(target.host, target.port)
            stream = tcp
            if target.secure:
                context = ssl_context if ssl_context is not None else ssl.create_default_context()
                stream = trio.SSLStream(tcp, context, server_hostname=target.host)
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
            await stream.send_all(conn.data_to_send())
            outcome, early = await _read_handshake(stream, conn)
        if not isinstance(outcome, Accepted):
            assert isinstance(outcome, Rejected | Close)
            raise handshake_error(outcome)
    except trio.TooSlowError as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise HandshakeError(f"the opening handshake took over {open_timeout} s") from exc
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    return stream, conn, outcome, early


async def connect(
    nursery: trio.Nursery,
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
) -> WebSocket:
    """Open a WebSocket connection whose tasks run in ``nursery``; close it yourself
    (:func:`open_websocket` does both). The parameters are those of
    :func:`wsmachine.adapters.blocking.connect`.

    :raises HandshakeError: the server refused the upgrade, answered wrongly, or too late.
    :raises OSError: the TCP connection failed.
    """
    stream, conn, accepted, early = await _client_handshake(
        url,
        subprotocols=subprotocols,
        extensions=extensions,
        origin=origin,
        extra_headers=extra_headers,
        max_message_size=max_message_size,
        max_frame_size=max_frame_size,
        open_timeout=open_timeout,
        ssl_context=ssl_context,
    )
    ws = WebSocket(
        stream,
        conn,
        nursery,
        accepted=accepted,
        subprotocol=accepted.subprotocol,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_queue=max_queue,
    )
    await ws._start(early)
    return ws


@contextlib.asynccontextmanager
async def open_websocket(
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
) -> AsyncIterator[WebSocket]:
    """``async with open_websocket(url) as ws:`` connect, and close on the way out (1000,
    or 1011 after an exception; at once when cancelled). The parameters are those of
    :func:`connect`; exceptions come out as themselves, not in an exception group.
    """
    stream, conn, accepted, early = await _client_handshake(
        url,
        subprotocols=subprotocols,
        extensions=extensions,
        origin=origin,
        extra_headers=extra_headers,
        max_message_size=max_message_size,
        max_frame_size=max_frame_size,
        open_timeout=open_timeout,
        ssl_context=ssl_context,
    )
    try:
        async with trio.open_nursery() as nursery:
            ws = WebSocket(
                stream,
                conn,
                nursery,
                accepted=accepted,
                subprotocol=accepted.subprotocol,
                close_timeout=close_timeout,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                max_queue=max_queue,
            )
            await ws._start(early)
            try:
                yield ws
            except BaseException as exc:
                if isinstance(exc, Exception):
                    with trio.CancelScope(shield=True):
                        await ws.close(1011, "internal error")
                else:  # cancelled, KeyboardInterrupt...: drop the connection at once
                    await ws._abort()
                raise
            await ws.close()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class Server:
    """A WebSocket server on trio: one task per connection, the handler awaited in it.

    Start it with ``await nursery.start(server.run)`` (or :func:`serve`); the value started
    is the server itself, with ``port`` set. The connection is closed (1000) when the
    handler returns, or with 1011 if it raises. Options are those of
    :class:`wsmachine.adapters.blocking.Server`.
    """

    def __init__(
        self,
        handler: Callable[[WebSocket], Awaitable[None]],
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
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
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
        self._connections: set[WebSocket] = set()
        self._accepting = trio.CancelScope()
        self._everything = trio.CancelScope()
        self._stopped = trio.Event()

    @property
    def connections(self) -> frozenset[WebSocket]:
        """The open connections."""
        return frozenset(self._connections)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
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
        """Stop accepting, close every connection with ``code`` (waiting at most
        ``close_timeout``), then end :meth:`run`."""
        self._accepting.cancel()
        with trio.move_on_after(self.close_timeout + LINGER_SECONDS):
            async with trio.open_nursery() as nursery:
                for ws in list(self._connections):
                    nursery.start_soon(ws.close, code, reason)
        self._everything.cancel()
        await self._stopped.wait()

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = ServerConnection(
            subprotocols=self.subprotocols,
            extensions=self.extensions,
            max_message_size=self.max_message_size,
            max_frame_size=self.max_frame_size,
        )
        try:
            with trio.fail_after(self.open_timeout):
                request, _ = await _read_handshake(stream, conn)
        except (trio.TooSlowError, HandshakeError, *_BROKEN):
            await trio.aclose_forcefully(stream)
            return
        if isinstance(request, Handshake):
            if self.check_origin is not None and not self.check_origin(request):
                response = forbidden_origin(request)
                conn.reject(
                    request, status=response.status, headers=response.headers, body=response.body
                )
            else:
                await self._run_handler(stream, conn, request)
                return
        elif isinstance(request, HTTPRequest):
            answer = self.http_handler(request) if self.http_handler is not None else None
            if answer is None:
                answer = upgrade_required(request)
            conn.reject(request, status=answer.status, headers=answer.headers, body=answer.body)
        # An HTTP answer, a refusal, or the machine's answer to a broken request.
        with trio.move_on_after(self.close_timeout):
            with contextlib.suppress(*_BROKEN):
                await stream.send_all(conn.data_to_send())
                await stream.send_eof()
                with trio.move_on_after(LINGER_SECONDS):
                    while await stream.receive_some(RECV_SIZE):
                        pass
        await trio.aclose_forcefully(stream)

    async def _run_handler(
        self, stream: trio.SocketStream, conn: ServerConnection, request: Handshake
    ) -> None:
        early = conn.accept(request)  # the machine picks from self.subprotocols
        subprotocol = conn.subprotocol
        async with trio.open_nursery() as nursery:
            ws = WebSocket(
                stream,
                conn,
                nursery,
                handshake=request,
                subprotocol=subprotocol,
                close_timeout=self.close_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                max_queue=self.max_queue,
            )
            await ws._start(early)
            self._connections.add(ws)
            try:
                await self.handler(ws)
            except ConnectionClosed:
                pass
            except Exception:
                logger.exception("the handler failed on a connection")
                await ws.close(1011, "internal error")
            finally:
                self._connections.discard(ws)
                with trio.CancelScope(shield=True), trio.move_on_after(self.close_timeout + 3):
                    await ws.close()
            nursery.cancel_scope.cancel()


async def serve(
    handler: Callable[[WebSocket], Awaitable[None]],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Run a :class:`Server`: ``server = await nursery.start(serve, handler, host, port)``."""
    await Server(handler, host, port, **options).run(task_status=task_status)
