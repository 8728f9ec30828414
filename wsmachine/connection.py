"""The connection: one WebSocket's state machine, composed of the handshake, frame and
message layers. It never does I/O: bytes go in through :meth:`Connection.receive_data`,
events come out, and the bytes to write wait in :meth:`Connection.data_to_send`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar, Literal, Self

from .broadcast import PreparedMessage
from .close_codes import (
    CloseCode,
    CloseInfo,
    build_close_payload,
    check_code_to_send,
    parse_close_payload,
)
from .errors import InvalidArgumentError, LocalProtocolError, RemoteProtocolError
from .events import (
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
    whole_binary,
    whole_text,
)
from .extensions.base import Extension, ExtensionCodec
from .frames import (
    MAX_READ_SIZE,
    READ_SIZE,
    SHORT_HEADERS,
    Frame,
    FrameReader,
    MaskKeySource,
    Opcode,
    build_frame,
    frame_header,
)
from .handshake import (
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_LINE_SIZE,
    ClientHandshake,
    HeaderInput,
    ServerHandshake,
    handshake_key,
)
from .headers import ExtensionOffer
from .negotiation import Agreement, accept_offers, choose_subprotocol
from .origin import OriginPolicy
from .state import Action, State, transition
from .utf8 import IncrementalValidator, InvalidUTF8Error

__all__ = ["ClientConnection", "Connection", "ServerConnection"]

_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED
_CONNECTING = State.CONNECTING
_REMOTE_CLOSING = State.REMOTE_CLOSING
_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value
_CONT = Opcode.CONTINUATION.value
_CLOSE = Opcode.CLOSE.value
_PING = Opcode.PING.value
_PONG = Opcode.PONG.value

#: Default largest message: 1 MiB, like the peers; raise it for bulk transfers.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
#: An unmasked payload this large or larger is queued apart from its header, not copied
#: into a frame (:meth:`Connection.data_to_send_parts`); smaller ones are cheaper joined.
SEPARATE_PAYLOAD_SIZE = 16 << 10
#: Default largest HTTP head (request line or status line plus headers).
DEFAULT_MAX_HANDSHAKE_SIZE = 16 << 10
#: Default largest body of a refusal kept by a client.
DEFAULT_MAX_REJECTION_BODY = 64 << 10
#: Default longest line of the HTTP head, counting its CRLF: request line (414 above it),
#: status line or header line (431 above it).
DEFAULT_MAX_HANDSHAKE_LINE = DEFAULT_MAX_LINE_SIZE
#: Default largest number of header lines in the HTTP head (431 above it).
DEFAULT_MAX_HANDSHAKE_HEADERS = DEFAULT_MAX_HEADERS
#: Fewest frames per message allowed by default, whatever ``max_message_size`` is.
MIN_DEFAULT_MAX_FRAGMENTS = 4096
#: By default a message may have one frame per this many bytes of ``max_message_size``.
BYTES_PER_DEFAULT_FRAGMENT = 256


def default_max_fragments(max_message_size: int) -> int:
    """The ``max_fragments`` used when none is given: one frame per 256 bytes of
    ``max_message_size``, and at least 4096 (4096 for the default 1 MiB).

    A fragment costs about 60 bytes of bookkeeping however short it is, so tying the count
    to the size keeps that overhead under a quarter of ``max_message_size`` (or 256 KiB).
    """
    return max(MIN_DEFAULT_MAX_FRAGMENTS, max_message_size // BYTES_PER_DEFAULT_FRAGMENT)


#: The largest value any size setting may take: 2**63 - 1, the longest payload a frame
#: header can declare (RFC 6455 §5.2). A larger limit could never be reached; refusing it keeps
#: every size the parser and zlib see within 64 bits.
MAX_LIMIT = (1 << 63) - 1

#: Each size setting of the machines, and its smallest allowed value.
LIMIT_MINIMUMS: dict[str, int] = {
    "max_message_size": 1,
    "max_frame_size": 1,
    "max_fragments": 1,
    "max_handshake_size": 1,
    "max_handshake_line": 1,
    "max_handshake_headers": 0,
    "max_rejection_body": 0,
}
# The settings whose None means "derive it from max_message_size".
_DERIVED_LIMITS = frozenset({"max_frame_size", "max_fragments"})


def check_limits(**limits: object) -> None:
    """Check size settings (names of ``LIMIT_MINIMUMS``): each an ``int`` from its minimum
    to ``MAX_LIMIT``, or ``None`` for those derived from ``max_message_size``.

    :raises TypeError: a setting is not an ``int``.
    :raises InvalidArgumentError: a setting is out of range.
    """
    for name, value in limits.items():
        if value is None and name in _DERIVED_LIMITS:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < LIMIT_MINIMUMS[name]:
            kind = "positive" if LIMIT_MINIMUMS[name] else "non-negative"
            raise InvalidArgumentError(f"{name} must be {kind}, not {value}")
        if value > MAX_LIMIT:
            raise InvalidArgumentError(
                f"{name} must be at most 2**63 - 1, not {value}: no frame can declare a "
                "longer payload (RFC 6455 §5.2), so no larger limit can ever be reached"
            )


def _release(view: memoryview) -> None:
    """Release a view from get_buffer(), unless the caller still holds a buffer export of it
    for the moment (uvloop does while it calls buffer_updated()): then it dies with the
    caller's last reference, and the reader works around the export meanwhile."""
    try:  # noqa: SIM105 - a with statement costs more on this path
        view.release()
    except BufferError:
        pass


def _out_of_order(opcode: int) -> RemoteProtocolError:
    """A data frame that breaks the order of fragments (RFC 6455 §5.4)."""
    if opcode == _CONT:
        return RemoteProtocolError(
            "a continuation frame arrived with no message to continue (RFC 6455 §5.4)"
        )
    return RemoteProtocolError(
        "a new data frame arrived before the fragmented message ended: expected a "
        "continuation frame (RFC 6455 §5.4)"
    )


