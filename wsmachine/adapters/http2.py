"""WebSockets over HTTP/2 (RFC 8441) for the selector adapter, on the ``h2`` package.

:class:`Server` is a ``wsmachine.adapters.selector.Server`` whose port also speaks
cleartext HTTP/2 with prior knowledge: a connection that opens with the HTTP/2 preface
(RFC 9113 §3.4) runs HTTP/2, any other HTTP/1.1 as before. It advertises
``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1``, and each extended CONNECT stream with
``:protocol websocket`` becomes its own WebSocket (:class:`Stream`) with its own machine and
session, so one TCP connection carries many. Another ``:protocol`` gets 501, a bad opening
its status (:mod:`wsmachine.extended_connect`), a plain request (a page) the handler's
``wsmachine.adapters.selector.Handler.on_http`` answer.

The same ``wsmachine.adapters.selector.Handler`` serves both: its callbacks get a
:class:`Stream` for an HTTP/2 WebSocket, which has the methods of a
``wsmachine.adapters.selector.Peer`` (``send``, ``ping``, ``close``, ``abort``, ``data``...).

Flow control is HTTP/2's, per stream: a stream's output waits in its own buffer until its
window opens, so a slow stream never stalls the others; it is dropped (RST_STREAM CANCEL,
1006) when that buffer passes ``write_limit``, and above ``write_high_water`` the stream's
received data is not acknowledged, so its sender slows down too.

:class:`Client` opens WebSockets over one HTTP/2 connection with blocking calls.

.. code-block:: python

    from wsmachine.adapters.http2 import Server
    from wsmachine.adapters.selector import Handler

    class Echo(Handler):
        def on_message(self, peer, message):
            peer.send(message)

    with Server(Echo(), "127.0.0.1", 8765) as server:
        server.serve_forever()
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ..close_codes import CloseCode
from ..connection import ClientConnection
from ..errors import RemoteProtocolError
from ..events import Accepted, Close, Event, Handshake, HTTPRequest, Rejected, Text
from ..extended_connect import (
    ClientOpening,
    FramingSettings,
    accept,
    error_response,
    read_request,
    response_headers,
)
from ..state import State
from ._common import ConnectionClosed, HandshakeError, HTTPResponse, handshake_error, not_found
from .options import RECV_SIZE, ClientOptions, Options, ServerOptions, resolve
from .selector import Endpoint, Handler, Peer, Timer
from .selector import Server as _SelectorServer
from .session import Session
from .tls import TLSSocket

__all__ = ["PREFACE", "Client", "ClientStream", "Server", "Stream"]

#: The first bytes of an HTTP/2 connection (RFC 9113 §3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Default most WebSocket streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
DEFAULT_MAX_STREAMS = 128
#: Most reads of one TLS connection in a turn of the loop before the others get theirs.
MAX_TLS_READS = 16

_now = time.monotonic
_CANCEL = h2.errors.ErrorCodes.CANCEL
_CONNECT_PROTOCOL = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
_NO_BODY = frozenset({204, 304})
_H2Error = (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError)


def _framing(options: Options) -> FramingSettings:
    return FramingSettings(
        max_message_size=options.max_message_size,
        max_frame_size=options.max_frame_size,
        max_fragments=options.max_fragments,
        stream=options.stream,
        auto_pong=options.auto_pong,
        close_reasons=options.close_reasons,
    )


def _send_within_window(conn: h2.connection.H2Connection, stream_id: int, out: bytearray) -> None:
    """Move the head of ``out`` into DATA frames as far as the stream's flow-control window
    and the peer's frame size allow (RFC 9113 §5.2, §6.9); the rest waits for a
    WINDOW_UPDATE. h2's errors go to the caller, whose recovery differs by role."""
    while out:
        size = min(
            len(out), conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size
        )
        if size <= 0:
            break
        conn.send_data(stream_id, bytes(out[:size]))
        del out[:size]


