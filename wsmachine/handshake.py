"""The opening handshake (RFC 6455 §4) over h11, in both roles.

h11 parses and writes the HTTP/1.1 messages; this module checks what RFC 6455 adds on top
and hands the bytes that follow the handshake (``trailing``) to the frame layer.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import http
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import h11

from .errors import InvalidArgumentError, RemoteProtocolError
from .events import Accepted, Handshake, Headers, HTTPRequest, Rejected
from .extensions.base import Extension, ExtensionCodec
from .headers import (
    ExtensionOffer,
    build_extension_header,
    is_token,
    parse_extension_list,
    parse_token_list,
)
from .negotiation import check_answer
from .origin import OriginPolicy

__all__ = [
    "ClientHandshake",
    "HeaderInput",
    "ServerHandshake",
    "accept_key",
    "new_key",
]

#: Headers a caller passes in: name and value, as str or bytes.
HeaderInput = Iterable[tuple[str | bytes, str | bytes]]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
_VERSION = b"13"

#: Default longest line of an HTTP head, counting its CRLF (414 or 431 above it).
DEFAULT_MAX_LINE_SIZE = 8192
#: Default largest number of header lines in an HTTP head (431 above it).
DEFAULT_MAX_HEADERS = 128
#: The most bytes of one read the client's h11 gets at a time (see ClientHandshake).
_FEED_STEP = 4096


def accept_key(key: str | bytes) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    digest = hashlib.sha1(raw + _GUID).digest()  # noqa: S324 - RFC 6455 §4.2.2 fixes SHA-1
    return base64.b64encode(digest).decode("ascii")


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 bytes from the OS CSPRNG, base64 (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


#: A head's fields by lowercase name, in order (h11 lowercases names): built once per head.
_Index = dict[bytes, list[bytes]]
_ABSENT: list[bytes] = []  # what a missing field reads as; never changed


def _index(headers: Headers) -> _Index:
    index: _Index = {}
    for name, value in headers:
        found = index.get(name)
        if found is None:
            index[name] = [value]
        else:
            found.append(value)
    return index


def _values(index: _Index, name: bytes) -> list[bytes]:
    return index.get(name, _ABSENT)


def _ascii(value: bytes, what: str, status: int = 400) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError(
            f"{what} holds non-ASCII bytes {value[:40]!r}", status_hint=status
        ) from None


def _single(index: _Index, name: bytes, what: str, status: int = 400) -> bytes | None:
    values = _values(index, name)
    if len(values) > 1:
        raise RemoteProtocolError(
            f"{what} appears {len(values)} times; expected once (RFC 6455 §4.2.1, §11.3)",
            status_hint=status,
        )
    return values[0] if values else None


def _has_token(index: _Index, name: bytes, header: str, token: bytes) -> bool:
    values = _values(index, name)
    # Most clients send the one token alone: that line is a valid list holding it.
    if len(values) == 1 and values[0].lower() == token:
        return True
    tokens = parse_token_list(values, header, allow_slash=True)
    return any(t.lower().encode("latin-1") == token for t in tokens)


def _encode_headers(headers: HeaderInput) -> list[tuple[bytes, bytes]]:
    """Encode caller headers; h11 rejects CR, LF and NUL when it writes them."""
    out = []
    for name, value in headers:
        out.append(
            (
                name.encode("ascii") if isinstance(name, str) else name,
                value.encode("latin-1") if isinstance(value, str) else value,
            )
        )
    return out


def _reason_phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _caller_input(method: _Method) -> _Method:
    """Report bad caller input as :class:`InvalidArgumentError`, whatever rejects it.

    h11 checks header names and values when its events are built, not only when they are
    sent, and a str that does not encode fails in the codec. (A plain wrapper, not a
    context manager: this runs once per handshake, where a generator costs microseconds.)
    """

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except h11.LocalProtocolError as exc:
            raise InvalidArgumentError(f"invalid HTTP message: {exc}") from None
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                f"{exc.object!r} cannot be written in an HTTP message: {exc.reason}"
            ) from None

    return cast(_Method, checked)


def _h11_send(conn: h11.Connection, *events: h11.Event) -> bytes:
    return b"".join(conn.send(event) or b"" for event in events)


def _check_head_start(data: bytes, pos: int, what: str) -> None:
    """Refuse a head that starts with a control character or a space (at ``data[pos]``).

    h11 refuses it too, but in other words while the line is incomplete than once it is
    whole; checking first keeps the error the same however the bytes were split.
    """
    if 0 <= pos < len(data) and data[pos] < 0x21:
        raise RemoteProtocolError(
            f"malformed HTTP {what}: it starts with byte 0x{data[pos]:02x}, not a {what} line "
            "(RFC 9112 §2.2)"
        )


# h11 shows the bytes it refused as a bytearray's repr; a bytes repr says the same, shorter.
_BYTEARRAY_REPR = re.compile(r"""bytearray\((b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*")\)""")


def _h11_reason(exc: h11.RemoteProtocolError) -> str:
    """h11's reason for refusing a head (read whole, so it does not depend on the split)."""
    return _BYTEARRAY_REPR.sub(r"\1", str(exc))


def _head_too_large(what: str, limit: int) -> RemoteProtocolError:
    """The same error whether h11 saw the head incomplete or whole (any split of the bytes)."""
    return RemoteProtocolError(
        f"the HTTP {what} head exceeds {limit} bytes (max_handshake_size)", status_hint=431
    )


_CRLF = b"\r\n"


class _HeadScanner:
    """Bound an HTTP head as its bytes arrive, before h11 parses any of it.

    Limits the first line (request or status line), each header line (both counting their
    line ending), the number of header lines and the head's total size. The error is the one
    for the limit crossed first in the byte stream, so it does not depend on how the bytes
    were split into reads.
    """

    __slots__ = ("_first", "_headers", "_last", "_line", "_size", "done", "limits", "what")

    def __init__(self, what: str, limits: tuple[int, int, int]) -> None:
        self.what = what  # "request" or "response"
        self.limits = limits  # (max_size, max_line, max_headers)
        self.reset()

    def reset(self) -> None:
        """Start on a new head."""
        self._size = 0  # bytes of the head so far
        self._line = 0  # bytes of the current line so far, its line ending included
        self._last = 0  # the last byte scanned (to see a CR just before a LF)
        self._first = True  # the current line is the request or status line
        self._headers = 0  # header lines ended so far
        #: The head's blank line has been scanned.
        self.done = False

    def _whole(self, data: bytes) -> int:
        """The common case at C speed: a head that arrived whole, CRLF line endings, no line
        folded, smaller than the line limit (so no line is too long) and within the others.
        Return the offset past its end, with the state as the line walk would leave it; ``0``
        when the head is not that simple (the line walk then decides, errors included)."""
        end = data.find(b"\r\n\r\n")
        if end <= 0 or data[0] in _CRLF:
            return 0
        end += 4
        max_size, max_line, max_headers = self.limits
        if end > max_size or end > max_line:
            return 0
        # The head ends at its first empty line, which may end with a bare LF too.
        if data.find(b"\n\r\n", 0, end) != end - 3 or data.find(b"\n\n", 0, end) >= 0:
            return 0
        if self.what == "request" and (
            data.find(b"\n ", 0, end) >= 0 or data.find(b"\n\t", 0, end) >= 0
        ):
            return 0
        headers = data.count(b"\n", 0, end) - 2  # not the start line, not the empty one
        if headers > max_headers:
            return 0
        self._size = end
        self._last = 0x0A
        self._first = False
        self._headers = headers
        self.done = True
        return end

    def scan(self, data: bytes, pos: int = 0) -> int:
        """Scan ``data[pos:]``; return the offset just past the head's end (``len(data)``
        while it has not ended).

        :raises RemoteProtocolError: a limit is crossed.
        """
        if pos == 0 and self._size == 0:
            end = self._whole(data)
            if end:
                return end
        max_size, max_line, max_headers = self.limits
        request = self.what == "request"
        n = len(data)
        while pos < n and not self.done:
            # A header line starting with SP or HTAB continues the previous one (obs-fold).
            # h11 would join the two with a space; a server refuses instead, and does so as
            # the line starts, so the error does not depend on the split (RFC 9112 §5.2).
            if request and self._line == 0 and not self._first and data[pos] in b" \t":
                raise RemoteProtocolError(
                    "a header line of the HTTP request starts with whitespace: obsolete line "
                    "folding (or whitespace before the first header) is refused "
                    "(RFC 9112 §2.2, §5.2)"
                )
            newline = data.find(b"\n", pos)
            end = n if newline < 0 else newline + 1
            count = end - pos
            line_room = max_line - self._line
            size_room = max_size - self._size
            if count > line_room and line_room <= size_room:
                raise self._line_too_long(max_line)
            if count > size_room:
                raise _head_too_large(self.what, max_size)
            self._line += count
            self._size += count
            previous = data[newline - 1] if newline > pos else self._last
            self._last = data[end - 1]
            pos = end
            if newline < 0:
                break
            blank = self._line == 1 or (self._line == 2 and previous == 0x0D)
            self._line = 0
            if self._first:
                self._first = False
            elif blank:
                self.done = True
            else:
                self._headers += 1
                if self._headers > max_headers:
                    raise RemoteProtocolError(
                        f"the HTTP {self.what} has more than {max_headers} header lines "
                        "(max_handshake_headers)",
                        status_hint=431,
                    )
        return pos

    def _line_too_long(self, max_line: int) -> RemoteProtocolError:
        if self._first:
            line = "request line" if self.what == "request" else "status line"
            return RemoteProtocolError(
                f"the HTTP {line} exceeds {max_line} bytes (max_handshake_line)",
                status_hint=414 if self.what == "request" else 400,
            )
        return RemoteProtocolError(
            f"an HTTP {self.what} header line exceeds {max_line} bytes (max_handshake_line)",
            status_hint=431,
        )


class ServerHandshake:
    """The server's half: read the upgrade request, answer it with 101 or an HTTP response.

    :param max_size: largest request head (431 above it).
    :param max_line: longest request line (414 above it) or header line (431), with its CRLF.
    :param max_headers: most header lines (431 above it).
    :param origin_policy: which ``Origin`` values pass (403 for the others); ``None``: any.
    """

    __slots__ = (
        "_h11",
        "_max_size",
        "_method",
        "_origin_policy",
        "_pending",
        "_received",
        "_scanner",
        "trailing",
    )

    def __init__(
        self,
        max_size: int,
        *,
        max_line: int = DEFAULT_MAX_LINE_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        origin_policy: OriginPolicy | None = None,
    ) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
        self._max_size = max_size
        self._scanner = _HeadScanner("request", (max_size, max_line, max_headers))
        self._origin_policy = origin_policy
        self._received = 0  # bytes fed until the request line and headers are parsed
        self._method = b""
        self._pending: Handshake | None = None
        #: Bytes that followed the request (frames the client sent early).
        self.trailing = b""

    def receive_data(self, data: bytes) -> Handshake | HTTPRequest | None:
        """Feed bytes; return the request once complete (``None`` while incomplete).

        :raises RemoteProtocolError: the request is malformed or is a bad upgrade request;
            ``status_hint`` is the status to answer with :meth:`error_response`.
        """
        conn = self._h11
        conn.receive_data(data)
        try:
            # Always true: the request is returned by the call that completes it (an upgrade
            # has no body, so h11 pauses at once) and Connection never feeds this again.
            if self._pending is None:  # pragma: no branch
                _check_head_start(data, -self._received, "request")
                self._received += len(data)
                self._scanner.scan(data)
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return None
                if not isinstance(event, h11.Request):  # pragma: no cover - h11 starts so
                    raise RemoteProtocolError(f"unexpected HTTP event {event!r}")
                # h11 bounds only a head still incomplete; bound one that came whole too.
                # Defensive: _HeadScanner has already refused any head byte past max_size.
                head = self._received - len(conn.trailing_data[0])
                if head > self._max_size:  # pragma: no cover
                    raise _head_too_large("request", self._max_size)
                self._method = event.method
                result = _check_request(event)
                if isinstance(result, HTTPRequest):
                    return result
                policy = self._origin_policy
                if policy is not None and not policy.allows(result.origin, result.host):
                    raise _origin_refused(result.origin)
                self._pending = result
            # The upgrade request has no body: h11 reports its end, then pauses.
            while True:
                event = conn.next_event()
                # Never: _check_request refused any body, so EndOfMessage follows the Request.
                if event is h11.NEED_DATA:  # pragma: no cover
                    return None
                if event is h11.PAUSED:
                    break
        except h11.RemoteProtocolError as exc:
            # Defensive: h11's 431 (an incomplete head over max_size) never precedes the
            # scanner's, which sees every byte first.
            if exc.error_status_hint == 431:  # pragma: no cover
                raise _head_too_large("request", self._max_size) from None
            raise RemoteProtocolError(
                f"malformed HTTP request: {_h11_reason(exc)} (RFC 9112; RFC 6455 §4.2.1)",
                status_hint=exc.error_status_hint,
            ) from None
        self.trailing = conn.trailing_data[0]
        return self._pending

    def error_response(self, error: RemoteProtocolError) -> Rejected:
        """Build the answer to a bad request; return it as a :class:`Rejected` event."""
        status = error.status_hint
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain; charset=utf-8")]
        if status == 426:
            headers.append((b"sec-websocket-version", _VERSION))
        elif status == 405:
            headers.append((b"allow", b"GET"))
        body = f"{status} {error}\n".encode()
        return Rejected(status_code=status, headers=tuple(headers), body=body, error=error)

    @_caller_input
    def accept(
        self,
        key: str,
        subprotocol: str | None,
        extensions: Sequence[ExtensionOffer],
        extra_headers: HeaderInput,
    ) -> bytes:
        """Return the 101 response (RFC 6455 §4.2.2)."""
        headers = [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", accept_key(key).encode("ascii")),
        ]
        if subprotocol is not None:
            headers.append((b"Sec-WebSocket-Protocol", subprotocol.encode("ascii")))
        if extensions:
            value = build_extension_header(extensions).encode("ascii")
            headers.append((b"Sec-WebSocket-Extensions", value))
        headers.extend(_encode_headers(extra_headers))
        response = h11.InformationalResponse(
            status_code=101, headers=headers, reason=b"Switching Protocols"
        )
        return _h11_send(self._h11, response)

    def _response(self, status: int, headers: HeaderInput, body: bytes | None) -> h11.Response:
        """The head of a final response carrying ``body`` (``None``: a body streamed after
        the head, of a length not known yet)."""
        check_final_status(status)
        encoded = _encode_headers(headers)
        names = {name.lower() for name, _ in encoded}
        # No Content-Length on a 204 (RFC 9110 §8.6) or a 304 (it would describe the
        # representation, §15.4.5).
        framed = bool(names & {b"content-length", b"transfer-encoding"})
        if body is not None and status not in _NO_BODY_STATUSES and not framed:
            encoded.append((b"Content-Length", str(len(body)).encode("ascii")))
        if b"connection" not in names:
            encoded.append((b"Connection", b"close"))
        return h11.Response(status_code=status, headers=encoded, reason=_reason_phrase(status))

    def _send(self, *events: h11.Event) -> bytes:
        """Send ``events`` all or nothing: on a trial copy of the h11 connection first, so an
        invalid one (a body longer or shorter than its Content-Length, a body on a 204)
        leaves the connection as it was and a valid answer can still be sent."""
        trial = copy.deepcopy(self._h11)
        data = _h11_send(trial, *events)
        self._h11 = trial
        return data

    @_caller_input
    def reject(self, status: int, headers: HeaderInput, body: bytes) -> bytes:
        """Return a complete HTTP response that ends the connection.

        :raises InvalidArgumentError: the status is not 200-599 (or is 2xx to a CONNECT), a
            header is invalid, or the body does not fit the framing (its Content-Length, or
            none allowed); nothing changed.
        """
        self._check_status(status)
        parts: list[h11.Event] = [self._response(status, headers, body), *self._body(body)]
        parts.append(h11.EndOfMessage())
        return self._send(*parts)

    @_caller_input
    def reject_start(self, status: int, headers: HeaderInput) -> bytes:
        """Return the head of a response whose body follows (:meth:`reject_body`).

        Unless ``headers`` frame the body (``Content-Length``), h11 does: chunked to an
        HTTP/1.1 client, up to the end of the connection to an HTTP/1.0 one (RFC 9112 §6).

        :raises InvalidArgumentError: as :meth:`reject`; nothing changed.
        """
        self._check_status(status)
        return self._send(self._response(status, headers, None))

    @_caller_input
    def reject_body(self, data: bytes, end: bool) -> bytes:
        """Return the next piece of the body :meth:`reject_start` began, and its end when
        ``end`` is true.

        :raises InvalidArgumentError: the body would not fit its framing (more than its
            ``Content-Length``, any body on a 204 or 304, or an end before all of it was
            sent); nothing changed.
        """
        parts = self._body(data)
        if end:
            parts.append(h11.EndOfMessage())
        return self._send(*parts)

    def _body(self, data: bytes) -> list[h11.Event]:
        # No body goes to a HEAD request (RFC 9110 §9.3.2), whatever the headers say.
        return [h11.Data(data=data)] if data and self._method != b"HEAD" else []

    def _check_status(self, status: int) -> None:
        check_final_status(status)
        # Checked before h11 sees it: h11 would take the 2xx for a tunnel and then refuse the
        # body and the end of the message, in words about its own states.
        if self._method == b"CONNECT" and status < 300:
            raise InvalidArgumentError(
                f"status {status} to CONNECT would turn the connection into a tunnel "
                "(RFC 9110 §9.3.6): refuse it with an error status, such as 405 or 501"
            )


#: Statuses whose response has no body (RFC 9110 §6.4.1).
_NO_BODY_STATUSES = frozenset({204, 304})


def check_final_status(status: int) -> None:
    """Refuse a status :meth:`ServerConnection.reject` cannot answer with.

    A final response has a status of 200-599: 1xx are informational, sent before the final
    answer and never instead of it (RFC 9110 §15.2), and HTTP defines no status above 599
    (§15). 101 switches protocols: that is :meth:`~wsmachine.ServerConnection.accept`'s.
    """
    if isinstance(status, bool) or not isinstance(status, int):
        raise InvalidArgumentError(f"status {status!r}: expected an int, 200-599")
    if status == 101:
        raise InvalidArgumentError(
            "status 101 switches protocols: accept the upgrade with accept(), not reject()"
        )
    if not 200 <= status <= 599:
        kind = "an informational status, not a final answer" if 100 <= status < 200 else ""
        raise InvalidArgumentError(
            f"status {status}{': ' + kind if kind else ''} cannot answer the request: "
            "expected a final status, 200-599 (RFC 9110 §15)"
        )


def _check_request(request: h11.Request) -> Handshake | HTTPRequest:
    """Check an upgrade request against RFC 6455 §4.2.1, or report a plain HTTP request."""
    headers: Headers = tuple(request.headers)  # (lowercase name, value) pairs
    index = _index(headers)
    target = _ascii(request.target, "request target")
    upgrade = _has_token(index, b"upgrade", "Upgrade", b"websocket")
    host = _check_host(index, upgrade)
    if not upgrade:
        if _values(index, b"sec-websocket-key"):
            # A WebSocket client's request that lost its Upgrade header (a proxy that drops
            # hop-by-hop headers, a hand-written client): failing it tells the client why,
            # where serving it as a plain request would answer with a page (RFC 6455 §4.2.1).
            raise RemoteProtocolError(
                "request carries Sec-WebSocket-Key but no 'Upgrade: websocket' "
                "(RFC 6455 §4.2.1 item 3)",
                status_hint=400,
            )
        return HTTPRequest(method=_ascii(request.method, "method"), path=target, headers=headers)
    if request.method != b"GET":
        raise RemoteProtocolError(
            f"upgrade request uses method {request.method.decode('latin-1')}: expected GET "
            "(RFC 6455 §4.1, §4.2.1)",
            status_hint=405,
        )
    _check_request_version(request.http_version)
    path = _resource_name(target, host)
    if not _has_token(index, b"connection", "Connection", b"upgrade"):
        raise RemoteProtocolError(
            "Connection header lacks the token 'upgrade' (RFC 6455 §4.2.1 item 4)"
        )
    if _values(index, b"content-length") not in ([], [b"0"]) or _values(
        index, b"transfer-encoding"
    ):
        raise RemoteProtocolError("upgrade request has a body; expected none (RFC 6455 §4.1)")
    version = _single(index, b"sec-websocket-version", "Sec-WebSocket-Version", 426)
    if version != _VERSION:
        shown = "none" if version is None else repr(version.decode("latin-1"))
        raise RemoteProtocolError(
            f"Sec-WebSocket-Version is {shown}: expected 13 (RFC 6455 §4.2.1 item 6, §4.4)",
            status_hint=426,
        )
    key = _single(index, b"sec-websocket-key", "Sec-WebSocket-Key")
    if key is None or len(key) != 24:
        raise RemoteProtocolError(
            "Sec-WebSocket-Key is missing or not 24 characters: expected base64 of 16 bytes "
            "(RFC 6455 §4.2.1 item 5)"
        )
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:  # 24 characters without padding decode to 18 bytes
        raise RemoteProtocolError(
            "Sec-WebSocket-Key is not valid base64 of 16 bytes (RFC 6455 §4.2.1 item 5)"
        )
    origin = _single(index, b"origin", "Origin")
    return Handshake(
        path=path,
        host=host,
        origin=None if origin is None else _ascii(origin, "Origin header"),
        subprotocols=tuple(
            parse_token_list(_values(index, b"sec-websocket-protocol"), "Sec-WebSocket-Protocol")
        ),
        extensions=tuple(parse_extension_list(_values(index, b"sec-websocket-extensions"))),
        headers=headers,
    )


def _check_request_version(version: bytes) -> None:
    """Refuse an upgrade request that is not HTTP/1.1 or a later HTTP/1 version.

    RFC 6455 §4.2.1 asks for "HTTP/1.1 or higher": a later minor version is HTTP/1 too and is
    answered in HTTP/1.1 (RFC 9110 §6.2). HTTP/1.0 has no upgrade (its 400 says so); another
    major version does not use this request syntax, so it is not supported (505, RFC 9112 §2.3).
    """
    major, _, minor = version.partition(b".")  # h11 reads DIGIT "." DIGIT
    shown = version.decode("latin-1")
    if major != b"1":
        raise RemoteProtocolError(
            f"upgrade request uses HTTP/{shown}: expected HTTP/1.1 or a later HTTP/1 version "
            "(RFC 6455 §4.2.1; RFC 9112 §2.3)",
            status_hint=505,
        )
    if minor == b"0":
        raise RemoteProtocolError(
            f"upgrade request uses HTTP/{shown}: expected HTTP/1.1 or later; HTTP/1.0 has no "
            "protocol upgrade (RFC 6455 §4.2.1; RFC 9110 §7.8)"
        )


def _origin_refused(origin: str | None) -> RemoteProtocolError:
    shown = "no Origin header" if origin is None else f"Origin {origin[:200]!r}"
    return RemoteProtocolError(
        f"{shown} is not allowed by this server's origin policy (RFC 6455 §10.2)",
        close_code=1008,
        status_hint=403,
    )


# host [":" port] (RFC 3986 §3.2.2, §3.2.3): host is an IP literal in brackets (IPv6, or the
# IPvFuture form) or a reg-name, which also spells IPv4 addresses; port is digits, maybe none.
_HOST = re.compile(
    r"(?P<host>\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|\[[Vv][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
    r"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::(?P<port>[0-9]{0,5}))?"
)

#: The schemes an upgrade request's target may name, with their default ports (RFC 6455 §4.1).
_TARGET_SCHEMES = {"http": 80, "https": 443}


def _parse_host(value: str) -> tuple[str, int | None] | None:
    """Split ``host[:port]`` into the host, lowercased, and the port (``None`` when not given);
    ``None`` when ``value`` is not one."""
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    ipv6 = match["ipv6"]
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6)
        except ValueError:
            return None
    port = match["port"]
    return match["host"].lower(), int(port) if port else None


