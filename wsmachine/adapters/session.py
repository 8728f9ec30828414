"""The I/O-free session around one connection's machine: the rules every adapter shares.

A :class:`Session` takes bytes, calls and the current time, and answers what to write, which
messages to hand to the application, when it next needs waking, and when to end the TCP
stream and close the socket. It never reads a clock or touches a socket: the adapter passes
``now`` (any monotonic clock in seconds) and does the I/O. Every adapter of wsmachine runs on
it, and so can an embedder's own server (an ASGI server, say).

What it owns, written nowhere else:

- the open, close, linger and reply timeouts;
- keepalive: a Ping every ``ping_interval``, its Pong awaited ``ping_timeout`` (then 1011),
  Ping payloads matched to their Pongs (a Pong answers its Ping and every earlier one,
  RFC 6455 §5.5.3), and the measured round trip;
- the answer to a plain HTTP request (426 by default) or to an upgrade the application refuses;
  Origin is decided by the machine's :class:`~wsmachine.OriginPolicy`;
- the queue of received messages, bounded by ``max_queue`` (reading pauses when it is full);
- the rule that replies precede this side's Close: after the peer's Close (or a violation),
  the Close the machine owes is held until the application took every message received before
  it and came back for more (or closed), at most ``reply_timeout``;
- when to end the TCP stream (RFC 6455 §7.1.1: the server first), how long to linger for the
  peer's end, and when to close the socket;
- the record of how the connection ended (:meth:`Session.closed`).

An adapter's loop on it: read while :meth:`~Session.reading`, :meth:`~Session.feed` what
it read; hand out :meth:`~Session.next_message` (or :meth:`~Session.take_message`, which
raises once none can come); write :meth:`~Session.data_to_send`, then
end the stream or close the socket when :meth:`~Session.should_send_eof` or
:meth:`~Session.should_close` say; call :meth:`~Session.tick` at
:meth:`~Session.next_deadline`. :doc:`/explanation/sessions` shows it whole.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable

from ..broadcast import PreparedMessage
from ..close_codes import CloseCode
from ..connection import Connection, ServerConnection
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
from ..frames import READ_SIZE
from ..handshake import HeaderInput
from ..state import State
from ._common import (
    ConnectionClosed,
    HandshakeError,
    HTTPHandler,
    HTTPResponse,
    UpgradeHandler,
    handshake_error,
)
from ._common import upgrade_required as _upgrade_required
from .options import ClientOptions, Options, ServerOptions

__all__ = ["PongCallback", "Session", "SessionView"]

#: Called once per :meth:`Session.ping`: with the round trip in seconds when its Pong arrives,
#: or with ``None`` when the connection can no longer receive it.
PongCallback = Callable[[float | None], object]

_OPEN = State.OPEN
_CONNECTING = State.CONNECTING
_CLOSING = State.CLOSING
_REMOTE_CLOSING = State.REMOTE_CLOSING
_CLOSED = State.CLOSED
_REJECTING = State.REJECTING
_INF = float("inf")
#: Where reads go that the session ignores (see Session.get_buffer): never read back.
_DISCARD = memoryview(bytearray(READ_SIZE))
#: The inbox while no message waits: an empty deque costs ~760 bytes, and most idle
#: connections have nothing queued.
_NO_MESSAGES: tuple[()] = ()


class Session:
    """One WebSocket connection's session: a machine and the rules around it; no I/O.

    Make one with :meth:`server` or :meth:`client`. Not thread-safe: an adapter with several
    threads calls it under one lock.

    :param conn: the machine, fresh.
    :param options: the settings (those of the session are read here).
    :param now: the current time, in seconds of a monotonic clock.
    """

    __slots__ = (
        "_app_busy",
        "_close_deadline",
        "_eof_sent",
        "_error",
        "_hold_over",
        "_inbox",
        "_keepalive",
        "_linger_deadline",
        "_next_ping",
        "_open_deadline",
        "_opened",
        "_peer_eof",
        "_pings",
        "_pong_deadline",
        "_reply_deadline",
        "_stopped",
        "accepted",
        "conn",
        "handshake",
        "latency",
        "options",
        "wake",
    )

    def __init__(self, conn: Connection, options: Options, now: float) -> None:
        #: The machine.
        self.conn = conn
        #: The settings.
        self.options = options
        #: Server: the upgrade request, once it arrived.
        self.handshake: Handshake | None = None
        #: Client: the server's answer, once the handshake succeeded.
        self.accepted: Accepted | None = None
        #: The last Ping round trip measured, in seconds (``None`` before one).
        self.latency: float | None = None
        #: Set by the adapter: called by :meth:`next_message` when the I/O must look at the
        #: session again (reading resumes, or the Close held for the replies may go).
        self.wake: Callable[[], object] | None = None
        # A deque only while messages wait (see _NO_MESSAGES).
        self._inbox: deque[Text | Binary] | tuple[()] = _NO_MESSAGES
        self._app_busy = False  # a message was handed out and the application did not return
        self._hold_over = False  # the owed Close may go even with replies pending
        self._opened = False
        self._error: BaseException | None = None
        self._stopped = False  # aborted, or a client done waiting: close the socket now
        self._peer_eof = False
        self._eof_sent = False
        # Made by the first Ping: an idle connection without keepalive never needs it.
        self._pings: OrderedDict[bytes, tuple[float, PongCallback | None]] | None = None
        self._keepalive = b""
        self._open_deadline = now + options.open_timeout
        self._close_deadline = _INF
        self._next_ping = _INF
        self._pong_deadline = _INF
        self._reply_deadline = _INF
        self._linger_deadline = _INF

    @classmethod
    def server(cls, options: ServerOptions, now: float) -> Session:
        """A session for a connection accepted by a server."""
        return cls(options.connection(), options, now)

    @classmethod
    def client(cls, options: ClientOptions, host: str, resource: str, now: float) -> Session:
        """A session for a client connection; the upgrade request waits in
        :meth:`data_to_send`. ``host`` is the ``Host`` header, ``resource`` the target."""
        return cls(options.connection(host, resource), options, now)

    @classmethod
    def for_stream(
        cls,
        conn: Connection,
        options: Options,
        now: float,
        *,
        handshake: Handshake | None = None,
        accepted: Accepted | None = None,
    ) -> Session:
        """A session for a machine opened outside it, already OPEN: a WebSocket on an HTTP/2
        or HTTP/3 stream (RFC 8441, RFC 9220; see :mod:`wsmachine.extended_connect`).
        ``handshake`` (server) or ``accepted`` (client) records the opening."""
        session = cls(conn, options, now)
        session.handshake = handshake
        session.accepted = accepted
        session._open(now)
        return session

    # -- what the adapter reads ---------------------------------------------------------

    @property
    def opened(self) -> bool:
        """Whether the opening handshake succeeded (messages may flow, or did)."""
        return self._opened

    @property
    def error(self) -> BaseException | None:
        """What went wrong first: a protocol error, a refused handshake, a timeout, an I/O
        error; ``None`` so far."""
        return self._error

    @property
    def aborted(self) -> bool:
        """Whether the connection is dropped: close the socket at once, without flushing."""
        return self._stopped

    @property
    def can_send(self) -> bool:
        """Whether :meth:`send` and :meth:`ping` are allowed now."""
        return self.conn.can_send and not self._stopped

    @property
    def may_receive(self) -> bool:
        """Whether more messages may still arrive from the peer."""
        state = self.conn.state
        return (
            (state is _OPEN or state is _CLOSING or state is _CONNECTING)
            and not self._stopped
            and not self._peer_eof
        )

    @property
    def queued(self) -> int:
        """Messages received and not yet taken by :meth:`next_message`."""
        return len(self._inbox)

    def closed(self) -> ConnectionClosed:
        """How the connection ended (or stands): the Close frames each way and the error."""
        conn = self.conn
        # An owed Close counts as sent: nothing can come before it any more.
        local = conn.close_sent or conn.close_owed
        return ConnectionClosed(local, conn.close_received, self._error)

    def handshake_error(self) -> HandshakeError | None:
        """Why the opening handshake failed, once it did (a refusal, an invalid answer, a
        timeout, the connection lost); ``None`` while it is under way or once it succeeded."""
        if self._opened or (self.conn.state is _CONNECTING and not self._stopped):
            return None
        error = self._error
        if isinstance(error, HandshakeError):
            return error
        return HandshakeError(f"the opening handshake failed: {error}", error=error)

    # -- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Feed bytes read from the peer. Messages go to the queue (:meth:`next_message`);
        returned are the other events the adapter may act on: :class:`~wsmachine.Handshake`
        and :class:`~wsmachine.HTTPRequest` (answer with :meth:`accept` or :meth:`respond`),
        :class:`~wsmachine.Accepted`, :class:`~wsmachine.Rejected` and
        :class:`~wsmachine.Close` (already handled here; for logging)."""
        if self._eof_sent or self._stopped:
            return []  # our side is done: read on only to see the peer's end of stream
        return self._handle(self.conn.receive_data(data), now)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A buffer to read the peer's next bytes into (``sock.recv_into(view)``), then
        reported with :meth:`buffer_updated` or :meth:`feed_into`: the machine's own
        (:meth:`~wsmachine.Connection.get_buffer`, with its contract), or a throwaway one once
        the session ignores input (our side is done, or the peer's stream ended)."""
        if self._eof_sent or self._stopped or self._peer_eof:
            return _DISCARD
        return self.conn.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int, now: float) -> list[Event]:
        """Report ``nbytes`` (at least 1) read into :meth:`get_buffer`'s view; returns as
        :meth:`receive_data` does."""
        if self._eof_sent or self._stopped or self._peer_eof:
            return []  # read into the throwaway buffer (or the session stopped meanwhile)
        return self._handle(self.conn.buffer_updated(nbytes), now)

    def feed_into(
        self,
        nbytes: int,
        now: float,
        *,
        on_http: HTTPHandler | None = None,
        on_upgrade: UpgradeHandler | None = None,
    ) -> Exception | None:
        """:meth:`feed` for a read into :meth:`get_buffer`'s view: ``nbytes`` read, ``0``
        for the end of the peer's stream (what ``recv_into`` returns)."""
        events = self.buffer_updated(nbytes, now) if nbytes else self.receive_eof(now)
        return self._answer_all(events, now, on_http, on_upgrade)

    def feed(
        self,
        data: bytes | bytearray | memoryview | None,
        now: float,
        *,
        on_http: HTTPHandler | None = None,
        on_upgrade: UpgradeHandler | None = None,
    ) -> Exception | None:
        """Feed what the transport read: bytes, or ``None`` (or nothing) for the end of the
        peer's stream; a request it completes is answered by the hooks, as :meth:`answer`
        does. Returns the exception of a hook that raised (answered with 500), to log."""
        events = self.receive_data(data, now) if data else self.receive_eof(now)
        return self._answer_all(events, now, on_http, on_upgrade)

    def _answer_all(
        self,
        events: list[Event],
        now: float,
        on_http: HTTPHandler | None,
        on_upgrade: UpgradeHandler | None,
    ) -> Exception | None:
        error = None
        for event in events:
            if isinstance(event, Handshake | HTTPRequest):
                error = self.answer(event, now, on_http=on_http, on_upgrade=on_upgrade)
        return error

    def receive_eof(self, now: float) -> list[Event]:
        """The peer's byte stream ended; returns as :meth:`receive_data` does."""
        self._peer_eof = True
        return self._handle(self.conn.receive_eof(), now)

    def abort(self, error: BaseException) -> None:
        """The transport failed, or the application drops the connection: close the socket
        now (:meth:`should_close` becomes true). ``error`` is recorded if it is the first."""
        self._fail(error)
        self._stop()

    def _fail(self, error: BaseException | None) -> None:
        if self._error is None:
            self._error = error

    def _handle(self, events: list[Event], now: float) -> list[Event]:
        others: list[Event] = []
        for event in events:
            if isinstance(event, Text | Binary):
                inbox = self._inbox
                if not inbox:
                    inbox = self._inbox = deque()
                inbox.append(event)
                continue
            if isinstance(event, Pong):
                self._pong(event.payload, now)
                continue
            if isinstance(event, Close):
                if not self._opened:
                    self._fail(handshake_error(event) if self.conn.client else event.error)
                elif event.error is not None:
                    self._fail(event.error)
            elif isinstance(event, Rejected):
                self._fail(handshake_error(event) if self.conn.client else event.error)
            elif isinstance(event, Accepted):
                self.accepted = event
                self._open(now)
            elif isinstance(event, Handshake):
                self.handshake = event
            others.append(event)  # a Ping too: the machine answered it
        self._after(now)
        return others

    # -- the opening handshake (server) ---------------------------------------------------

    def accept(
        self,
        handshake: Handshake,
        now: float,
        *,
        subprotocol: str | None = None,
        extra_headers: HeaderInput = (),
    ) -> None:
        """Accept the upgrade (the machine picks the subprotocol unless told); frames the
        client sent with its request go to the queue.

        :raises LocalProtocolError: as :meth:`~wsmachine.ServerConnection.accept` does.
        """
        conn = self.conn
        assert isinstance(conn, ServerConnection)
        early = conn.accept(handshake, subprotocol=subprotocol, extra_headers=extra_headers)
        self._open(now)
        self._handle(early, now)

    def respond(
        self, request: Handshake | HTTPRequest, response: HTTPResponse | None, now: float
    ) -> None:
        """Answer ``request`` with an HTTP response and end the connection: a page or a
        health check for a plain request, or the refusal of an upgrade. ``None`` answers
        426 Upgrade Required (this port speaks WebSocket)."""
        conn = self.conn
        assert isinstance(conn, ServerConnection)
        if response is None:
            response = _upgrade_required(request)
        conn.reject(request, status=response.status, headers=response.headers, body=response.body)
        self._after(now)

    def respond_start(
        self, request: Handshake | HTTPRequest, status: int, headers: HeaderInput, now: float
    ) -> None:
        """Start answering ``request`` with a response whose body follows in pieces
        (:meth:`respond_body`); the connection stays up until the body ends. See
        :meth:`~wsmachine.ServerConnection.reject_start`."""
        conn = self.conn
        assert isinstance(conn, ServerConnection)
        conn.reject_start(request, status=status, headers=headers)
        self._after(now)

    def respond_body(self, data: bytes, now: float, *, end: bool = False) -> None:
        """Send the next piece of the body :meth:`respond_start` began; ``end=True`` ends it
        and the connection. See :meth:`~wsmachine.ServerConnection.reject_body`."""
        conn = self.conn
        assert isinstance(conn, ServerConnection)
        conn.reject_body(data, end=end)
        self._after(now)

    def answer(
        self,
        request: Handshake | HTTPRequest,
        now: float,
        *,
        on_http: HTTPHandler | None = None,
        on_upgrade: UpgradeHandler | None = None,
    ) -> Exception | None:
        """Answer ``request`` by the application's hooks: ``on_http`` answers a plain request
        (``None`` from it, or no hook: 426); ``on_upgrade`` decides on an upgrade (``None``:
        accept; a response refuses). A hook that raises is answered with 500, and its
        exception returned for the adapter to log (``None`` otherwise)."""
        error = None
        try:
            if isinstance(request, Handshake):
                response = None if on_upgrade is None else on_upgrade(request)
            else:
                response = None if on_http is None else on_http(request)
        except Exception as exc:
            error = exc
            response = HTTPResponse(500, [("content-type", "text/plain")], b"internal error\n")
        if response is None and isinstance(request, Handshake):
            self.accept(request, now)
        else:
            self.respond(request, response, now)
        return error

    def _open(self, now: float) -> None:
        self._opened = True
        self._open_deadline = _INF
        interval = self.options.ping_interval
        if interval is not None:
            self._next_ping = now + interval

    # -- the application's calls ----------------------------------------------------------

    def next_message(self) -> Text | Binary | None:
        """Hand the next received message to the application, or ``None`` when none waits.

        Calling it also tells the session the application is done with the message it took
        before: after the peer's Close, the Close this side owes goes out once every message
        received before it was taken and the application came back (a ``None`` here).
        """
        inbox = self._inbox
        # Wake the adapter when this take lets reading resume (the queue falls below
        # max_queue: once, not at every take from a longer queue, each wake being a pump and
        # a write), or when the owed Close may now go out.
        due = len(inbox) == self.options.max_queue or self.conn.state is _REMOTE_CLOSING
        if inbox:
            self._app_busy = True
            event = inbox.popleft()
            if not inbox:
                self._inbox = _NO_MESSAGES
        else:
            self._app_busy = False
            event = None
        if due and self.wake is not None:
            self.wake()
        return event

    def take_message(self, transport_done: bool = False) -> Text | Binary | None:
        """:meth:`next_message` for an application that waits (a ``recv()``): the next
        message, or ``None`` while one may still come (wait for the adapter, then ask again).

        :param transport_done: the adapter's I/O has ended: nothing more will be fed.
        :raises ConnectionClosed: no message is queued and none can come (:meth:`closed`).
        """
        event = self.next_message()
        if event is None and (transport_done or not self.may_receive):
            raise self.closed()
        return event

    def send(self, message: str | bytes | bytearray | memoryview, *, compress: bool = True) -> None:
        """Queue a text (``str``) or binary message.

        :raises ConnectionClosed: the connection is closing or closed.
        """
        if not self.can_send:
            raise self.closed()
        if isinstance(message, str):
            self.conn.send_text(message, compress=compress)
        else:
            self.conn.send_binary(message, compress=compress)

    def send_prepared(self, prepared: PreparedMessage) -> None:
        """Queue a message framed once for a broadcast (:func:`wsmachine.broadcast.prepare`):
        its frame as it is where the machine allows it
        (:meth:`~wsmachine.Connection.send_prepared`), else the message framed for this
        connection, as :meth:`send` does.

        :raises ConnectionClosed: the connection is closing or closed.
        """
        if self._stopped:
            raise self.closed()
        # The machine checks the rest of can_send: it shares the frame only when OPEN.
        if not self.conn.send_prepared(prepared):
            self.send(prepared.message)

    def ping(
        self, now: float, payload: bytes | None = None, on_pong: PongCallback | None = None
    ) -> bytes:
        """Queue a Ping and return its payload (by default 4 random bytes, unique among the
        Pings waiting). ``on_pong`` is called with the round trip when the Pong arrives, or
        with ``None`` if the connection ends first.

        :raises ConnectionClosed: no Pong can come any more (the peer closed, or we did and
            the peer answered).
        :raises ValueError: a Ping with this payload is still waiting for its Pong.
        :raises LocalProtocolError: the payload is longer than 125 bytes.
        """
        state = self.conn.state
        if (state is not _OPEN and state is not _CLOSING) or self._stopped:
            raise self.closed()
        pings = self._pings
        if pings is None:
            pings = self._pings = OrderedDict()
        if payload is None:
            payload = os.urandom(4)
            while payload in pings:
                payload = os.urandom(4)
        elif payload in pings:
            raise ValueError(f"a Ping with payload {payload!r} is still waiting for its Pong")
        self.conn.ping(payload)
        pings[payload] = (now, on_pong)
        return payload

    def _pong(self, payload: bytes, now: float) -> None:
        pings = self._pings
        if pings is None or payload not in pings:
            return  # unsolicited, or not ours: a heartbeat (RFC 6455 §5.5.3)
        # A Pong answers its Ping and every earlier one.
        while pings:
            sent, (when, callback) = pings.popitem(last=False)
            if sent == self._keepalive:
                self._keepalive = b""
                self._pong_deadline = _INF
                interval = self.options.ping_interval
                if interval is not None:
                    self._next_ping = now + interval
            if callback is not None:
                callback(now - when)
            if sent == payload:
                self.latency = now - when
                return

    def close(
        self, now: float, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = ""
    ) -> None:
        """Start the closing handshake; no effect unless open. Once the peer's Close
        arrived, it lets the Close this side owes go at once, replies or not.

        :raises LocalProtocolError: ``code`` may not be sent, or ``reason`` is too long.
        """
        state = self.conn.state
        if state is _OPEN and not self._stopped:
            self.conn.close(code, reason)
        elif state is _REMOTE_CLOSING:
            self._hold_over = True
        self._after(now)

    # -- output ---------------------------------------------------------------------------

    def _holding(self) -> bool:
        return (
            self.conn.state is _REMOTE_CLOSING
            and not self._hold_over
            and (self._app_busy or bool(self._inbox))
        )

    def data_to_send(self) -> bytes:
        """The bytes to write now (``b""`` when none). While the application may still
        answer messages received before the peer's Close, nothing is released."""
        if self._stopped or self._holding():
            return b""
        return self.conn.data_to_send()

    def data_to_send_parts(self) -> list[bytes]:
        """:meth:`data_to_send` as pieces for a gathering write
        (:meth:`~wsmachine.Connection.data_to_send_parts`); ``[]`` when none."""
        if self._stopped or self._holding():
            return []
        return self.conn.data_to_send_parts()

    def should_send_eof(self) -> bool:
        """Whether to end our TCP stream now (``shutdown(SHUT_WR)``, ``send_eof()``); ask
        once everything :meth:`data_to_send` gave is written. Then call :meth:`eof_sent`."""
        return (
            not self._eof_sent
            and not self._stopped
            and not self._holding()
            and self.conn.should_close()
        )

    def eof_sent(self, now: float) -> None:
        """Our TCP stream was ended: linger for the peer's end, at most ``linger_timeout``."""
        self._eof_sent = True
        options = self.options
        self._linger_deadline = now + min(options.linger_timeout, options.close_timeout)

    def should_close(self) -> bool:
        """Whether to close the socket now; ask once everything :meth:`data_to_send` gave is
        written (or when it cannot be: the transport failed)."""
        if self._stopped:
            return True
        if self._peer_eof:
            # Our owed Close goes out first; a streamed HTTP answer ends first (the peer's
            # end of stream is only a half-close).
            state = self.conn.state
            return state is not _REMOTE_CLOSING and state is not _REJECTING
        return self._eof_sent and self._linger_deadline == _INF

    def reading(self) -> bool:
        """Whether to read from the transport now: not after the peer's end of stream, and
        not while ``max_queue`` messages wait for the application (back-pressure)."""
        if self._peer_eof or self._stopped:
            return False
        if self._eof_sent:
            return True
        return len(self._inbox) < self.options.max_queue

    # -- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (``None``: nothing scheduled)."""
        deadline = min(
            self._open_deadline,
            self._close_deadline,
            self._next_ping,
            self._pong_deadline,
            self._linger_deadline,
            self._reply_deadline if self._holding() else _INF,
        )
        return None if deadline == _INF else deadline

    def tick(self, now: float) -> None:
        """Run what is due at ``now``: timeouts, keepalive. Write what :meth:`data_to_send`
        has afterwards, and ask :meth:`should_close`."""
        options = self.options
        conn = self.conn
        if now >= self._open_deadline:
            self._open_deadline = _INF
            if conn.state is _CONNECTING:
                what = "the opening handshake"
                self.abort(TimeoutError(f"{what} took over {options.open_timeout} s"))
                return
        if now >= self._linger_deadline:
            self._linger_deadline = _INF  # should_close() now answers True
        if now >= self._close_deadline:
            self._close_deadline = _INF
            if conn.client and conn.state is _CLOSED and not conn.should_close():
                # A clean close, but the server did not end TCP in time (RFC 6455 §7.1.1):
                # the client closes it, and that is no error.
                self._stop()
            else:
                self.abort(
                    TimeoutError(f"the closing handshake took over {options.close_timeout} s")
                )
            return
        if now >= self._reply_deadline:
            self._reply_deadline = _INF
            self._hold_over = True
        if now >= self._pong_deadline:
            self._pong_deadline = _INF
            self._fail(TimeoutError(f"no Pong within {options.ping_timeout} s of a keepalive Ping"))
            self.close(now, CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        elif now >= self._next_ping:
            self._next_ping = _INF
            if conn.state is _OPEN and not self._stopped:
                self._keepalive = self.ping(now)
                self._pong_deadline = now + options.ping_timeout
        self._after(now)

    # -- bookkeeping ----------------------------------------------------------------------

    def _after(self, now: float) -> None:
        """Arm the timers the new state needs; give up on Pongs that can no longer come."""
        conn = self.conn
        state = conn.state
        if self._close_deadline == _INF and conn.close_expected() and not self._stopped:
            self._close_deadline = now + self.options.close_timeout
        if state is _REMOTE_CLOSING and self._reply_deadline == _INF and not self._hold_over:
            self._reply_deadline = now + self.options.reply_timeout
        if state is not _OPEN and state is not _CLOSING and state is not _CONNECTING:
            self._no_more_pongs()

    def _no_more_pongs(self) -> None:
        """Stop keepalive and tell the waiting pings that their Pong will not come."""
        self._next_ping = self._pong_deadline = _INF
        pings = self._pings
        while pings:
            _, (_, callback) = pings.popitem(last=False)
            if callback is not None:
                callback(None)

    def _stop(self) -> None:
        self._stopped = True
        self._open_deadline = self._close_deadline = self._linger_deadline = _INF
        self._reply_deadline = _INF
        self._no_more_pongs()


class SessionView:
    """What every adapter's connection object shows, read from its :class:`Session` (the
    ``session`` attribute): a mixin, so that no adapter writes these again."""

    __slots__ = ()

    session: Session

    @property
    def state(self) -> State:
        """The machine's state."""
        return self.session.conn.state

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the opening handshake, or ``None``."""
        return self.session.conn.subprotocol

    @property
    def handshake(self) -> Handshake | None:
        """Server side: the client's upgrade request, once it arrived."""
        return self.session.handshake

    @property
    def accepted(self) -> Accepted | None:
        """Client side: the server's answer, once the handshake succeeded."""
        return self.session.accepted

    @property
    def latency(self) -> float | None:
        """The last Ping round trip measured, in seconds (keepalive or ``ping()``)."""
        return self.session.latency
