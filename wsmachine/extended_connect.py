"""WebSockets over HTTP/2 and HTTP/3: the opening by extended CONNECT (RFC 8441, RFC 9220).

Over HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220) a WebSocket is one stream of a multiplexed
connection. There is no 101 and no ``Sec-WebSocket-Key``/``Accept``: the client sends
a request with ``:method CONNECT``, ``:protocol websocket``, ``:scheme``, ``:path``,
``:authority`` and ``sec-websocket-version: 13`` (and, as in HTTP/1.1, ``origin``,
``sec-websocket-protocol``, ``sec-websocket-extensions``); the server answers ``:status 200``.
From then on the stream's DATA carries WebSocket frames exactly as a TCP connection does after
the 101: same masking (the client masks), same extensions, same closing handshake.

This module does the opening on header lists, for any HTTP/2 or HTTP/3 library (``h2``,
``aioquic``): it checks the request, negotiates subprotocol and extensions with the same
:class:`~wsmachine.extensions.base.Extension` objects and code as the HTTP/1.1 handshake
(:mod:`wsmachine.negotiation`), and hands out a connection already
:attr:`~wsmachine.State.OPEN`. The HTTP/2 or HTTP/3 layer owns flow control and the
stream's life; the stream maps onto the machine as a TCP connection does:

======================================================  ========================================
HTTP/2 (HTTP/3)                                         the machine
======================================================  ========================================
DATA received (on HTTP/3, the stream's data)            :meth:`~wsmachine.Connection.receive_data`
END_STREAM received (HTTP/3: the stream's FIN)          :meth:`~wsmachine.Connection.receive_eof`
                                                        (the peer's half-close; without a Close
                                                        frame first it is a 1006)
RST_STREAM received (HTTP/3: a stream error such as     :meth:`~wsmachine.Connection.receive_eof`:
H3_REQUEST_CANCELLED), or the whole connection lost     ``Close(1006)``; send nothing more
:meth:`~wsmachine.Connection.data_to_send`              DATA on the stream
:meth:`~wsmachine.Connection.should_close` true         end the stream: END_STREAM (HTTP/3: FIN),
(after writing the data)                                as a TCP half-close (RFC 6455 §7.1.1)
failing without a closing handshake                     RST_STREAM with CANCEL (RFC 8441 §5;
                                                        HTTP/3: H3_REQUEST_CANCELLED, RFC 9220 §3)
======================================================  ========================================

Server:

.. code-block:: python

    try:
        conn, response = accept_extended_connect(
            headers, subprotocols=["chat"], extensions=[PerMessageDeflate()]
        )
    except RemoteProtocolError as error:
        response, body = error_response(error)       # 400, 403, 426 or 501; no WebSocket
        ...                                          # send response (and body), end the stream
    else:
        ...                                          # send response, then conn's data as DATA

Client: :class:`ClientOpening` builds the request headers and checks the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, Unpack

from .connection import ClientConnection, ServerConnection
from .errors import InvalidArgumentError, LocalProtocolError, RemoteProtocolError
from .events import Accepted, Handshake, Headers, HTTPRequest, Rejected
from .extensions.base import Extension
from .handshake import HeaderInput, _parse_host, check_final_status
from .headers import build_extension_header, is_token, parse_extension_list, parse_token_list
from .negotiation import Agreement, accept_offers, check_answer, choose_subprotocol
from .origin import OriginPolicy

__all__ = [
    "SETTINGS_ENABLE_CONNECT_PROTOCOL",
    "ClientOpening",
    "FramingSettings",
    "accept",
    "accept_extended_connect",
    "error_response",
    "read_request",
    "response_headers",
]

#: The HTTP/2 (RFC 8441 §3) and HTTP/3 (RFC 9220 §3) setting a server sends, with value 1,
#: to allow extended CONNECT; both use the identifier 0x08.
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x08

_VERSION = b"13"
_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
# Connection-specific fields have no place in HTTP/2 or HTTP/3 (RFC 9113 §8.2.2, RFC 9114
# §4.2); RFC 8441 §5 names Connection and Upgrade in particular.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"upgrade", b"keep-alive", b"proxy-connection", b"transfer-encoding"}
)


class FramingSettings(TypedDict, total=False):
    """The machine's settings an extended CONNECT opening takes, as for
    :class:`~wsmachine.ServerConnection` and :class:`~wsmachine.ClientConnection` (there is
    no HTTP/1.1 head, so none of the ``max_handshake_*`` limits)."""

    max_message_size: int
    max_frame_size: int | None
    max_fragments: int | None
    stream: bool
    auto_pong: bool
    close_reasons: bool


def _encode(headers: HeaderInput) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in headers:
        try:
            raw_name = name.encode("ascii") if isinstance(name, str) else bytes(name)
            raw_value = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(f"header {name!r}: {exc.reason}") from None
        out.append((raw_name, raw_value))
    return out


def _bad(message: str, status: int = 400) -> RemoteProtocolError:
    return RemoteProtocolError(message, status_hint=status)


def _split(headers: HeaderInput) -> tuple[dict[bytes, bytes], Headers]:
    """Split a request's header list into its pseudo-headers and all its fields, checked as
    RFC 9113 §8.3 asks (each known pseudo-header at most once, before the regular fields;
    lowercase names); the HTTP/2 or HTTP/3 library has usually checked it already."""
    pseudo: dict[bytes, bytes] = {}
    fields = _encode(headers)
    regular = False
    for name, value in fields:
        if name != name.lower():
            raise _bad(
                f"header name {name[:100]!r} is not lowercase (RFC 9113 §8.2.1, RFC 9114 §4.2)"
            )
        if name.startswith(b":"):
            if name not in _PSEUDO:
                raise _bad(f"unknown request pseudo-header {name[:100]!r} (RFC 9113 §8.3)")
            if regular or name in pseudo:
                raise _bad(
                    f"pseudo-header {name.decode()} repeated or after a regular field "
                    "(RFC 9113 §8.3)"
                )
            pseudo[name] = value
        else:
            regular = True
    return pseudo, tuple(fields)


def _values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise _bad(f"{what} holds non-ASCII bytes {value[:40]!r}") from None


def read_request(
    headers: HeaderInput, *, origin_policy: OriginPolicy | None = None
) -> Handshake | HTTPRequest:
    """Read a request's header list, pseudo-headers included (names lowercase; bytes or
    str): a WebSocket opening by extended CONNECT comes back as the same
    :class:`~wsmachine.Handshake` event as an HTTP/1.1 upgrade (``host`` is ``:authority``,
    ``headers`` include the pseudo-headers); a request without ``:protocol`` as an
    :class:`~wsmachine.HTTPRequest` (a page; for a classic ``CONNECT``, ``path`` is
    ``:authority``), for the application to answer.

    :raises RemoteProtocolError: the request is a bad WebSocket opening; ``status_hint`` is
        the status to refuse it with (:func:`error_response`): 501 for a ``:protocol`` other
        than ``websocket`` (RFC 9220 §3), 426 for a version other than 13 (RFC 6455 §4.4),
        403 for an ``Origin`` the policy refuses, 400 for the rest (RFC 8441 §4, §5).
    """
    pseudo, fields = _split(headers)
    method = pseudo.get(b":method")
    if not method:
        raise _bad("the request has no :method (RFC 9113 §8.3.1)")
    protocol = pseudo.get(b":protocol")
    if protocol is None:
        target = pseudo.get(b":authority" if method == b"CONNECT" else b":path", b"")
        return HTTPRequest(
            method=_text(method, ":method"), path=_text(target, "request target"), headers=fields
        )
    if method != b"CONNECT":
        raise _bad(
            f":protocol on a {_text(method, ':method')} request: it is defined for CONNECT "
            "only (RFC 8441 §4; RFC 9113 §8.1.1)"
        )
    if protocol.lower() != b"websocket":
        raise _bad(
            f":protocol {protocol[:100]!r} is not supported here: only 'websocket' "
            "(RFC 8441 §4, RFC 9220 §3: 501 Not Implemented)",
            501,
        )
    for name in (b":scheme", b":path", b":authority"):
        if not pseudo.get(name):
            raise _bad(
                f"extended CONNECT without {name.decode()}: :scheme, :path and :authority "
                "are required with :protocol (RFC 8441 §4, §5)"
            )
    scheme = pseudo[b":scheme"]
    if scheme not in (b"http", b"https"):
        raise _bad(
            f":scheme {scheme[:40]!r}: expected 'https' for wss URIs or 'http' for ws URIs "
            "(RFC 8441 §5)"
        )
    path = _text(pseudo[b":path"], ":path")
    if not path.startswith("/") or "#" in path:
        raise _bad(
            f":path {path[:200]!r}: expected the path and query of the WebSocket URI, "
            "starting with '/', no fragment (RFC 8441 §5; RFC 6455 §3)"
        )
    authority = _text(pseudo[b":authority"], ":authority")
    if "@" in authority or _parse_host(authority) is None:
        raise _bad(
            f":authority {authority[:200]!r} is not host[:port] (RFC 8441 §5; RFC 9110 §4.2, "
            "no userinfo)"
        )
    for name, _ in fields:
        if name in _CONNECTION_SPECIFIC:
            raise _bad(
                f"connection-specific header {name.decode()!r} in an extended CONNECT: "
                "HTTP/2 and HTTP/3 have none (RFC 8441 §5; RFC 9113 §8.2.2)"
            )
    versions = _values(fields, b"sec-websocket-version")
    if versions != [_VERSION]:
        shown = repr(b", ".join(versions).decode("latin-1")) if versions else "missing"
        raise _bad(
            f"sec-websocket-version is {shown}: expected 13 (RFC 8441 §5; RFC 6455 §4.2.1 "
            "item 6, §4.4)",
            426,
        )
    origins = _values(fields, b"origin")
    if len(origins) > 1:
        raise _bad(f"origin appears {len(origins)} times; expected once (RFC 6455 §4.2.1)")
    origin = _text(origins[0], "origin") if origins else None
    if origin_policy is not None and not origin_policy.allows(origin, authority):
        shown = "no origin header" if origin is None else f"origin {origin[:200]!r}"
        raise RemoteProtocolError(
            f"{shown} is not allowed by this server's origin policy (RFC 6455 §10.2)",
            close_code=1008,
            status_hint=403,
        )
    return Handshake(
        path=path,
        host=authority,
        origin=origin,
        subprotocols=tuple(
            parse_token_list(_values(fields, b"sec-websocket-protocol"), "Sec-WebSocket-Protocol")
        ),
        extensions=tuple(parse_extension_list(_values(fields, b"sec-websocket-extensions"))),
        headers=fields,
    )


def response_headers(status: int, headers: HeaderInput = ()) -> list[tuple[bytes, bytes]]:
    """The header list of an answer: ``:status`` first, then ``headers`` with their names
    lowercased (HTTP/2 and HTTP/3 send no uppercase names).

    :raises InvalidArgumentError: the status is not 200-599 (RFC 9110 §15), or a header is
        connection-specific (RFC 9113 §8.2.2) or pseudo.
    """
    check_final_status(status)
    out = [(b":status", str(status).encode("ascii"))]
    for name, value in _encode(headers):
        name = name.lower()
        if name in _CONNECTION_SPECIFIC or name.startswith(b":"):
            raise InvalidArgumentError(
                f"header {name.decode('latin-1')!r} cannot be sent in HTTP/2 or HTTP/3 "
                "(RFC 9113 §8.2.2, §8.3)"
            )
        out.append((name, value))
    return out


def error_response(error: RemoteProtocolError) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The answer to a request :func:`read_request` refused: its header list and body (a
    line of text naming the fault). A 426 lists the version this server speaks (RFC 6455
    §4.4)."""
    status = error.status_hint
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if status == 426:
        headers.append((b"sec-websocket-version", _VERSION))
    return response_headers(status, headers), f"{status} {error}\n".encode()


