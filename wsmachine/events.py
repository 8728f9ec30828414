"""Events: what the machine reports after it has read bytes.

Every event is a small immutable value. ``receive_data`` returns them in wire order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import RemoteProtocolError
from .headers import ExtensionOffer

__all__ = [
    "Accepted",
    "Binary",
    "Close",
    "Event",
    "HTTPRequest",
    "Handshake",
    "Headers",
    "Ping",
    "Pong",
    "Rejected",
    "Text",
]

#: HTTP header fields as h11 gives them: lower-cased names, raw values, in wire order.
Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshake:
    """Server side: a client asks to upgrade to WebSocket (RFC 6455 §4.2.1).

    Answer it with :meth:`~wsmachine.ServerConnection.accept` or
    :meth:`~wsmachine.ServerConnection.reject`.
    """

    #: The resource name, path and query, e.g. ``"/chat?room=1"`` (RFC 6455 §3); from an
    #: absolute request target (``http://host/chat``) its path and query.
    path: str
    #: The ``Host`` header value.
    host: str
    #: The ``Origin`` header value, or ``None`` when the client sent none (RFC 6455 §10.2).
    origin: str | None
    #: Subprotocols the client offers, in its order of preference (``Sec-WebSocket-Protocol``).
    subprotocols: tuple[str, ...]
    #: Extensions the client offers, in its order of preference (``Sec-WebSocket-Extensions``).
    extensions: tuple[ExtensionOffer, ...]
    #: All request headers.
    headers: Headers


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRequest:
    """Server side: a plain HTTP request that does not ask for an upgrade.

    A server may answer it on the same port (a health check, a page) with
    :meth:`~wsmachine.ServerConnection.reject`, using any status.
    """

    #: The request method, e.g. ``"GET"``.
    method: str
    #: The request target.
    path: str
    #: All request headers.
    headers: Headers


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """Client side: the server accepted the upgrade with a valid 101 (RFC 6455 §4.2.2)."""

    #: The subprotocol the server chose, or ``None``.
    subprotocol: str | None
    #: The extensions the server accepted, in the order it applies them.
    extensions: tuple[ExtensionOffer, ...]
    #: All response headers.
    headers: Headers


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """The opening handshake ended without a WebSocket connection.

    Client side, with ``error=None``: the server answered something other than 101; ``body``
    holds its body (bounded). With an ``error``: the handshake broke the protocol; on the
    server side ``status_code`` is the status the machine answered (400, 405, 426, 431), on the
    client side the status it received.
    """

    #: The HTTP status: received (client) or answered (server); 0 when the client could not
    #: parse the server's answer at all.
    status_code: int
    #: The response headers (received on the client, written on the server).
    headers: Headers
    #: The response body, cut at the client's ``max_rejection_body``.
    body: bytes = b""
    #: ``None`` when the server refused on purpose; else what broke the protocol.
    error: RemoteProtocolError | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Text:
    """A text message, or in streaming mode a piece of one (RFC 6455 §5.6)."""

    #: The text, already checked to be valid UTF-8 and decoded.
    data: str
    #: ``True`` on the last piece of a message; always ``True`` unless streaming.
    final: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Binary:
    """A binary message, or in streaming mode a piece of one (RFC 6455 §5.6)."""

    #: The bytes of the message (or of the piece).
    data: bytes
    #: ``True`` on the last piece of a message; always ``True`` unless streaming.
    final: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """The peer sent a Ping (RFC 6455 §5.5.2); the Pong is queued unless auto-pong is off."""

    #: The application data of the Ping (at most 125 bytes).
    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """The peer sent a Pong (RFC 6455 §5.5.3)."""

    #: The application data of the Pong (at most 125 bytes).
    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """The connection is closing or closed.

    ``error is None`` exactly when the peer sent a Close frame itself; then ``code`` and
    ``reason`` are the peer's (1005 when its frame had no code, RFC 6455 §7.1.5). Otherwise
    ``error`` says what went wrong and ``code`` is the code the machine sent (1002, 1007, 1009,
    ...) or 1006 when the stream ended without a Close (RFC 6455 §7.1.5).
    """

    #: The close code (RFC 6455 §7.4), a plain int.
    code: int
    #: The reason text (at most 123 bytes of UTF-8).
    reason: str = ""
    #: ``None`` exactly when the peer sent the Close; else what went wrong.
    error: RemoteProtocolError | None = field(default=None, compare=False)


#: Any event.
Event = Handshake | HTTPRequest | Accepted | Rejected | Text | Binary | Ping | Pong | Close


# -- fast construction for the receive path ----------------------------------------------------
# A frozen dataclass's __init__ sets each field through object.__setattr__. Setting the slots
# through their member descriptors builds an equal object with about half the work; the
# machine uses these for the one-frame messages that dominate small-message traffic.

_new = object.__new__
_set_text_data = Text.__dict__["data"].__set__
_set_text_final = Text.__dict__["final"].__set__
_set_binary_data = Binary.__dict__["data"].__set__
_set_binary_final = Binary.__dict__["final"].__set__


def whole_text(data: str) -> Text:
    """``Text(data=data)``, built faster (the machine's hot path)."""
    event: Text = _new(Text)
    _set_text_data(event, data)
    _set_text_final(event, True)
    return event


def whole_binary(data: bytes) -> Binary:
    """``Binary(data=data)``, built faster (the machine's hot path)."""
    event: Binary = _new(Binary)
    _set_binary_data(event, data)
    _set_binary_final(event, True)
    return event
