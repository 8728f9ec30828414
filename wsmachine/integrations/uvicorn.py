"""uvicorn's WebSocket protocol, on wsmachine: ASGI WebSockets with one
:class:`~wsmachine.adapters.session.Session` per connection.

.. code-block:: console

    $ uvicorn app:app --ws wsmachine.integrations.uvicorn:WSMachineProtocol

or ``uvicorn.run(app, ws=WSMachineProtocol)``. uvicorn's HTTP protocol (h11 or httptools)
reads the upgrade request and hands the connection over: it builds this class with
``(config, server_state, app_state)``, calls :meth:`~WSMachineProtocol.connection_made` and
feeds it the request again, which wsmachine's machine parses and checks (RFC 6455 §4.2.1).
The application answers it with ``websocket.accept``, ``websocket.close`` (403) or a denial
response (``websocket.http.response.start``, then ``.body`` in pieces, streamed as they come).

uvicorn's settings map to :class:`~wsmachine.adapters.options.ServerOptions`:
``ws_max_size`` to ``max_message_size``, ``ws_max_queue`` to ``max_queue``,
``ws_ping_interval`` and ``ws_ping_timeout`` to ``ping_interval`` and ``ping_timeout``,
``ws_per_message_deflate`` to a memory-lean :class:`~wsmachine.PerMessageDeflate`.
The session keeps time (keepalive, the closing handshake); one loop timer per connection
wakes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState

from ..adapters._common import ConnectionClosed, HTTPResponse
from ..adapters.asyncio import DeadlineTimer, WriteBatch, follow_reading, write_parts
from ..adapters.options import ServerOptions
from ..adapters.session import Session
from ..events import Binary, Handshake, HTTPRequest, Text
from ..extensions.permessage_deflate import PerMessageDeflate
from ..handshake import check_final_status
from ..state import State

__all__ = ["WSMachineProtocol", "server_options"]

#: The seconds uvicorn's own protocols wait for the peer's Close (their ``close_timeout``).
DEFAULT_CLOSE_TIMEOUT = 10.0

_INTERNAL_ERROR_BODY = b"Internal Server Error"

Message = dict[str, Any]


def server_options(config: Config, close_timeout: float = DEFAULT_CLOSE_TIMEOUT) -> ServerOptions:
    """The :class:`~wsmachine.adapters.options.ServerOptions` for uvicorn's ``config``.

    ``ws_ping_interval`` of ``None`` or ``0`` turns keepalive off; ``ws_ping_timeout`` of
    ``None`` waits for the Pong without limit. The opening handshake has no time limit (uvicorn
    has read the request already; the application decides when to answer), as in uvicorn.
    """
    interval = config.ws_ping_interval
    timeout = config.ws_ping_timeout
    extensions = []
    if config.ws_per_message_deflate:
        # As uvicorn's websockets-based protocol: 4 KiB windows both ways, memLevel 5.
        extensions.append(
            PerMessageDeflate(
                server_max_window_bits=12, client_max_window_bits=12, mem_level=5, window_bits=12
            )
        )
    return ServerOptions(
        max_message_size=config.ws_max_size,
        max_queue=max(1, config.ws_max_queue),
        ping_interval=interval if interval else None,
        ping_timeout=timeout if timeout else float("inf"),
        extensions=extensions,
        open_timeout=float("inf"),
        # uvicorn's tests set close_timeout to 0 ("give up at once"); the session wants > 0.
        close_timeout=max(close_timeout, 1e-6),
    )


class WSMachineProtocol(asyncio.BufferedProtocol):
    """An ASGI WebSocket connection for uvicorn, on a wsmachine
    :class:`~wsmachine.adapters.session.Session`; a drop-in for uvicorn's ``WSProtocol`` and
    ``WebSocketsSansIOProtocol`` (``--ws`` / ``Config(ws=...)``).

    A buffered protocol: the transport reads into the machine's own buffer (uvicorn hands
    over the bytes that followed the upgrade request with ``data_received``).

    The ASGI application's ``receive`` takes messages from the session's queue (reading pauses
    while ``ws_max_queue`` wait); its ``send`` waits while the transport's write buffer is
    above its high-water mark.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover - uvicorn loads it before
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path = config.root_path
        self.asgi_version = config.asgi_version
        self.app_state = app_state
        # Typed by uvicorn as a set of its own protocol classes: ours joins them.
        self.connections: set[Any] = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        #: Seconds to wait for the peer's Close after ours; read when the connection is made.
        self.close_timeout = DEFAULT_CLOSE_TIMEOUT

        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "ws"
        self.scope: dict[str, Any] = {}
        #: The connection's session (made in :meth:`connection_made`).
        self.session: Session | None = None

        self._handshake: Handshake | None = None
        self._connect_delivered = False
        self._denying = False  # a denial response is started (websocket.http.response.start)
        self._denial_head: tuple[int, list[tuple[bytes, bytes]]] | None = None  # not sent yet
        self._answered = False  # the upgrade was accepted or refused (or is being refused)
        self._app_closed = False  # the application sent websocket.close
        self._leftover: deque[Message] = deque()  # messages the app may still take after close
        self._disconnect: Message | None = None  # set when it is known before the session ends
        self._lost = False
        self._transport_closed = False
        self._reading = True
        self._writable = asyncio.Event()
        self._writable.set()
        self._readable: asyncio.Future[None] | None = None
        self._timer = DeadlineTimer(self.loop, self._tick)
        self._batch = WriteBatch(self.loop, self._pump)

    # -- the transport's events -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A real transport, or the write-only stand-in of uvicorn's tests.
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "wss" if is_ssl(self.transport) else "ws"
        session = Session.server(server_options(self.config, self.close_timeout), self.loop.time())
        session.wake = self._pump
        self.session = session
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection made", prefix)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self._transport_closed:
            return  # e.g. a frame read after the closing handshake: nothing to do
        self._received(session.receive_data(data, self.loop.time()))

    def get_buffer(self, sizehint: int) -> memoryview:
        session = self.session
        assert session is not None  # made in connection_made, before any read
        return session.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        session = self.session
        if session is None or self._transport_closed:
            return  # the view is dropped by the next get_buffer
        self._received(session.buffer_updated(nbytes, self.loop.time()))

    def _received(self, events: list[Any]) -> None:
        session = self.session
        assert session is not None
        now = self.loop.time()
        for event in events:
            if isinstance(event, Handshake):
                self._handle_connect(event)
            elif isinstance(event, HTTPRequest):
                session.respond(event, None, now)  # not an upgrade: 426
        if self._app_closed:
            while session.next_message() is not None:
                pass  # past websocket.close: the app gets no more messages
        self._pump()

    def eof_received(self) -> bool:
        session = self.session
        if session is not None and not self._transport_closed:
            session.receive_eof(self.loop.time())
            self._pump()
        return True  # we end our side when the session says

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.connections.discard(self)
        session = self.session
        if session is not None and not session.should_close():
            session.abort(exc or ConnectionResetError("the connection was lost"))
        self._timer.cancel()
        self._writable.set()  # asyncio never resumes writing on a lost transport
        self._wake_reader()
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket connection lost", prefix)
        if exc is None and not self._transport_closed:
            self._transport_closed = True
            self.transport.close()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def shutdown(self) -> None:
        """The server is shutting down: close an open connection with 1012."""
        session = self.session
        if session is None or self._transport_closed:
            return
        state = session.conn.state
        if self._app_closed or (state is not State.OPEN and state is not State.CONNECTING):
            self._close_transport()  # a closing handshake under way: do not wait for it
            return
        if state is State.OPEN:
            self._set_disconnect({"type": "websocket.disconnect", "code": 1012})
            session.close(self.loop.time(), 1012)
            self._pump()
            return
        if self._handshake is not None and not self._answered:
            self._respond_500()
        self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
        self._close_transport()

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)

    # -- compatibility with uvicorn's own classes (their tests look at these) -------------

    @property
    def close_timer(self) -> asyncio.TimerHandle | None:
        """The timer that gives up on the peer's Close, while this side waits for it."""
        session = self.session
        if session is None or session.aborted or self._transport_closed:
            return None
        return self._timer.handle if session.conn.state is State.CLOSING else None

    # -- the opening handshake ------------------------------------------------------------

    def _handle_connect(self, handshake: Handshake) -> None:
        self._handshake = handshake
        raw_path, _, query_string = handshake.path.partition("?")
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": self.root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query_string.encode("ascii"),
            "headers": list(handshake.headers),
            "subprotocols": list(handshake.subprotocols),
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    def _log(self, what: str) -> None:
        scope: Any = self.scope
        self.logger.info(
            '%s - "WebSocket %s" %s',
            get_client_addr(scope),
            get_path_with_query_string(scope),
            what,
        )

    def _respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        session = self.session
        assert session is not None and self._handshake is not None
        self._answered = True
        response = HTTPResponse(
            status,
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers],
            body,
        )
        session.respond(self._handshake, response, self.loop.time())
        self._pump()

    def _respond_500(self) -> None:
        headers = [
            *self.default_headers,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"connection", b"close"),
        ]
        self._respond(500, headers, _INTERNAL_ERROR_BODY)

    # -- the ASGI application -------------------------------------------------------------

    async def run_asgi(self) -> None:
        """Run the application on this connection."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self._app_failed()
        else:
            if not self._answered:
                self.logger.error("ASGI callable returned without completing handshake.")
                self._app_failed()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        self._app_done()

    def _app_failed(self) -> None:
        session = self.session
        if session is None or self._lost or self._transport_closed:
            return
        if not self._answered:
            self._respond_500()
        elif self._denying:
            self._finish_denial()
        elif session.conn.state is State.OPEN and not self._app_closed:
            session.close(self.loop.time(), 1011, "internal error")
            self._pump()

    def _finish_denial(self) -> None:
        """The app stopped before the last ``websocket.http.response.body``: close the
        connection without the body's end, which tells the client the response is cut short
        (RFC 9112 §8), rather than pass a part for the whole."""
        session = self.session
        if session is None:
            return
        if self._denial_head is None and session.conn.state is not State.REJECTING:
            return
        self._start_denial()
        self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
        self._close_transport()

    def _start_denial(self) -> None:
        """Write the denial's head, if it is still waiting for its body."""
        head = self._denial_head
        session = self.session
        if head is not None and session is not None and self._handshake is not None:
            self._denial_head = None
            session.respond_start(self._handshake, *head, self.loop.time())
            self._pump()

    def _app_done(self) -> None:
        session = self.session
        if session is None or self._lost or self._transport_closed:
            return
        if self._denying:
            self._finish_denial()
        elif session.conn.state is State.OPEN:
            # Returned without closing: close the transport as uvicorn's protocols do.
            self._close_transport()

    async def receive(self) -> Message:
        """ASGI ``receive``: ``websocket.connect``, ``websocket.receive``, then
        ``websocket.disconnect``."""
        if not self._connect_delivered:
            self._connect_delivered = True
            return {"type": "websocket.connect"}
        session = self.session
        assert session is not None
        while True:
            if self._leftover:
                return self._leftover.popleft()
            if not self._app_closed and self._answered:
                event = session.next_message()
                if event is not None:
                    if isinstance(event, Text):
                        return {"type": "websocket.receive", "text": event.data}
                    return {"type": "websocket.receive", "bytes": event.data}
            disconnect = self._disconnect_message()
            if disconnect is not None:
                return disconnect
            self._readable = self.loop.create_future()
            try:
                await self._readable
            finally:
                self._readable = None

    def _disconnect_message(self) -> Message | None:
        if self._disconnect is not None:
            return self._disconnect
        session = self.session
        assert session is not None
        closed = session.closed()
        if session.conn.state is State.REJECTING and not (self._lost or session.aborted):
            return None  # the app streams its denial: it hears of the end when that is sent
        ended = self._lost or session.aborted or not session.may_receive
        # We failed the connection (1009, keepalive timeout): the app hears it at once.
        failed = session.error is not None and closed.local is not None
        if not (ended or failed):
            return None
        if closed.remote is not None:
            message: Message = {
                "type": "websocket.disconnect",
                "code": closed.remote.code,
                "reason": closed.remote.reason,
            }
        elif session.error is not None and closed.local is not None and session.opened:
            message = {
                "type": "websocket.disconnect",
                "code": closed.local.code,
                "reason": closed.local.reason,
            }
        else:
            opened = session.opened and not self._denying
            message = {"type": "websocket.disconnect", "code": 1005 if opened else 1006}
        self._disconnect = message
        return message

    def _set_disconnect(self, message: Message) -> None:
        if self._disconnect is None:
            self._disconnect = message
        self._wake_reader()

    async def send(self, message: Mapping[str, Any]) -> None:
        """ASGI ``send``."""
        await self._writable.wait()
        if self._lost or (self._transport_closed and not self._app_closed):
            raise ClientDisconnected()
        session = self.session
        assert session is not None and self._handshake is not None
        kind = message["type"]
        now = self.loop.time()
        if not self._answered:
            if kind == "websocket.accept":
                self._log("[accepted]")
                headers = [*self.default_headers, *message.get("headers", ())]
                session.accept(
                    self._handshake,
                    now,
                    subprotocol=message.get("subprotocol") or None,
                    extra_headers=headers,
                )
                self._answered = True
                self._pump()
            elif kind == "websocket.close":
                self._log("403")
                self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
                self._respond(403, list(self.default_headers), b"")
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if not 100 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                check_final_status(status)
                self._log(str(status))
                headers = [*self.default_headers, *message.get("headers", ())]
                # Written with the first piece of the body: a body in one piece then gets a
                # Content-Length, one in several is streamed (chunked) as it comes.
                self._denial_head = (status, [(bytes(n), bytes(v)) for n, v in headers])
                self._denying = self._answered = True
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'."
                )
        elif self._denying:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            state = session.conn.state
            if state is not State.REJECTING and self._denial_head is None:
                raise RuntimeError("the denial response is complete")
            end = not message.get("more_body", False)
            body = bytes(message.get("body", b""))
            if self._denial_head is not None and end:
                self._respond(*self._denial_head, body)
            else:
                self._start_denial()
                session.respond_body(body, now, end=end)
            self._denial_head = None
            if end:
                self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
            self._pump()
        elif not self._app_closed:
            if kind == "websocket.send":
                data = message.get("bytes")
                if data is None:
                    data = message.get("text")
                if data is None:
                    return
                try:
                    session.send(data)
                except ConnectionClosed:
                    raise ClientDisconnected() from None
                self._batch.add(len(data))
            elif kind == "websocket.close":
                code = message.get("code", 1000)
                reason = message.get("reason") or ""
                self._app_closed = True
                while (event := session.next_message()) is not None:
                    if isinstance(event, Binary):
                        self._leftover.append({"type": "websocket.receive", "bytes": event.data})
                    else:
                        self._leftover.append({"type": "websocket.receive", "text": event.data})
                self._set_disconnect(
                    {"type": "websocket.disconnect", "code": code, "reason": reason}
                )
                session.close(now, code, reason)
                self._pump()
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got '{kind}'."
                )
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}', after sending 'websocket.close'."
            )

    # -- doing what the session says ------------------------------------------------------

    def _wake_reader(self) -> None:
        future = self._readable
        if future is not None and not future.done():
            future.set_result(None)

    def _close_transport(self) -> None:
        """Flush what is buffered and close (uvicorn's ``transport.close()``)."""
        session = self.session
        if session is not None:
            data = session.data_to_send()
            if data:
                self.transport.write(data)
            if not session.should_close():
                session.abort(ConnectionAbortedError("the server closed the connection"))
        self._transport_closed = True
        self._timer.cancel()
        self._wake_reader()
        self.transport.close()

    def _pump(self) -> None:
        """Write the session's output; end, close or pause the transport as it says; wake
        the session at its next deadline."""
        session = self.session
        if session is None or self._transport_closed:
            return
        transport = self.transport
        self._batch.written()
        parts = session.data_to_send_parts()
        if parts:
            write_parts(transport, parts)
        if session.should_send_eof():
            can_write_eof = getattr(transport, "can_write_eof", None)
            try:
                if can_write_eof is not None and can_write_eof():
                    transport.write_eof()
                else:
                    self._transport_closed = True
            except OSError as exc:  # the peer is gone already
                session.abort(exc)
            session.eof_sent(self.loop.time())
        if session.should_close() or self._transport_closed:
            self._transport_closed = True
            self._timer.cancel()
            self._wake_reader()
            if session.aborted and hasattr(transport, "abort"):
                transport.abort()
            else:
                transport.close()
            return
        failed = session.error is not None and session.closed().local is not None
        if session.queued or not session.may_receive or failed:
            self._wake_reader()
        reading = session.reading()
        if reading != self._reading:
            self._reading = reading
            follow_reading(transport, reading)
        self._timer.set(session.next_deadline())

    def _tick(self) -> None:
        session = self.session
        if session is None or self._transport_closed:
            return
        error = session.error
        session.tick(self.loop.time())
        if (
            session.error is not error
            and isinstance(session.error, TimeoutError)
            and session.conn.state is State.CLOSING
        ):
            # No Pong in time: the session sent 1011. A peer that does not answer Pings will
            # not answer the Close either; close now, as uvicorn's protocols do.
            self._wake_reader()
            self._close_transport()
            return
        self._pump()