class Stream(Endpoint):
    """One WebSocket on an HTTP/2 stream: what the handler's callbacks get as ``peer``.
    Use it from the loop's thread only."""

    __slots__ = (
        "_finished",
        "_link",
        "_out",
        "_reported",
        "_timer",
        "_unacked",
        "address",
        "data",
        "final",
        "handler",
        "session",
        "stream_id",
    )

    def __init__(self, link: _H2Session, stream_id: int, session: Session) -> None:
        self._link = link
        #: The HTTP/2 stream identifier.
        self.stream_id = stream_id
        #: The session (and through it the machine) of this WebSocket.
        self.session = session
        #: The callbacks of this connection.
        self.handler: Handler = link.peer.handler
        #: The other end's address (the TCP connection's).
        self.address: Any = link.peer.address
        #: Free for the application.
        self.data: dict[str, Any] = {}
        #: Whether the last message handed over ended its message (``stream`` setting).
        self.final = True
        self._out = bytearray()  # WebSocket bytes waiting for the stream's window
        self._unacked = 0  # received bytes not acknowledged yet (back-pressure)
        self._finished = False
        self._timer: Timer | None = None
        self._reported: BaseException | None = None  # the session's error on_error was told

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} of {self.address} {self.state.name}>"

    @property
    def client(self) -> bool:
        """Always ``False``: the server side of the stream."""
        return False

    @property
    def buffered(self) -> int:
        """Bytes waiting for the stream's flow-control window."""
        return len(self._out)

    def _service(self) -> None:
        # The stream ends (END_STREAM) once the closing handshake is done.
        self._link.service(self)

    def abort(self) -> None:
        """Reset the stream at once (RST_STREAM CANCEL), without a closing handshake."""
        self._link.drop(self, ConnectionAbortedError("aborted by the application"))


class _Stance:
    """What the loop reads of a TCP connection's ``session.conn``: its state and role."""

    __slots__ = ("state",)

    client = False

    def __init__(self) -> None:
        self.state = State.OPEN