def _check_host(index: _Index, upgrade: bool) -> str:
    """Return a request's Host, checked: at most one, and host[:port] or empty (RFC 9112
    §3.2); an upgrade request names a host (RFC 6455 §4.1 item 4)."""
    values = _values(index, b"host")
    # Defensive: h11 refuses a repeated Host first ("Found multiple Host: headers").
    if len(values) > 1:  # pragma: no cover
        raise RemoteProtocolError(
            f"Host appears {len(values)} times; expected once (RFC 9112 §3.2; RFC 6455 §4.2.1)"
        )
    host = _ascii(values[0], "Host header") if values else ""
    # h11 joins a folded line with a space, so a fold shows here as an invalid value too.
    if host and _parse_host(host) is None:
        raise RemoteProtocolError(
            f"Host header {host[:200]!r} is not host[:port] (RFC 9112 §3.2; RFC 3986 §3.2.2)"
        )
    if upgrade and not host:
        raise RemoteProtocolError(
            "upgrade request has no Host, or an empty one: expected host[:port] "
            "(RFC 6455 §4.1 item 4, §4.2.1 item 2)"
        )
    return host


def _resource_name(target: str, host: str) -> str:
    """The resource name an upgrade request's target gives (RFC 6455 §3, §4.1, §4.2.1 item 1).

    The target is the resource name itself (origin-form: "/", path, query) or an absolute
    http or https URI (absolute-form, RFC 9112 §3.2.2) whose host and port are the Host
    header's. No other scheme: RFC 6455 names these two, and ws or wss URIs are not sent in
    a request line. Other forms (``*``, host:port) never name a WebSocket resource.
    """
    if "#" in target:
        raise RemoteProtocolError(
            f"request target {target[:200]!r} has a fragment: a resource name has none "
            "(RFC 6455 §3; RFC 9112 §3.2)"
        )
    if target.startswith("/"):
        return target
    scheme, sep, rest = target.partition("://")
    default_port = _TARGET_SCHEMES.get(scheme.lower()) if sep else None
    if default_port is None:
        raise RemoteProtocolError(
            f"request target {target[:200]!r} is neither a resource name ('/', then path and "
            "query) nor an absolute http or https URI (RFC 6455 §4.1, §4.2.1 item 1)"
        )
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, resource = rest[:end], rest[end:]
    named = None if "@" in authority else _parse_host(authority)  # userinfo: RFC 9110 §4.2.4
    given = _parse_host(host)
    assert given is not None  # _check_host ran first
    if named is None or (named[0], named[1] or default_port) != (
        given[0],
        given[1] or default_port,
    ):
        raise RemoteProtocolError(
            f"request target {target[:200]!r} names the authority {authority[:200]!r}, which "
            f"is not the Host header's {host!r} (RFC 6455 §4.1, §4.2.1 item 1)"
        )
    return resource if resource.startswith("/") else "/" + resource


