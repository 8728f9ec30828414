"""What the adapters show their users: URLs, HTTP answers and the two exceptions.

Nothing here speaks the protocol (the machine does) or keeps time (the session does).
"""

from __future__ import annotations

import abc
import dataclasses
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Self

from ..close_codes import CloseInfo
from ..events import Close, Handshake, HTTPRequest, Rejected

__all__ = [
    "AsyncMessages",
    "ConnectionClosed",
    "HTTPHandler",
    "HTTPResponse",
    "HandshakeError",
    "UpgradeHandler",
    "WebSocketURL",
    "handshake_error",
    "not_found",
    "parse_url",
    "upgrade_required",
]


@dataclasses.dataclass(frozen=True, slots=True)
class WebSocketURL:
    """A parsed ``ws://`` or ``wss://`` URL."""

    #: ``True`` for ``wss://``.
    secure: bool
    #: The host to connect to (no brackets around an IPv6 address).
    host: str
    #: The TCP port (80 or 443 by default).
    port: int
    #: The request target: path and query, at least ``"/"``.
    resource: str
    #: The ``Host`` header value.
    host_header: str


def parse_url(url: str) -> WebSocketURL:
    """Parse a WebSocket URL (RFC 6455 §3).

    :raises ValueError: not a ``ws://`` or ``wss://`` URL, it has a fragment or no host.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r} is not a WebSocket URL: the scheme must be ws or wss")
    if parts.fragment:
        raise ValueError(f"{url!r} has a fragment; WebSocket URLs may not (RFC 6455 §3)")
    host = parts.hostname
    if not host:
        raise ValueError(f"{url!r} has no host")
    secure = scheme == "wss"
    default = 443 if secure else 80
    port = parts.port or default
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    return WebSocketURL(secure, host, port, resource, host_header)


@dataclasses.dataclass(frozen=True, slots=True)
class HTTPResponse:
    """An HTTP answer to a plain request or a refused upgrade (written by the machine)."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""


#: Answers a plain HTTP request (not an upgrade); ``None`` answers 426 Upgrade Required.
HTTPHandler = Callable[[HTTPRequest], HTTPResponse | None]
#: Decides on an upgrade request: ``None`` accepts it, a response refuses it.
UpgradeHandler = Callable[[Handshake], HTTPResponse | None]


def _text(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> HTTPResponse:
    return HTTPResponse(
        status,
        [("content-type", "text/plain; charset=utf-8"), *headers],
        message.encode("utf-8"),
    )


def not_found(request: HTTPRequest) -> HTTPResponse:
    """The 404 answer to a plain request nobody handles."""
    return _text(404, f"Not found: {request.path}\n")


def upgrade_required(request: HTTPRequest | Handshake) -> HTTPResponse:
    """The 426 answer to a plain request when the server serves no pages."""
    return _text(
        426,
        "This is a WebSocket server; connect with a WebSocket client.\n",
        [("upgrade", "websocket"), ("connection", "Upgrade")],
    )


class ConnectionClosed(Exception):  # noqa: N818 - the name users know from other libraries
    """The WebSocket connection is closed: no more messages can be sent or received.

    :ivar local: the Close this side sent (``None``: none was sent).
    :ivar remote: the Close the peer sent (``None``: none arrived, e.g. the peer vanished).
    :ivar error: what went wrong (a protocol error, a timeout, an I/O error), or ``None``
        after a clean closing handshake.
    """

    def __init__(
        self,
        local: CloseInfo | None,
        remote: CloseInfo | None,
        error: BaseException | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.error = error
        super().__init__(self._describe())

    @property
    def code(self) -> int:
        """The peer's close code; 1006 when no Close frame arrived (RFC 6455 §7.1.5)."""
        return self.remote.code if self.remote is not None else 1006

    @property
    def reason(self) -> str:
        """The peer's close reason (``""`` when none arrived)."""
        return self.remote.reason if self.remote is not None else ""

    @property
    def ok(self) -> bool:
        """Whether both Close frames were exchanged with 1000, 1001 or no code (1005)."""
        return (
            self.error is None
            and self.local is not None
            and self.remote is not None
            and self.remote.code in (1000, 1001, 1005)
            and self.local.code in (1000, 1001, 1005)
        )

    def _describe(self) -> str:
        def show(info: CloseInfo | None) -> str:
            if info is None:
                return "none"
            return f"{info.code} {info.reason!r}" if info.reason else str(info.code)

        text = f"connection closed: sent {show(self.local)}, received {show(self.remote)}"
        if self.error is not None:
            text += f" ({type(self.error).__name__}: {self.error})"
        return text


class HandshakeError(Exception):
    """The opening handshake failed: the server refused the upgrade, answered something
    invalid, the connection ended or the handshake timed out.

    :ivar status_code: the HTTP status received (0 when none arrived).
    :ivar headers: the response headers (lower-case names).
    :ivar body: the response body (bounded by ``max_rejection_body``).
    :ivar error: the protocol error or timeout behind it, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 0,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = tuple(headers)
        self.body = body
        self.error = error


def handshake_error(event: Rejected | Close) -> HandshakeError:
    """The :class:`HandshakeError` for a client machine's ``Rejected`` or ``Close`` event."""
    if isinstance(event, Close):
        return HandshakeError(
            f"the connection ended during the opening handshake: {event.error or event.reason}",
            error=event.error,
        )
    if event.error is not None:
        return HandshakeError(
            f"invalid handshake response (status {event.status_code}): {event.error}",
            status_code=event.status_code,
            headers=event.headers,
            body=event.body,
            error=event.error,
        )
    body = event.body[:200].decode("utf-8", "replace").strip()
    return HandshakeError(
        f"the server refused the upgrade with status {event.status_code}"
        + (f": {body}" if body else ""),
        status_code=event.status_code,
        headers=event.headers,
        body=event.body,
    )


class AsyncMessages(abc.ABC):
    """``async for message in ws`` over an async adapter's :meth:`recv`, without an async
    generator (which a task that stops iterating would leave unfinished)."""

    __slots__ = ()

    @abc.abstractmethod
    async def recv(self) -> str | bytes:
        """The next message."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str | bytes:
        """The next message; a clean close (1000, 1001) ends the iteration, any other
        raises :class:`ConnectionClosed`."""
        try:
            return await self.recv()
        except ConnectionClosed as closed:
            if closed.ok:
                raise StopAsyncIteration from None
            raise