def accept(
    request: Handshake,
    *,
    subprotocols: Sequence[str] = (),
    extensions: Sequence[Extension] = (),
    subprotocol: str | None = None,
    extra_headers: HeaderInput = (),
    **settings: Unpack[FramingSettings],
) -> tuple[ServerConnection, list[tuple[bytes, bytes]]]:
    """Accept a WebSocket opening :func:`read_request` returned: negotiate as an HTTP/1.1
    server does, and return the connection, already OPEN, and the 200 answer's header list
    (RFC 8441 §5: 200, not 101; no ``sec-websocket-accept``).

    :param subprotocols: the subprotocols this server speaks, in its order of preference.
    :param extensions: the extensions it may accept, in the order it applies them.
    :param subprotocol: the subprotocol to speak, one the client offered; by default the
        first of ``subprotocols`` the client offered.
    :param extra_headers: more response headers.
    :param settings: the machine's settings (:class:`FramingSettings`).
    :raises InvalidArgumentError: the subprotocol was not offered, a header cannot be sent,
        or a setting is out of range.
    """
    chosen = choose_subprotocol(subprotocols, request.subprotocols, subprotocol)
    answers, codecs = accept_offers(extensions, request.extensions)
    headers: list[tuple[str | bytes, str | bytes]] = []
    if chosen is not None:
        headers.append((b"sec-websocket-protocol", chosen.encode("ascii")))
    if answers:
        headers.append((b"sec-websocket-extensions", build_extension_header(answers).encode()))
    headers.extend(extra_headers)
    response = response_headers(200, headers)
    agreement = Agreement(chosen, tuple(answers), tuple(codecs))
    return ServerConnection.for_stream(agreement, **settings), response