def _check_host_and_path(host: str, path: str) -> None:
    """Refuse a Host that is not host[:port], or a target that is not a resource name."""
    if not host or _parse_host(host) is None:
        raise InvalidArgumentError(
            f"host {host!r}: expected host[:port] for the Host header (RFC 6455 §4.1 item 4)"
        )
    if not path.startswith("/") or "#" in path:
        raise InvalidArgumentError(
            f"path {path!r}: expected a resource name, '/' then path and query, with no "
            "fragment (RFC 6455 §3, §4.1 item 3)"
        )


def handshake_key(event: Handshake) -> str:
    """The client's ``Sec-WebSocket-Key`` from a checked handshake."""
    for name, value in event.headers:
        if name == b"sec-websocket-key":
            return value.decode("ascii")
    raise InvalidArgumentError("this Handshake event carries no Sec-WebSocket-Key")


class ClientHandshake:
    """The client's half: write the upgrade request, check the server's answer (RFC 6455 §4.1)."""

    __slots__ = (
        "_body",
        "_body_received",
        "_extensions",
        "_h11",
        "_head_start",
        "_key",
        "_max_body",
        "_max_size",
        "_received",
        "_response",
        "_scanned",
        "_scanner",
        "_subprotocols",
        "codecs",
        "headers",
        "status_code",
        "trailing",
    )

    def __init__(
        self,
        max_size: int,
        max_body: int,
        subprotocols: Sequence[str],
        extensions: Sequence[Extension],
        *,
        max_line: int = DEFAULT_MAX_LINE_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_size)
        self._max_size = max_size
        self._scanner = _HeadScanner("response", (max_size, max_line, max_headers))
        self._received = 0  # bytes fed so far
        self._head_start = 0  # where the response head being read starts in them
        self._scanned = 0  # where the scanner stopped in them
        self._key = new_key()
        self._max_body = max_body
        self._subprotocols = tuple(subprotocols)
        self._extensions = tuple(extensions)
        self._response: h11.Response | None = None
        self._body = bytearray()
        self._body_received = 0  # bytes of the refusal's body data h11 has handed over
        #: The codecs of the extensions the server accepted, in the order it listed them.
        self.codecs: list[ExtensionCodec] = []
        #: Bytes that followed the 101 (frames the server sent at once).
        self.trailing = b""
        #: The status of the final answer once it arrived (0 before, or if unparseable).
        self.status_code = 0
        #: The headers of that answer, kept for a refusal of an invalid 101.
        self.headers: Headers = ()

    @_caller_input
    def request(
        self, host: str, path: str, origin: str | None, extra_headers: HeaderInput
    ) -> bytes:
        """Return the upgrade request (RFC 6455 §4.1)."""
        _check_host_and_path(host, path)
        if not all(map(is_token, self._subprotocols)) or len(set(self._subprotocols)) != len(
            self._subprotocols
        ):
            raise InvalidArgumentError(
                f"subprotocols {list(self._subprotocols)}: expected distinct tokens "
                "(RFC 6455 §4.1 item 10)"
            )
        headers = [
            (b"Host", host.encode("ascii")),
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Key", self._key.encode("ascii")),
            (b"Sec-WebSocket-Version", _VERSION),
        ]
        if origin is not None:
            headers.append((b"Origin", origin.encode("ascii")))
        if self._subprotocols:
            value = ", ".join(self._subprotocols).encode("ascii")
            headers.append((b"Sec-WebSocket-Protocol", value))
        if self._extensions:
            offers = build_extension_header(ext.offer() for ext in self._extensions)
            headers.append((b"Sec-WebSocket-Extensions", offers.encode("ascii")))
        headers.extend(_encode_headers(extra_headers))
        request = h11.Request(method=b"GET", target=path.encode("ascii"), headers=headers)
        return _h11_send(self._h11, request, h11.EndOfMessage())

    def receive_data(self, data: bytes) -> Accepted | Rejected | None:
        """Feed bytes; return the outcome once known (``None`` while incomplete).

        :raises RemoteProtocolError: the answer is malformed or an invalid 101 (the client
            must then fail the connection, RFC 6455 §4.1).
        """
        if len(data) <= _FEED_STEP:
            return self._receive(data)
        # h11 gets a large read in steps: measuring a refusal body's framing copies what h11
        # holds unparsed (_check_framing), and the steps keep each copy small.
        for start in range(0, len(data), _FEED_STEP):
            outcome = self._receive(data[start : start + _FEED_STEP])
            if outcome is not None:
                if isinstance(outcome, Accepted):
                    self.trailing += data[start + _FEED_STEP :]
                return outcome
        return None

    def _receive(self, data: bytes) -> Accepted | Rejected | None:
        conn = self._h11
        conn.receive_data(data)
        start = self._received
        self._received += len(data)
        try:
            while True:
                if self._response is None:
                    _check_head_start(data, self._head_start - start, "response")
                    scanner = self._scanner
                    offset = max(self._scanned, self._head_start) - start
                    if not scanner.done and offset < len(data):
                        self._scanned = start + scanner.scan(data, max(offset, 0))
                event = conn.next_event()
                if self._response is not None:
                    self._check_framing(event)
                if event is h11.NEED_DATA:
                    return None
                if isinstance(event, h11.InformationalResponse | h11.Response):
                    # h11 bounds only a head still incomplete; bound one that came whole too.
                    end = self._received - len(conn.trailing_data[0])
                    # Defensive: _HeadScanner has already refused any head byte past max_size.
                    if end - self._head_start > self._max_size:  # pragma: no cover
                        raise _head_too_large("response", self._max_size)
                    self._head_start = end
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        self.status_code = 101
                        accepted = self._check_101(event)
                        self.trailing = conn.trailing_data[0]
                        return accepted
                    self._scanner.reset()
                    continue  # 1xx other than 101 are interim answers: wait for the real one
                if isinstance(event, h11.Response):
                    self._response = event
                    self.status_code = event.status_code
                    self.headers = tuple((k, v) for k, v in event.headers)
                elif isinstance(event, h11.Data):
                    room = self._max_body - len(self._body)
                    self._body += event.data[:room]
                    if len(event.data) > room:
                        return self._rejected()  # body bounded: report what fits
                # Always true here: the client's h11 has no other event to give (NEED_DATA
                # returned above; PAUSED comes only after the EndOfMessage or the 101).
                elif isinstance(
                    event, h11.EndOfMessage | h11.ConnectionClosed
                ):  # pragma: no branch
                    return self._rejected()
        except h11.RemoteProtocolError as exc:
            if self._response is not None:
                # h11's 431 here (an incomplete chunk line or trailer section past max_size)
                # is the fault _check_framing finds when the line comes whole: same words.
                raise self._bad_body(ended=not data) from None
            # Defensive: h11's 431 (an incomplete head over max_size) never precedes the
            # scanner's, which sees every byte first.
            if exc.error_status_hint == 431:  # pragma: no cover
                raise _head_too_large("response", self._max_size) from None
            raise RemoteProtocolError(
                f"malformed HTTP response: {_h11_reason(exc)} (RFC 9112)"
            ) from None

    def _check_framing(self, event: object) -> None:
        """Bound a chunked refusal body's framing: its chunk lines and trailer section.

        h11 bounds only a line still incomplete (``max_incomplete_event_size``), so a long
        line would pass in one read and fail in several. Here every byte h11 has parsed that
        is not body data counts toward ``max_size``, whatever the reads: the outcome depends
        on the bytes alone (RFC 9112 §7.1 leaves the limits to the recipient).
        """
        if isinstance(event, h11.Data):
            self._body_received += len(event.data)
        parsed = self._received - len(self._h11.trailing_data[0]) - self._head_start
        if parsed - self._body_received > self._max_size:
            raise self._bad_body(ended=False)

    def _bad_body(self, *, ended: bool) -> RemoteProtocolError:
        """Our own words for a broken refusal body: h11's show the bytes it had buffered,
        which depend on how the input was split."""
        status = self.status_code
        if ended:
            return RemoteProtocolError(
                f"the stream ended inside the body of the HTTP {status} response (RFC 9112 §6.3)"
            )
        # One message for both faults: which one h11 meets first can depend on the reads.
        return RemoteProtocolError(
            f"the chunked body of the HTTP {status} response is malformed, or its chunk lines "
            f"and trailer section pass {self._max_size} bytes (RFC 9112 §7.1)"
        )

    def receive_eof(self) -> Accepted | Rejected | None:
        """The stream ended: a response whose body runs to the end is now complete."""
        if self._response is None:
            return None
        return self.receive_data(b"")

    def _rejected(self) -> Rejected:
        assert self._response is not None
        headers: Headers = tuple((k, v) for k, v in self._response.headers)
        return Rejected(
            status_code=self._response.status_code, headers=headers, body=bytes(self._body)
        )

    def _check_101(self, response: h11.InformationalResponse) -> Accepted:
        headers: Headers = tuple((k, v) for k, v in response.headers)
        self.headers = headers
        index = _index(headers)
        version = response.http_version
        # We asked in HTTP/1.1: the answer is HTTP/1.1 or a later HTTP/1 (RFC 9110 §6.2), and
        # HTTP/1.0 has no 101 at all (RFC 9110 §15.2).
        if version.partition(b".")[0] != b"1" or version == b"1.0":
            raise RemoteProtocolError(
                f"101 response is in HTTP/{version.decode('latin-1')}: expected HTTP/1.1, the "
                "version of the upgrade request (RFC 6455 §4.1; RFC 9110 §6.2, §15.2)"
            )
        if not _has_token(index, b"upgrade", "Upgrade", b"websocket"):
            raise RemoteProtocolError("101 response lacks 'Upgrade: websocket' (RFC 6455 §4.1)")
        if not _has_token(index, b"connection", "Connection", b"upgrade"):
            raise RemoteProtocolError(
                "101 response's Connection header lacks 'upgrade' (RFC 6455 §4.1)"
            )
        accept = _single(index, b"sec-websocket-accept", "Sec-WebSocket-Accept")
        if accept != accept_key(self._key).encode("ascii"):
            raise RemoteProtocolError(
                f"Sec-WebSocket-Accept is {accept!r}: expected {accept_key(self._key)!r} "
                "(RFC 6455 §4.1 item 4)"
            )
        agreement = check_answer(
            self._subprotocols,
            self._extensions,
            _values(index, b"sec-websocket-protocol"),
            _values(index, b"sec-websocket-extensions"),
        )
        self.codecs = list(agreement.codecs)
        return Accepted(
            subprotocol=agreement.subprotocol, extensions=agreement.extensions, headers=headers
        )