class Connection(abc.ABC):
    """What the two roles share: the frame and message layers, sending and closing.

    Use :class:`ServerConnection` or :class:`ClientConnection`.
    """

    __slots__ = (
        "_agreed_extensions",
        "_auto_pong",
        "_client",
        "_close_reasons",
        "_close_received",
        "_close_sent",
        "_closed_first",
        "_codecs",
        "_eof",
        "_failed",
        "_held",
        "_held_info",
        "_masks",
        "_max_fragments",
        "_max_frame_size",
        "_max_message_size",
        "_msg_frames",
        "_msg_opcode",
        "_msg_parts",
        "_msg_rsv",
        "_msg_size",
        "_out",
        "_peek_offset",
        "_peek_text",
        "_peek_utf8",
        "_plain_send",
        "_reader",
        "_send_opcode",
        "_state",
        "_stream",
        "_subprotocol",
        "_text_parts",
        "_utf8",
        "_view",
        "_view_reader",
    )

    def __init__(
        self,
        *,
        client: bool,
        max_message_size: int,
        max_frame_size: int | None,
        stream: bool,
        auto_pong: bool,
        max_fragments: int | None = None,
        close_reasons: bool = True,
    ) -> None:
        check_limits(
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            max_fragments=max_fragments,
        )
        self._client = client
        self._state = _CONNECTING
        self._out: list[bytes] = []
        self._max_message_size = max_message_size
        self._max_frame_size = (
            max_message_size if max_frame_size is None else min(max_frame_size, max_message_size)
        )
        self._max_fragments = (
            default_max_fragments(max_message_size) if max_fragments is None else max_fragments
        )
        self._stream = stream
        self._auto_pong = auto_pong
        self._close_reasons = close_reasons
        self._reader: FrameReader | None = None
        self._codecs: tuple[ExtensionCodec, ...] = ()
        self._plain_send = False  # server, no extension: small messages take a short path
        self._masks: MaskKeySource | None = MaskKeySource() if client else None
        self._msg_opcode = 0  # opcode of the message being received, 0 between messages
        self._msg_rsv = 0  # its first frame's RSV bits: nonzero when an extension transforms it
        self._msg_parts: list[bytes] = []
        self._text_parts: list[str] = []
        self._msg_size = 0
        self._msg_frames = 0  # frames of the message being received so far
        self._utf8: IncrementalValidator | None = None
        self._send_opcode = 0  # opcode of the fragmented message being sent, 0 between messages
        self._failed = False
        self._eof = False
        # The Close frame owed in REMOTE_CLOSING (after the peer's Close or a violation), and
        # what it says. It waits for the next data_to_send(), so replies to the events of the
        # same receive_data() call, queued meanwhile, go out first: the output then does not
        # depend on how the input was split (a Text and a bad frame in one read get the
        # Text's echo, as in two reads).
        self._held: bytes | None = None
        self._held_info: CloseInfo | None = None
        self._close_sent: CloseInfo | None = None
        self._close_received: CloseInfo | None = None
        self._closed_first: Literal["local", "remote"] | None = None
        self._subprotocol: str | None = None
        self._agreed_extensions: tuple[ExtensionOffer, ...] = ()
        self._peek_utf8: IncrementalValidator | None = None  # see _check_partial_frame
        self._peek_offset = 0
        self._peek_text: list[str] | None = None  # what the checks decoded of a text frame
        self._view: memoryview | None = None  # get_buffer()'s, until buffer_updated()
        self._view_reader = False  # that view is the frame reader's own buffer

    # -- inspection ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current :class:`~wsmachine.State`."""
        return self._state

    @property
    def client(self) -> bool:
        """``True`` for the client role, ``False`` for the server role."""
        return self._client

    @property
    def can_send(self) -> bool:
        """Whether :meth:`send_text`, :meth:`send_binary`, :meth:`ping` and :meth:`pong` are
        allowed now.

        True while OPEN, and in REMOTE_CLOSING: after a :meth:`receive_data` call that ended
        the connection (the peer's Close, or a violation) until the next
        :meth:`data_to_send`, replies to that call's earlier events still go out, before this
        side's Close frame. So a reply does not depend on whether its message and the Close
        came in one read.
        """
        state = self._state
        return state is _OPEN or state is _REMOTE_CLOSING

    @property
    def close_sent(self) -> CloseInfo | None:
        """The Close frame this side sent (handed to :meth:`data_to_send`), or ``None``.

        Set by :meth:`close`, and by :meth:`data_to_send` when it releases the Close the
        machine owed: the echo of the peer's code, or the failing Close after a violation.
        """
        return self._close_sent

    @property
    def close_owed(self) -> CloseInfo | None:
        """In REMOTE_CLOSING, the Close this side owes (the echo of the peer's code, or the
        failing Close): it goes out with the next :meth:`data_to_send`. ``None`` otherwise."""
        return self._held_info if self._held is not None else None

    @property
    def close_received(self) -> CloseInfo | None:
        """The Close frame the peer sent, or ``None`` when none arrived."""
        return self._close_received

    @property
    def closed_first(self) -> Literal["local", "remote"] | None:
        """Which side's Close frame came first: ``"local"`` when this side closed (by
        :meth:`close`, or with the failing Close after the peer broke the protocol),
        ``"remote"`` when the peer's Close arrived first, ``None`` while neither did."""
        return self._closed_first

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the opening handshake (``None`` before it or if none)."""
        return self._subprotocol

    @property
    def extensions(self) -> tuple[ExtensionOffer, ...]:
        """The extensions agreed in the opening handshake, as the server's answer lists them."""
        return self._agreed_extensions

    def close_expected(self) -> bool:
        """Whether the TCP connection is about to end: arm a close timer (RFC 6455 §7.1.1)."""
        return self._state in (_CLOSING, _REMOTE_CLOSING, _CLOSED, State.REJECTED)

    def should_close(self) -> bool:
        """Whether the transport should close TCP now, once :meth:`data_to_send` is written.

        True after a refused handshake, after the connection failed or the stream ended, and
        on the server once both Close frames are exchanged: the server closes TCP first
        (RFC 6455 §7.1.1). A client that closed cleanly waits for the server to close TCP and
        closes it itself only when a timer set at :meth:`close_expected` runs out.
        """
        state = self._state
        if state is _CLOSED:
            return not self._client or self._failed or self._eof
        return state is State.REJECTED

    # -- output -------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Return, and forget, the bytes queued for the peer (``b""`` when none).

        When the last :meth:`receive_data` ended the connection (the peer's Close, or a
        violation), the Close frame this side owes goes out here, after any replies queued
        while handling that call's events.
        """
        out = self._out
        held = self._held
        if held is not None:
            self._release_held(held)
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def data_to_send_parts(self) -> list[bytes]:
        """As :meth:`data_to_send`, but the pieces as they were queued, not joined, to write
        in order with a gathering write (``transport.writelines``, ``socket.sendmsg``): a
        server's large payload is then never copied. ``[]`` when none."""
        held = self._held
        if held is not None:
            self._release_held(held)
        out = self._out
        if not out:
            return []
        self._out = []
        return out

    def _release_held(self, held: bytes) -> None:
        """Queue the Close this side owes, after the replies queued before it."""
        self._state = transition(self._state, Action.SEND_OWED_CLOSE)
        self._out.append(held)
        self._held = None
        self._close_sent = self._held_info

    # -- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete, in order.

        Input after the connection has closed is ignored (RFC 6455 §1.4), and so is empty
        ``data``: the end of the stream is reported with :meth:`receive_eof`. A protocol
        violation by the peer is not raised: the answer the RFC requires is queued and a
        :class:`Close` or :class:`Rejected` event carries the :class:`RemoteProtocolError`.
        The caller may reuse ``data`` afterwards. A view from :meth:`get_buffer` not yet
        reported is released (what was read into it is dropped).

        :raises LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise LocalProtocolError("receive_data() after receive_eof(): the stream has ended")
        if self._view is not None:
            self._drop_view()
        if not data:
            return []  # h11 would take b"" for the end of the stream
        state = self._state
        if state is _OPEN or state is _CLOSING:
            return self._receive_frames(data)
        if state is _CONNECTING:
            return self._receive_handshake(bytes(data))
        return []

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A writable buffer to read the peer's next bytes into, as
        :meth:`asyncio.BufferedProtocol.get_buffer` gives one: read into it
        (``n = sock.recv_into(view)``), then report the count with :meth:`buffer_updated`.

        Once the connection is open the view is the connection's own receive buffer, after the
        bytes it keeps: nothing is copied in, a masked payload is unmasked there once, and a
        finished payload is copied out once (a Binary's ``bytes``; a Text is decoded once).
        Its size: a read's worth (about 256 KiB; ``sizehint``, capped there, is a hint), or,
        once a large frame has begun, its rest (up to 16 times what has arrived of it) and
        room for one more read, so a large message lands once where it stays. With nothing
        pending the connection holds no buffer, so an idle connection costs none: the view is
        then one of a few read-sized buffers the process's connections share, taken back when
        a read ends on the end of a frame.

        The view is valid only until the next call on the receiving side:
        :meth:`buffer_updated`, ``get_buffer``, :meth:`receive_data` or :meth:`receive_eof`
        release it (the last three drop it unreported), and using it afterwards raises
        ``ValueError``. Keep nothing made from it (a slice, ``view.obj``) past that call: the
        buffer may be another connection's next. See "Read into the connection's buffer" in
        the event-loop how-to.

        :raises LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise LocalProtocolError("get_buffer() after receive_eof(): the stream has ended")
        if self._view is not None:
            self._drop_view()  # asked again without reporting: nothing arrived
        state = self._state
        if state is _OPEN or state is _CLOSING:
            reader = self._reader
            assert reader is not None
            view = reader.reserve(sizehint)
            self._view_reader = True
        else:
            # The handshake, or input ignored after the close: a buffer of its own.
            size = READ_SIZE if sizehint <= 0 else min(sizehint, MAX_READ_SIZE)
            view = memoryview(bytearray(size))
            self._view_reader = False
        self._view = view
        return view

    def buffer_updated(self, nbytes: int) -> list[Event]:
        """Report that ``nbytes`` bytes were read into the start of the view :meth:`get_buffer`
        returned; return the events they complete, as :meth:`receive_data` does. The view is
        released, even when this raises.

        ``nbytes`` must be at least 1: a read of 0 bytes is the end of the stream, which is
        :meth:`receive_eof`'s to report.

        :raises LocalProtocolError: no view from :meth:`get_buffer` is waiting (never asked
            for, or already reported or released), or ``nbytes`` is not between 1 and the
            view's length.
        """
        view = self._view
        if view is None:
            raise LocalProtocolError(
                "buffer_updated() without a view from get_buffer() waiting for it: each "
                "get_buffer() is reported once, before any other receiving call"
            )
        self._view = None
        size = len(view)
        if type(nbytes) is not int or not 0 < nbytes <= size:
            _release(view)
            if type(nbytes) is not int:
                raise TypeError(f"buffer_updated() takes an int, not {type(nbytes).__name__}")
            if nbytes == 0:
                raise LocalProtocolError(
                    "buffer_updated(0): a read of 0 bytes is the end of the stream; "
                    "report it with receive_eof()"
                )
            raise LocalProtocolError(
                f"buffer_updated({nbytes}): the view from get_buffer() holds {size} bytes"
            )
        if self._view_reader:
            _release(view)
            state = self._state
            if state is _OPEN or state is _CLOSING:
                reader = self._reader
                assert reader is not None
                frames, error = reader.commit(nbytes)
                return self._frames_received(reader, frames, error)
            # Never: only a receiving call moves the state out of OPEN or CLOSING, and each
            # of them drops an unreported view first.
            return []  # pragma: no cover
        data = view[:nbytes].tobytes()
        _release(view)
        return self.receive_data(data)

    def _drop_view(self) -> None:
        view = self._view
        assert view is not None
        self._view = None
        _release(view)

    def receive_eof(self) -> list[Event]:
        """Report that the peer's byte stream ended; return the resulting events.

        Ending without a Close frame is an abnormal closure, reported as ``Close(code=1006)``
        with an error (RFC 6455 §7.1.5). Calling it again returns no events.
        """
        if self._view is not None:
            self._drop_view()
        if self._eof:
            return []
        self._eof = True
        state = self._state
        if state is _CONNECTING:
            return self._handshake_eof()
        if state is _OPEN or state is _CLOSING:
            error = RemoteProtocolError(
                "the stream ended without a Close frame (RFC 6455 §7.1.5)",
                close_code=CloseCode.ABNORMAL_CLOSURE,
            )
            self._state = transition(state, Action.RECEIVE_EOF)
            return [Close(code=error.close_code, error=error)]
        return []

    @abc.abstractmethod
    def _receive_handshake(self, data: bytes) -> list[Event]:
        """Feed bytes to the opening handshake of this role."""

    def _handshake_eof(self) -> list[Event]:
        error = RemoteProtocolError(
            "the stream ended during the opening handshake (RFC 6455 §4)",
            close_code=CloseCode.ABNORMAL_CLOSURE,
        )
        self._state = transition(self._state, Action.RECEIVE_EOF)
        return [Close(code=error.close_code, error=error)]

    #: The action that opens a connection of this role: ``accept()`` or a valid 101.
    _OPENING: ClassVar[Action]

    @classmethod
    def for_stream(
        cls,
        agreement: Agreement,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int | None = None,
        stream: bool = False,
        auto_pong: bool = True,
        close_reasons: bool = True,
    ) -> Self:
        """A connection already OPEN, for a WebSocket opened outside this machine: by an
        extended CONNECT on an HTTP/2 or HTTP/3 stream answered with 200 (RFC 8441 §5,
        RFC 9220 §3), where no 101 exists. It masks and frames exactly as after a 101.
        :mod:`wsmachine.extended_connect` checks the request or the answer and negotiates
        ``agreement``; the settings are as for the constructor.
        """
        self = cls.__new__(cls)
        Connection.__init__(
            self,
            client=cls._OPENING is Action.RECEIVE_ACCEPT,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            stream=stream,
            auto_pong=auto_pong,
            max_fragments=max_fragments,
            close_reasons=close_reasons,
        )
        self._stream_opening()
        self._open(agreement.codecs, cls._OPENING, agreement.subprotocol, agreement.extensions)
        return self

    @abc.abstractmethod
    def _stream_opening(self) -> None:
        """Set this role's handshake fields for a connection opened on a stream."""

    def _open(
        self,
        codecs: Sequence[ExtensionCodec],
        action: Action,
        subprotocol: str | None,
        extensions: Sequence[ExtensionOffer],
    ) -> None:
        self._subprotocol = subprotocol
        self._agreed_extensions = tuple(extensions)
        rsv = 0
        for codec in codecs:
            rsv |= codec.rsv_bits
        self._codecs = tuple(codecs)
        self._plain_send = not codecs and not self._client
        # A frame is bounded before it is buffered; a compressed one may be larger on the wire
        # than the data it carries, by as much as the codec's encoding can expand it.
        max_wire = self._max_frame_size
        for codec in codecs:
            max_wire = codec.max_wire_size(max_wire)
        self._reader = FrameReader(
            expect_masked=not self._client, max_frame_size=max_wire, rsv_allowed=rsv
        )
        self._state = transition(self._state, action)

    def _receive_frames(self, data: bytes | bytearray | memoryview) -> list[Event]:
        reader = self._reader
        assert reader is not None
        frames, error = reader.feed(data)
        return self._frames_received(reader, frames, error)

    def _frames_received(
        self, reader: FrameReader, frames: list[Frame], error: RemoteProtocolError | None
    ) -> list[Event]:
        events: list[Event] = []
        append = events.append
        # The first frame's start may have been decoded already, checked as it arrived.
        head: bytes | None = frames[0][3] if frames and self._peek_text else None
        try:
            for opcode, fin, rsv, payload in frames:
                if opcode == _TEXT or opcode == _BINARY:
                    if self._msg_opcode:
                        raise _out_of_order(opcode)
                    if self._codecs:
                        payload = self._decode(opcode, fin, rsv, payload, self._max_message_size)
                        if len(payload) > self._max_message_size:
                            # An uncompressed frame within the reader's room for deflate's
                            # expansion: fail as a fragment would, its UTF-8 checked first.
                            self._msg_opcode = opcode
                            self._msg_size = 0
                            self._message_part(payload, fin, events)
                    if fin and not self._stream:
                        # The common case: a whole message in one frame.
                        if opcode == _TEXT:
                            if payload is head:
                                append(whole_text(self._peeked_text(payload)))
                                continue
                            try:
                                append(whole_text(payload.decode("utf-8")))
                            except UnicodeDecodeError:
                                raise self._bad_utf8() from None
                        else:
                            append(whole_binary(payload))
                        continue
                    self._msg_opcode = opcode
                    self._msg_rsv = rsv
                    self._msg_size = 0
                    self._message_part(payload, fin, events)
                elif opcode == _CONT:
                    if not self._msg_opcode:
                        raise _out_of_order(opcode)
                    if self._codecs:
                        budget = self._max_message_size - self._msg_size
                        payload = self._decode(opcode, fin, rsv, payload, budget)
                    self._message_part(payload, fin, events)
                else:
                    if rsv:
                        raise RemoteProtocolError(
                            "reserved bits set on a control frame; no extension defines them "
                            "there (RFC 6455 §5.2, RFC 7692 §6)"
                        )
                    if opcode == _PING:
                        append(Ping(payload=payload))
                        # Answered until the peer's Close arrives, even after ours (§5.5.2).
                        if self._auto_pong and self._state is not _CLOSED:
                            self._out.append(self._frame(_PONG, payload))
                    elif opcode == _PONG:
                        append(Pong(payload=payload))
                    else:
                        self._receive_close(payload, events)
                        return events  # nothing after a Close is read (RFC 6455 §1.4)
            # A frame that ended here may have been peeked into: forget it even when nothing
            # follows, or the next frame's peek would resume from its validator and offset.
            if error is None and (frames or reader.buffered()):
                self._check_partial_frame(reader, restart=bool(frames))
        except RemoteProtocolError as exc:
            error = exc
        if error is not None:
            self._fail(error, events)
        return events

    def _check_partial_frame(self, reader: FrameReader, restart: bool) -> None:
        """Check what can be checked of a frame that has only partly arrived: its UTF-8 when
        it is text, and §5.4's order of fragments once the reader has checked its header.

        A frame's bytes may trickle in over many reads; checking them as they come fails an
        invalid message at once instead of when the frame ends (RFC 6455 §8.1 fails fast).
        That holds for a message sent uncompressed (RSV1 clear on its first frame) with
        permessage-deflate agreed too. A compressed message's frames are checked as they
        inflate, once each has fully arrived: its raw bytes say nothing about the text.
        """
        if restart:
            self._peek_utf8 = None
            self._peek_offset = 0
            self._peek_text = None
        validator = self._peek_utf8
        if validator is None:
            head = reader.peek_head()
            if head is None:
                return
            opcode, rsv = head
            if opcode == _TEXT and not rsv and not self._msg_opcode:
                validator = IncrementalValidator()
            elif opcode == _CONT and not (rsv or self._msg_rsv) and self._msg_opcode == _TEXT:
                # RSV1 on a continuation is a 1002 once the frame is whole: not text to check.
                validator = self._utf8.copy() if self._utf8 else IncrementalValidator()
            else:
                # A data frame out of §5.4's order fails as soon as the reader has checked its
                # header, as it would whole: not after up to max_frame_size bytes of payload.
                if (
                    opcode < 8
                    and (opcode == _CONT) != bool(self._msg_opcode)
                    and reader.head_checked()
                ):
                    raise _out_of_order(opcode)
                return
            self._peek_utf8 = validator
        # Bytes unmasked in place, read where they lie: nothing is unmasked or copied twice.
        with reader.peek_payload(self._peek_offset) as chunk:
            try:
                text = validator.decode(chunk, False)
            except InvalidUTF8Error:
                raise self._bad_utf8() from None
            self._peek_offset += len(chunk)
        if not self._msg_opcode:
            # A whole text frame: its text so far is kept, and only the rest is decoded once
            # the frame has come (_peeked_text). A continuation is decoded whole again.
            pieces = self._peek_text
            if pieces is None:
                self._peek_text = [text]
            else:
                pieces.append(text)

    def _peeked_text(self, payload: bytes) -> str:
        """The text of a whole text frame whose start :meth:`_check_partial_frame` decoded."""
        validator = self._peek_utf8
        assert validator is not None
        with memoryview(payload) as view:
            try:
                last = validator.decode(view[self._peek_offset :], True)
            except InvalidUTF8Error:
                raise self._bad_utf8() from None
        pieces = self._peek_text
        assert pieces is not None
        pieces.append(last)
        return "".join(pieces)

    def _decode(self, opcode: int, fin: bool, rsv: int, payload: bytes, budget: int) -> bytes:
        try:
            for codec in reversed(self._codecs):
                payload = codec.decode(opcode, fin, rsv, payload, budget)
        except RemoteProtocolError as exc:
            if exc.close_code != CloseCode.MESSAGE_TOO_BIG:
                raise
            # A codec knows only the budget left; say what the whole message reached.
            limit = self._max_message_size
            earlier = limit - budget
            raise RemoteProtocolError(
                f"compressed message inflates past max_message_size ({limit} bytes): it "
                f"reached {limit + 1} bytes ({earlier} from earlier frames) when inflating "
                "stopped. The limit counts inflated bytes (RFC 7692 §7.2.2, RFC 6455 §10.4; "
                "see 'Security and limits' in the docs)",
                close_code=CloseCode.MESSAGE_TOO_BIG,
            ) from exc
        return payload

    def _bad_utf8(self) -> RemoteProtocolError:
        # No codec detail: its byte positions count from wherever a read happened to split the
        # frame, and the reason sent must not depend on how the bytes were split.
        return RemoteProtocolError(
            "text message is not valid UTF-8 (RFC 6455 §8.1)",
            close_code=CloseCode.INVALID_FRAME_PAYLOAD_DATA,
            reason="invalid UTF-8",
        )

    def _message_part(self, payload: bytes, fin: bool, events: list[Event]) -> None:
        """Add one frame's payload to the message being received (RFC 6455 §5.4)."""
        opcode = self._msg_opcode
        text = ""
        if opcode == _TEXT:
            # UTF-8 before size: _check_partial_frame fails a frame that arrives in pieces with
            # 1007 before its end shows the size, so the same frame arriving whole must too.
            validator = self._utf8
            if validator is None:
                validator = self._utf8 = IncrementalValidator()
            try:
                text = validator.decode(payload, fin)
            except InvalidUTF8Error:
                raise self._bad_utf8() from None
        size = self._msg_size + len(payload)
        if size > self._max_message_size:
            raise RemoteProtocolError(
                f"message of at least {size} bytes exceeds the limit of "
                f"{self._max_message_size} bytes (max_message_size; RFC 6455 §10.4)",
                close_code=CloseCode.MESSAGE_TOO_BIG,
            )
        self._msg_size = size
        frames = self._msg_frames + 1
        if frames > self._max_fragments:
            raise RemoteProtocolError(
                f"message of more than {self._max_fragments} frames "
                "(max_fragments; RFC 6455 §10.4)",
                close_code=CloseCode.MESSAGE_TOO_BIG,
                reason="too many fragments",
            )
        self._msg_frames = frames
        if opcode == _TEXT:
            if self._stream:
                events.append(Text(data=text, final=fin))
            else:
                self._text_parts.append(text)
                if fin:
                    events.append(Text(data="".join(self._text_parts)))
        elif self._stream:
            events.append(Binary(data=payload, final=fin))
        else:
            self._msg_parts.append(payload)
            if fin:
                events.append(Binary(data=b"".join(self._msg_parts)))
        if fin:
            self._msg_opcode = 0
            self._msg_frames = 0
            self._msg_parts.clear()
            self._text_parts.clear()
            if self._utf8 is not None:
                self._utf8.reset()

    def _receive_close(self, payload: bytes, events: list[Event]) -> None:
        code, reason = parse_close_payload(payload)
        self._close_received = CloseInfo(code, reason)
        if self._state is _OPEN:
            # Echo the code, not the reason (RFC 6455 §5.5.1); no code when none came.
            echo = None if code == CloseCode.NO_STATUS_RCVD else code
            self._held = self._frame(_CLOSE, build_close_payload(echo))
            self._held_info = CloseInfo(code)
            self._closed_first = "remote"
        self._state = transition(self._state, Action.RECEIVE_CLOSE)
        events.append(Close(code=code, reason=reason))

    def _fail(self, error: RemoteProtocolError, events: list[Event]) -> None:
        """Fail the WebSocket connection (RFC 6455 §7.1.7): send a Close if we still may.

        The Close carries the error's short standard reason (or none with
        ``close_reasons=False``), never the diagnostic: that stays in the event's ``error``.
        """
        reason = error.reason if self._close_reasons else ""
        if self._state is _OPEN:
            payload = build_close_payload(error.close_code, reason.encode("utf-8"))
            self._held = self._frame(_CLOSE, payload)
            self._held_info = CloseInfo(error.close_code, reason)
            self._closed_first = "local"
        self._state = transition(self._state, Action.FAIL)
        self._failed = True
        events.append(Close(code=error.close_code, reason=reason, error=error))

    # -- sending ------------------------------------------------------------------------

    def _frame(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
        masks = self._masks
        key = masks.next_key() if masks is not None else None
        return build_frame(opcode, payload, fin=fin, rsv=rsv, mask_key=key)

    def _send_data(self, opcode: int, payload: bytes, final: bool, compress: bool) -> None:
        if (
            self._plain_send
            and final
            and len(payload) < 126
            and self._state is _OPEN
            and not self._send_opcode
        ):
            # A server's small whole message with no extension: a cached header, and no
            # concatenation (data_to_send joins the pieces once).
            out = self._out
            out.append(SHORT_HEADERS[opcode][len(payload)])
            out.append(payload)
            return
        if self._state is not _OPEN:
            transition(self._state, Action.SEND_DATA)  # raises unless the table allows it
        sending = self._send_opcode
        if sending:
            if sending != opcode:
                raise LocalProtocolError(
                    f"a {Opcode(sending).name.lower()} message is being sent in fragments: "
                    f"finish it before sending {Opcode(opcode).name.lower()} data (RFC 6455 §5.4)"
                )
            frame_opcode = _CONT
        else:
            frame_opcode = opcode
        self._send_opcode = 0 if final else opcode
        rsv = 0
        for codec in self._codecs:
            bits, payload = codec.encode(frame_opcode, final, payload, compress=compress)
            rsv |= bits
        if self._masks is None and len(payload) >= SEPARATE_PAYLOAD_SIZE:
            # A large unmasked payload is queued as it is, after its header: not copied into
            # a frame, so data_to_send_parts() can hand it to a gathering write.
            out = self._out
            out.append(frame_header(frame_opcode, len(payload), fin=final, rsv=rsv))
            out.append(payload)
            return
        self._out.append(self._frame(frame_opcode, payload, final, rsv))

    def send_text(self, data: str, *, final: bool = True, compress: bool = True) -> None:
        """Queue a text message, or with ``final=False`` a fragment of one (RFC 6455 §5.4).

        ``compress=False`` sends this message uncompressed even when permessage-deflate is
        on: for data already compressed, or secrets next to attacker-chosen text (RFC 7692
        §8). A fragmented message is compressed or not as its first fragment says.

        :raises LocalProtocolError: :attr:`can_send` is false (the state is neither OPEN nor
            REMOTE_CLOSING), or a binary message is being sent in fragments.
        """
        try:
            payload = data.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                "text holds a lone surrogate, which UTF-8 cannot encode (RFC 6455 §5.6)"
            ) from None
        self._send_data(_TEXT, payload, final, compress)

    def send_binary(
        self, data: bytes | bytearray | memoryview, *, final: bool = True, compress: bool = True
    ) -> None:
        """Queue a binary message, or with ``final=False`` a fragment of one (RFC 6455 §5.4).

        ``compress`` is as for :meth:`send_text`.

        :raises LocalProtocolError: :attr:`can_send` is false (the state is neither OPEN nor
            REMOTE_CLOSING), or a text message is being sent in fragments.
        """
        self._send_data(_BINARY, bytes(data), final, compress)

    def send_prepared(self, prepared: PreparedMessage) -> bool:
        """Queue a message framed once for many connections
        (:func:`wsmachine.broadcast.prepare`), if its frame fits this connection as it is.

        It fits a server connection in the OPEN state with no extension agreed and no
        fragmented message being sent: its frames are unmasked and untransformed, the same
        bytes for every client. Otherwise nothing is queued and ``False`` is returned; send
        ``prepared.message`` with :meth:`send_text` or :meth:`send_binary` instead (which
        raise as usual when the connection cannot send).
        """
        if self._plain_send and self._state is _OPEN and not self._send_opcode:
            self._out.append(prepared.frame)
            return True
        return False

    def _send_control(self, opcode: int, payload: bytes | bytearray | memoryview) -> None:
        state = self._state
        if state is not _OPEN:
            transition(state, Action.SEND_CONTROL)  # raises unless the table allows it
        if len(payload) > 125:
            raise InvalidArgumentError(
                f"control frame payload is {len(payload)} bytes; at most 125 are allowed "
                "(RFC 6455 §5.5)"
            )
        self._out.append(self._frame(opcode, bytes(payload)))

    def ping(self, payload: bytes | bytearray | memoryview = b"") -> None:
        """Queue a Ping (RFC 6455 §5.5.2); ``payload`` is at most 125 bytes.

        :raises LocalProtocolError: the state is not OPEN, CLOSING or REMOTE_CLOSING, or the
            payload is too long.
        """
        self._send_control(_PING, payload)

    def pong(self, payload: bytes | bytearray | memoryview = b"") -> None:
        """Queue a Pong: a reply, or unsolicited as a heartbeat (RFC 6455 §5.5.3).

        :raises LocalProtocolError: the state is not OPEN, CLOSING or REMOTE_CLOSING, or the
            payload is too long.
        """
        self._send_control(_PONG, payload)

    def close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 §7.1.2); ``code=None`` sends no code.

        Further input is still read until the peer's Close arrives.

        :raises LocalProtocolError: the connection is not OPEN, the code may not be sent,
            or the reason is longer than 123 bytes in UTF-8.
        """
        if code is None:
            if reason:
                raise InvalidArgumentError("a close reason needs a code (RFC 6455 §5.5.1)")
            payload = b""
        else:
            payload = build_close_payload(code, check_code_to_send(code, reason))
        self._state = transition(self._state, Action.SEND_CLOSE)
        self._close_sent = CloseInfo(
            CloseCode.NO_STATUS_RCVD if code is None else int(code), reason
        )
        self._closed_first = "local"
        self._out.append(self._frame(_CLOSE, payload))


class ServerConnection(Connection):
    """The server role: reads an upgrade request, then frames from a client.

    :param subprotocols: subprotocols this server speaks, in its order of preference;
        :meth:`accept` picks the first the client offers unless told otherwise.
    :param extensions: extensions this server may accept, in the order it applies them.
    :param origin_policy: an :class:`~wsmachine.OriginPolicy`: an upgrade request whose
        ``Origin`` it refuses is answered with 403 and reported as :class:`Rejected`.
        ``None`` (the default) accepts any ``Origin``.
    :param max_message_size: largest message, in bytes, after any decompression (1009 above).
    :param max_frame_size: largest frame payload (1009 above); by default ``max_message_size``.
    :param max_fragments: most frames in one message (1009 above); by default
        ``max_message_size // 256``, at least 4096.
    :param stream: deliver messages frame by frame, with ``final`` on the last piece.
    :param auto_pong: answer every Ping with a Pong by itself.
    :param max_handshake_size: largest request head (answered with 431 above).
    :param max_handshake_line: longest request line (414 above) or header line (431 above),
        in bytes with its CRLF.
    :param max_handshake_headers: most header lines in the request (431 above).
    :param close_reasons: put a short standard reason (``"invalid UTF-8"``, ``"message too
        big"``, at most 32 bytes) in the Close frame sent when the peer breaks the protocol;
        ``False`` sends the code alone. The full diagnostic is never sent: it stays in the
        :class:`~wsmachine.Close` event's ``error``.

    :doc:`/reference/limits` gives each default and its memory cost.

    :raises InvalidArgumentError: a size setting is out of range: below its minimum, or above
        2**63 - 1, the longest payload a frame can declare (RFC 6455 §5.2).
    :raises TypeError: a size setting is not an ``int``.
    """

    __slots__ = (
        "_early",
        "_extensions",
        "_handshake",
        "_max_handshake_size",
        "_request",
        "_subprotocols",
    )

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[Extension] = (),
        origin_policy: OriginPolicy | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int | None = None,
        stream: bool = False,
        auto_pong: bool = True,
        max_handshake_size: int = DEFAULT_MAX_HANDSHAKE_SIZE,
        max_handshake_line: int = DEFAULT_MAX_HANDSHAKE_LINE,
        max_handshake_headers: int = DEFAULT_MAX_HANDSHAKE_HEADERS,
        close_reasons: bool = True,
    ) -> None:
        super().__init__(
            client=False,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            stream=stream,
            auto_pong=auto_pong,
            max_fragments=max_fragments,
            close_reasons=close_reasons,
        )
        check_limits(
            max_handshake_size=max_handshake_size,
            max_handshake_line=max_handshake_line,
            max_handshake_headers=max_handshake_headers,
        )
        self._subprotocols = tuple(subprotocols)
        self._extensions = tuple(extensions)
        self._max_handshake_size = max_handshake_size
        self._handshake: ServerHandshake | None = ServerHandshake(
            max_handshake_size,
            max_line=max_handshake_line,
            max_headers=max_handshake_headers,
            origin_policy=origin_policy,
        )
        self._request: Handshake | HTTPRequest | None = None
        self._early = bytearray()

    _OPENING = Action.ACCEPT

    def _stream_opening(self) -> None:
        # No HTTP handshake: nothing offered, nothing pending.
        self._subprotocols = ()
        self._extensions = ()
        self._max_handshake_size = DEFAULT_MAX_HANDSHAKE_SIZE
        self._handshake = None
        self._request = None
        self._early = bytearray()

    @property
    def request(self) -> Handshake | HTTPRequest | None:
        """The request waiting for :meth:`accept` or :meth:`reject`: the
        :class:`~wsmachine.Handshake` or :class:`~wsmachine.HTTPRequest` event this connection
        reported. ``None`` before it is complete and once it is answered (or refused by the
        machine itself)."""
        if self._state is not _CONNECTING or self._handshake is None:
            return None
        return self._request

    def _receive_handshake(self, data: bytes) -> list[Event]:
        handshake = self._handshake
        assert handshake is not None
        if isinstance(self._request, HTTPRequest):
            return []  # a plain request's body is not read: the answer ends the connection
        if self._request is not None:
            # Waiting for accept() or reject(): keep what the client sends early, bounded.
            self._early += data
            return self._check_early(handshake)
        try:
            request = handshake.receive_data(data)
        except RemoteProtocolError as error:
            return [self._refuse(handshake, error)]
        if request is None:
            return []
        self._request = request
        self._early += handshake.trailing
        return [request, *self._check_early(handshake)]

    def _check_early(self, handshake: ServerHandshake) -> list[Event]:
        """Refuse when the bytes sent before the answer pass the bound, however they came."""
        if len(self._early) <= self._max_frame_size + self._max_handshake_size:
            return []
        error = RemoteProtocolError(
            "the client sent more than one frame before the handshake was answered (RFC 6455 §4.1)"
        )
        return [self._refuse(handshake, error)]

    def _refuse(self, handshake: ServerHandshake, error: RemoteProtocolError) -> Rejected:
        rejected = handshake.error_response(error)
        self._out.append(handshake.reject(rejected.status_code, rejected.headers, rejected.body))
        self._state = transition(self._state, Action.REJECT)
        self._handshake = None
        return rejected

    def _pending(self, event: Handshake | HTTPRequest, call: str) -> ServerHandshake:
        if self._state is not _CONNECTING or self._handshake is None or self._request is None:
            raise LocalProtocolError(
                f"{call}() needs a handshake waiting for an answer; the state is "
                f"{self._state.name} (RFC 6455 §4.2.2)"
            )
        if event is not self._request:
            raise InvalidArgumentError(f"{call}() takes the event this connection reported")
        return self._handshake

    def accept(
        self,
        event: Handshake,
        *,
        subprotocol: str | None = None,
        extra_headers: HeaderInput = (),
    ) -> list[Event]:
        """Accept the upgrade: queue the 101 response and open the connection (RFC 6455 §4.2.2).

        Extensions are negotiated from the client's offers and this server's ``extensions``.
        Returns the events of frames the client sent right after its request (usually none).

        :param subprotocol: the subprotocol to speak; it must be one the client offered. By
            default the first of this server's ``subprotocols`` that the client offered.
        :raises LocalProtocolError: no handshake is waiting.
        :raises InvalidArgumentError: ``event`` is not the waiting handshake, the subprotocol was
            not offered, or an extra header is invalid; nothing changed.
        """
        handshake = self._pending(event, "accept")
        if not isinstance(event, Handshake):
            raise InvalidArgumentError(
                "accept() takes a Handshake; answer an HTTPRequest with reject()"
            )
        subprotocol = choose_subprotocol(self._subprotocols, event.subprotocols, subprotocol)
        responses, codecs = accept_offers(self._extensions, event.extensions)
        self._out.append(
            handshake.accept(handshake_key(event), subprotocol, responses, extra_headers)
        )
        self._open(codecs, Action.ACCEPT, subprotocol, responses)
        self._handshake = None
        self._request = None
        early = bytes(self._early)
        self._early = bytearray()
        return self._receive_frames(early) if early else []

    def reject(
        self,
        event: Handshake | HTTPRequest,
        *,
        status: int = 403,
        headers: HeaderInput = (),
        body: bytes = b"",
    ) -> None:
        """Answer the request with an HTTP response and end the connection.

        Use it to refuse an upgrade (403 with a body) or to answer a plain
        :class:`HTTPRequest` (a page, a health check). ``Content-Length`` (unless ``headers``
        frame the body themselves, or the status is 204 or 304) and ``Connection: close``
        are added; the body is not sent to a ``HEAD`` request.

        :param status: a final status, 200-599. 1xx are informational answers that precede
            the final one, never replace it, and 101 is :meth:`accept`'s; HTTP defines no
            status above 599 (RFC 9110 §15).
        :raises LocalProtocolError: no request is waiting.
        :raises InvalidArgumentError: ``event`` is not the waiting request, the status is not
            200-599, it is a 2xx to a ``CONNECT`` (which would open a tunnel, RFC 9110
            §9.3.6), a header is invalid, or the body does not fit the framing (a given
            ``Content-Length``, or a 204 or 304, which have none). Nothing changed: a valid
            answer may still be sent.
        """
        handshake = self._pending(event, "reject")
        self._out.append(handshake.reject(status, headers, body))
        self._state = transition(self._state, Action.REJECT)
        self._handshake = None
        self._request = None
        self._early = bytearray()

    def reject_start(
        self,
        event: Handshake | HTTPRequest,
        *,
        status: int = 403,
        headers: HeaderInput = (),
    ) -> None:
        """Answer the request with an HTTP response whose body follows in pieces
        (:meth:`reject_body`), as ASGI's ``websocket.http.response.start`` and ``.body``.

        The state is :attr:`~wsmachine.State.REJECTING` until the body ends:
        :meth:`~wsmachine.Connection.should_close` stays false meanwhile. Without a
        ``Content-Length`` among ``headers`` the body is sent chunked (to an HTTP/1.0 client:
        until the connection ends). ``Connection: close`` is added.

        :raises LocalProtocolError: no request is waiting.
        :raises InvalidArgumentError: as :meth:`reject`; nothing changed.
        """
        handshake = self._pending(event, "reject_start")
        self._out.append(handshake.reject_start(status, headers))
        self._state = transition(self._state, Action.REJECT_START)
        self._request = None
        self._early = bytearray()

    def reject_body(self, data: bytes = b"", *, end: bool = False) -> None:
        """Send the next piece of the body :meth:`reject_start` began; ``end=True`` ends it
        (and the connection: :meth:`~wsmachine.Connection.should_close` turns true).

        :raises LocalProtocolError: no rejection is being streamed (before
            :meth:`reject_start`, or after the end).
        :raises InvalidArgumentError: the piece does not fit the framing (past the
            ``Content-Length``, a body on a 204 or 304, or the end before all the
            ``Content-Length`` was sent); nothing changed: a fitting piece may follow.
        """
        after = transition(self._state, Action.REJECT_END if end else Action.REJECT_BODY)
        handshake = self._handshake
        assert handshake is not None
        self._out.append(handshake.reject_body(bytes(data), end))
        self._state = after
        if end:
            self._handshake = None


class ClientConnection(Connection):
    """The client role: queues the upgrade request at once, then reads the server's answer.

    :param host: the ``Host`` header, e.g. ``"example.com:8080"``.
    :param path: the request target, e.g. ``"/chat?room=1"``.
    :param subprotocols: subprotocols to offer, in order of preference.
    :param extensions: extensions to offer, in order of preference.
    :param origin: the ``Origin`` header to send, if any.
    :param extra_headers: more request headers.
    :param max_rejection_body: how much of a refusal's body to keep.
    :param max_handshake_size: largest response head, and most bytes of framing (chunk lines
        and trailer section) in a refusal's chunked body; either one larger fails the
        handshake (:class:`Rejected` with an error).
    :param max_handshake_line: longest status line or header line of the response, in bytes
        with its CRLF; a longer one fails the handshake (:class:`Rejected` with an error).
    :param max_handshake_headers: most header lines in the response (likewise).

    The other parameters are as for :class:`ServerConnection`.
    """

    __slots__ = ("_handshake",)

    def __init__(
        self,
        host: str,
        path: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[Extension] = (),
        origin: str | None = None,
        extra_headers: HeaderInput = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_fragments: int | None = None,
        stream: bool = False,
        auto_pong: bool = True,
        max_handshake_size: int = DEFAULT_MAX_HANDSHAKE_SIZE,
        max_handshake_line: int = DEFAULT_MAX_HANDSHAKE_LINE,
        max_handshake_headers: int = DEFAULT_MAX_HANDSHAKE_HEADERS,
        max_rejection_body: int = DEFAULT_MAX_REJECTION_BODY,
        close_reasons: bool = True,
    ) -> None:
        super().__init__(
            client=True,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            stream=stream,
            auto_pong=auto_pong,
            max_fragments=max_fragments,
            close_reasons=close_reasons,
        )
        check_limits(
            max_handshake_size=max_handshake_size,
            max_handshake_line=max_handshake_line,
            max_handshake_headers=max_handshake_headers,
            max_rejection_body=max_rejection_body,
        )
        self._handshake: ClientHandshake | None = ClientHandshake(
            max_handshake_size,
            max_rejection_body,
            subprotocols,
            extensions,
            max_line=max_handshake_line,
            max_headers=max_handshake_headers,
        )
        self._out.append(self._handshake.request(host, path, origin, extra_headers))

    _OPENING = Action.RECEIVE_ACCEPT

    def _stream_opening(self) -> None:
        self._handshake = None

    def _receive_handshake(self, data: bytes) -> list[Event]:
        handshake = self._handshake
        assert handshake is not None
        try:
            outcome = handshake.receive_data(data)
        except RemoteProtocolError as error:
            return [self._refused(error)]
        return self._outcome(outcome)

    def _handshake_eof(self) -> list[Event]:
        handshake = self._handshake
        assert handshake is not None
        try:
            outcome = handshake.receive_eof()
        except RemoteProtocolError as error:
            return [self._refused(error)]
        if outcome is None:
            return super()._handshake_eof()
        return self._outcome(outcome)

    def _refused(self, error: RemoteProtocolError) -> Rejected:
        """The server's answer broke RFC 6455 §4.1: fail without a Close frame."""
        assert self._handshake is not None
        handshake = self._handshake
        self._state = transition(self._state, Action.RECEIVE_REJECT)
        self._handshake = None
        return Rejected(status_code=handshake.status_code, headers=handshake.headers, error=error)

    def _outcome(self, outcome: Accepted | Rejected | None) -> list[Event]:
        handshake = self._handshake
        assert handshake is not None
        if outcome is None:
            return []
        if isinstance(outcome, Rejected):
            self._state = transition(self._state, Action.RECEIVE_REJECT)
            self._handshake = None
            return [outcome]
        self._open(handshake.codecs, Action.RECEIVE_ACCEPT, outcome.subprotocol, outcome.extensions)
        self._handshake = None
        events: list[Event] = [outcome]
        if handshake.trailing:
            events += self._receive_frames(handshake.trailing)
        return events