def accept_extended_connect(
    headers: HeaderInput,
    *,
    subprotocols: Sequence[str] = (),
    extensions: Sequence[Extension] = (),
    origin_policy: OriginPolicy | None = None,
    extra_headers: HeaderInput = (),
    **settings: Unpack[FramingSettings],
) -> tuple[ServerConnection, list[tuple[bytes, bytes]]]:
    """Check an extended CONNECT request and accept it in one call: :func:`read_request`,
    then :func:`accept`, for a stream that serves WebSockets only.

    :raises RemoteProtocolError: a bad opening, as :func:`read_request` says; a request
        that is no extended CONNECT at all is refused with 405 (``allow: CONNECT``) when it
        uses another method and 501 when it is a classic CONNECT: this resource is no
        tunnel (RFC 9110 §9.3.6, §15.5.6, §15.6.2). Answer with :func:`error_response`.
    """
    request = read_request(headers, origin_policy=origin_policy)
    if isinstance(request, HTTPRequest):
        if request.method == "CONNECT":
            raise _bad(
                "CONNECT without :protocol asks for a tunnel, which this server does not "
                "open: use :protocol websocket (RFC 8441 §4; RFC 9110 §9.3.6)",
                501,
            )
        raise _bad(
            f"{request.method} request to a WebSocket resource: open it with an extended "
            "CONNECT, :protocol websocket (RFC 8441 §5)",
            405,
        )
    return accept(
        request,
        subprotocols=subprotocols,
        extensions=extensions,
        extra_headers=extra_headers,
        **settings,
    )