class _H2Session:
    """A TCP connection speaking HTTP/2, as the selector loop sees a connection's session:
    its bytes in and out, when to end it. Inside, one :class:`Stream` per WebSocket."""

    def __init__(self, server: Server, peer: Peer, options: ServerOptions, now: float) -> None:
        self.server = server
        self.peer = peer
        self.options = options
        self.conn = _Stance()
        self.opened = False  # the TCP connection itself is no WebSocket: no on_open/on_close
        self.error: BaseException | None = None
        self.streams: dict[int, Stream] = {}
        self._framing = _framing(options)
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                _CONNECT_PROTOCOL: 1,  # RFC 8441 §3
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: server.max_streams,
            },
        )
        self.h2.initiate_connection()
        self._stopped = False  # dropped: close the socket at once
        self._failed = False  # GOAWAY queued after an error: close once it is written
        self._closing = False  # shutting down: GOAWAY once the streams are done
        self._peer_eof = False
        self._eof_sent = False
        self._linger: float | None = None

    # -- what the loop asks -----------------------------------------------------------

    @property
    def can_send(self) -> bool:
        return False

    @property
    def may_receive(self) -> bool:
        return not (self._peer_eof or self._stopped)

    def reading(self) -> bool:
        return self.may_receive

    def next_message(self) -> None:
        return None

    def data_to_send(self) -> bytes:
        return b"" if self._stopped else self.h2.data_to_send()

    def should_send_eof(self) -> bool:
        return (self._closing or self._failed) and not self.streams and not self._eof_sent

    def eof_sent(self, now: float) -> None:
        self._eof_sent = True
        self._linger = now + min(self.options.linger_timeout, self.options.close_timeout)

    def should_close(self) -> bool:
        return self._stopped or self._peer_eof or (self._eof_sent and self._linger is None)

    def next_deadline(self) -> float | None:
        return self._linger

    def tick(self, now: float) -> None:
        if self._linger is not None and now >= self._linger:
            self._linger = None

    def closed(self) -> ConnectionClosed:
        return ConnectionClosed(None, None, self.error)

    def abort(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._stopped = True
        for stream in list(self.streams.values()):
            self.drop(stream, error, reset=False)

    def close(self, now: float, code: int | None = 1000, reason: str = "") -> None:
        """Shut down: close every WebSocket with ``code``, then GOAWAY (RFC 9113 §6.8)."""
        self._closing = True
        for stream in list(self.streams.values()):
            stream.close(1000 if code is None else code, reason)
        self._goaway_if_done()

    def _goaway_if_done(self) -> None:
        if self._closing and not self.streams and not self._stopped:
            with contextlib.suppress(*_H2Error):
                self.h2.close_connection()

    # -- input ------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Feed what the socket read (``b""``: the peer's end of stream)."""
        if not data:
            self._peer_eof = True
            self.abort(ConnectionResetError("the HTTP/2 connection ended"))
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail(exc)
            return
        for event in events:
            self._event(event)

    def _fail(self, exc: Exception) -> None:
        """The peer broke HTTP/2: GOAWAY, every WebSocket ends with 1006."""
        with contextlib.suppress(*_H2Error):
            self.h2.close_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
        self._failed = True
        if self.error is None:
            self.error = exc
        for stream in list(self.streams.values()):
            self.drop(stream, ConnectionResetError(f"HTTP/2 connection error: {exc}"), reset=False)

    def _event(self, event: h2.events.Event) -> None:
        now = _now()
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None and event.headers is not None
            self._request(event.stream_id, event.headers, event.stream_ended is not None)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            stream = self.streams.get(event.stream_id)
            size = event.flow_controlled_length or 0
            if stream is None:
                self._ack(size, event.stream_id)  # a plain request's body: not read
                return
            stream.session.receive_data(event.data, now)
            if len(stream._out) > self.options.write_high_water:
                stream._unacked += size  # back-pressure: the sender's window stays shut
            else:
                self._ack(size, event.stream_id)
            self.service(stream)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.session.receive_eof(now)  # END_STREAM: the peer's half-close
                self.service(stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                error = ConnectionResetError(
                    f"the peer reset the stream (RST_STREAM {event.error_code!r}): an abnormal "
                    "closure, 1006 (RFC 8441 §5)"
                )
                self.drop(stream, error, reset=False)
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            for stream in list(self.streams.values()):
                if stream._out:
                    self.service(stream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._peer_eof = True
            for stream in list(self.streams.values()):
                self.drop(stream, ConnectionResetError("the peer sent GOAWAY"), reset=False)

    def _ack(self, size: int, stream_id: int) -> None:
        if size:
            with contextlib.suppress(*_H2Error):
                self.h2.acknowledge_received_data(size, stream_id)

    # -- requests ---------------------------------------------------------------------

    def _request(self, stream_id: int, headers: Iterable[Any], ended: bool) -> None:
        server = self.server
        handler = self.peer.handler
        fields = [(bytes(name), bytes(value)) for name, value in headers]
        if self._closing:
            self._reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        try:
            request = read_request(fields, origin_policy=self.options.origin_policy)
        except RemoteProtocolError as error:
            answer, body = error_response(error)
            self._respond(stream_id, answer, body, ended)
            server._guard(self.peer, handler.on_error, self.peer, error)
            return
        if isinstance(request, HTTPRequest):
            if request.method == "CONNECT":  # a tunnel: not ours to open (RFC 9110 §9.3.6)
                response: HTTPResponse | None = HTTPResponse(
                    501, [("content-type", "text/plain")], b"CONNECT needs :protocol websocket\n"
                )
            else:
                response = server._guard(None, handler.on_http, request)
            self._send_response(stream_id, request, response or not_found(request), ended)
            return
        conn, answer = accept(
            request,
            subprotocols=self.options.subprotocols,
            extensions=self.options.extensions,
            **self._framing,
        )
        session = Session.for_stream(conn, self.options, _now(), handshake=request)
        stream = Stream(self, stream_id, session)
        refusal = server._guard(None, handler.on_handshake, stream, request)
        if refusal is not None:
            self._send_response(stream_id, request, refusal, ended)
            return
        self.streams[stream_id] = stream
        self.h2.send_headers(stream_id, answer)
        server._guard_stream(stream, handler.on_open, stream)
        if ended:  # END_STREAM on the CONNECT itself: the peer's half is closed already
            session.receive_eof(_now())
        self.service(stream)

    def _send_response(
        self, stream_id: int, request: Handshake | HTTPRequest, response: HTTPResponse, ended: bool
    ) -> None:
        # Connection-specific fields (a 426's Upgrade) have no place in HTTP/2: left out.
        headers = [
            (name, value)
            for name, value in response.headers
            if name.lower() not in ("connection", "upgrade", "keep-alive", "transfer-encoding")
        ]
        status = response.status
        body = response.body
        if (isinstance(request, HTTPRequest) and request.method == "HEAD") or status in _NO_BODY:
            body = b""
        elif not any(name.lower() == "content-length" for name, _ in headers):
            headers.append(("content-length", str(len(body))))
        try:
            answer = response_headers(status, headers)
        except ValueError:
            answer, body = response_headers(500), b""
        self._respond(stream_id, answer, body, ended)

    def _respond(
        self, stream_id: int, answer: list[tuple[bytes, bytes]], body: bytes, ended: bool
    ) -> None:
        try:
            self.h2.send_headers(stream_id, answer, end_stream=not body)
            if body:
                self._send_body(stream_id, body)
        except _H2Error:
            return
        if not ended:
            # The answer is complete; the request's body is not wanted (RFC 9113 §8.1).
            self._reset(stream_id, h2.errors.ErrorCodes.NO_ERROR)

    def _send_body(self, stream_id: int, body: bytes) -> None:
        """A short answer's body: as much as the window takes; a page larger than the
        window is cut (this adapter serves small pages and WebSockets)."""
        room = min(self.h2.local_flow_control_window(stream_id), len(body))
        size = self.h2.max_outbound_frame_size
        for start in range(0, room, size):
            self.h2.send_data(stream_id, body[start : min(start + size, room)])
        self.h2.end_stream(stream_id)

    def _reset(self, stream_id: int, code: int) -> None:
        with contextlib.suppress(*_H2Error):
            self.h2.reset_stream(stream_id, code)

    # -- streams ----------------------------------------------------------------------

    def service(self, stream: Stream) -> None:
        """After any change to a stream: hand its messages over, move its output into its
        window, end or drop it when its session says so, and write."""
        session = stream.session
        server = self.server
        handler = stream.handler
        while not stream._finished:
            event = session.next_message()
            if event is None:
                break
            stream.final = event.final
            server._guard_stream(stream, handler.on_message, stream, event.data)
        if stream._finished:
            server._flush(self.peer)
            return
        error = session.error
        if error is not stream._reported and getattr(error, "close_code", 0) != 1006:
            stream._reported = error  # each error once, however many services follow
            server._guard_stream(stream, handler.on_error, stream, error)
        stream._out += session.data_to_send()
        self._move(stream)
        if len(stream._out) > self.options.write_limit:
            self.drop(
                stream,
                BufferError(
                    f"stream {stream.stream_id}: {len(stream._out)} bytes wait for its "
                    f"flow-control window, over the limit of {self.options.write_limit}"
                ),
            )
        elif not stream._out:
            if session.should_send_eof():
                with contextlib.suppress(*_H2Error):
                    self.h2.end_stream(stream.stream_id)  # our half-close (RFC 8441 §5)
                session.eof_sent(_now())
            if session.should_close():
                self.drop(stream, None)
        if not stream._finished:
            self._schedule(stream)
        server._flush(self.peer)

    def _move(self, stream: Stream) -> None:
        """Send what the stream's window allows (RFC 9113 §5.2)."""
        out = stream._out
        stream_id = stream.stream_id
        try:
            _send_within_window(self.h2, stream_id, out)
        except _H2Error:
            out.clear()
        if stream._unacked and len(out) <= self.options.write_high_water // 4:
            self._ack(stream._unacked, stream_id)
            stream._unacked = 0

    def drop(self, stream: Stream, error: BaseException | None, *, reset: bool = True) -> None:
        """End a stream: reset it unless it ended cleanly both ways, forget it, and tell
        the handler."""
        if stream._finished:
            return
        if error is not None:
            stream.session.abort(error)
        stream._finished = True
        if stream._timer is not None:
            stream._timer.cancel()
        if reset:
            state = self.h2.streams.get(stream.stream_id)
            if state is not None and not state.closed:
                self._reset(stream.stream_id, _CANCEL)  # RFC 8441 §5
        del self.streams[stream.stream_id]
        self.server._guard_stream(stream, stream.handler.on_close, stream, stream.session.closed())
        self._goaway_if_done()

    def _schedule(self, stream: Stream) -> None:
        stream._timer = self.server._rearm(
            stream._timer, stream.session.next_deadline(), self._tick, stream
        )

    def _tick(self, stream: Stream) -> None:
        if stream._finished:
            return
        stream._timer = None
        stream.session.tick(_now())
        self.service(stream)


class Server(_SelectorServer):
    """A selector ``wsmachine.adapters.selector.Server`` that also speaks cleartext
    HTTP/2 with prior knowledge on its port, running a WebSocket on each extended CONNECT
    stream (RFC 8441). The parameters are those of the selector server, and:

    :param max_streams: most streams open at once on one HTTP/2 connection
        (``SETTINGS_MAX_CONCURRENT_STREAMS``).
    :param ssl_context: serve TLS (``https://`` and ``wss://``) with this server-side
        context, for both protocols; browsers speak HTTP/2 only over TLS, choosing it by
        ALPN (:func:`wsmachine.adapters.tls.server_context` offers ``h2`` and ``http/1.1``).
    """

    def __init__(
        self,
        *args: Any,
        max_streams: int = DEFAULT_MAX_STREAMS,
        ssl_context: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        #: Most streams open at once on one HTTP/2 connection.
        self.max_streams = max_streams
        #: The TLS context, or ``None`` for cleartext.
        self.ssl_context = ssl_context
        self._sniffing: dict[Peer, bytes] = {}  # accepted, first bytes not seen yet
        self._decided: set[Peer] = set()  # HTTP/1.1 connections
        super().__init__(*args, **kwargs)

    @property
    def streams(self) -> list[Stream]:
        """The WebSockets open on this server's HTTP/2 connections."""
        return [stream for peer in self._peers for stream in _streams_of(peer)]

    def broadcast(
        self, message: str | bytes | bytearray | memoryview, *, exclude: Any = None
    ) -> int:
        """Send ``message`` to every open connection, HTTP/2 streams included."""
        count = super().broadcast(message, exclude=exclude)
        for stream in self.streams:
            if stream is not exclude and stream.send(message):
                count += 1
        return count

    def _guard_stream(self, stream: Stream, function: Any, *args: Any) -> None:
        """Call back the application for a stream; an exception closes it with 1011."""
        try:
            function(*args)
        except Exception as exc:
            handler: Any = stream.handler  # its callbacks take a Peer or a Stream
            if function is not handler.on_error:
                with contextlib.suppress(Exception):
                    handler.on_error(stream, exc)
            if stream.open:
                stream.close(CloseCode.INTERNAL_ERROR, "internal error")

    # -- which protocol ---------------------------------------------------------------

    def _read(self, peer: Peer) -> None:
        context = self.ssl_context
        if context is None or peer.client:
            self._read_plain(peer)
            return
        found: object = peer.sock
        if isinstance(found, TLSSocket):
            sock = found
        else:  # the first read: TLS from now on (the loop only needs a socket's methods)
            sock = TLSSocket(peer.sock, context)
            peer.sock = cast(socket.socket, sock)
        # A read hands out at most one buffer of what TLS decrypted; the kernel does not
        # signal the rest, so read on while some is left (bounded: the loop must turn).
        for _ in range(MAX_TLS_READS):
            self._read_plain(peer)
            if peer._finished or not peer.session.reading() or not sock.pending():
                return
        self._call_at(_now(), lambda: self._read(peer))

    def _read_plain(self, peer: Peer) -> None:
        link = _link_of(peer)
        if link is not None:
            self._read_h2(peer, link)
            return
        if peer.client or peer in self._decided:
            super()._read(peer)
            return
        data = self._recv(peer)
        if data is None:
            return
        seen = self._sniffing.pop(peer, b"") + data
        if data and len(seen) < len(PREFACE) and PREFACE.startswith(seen):
            self._sniffing[peer] = seen  # could still be either: wait for more
            return
        if seen.startswith(PREFACE):
            link = _H2Session(self, peer, self.options, _now())
            peer.session = cast(Session, link)
            link.receive(seen)
            self._flush(peer)
            return
        self._decided.add(peer)
        self._feed(peer, seen)

    def _read_h2(self, peer: Peer, link: _H2Session) -> None:
        data = self._recv(peer)
        if data is not None:
            link.receive(data)
            self._flush(peer)

    def _recv(self, peer: Peer) -> bytes | None:
        """One read from the peer's socket (``b""`` at its end); ``None`` when nothing came
        or the read failed (the connection is then aborted)."""
        try:
            return peer.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._abort(peer, exc)
            return None

    def _finish(self, peer: Peer) -> None:
        self._sniffing.pop(peer, None)
        self._decided.discard(peer)
        super()._finish(peer)


def _link_of(peer: Peer) -> _H2Session | None:
    """The HTTP/2 side of a connection that turned out to speak it (``None``: HTTP/1.1)."""
    session: object = peer.session  # an _H2Session stands in for the Session there
    return session if isinstance(session, _H2Session) else None


def _streams_of(peer: Peer) -> list[Stream]:
    link = _link_of(peer)
    return [] if link is None else list(link.streams.values())


# -- the client ---------------------------------------------------------------------------


class ClientStream:
    """One WebSocket a :class:`Client` opened on its HTTP/2 connection (blocking calls)."""

    __slots__ = ("_client", "_inbox", "accepted", "conn", "stream_id")

    def __init__(self, client: Client, stream_id: int, conn: ClientConnection) -> None:
        self._client = client
        #: The HTTP/2 stream identifier.
        self.stream_id = stream_id
        #: The machine, OPEN.
        self.conn = conn
        #: The server's answer.
        self.accepted: Any = None
        self._inbox: deque[Event] = deque()

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or ``None``."""
        return self.conn.subprotocol

    def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message."""
        if isinstance(message, str):
            self.conn.send_text(message)
        else:
            self.conn.send_binary(message)
        self._client._flush()

    def ping(self, payload: bytes = b"") -> None:
        """Send a Ping; its Pong shows up in :meth:`recv_event`."""
        self.conn.ping(payload)
        self._client._flush()

    def recv_event(self, timeout: float | None = None) -> Event:
        """The next event of this stream (Text, Binary, Ping, Pong, Close), waiting at
        most ``timeout`` seconds (the client's timeout by default).

        :raises TimeoutError: nothing came in time.
        """
        deadline = _now() + (self._client.timeout if timeout is None else timeout)
        while not self._inbox:
            self._client._read_once(deadline)
        return self._inbox.popleft()

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; other events are skipped.

        :raises ConnectionClosed: the WebSocket closed (``code`` 1006 for a reset stream).
        """
        while True:
            event = self.recv_event(timeout)
            if isinstance(event, Close):
                closed = ConnectionClosed(
                    self.conn.close_sent or self.conn.close_owed,
                    self.conn.close_received,
                    event.error,
                )
                raise closed
            if isinstance(event, Text):
                return event.data
            data = getattr(event, "data", None)
            if isinstance(data, bytes):
                return data

    def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> Close:
        """Close the WebSocket and wait for the server's Close; return it."""
        if self.conn.state is State.OPEN:
            self.conn.close(code, reason)
            self._client._flush()
        while True:
            event = self.recv_event(timeout)
            if isinstance(event, Close):
                return event


class Client:
    """Blocking WebSockets over one cleartext HTTP/2 connection (prior knowledge), many
    streams at once (RFC 8441). Not thread-safe; every call may read the socket and hand
    the events it reads to their streams.

    :param sock: a connected socket.
    :param authority: the ``:authority`` of the requests, host[:port].
    :param scheme: ``"http"`` (ws) or ``"https"`` (wss: give a TLS socket that negotiated h2).
    :param timeout: seconds a call waits at most.
    :param options: the settings of the WebSockets
        (:class:`~wsmachine.adapters.options.ClientOptions`), or keyword settings of the same
        names.
    :raises HandshakeError: the server does not allow extended CONNECT (RFC 8441 §3).
    """

    def __init__(
        self,
        sock: socket.socket,
        authority: str,
        *,
        scheme: str = "http",
        timeout: float = 10.0,
        options: ClientOptions | None = None,
        **settings: Any,
    ) -> None:
        self.sock = sock
        self.authority = authority
        self.scheme = scheme
        self.timeout = timeout
        self.options = resolve(ClientOptions, options, settings)
        self.streams: dict[int, ClientStream] = {}
        self._openings: dict[int, tuple[ClientOpening, Event | None]] = {}
        self._out: dict[int, bytearray] = {}
        self._ended: set[int] = set()
        # Events of a stream whose 200 arrived in the same read as its first messages.
        self._early: dict[int, list[Event]] = {}
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.initiate_connection()
        self._settings_seen = False
        self._flush()
        deadline = _now() + timeout
        while not self._settings_seen:
            self._read_once(deadline)
        if self.h2.remote_settings.get(_CONNECT_PROTOCOL) != 1:
            raise HandshakeError(
                "the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1: it does not "
                "take WebSockets over HTTP/2 (RFC 8441 §3)"
            )

    def open(self, path: str = "/", *, timeout: float | None = None) -> ClientStream:
        """Open a WebSocket on a new stream; return it once the server answered 200.

        :raises HandshakeError: the server refused (its status), or answered wrongly.
        :raises TimeoutError: no answer in time.
        """
        options = self.options
        opening = ClientOpening(
            self.authority,
            path,
            scheme=self.scheme,
            subprotocols=options.subprotocols,
            extensions=options.extensions,
            origin=options.origin,
            extra_headers=options.extra_headers,
            **_framing(options),
        )
        stream_id = self.h2.get_next_available_stream_id()
        self._openings[stream_id] = (opening, None)
        self.h2.send_headers(stream_id, opening.headers)
        self._flush()
        deadline = _now() + (self.timeout if timeout is None else timeout)
        while self._openings[stream_id][1] is None:
            self._read_once(deadline)
        _, outcome = self._openings.pop(stream_id)
        if isinstance(outcome, Rejected):
            if outcome.error is not None:
                self._reset(stream_id)
            raise handshake_error(outcome)
        if isinstance(outcome, Close):
            raise handshake_error(outcome)
        assert opening.connection is not None
        stream = ClientStream(self, stream_id, opening.connection)
        stream.accepted = outcome
        stream._inbox.extend(self._early.pop(stream_id, ()))
        self.streams[stream_id] = stream
        return stream

    def close(self) -> None:
        """End the HTTP/2 connection (GOAWAY) and close the socket."""
        with contextlib.suppress(*_H2Error):
            self.h2.close_connection()
        with contextlib.suppress(OSError):
            self._flush()
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _reset(self, stream_id: int) -> None:
        with contextlib.suppress(*_H2Error):
            self.h2.reset_stream(stream_id, _CANCEL)
        self._flush()

    def _flush(self) -> None:
        for stream_id, stream in list(self.streams.items()):
            out = self._out.setdefault(stream_id, bytearray())
            out += stream.conn.data_to_send()
            with contextlib.suppress(*_H2Error):
                _send_within_window(self.h2, stream_id, out)
                if not out and stream.conn.should_close() and stream_id not in self._ended:
                    self._ended.add(stream_id)
                    self.h2.end_stream(stream_id)  # our half-close (RFC 8441 §5)
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def _read_once(self, deadline: float) -> None:
        left = deadline - _now()
        if left <= 0:
            raise TimeoutError(f"nothing arrived within {self.timeout} s")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            raise TimeoutError(f"nothing arrived within {self.timeout} s") from None
        if not data:
            for stream_id in list(self.streams):
                self._deliver(stream_id, self.streams[stream_id].conn.receive_eof())
            for stream_id, (_, outcome) in list(self._openings.items()):
                if outcome is None:
                    self._opened(stream_id, Close(code=1006, error=None))
            raise ConnectionResetError("the server closed the HTTP/2 connection")
        for event in self.h2.receive_data(data):
            self._event(event)
        self._flush()

    def _opened(self, stream_id: int, outcome: Event) -> None:
        opening, _ = self._openings[stream_id]
        self._openings[stream_id] = (opening, outcome)

    def _deliver(self, stream_id: int, events: list[Event]) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream._inbox.extend(events)
        else:  # opened in this read; open() hands them over
            self._early.setdefault(stream_id, []).extend(events)

    def _conn_of(self, stream_id: int) -> ClientConnection | None:
        """The machine of an open stream, or of one whose 200 just arrived."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream.conn
        waiting = self._openings.get(stream_id)
        if waiting is not None and isinstance(waiting[1], Accepted):
            return waiting[0].connection
        return None

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings_seen = True
        stream_id = getattr(event, "stream_id", None) or 0
        if isinstance(event, h2.events.ResponseReceived):
            waiting = self._openings.get(stream_id)
            if waiting is not None and event.headers is not None:
                outcome = waiting[0].receive_response(event.headers)
                if outcome is not None:
                    self._opened(stream_id, outcome)
        elif isinstance(event, h2.events.DataReceived):
            assert event.data is not None
            size = event.flow_controlled_length or 0
            with contextlib.suppress(*_H2Error):
                self.h2.acknowledge_received_data(size, stream_id)
            conn = self._conn_of(stream_id)
            if conn is not None:
                self._deliver(stream_id, conn.receive_data(event.data))
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            conn = self._conn_of(stream_id)
            if conn is not None:
                if isinstance(event, h2.events.StreamReset):
                    self._ended.add(stream_id)
                self._deliver(stream_id, conn.receive_eof())
            elif stream_id in self._openings and self._openings[stream_id][1] is None:
                error = RemoteProtocolError("the server ended the stream without an answer")
                self._opened(stream_id, Rejected(status_code=0, headers=(), error=error))