class ClientOpening:
    """The client's half of an extended CONNECT opening (RFC 8441 §5, RFC 9220 §3).

    Send :attr:`headers` as the request's HEADERS (without END_STREAM: the stream carries the
    WebSocket), then give the answer's header list to :meth:`receive_response`. On a valid
    200, :attr:`connection` is the :class:`~wsmachine.ClientConnection`, already OPEN.

    Only open a stream this way once the server's SETTINGS carried
    :data:`SETTINGS_ENABLE_CONNECT_PROTOCOL` = 1 (RFC 8441 §3).

    :param authority: the ``:authority``, host[:port] of the WebSocket URI.
    :param path: the ``:path``, path and query of the WebSocket URI.
    :param scheme: ``"https"`` for a wss URI, ``"http"`` for ws (RFC 8441 §5).
    :param subprotocols: subprotocols to offer, in order of preference.
    :param extensions: extensions to offer, in order of preference.
    :param origin: the ``origin`` header to send, if any.
    :param extra_headers: more request headers.
    :param settings: the machine's settings (:class:`FramingSettings`).
    :raises InvalidArgumentError: a bad authority, path, scheme, subprotocol list or header.
    """

    __slots__ = ("_answered", "_extensions", "_settings", "_subprotocols", "connection", "headers")

    def __init__(
        self,
        authority: str,
        path: str = "/",
        *,
        scheme: str = "https",
        subprotocols: Sequence[str] = (),
        extensions: Sequence[Extension] = (),
        origin: str | None = None,
        extra_headers: HeaderInput = (),
        **settings: Unpack[FramingSettings],
    ) -> None:
        if scheme not in ("http", "https"):
            raise InvalidArgumentError(
                f"scheme {scheme!r}: expected 'https' (wss) or 'http' (ws) (RFC 8441 §5)"
            )
        if "@" in authority or _parse_host(authority) is None:
            raise InvalidArgumentError(
                f"authority {authority!r}: expected host[:port] (RFC 8441 §5; RFC 9110 §4.2)"
            )
        if not path.startswith("/") or "#" in path:
            raise InvalidArgumentError(
                f"path {path!r}: expected '/' then path and query, no fragment (RFC 6455 §3)"
            )
        if not all(map(is_token, subprotocols)) or len(set(subprotocols)) != len(subprotocols):
            raise InvalidArgumentError(
                f"subprotocols {list(subprotocols)}: expected distinct tokens "
                "(RFC 6455 §4.1 item 10)"
            )
        self._subprotocols = tuple(subprotocols)
        self._extensions = tuple(extensions)
        self._settings = settings
        headers: list[tuple[str | bytes, str | bytes]] = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", scheme),
            (b":path", path),
            (b":authority", authority),
            (b"sec-websocket-version", _VERSION),
        ]
        if origin is not None:
            headers.append((b"origin", origin))
        if subprotocols:
            headers.append((b"sec-websocket-protocol", ", ".join(subprotocols)))
        if extensions:
            headers.append(
                (b"sec-websocket-extensions", build_extension_header(e.offer() for e in extensions))
            )
        extra = _encode(extra_headers)
        for name, _ in extra:
            if name.lower() in _CONNECTION_SPECIFIC or name.startswith(b":"):
                raise InvalidArgumentError(
                    f"header {name.decode('latin-1')!r} cannot be sent in HTTP/2 or HTTP/3 "
                    "(RFC 9113 §8.2.2)"
                )
        #: The request's header list, pseudo-headers first.
        self.headers: list[tuple[bytes, bytes]] = _encode(headers) + [
            (name.lower(), value) for name, value in extra
        ]
        #: The connection, OPEN, once a valid 200 arrived; ``None`` before (or after a refusal).
        self.connection: ClientConnection | None = None
        self._answered = False

    def receive_response(self, headers: HeaderInput) -> Accepted | Rejected | None:
        """Check the server's answer (its header list): :class:`~wsmachine.Accepted` for a
        valid 200 (then :attr:`connection` is set); :class:`~wsmachine.Rejected` for any
        other final status (``error`` is ``None``: a refusal; its body, if any, comes in the
        stream's DATA), or, with an ``error``, for a 200 that breaks the protocol (a
        subprotocol or extension that was not offered); then reset the stream (CANCEL).
        ``None`` for an interim 1xx answer: wait for the final one.

        :raises LocalProtocolError: an answer was already received.
        """
        if self._answered:
            raise LocalProtocolError("receive_response(): the final answer was already received")
        fields = tuple(_encode(headers))
        statuses = _values(fields, b":status")
        status = int(statuses[0]) if len(statuses) == 1 and statuses[0].isdigit() else 0
        if not 100 <= status <= 599:
            self._answered = True
            error = RemoteProtocolError(
                f"the answer has no valid :status ({statuses!r}) (RFC 9113 §8.3.2)"
            )
            return Rejected(status_code=0, headers=fields, error=error)
        if status < 200:
            return None
        self._answered = True
        if 200 < status < 300:
            error = RemoteProtocolError(
                f"the answer's status is {status}: a server accepting the WebSocket answers "
                "200 (RFC 8441 §5)"
            )
            return Rejected(status_code=status, headers=fields, error=error)
        if status != 200:
            return Rejected(status_code=status, headers=fields)
        try:
            agreement = check_answer(
                self._subprotocols,
                self._extensions,
                _values(fields, b"sec-websocket-protocol"),
                _values(fields, b"sec-websocket-extensions"),
            )
        except RemoteProtocolError as error:
            return Rejected(status_code=status, headers=fields, error=error)
        self.connection = ClientConnection.for_stream(agreement, **self._settings)
        return Accepted(
            subprotocol=agreement.subprotocol, extensions=agreement.extensions, headers=fields
        )
