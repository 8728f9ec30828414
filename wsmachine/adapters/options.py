"""Every setting of a connection, in one object per role: the machine's and the session's.

:class:`ServerOptions` and :class:`ClientOptions` are what every adapter, ``wsmachine.testing``
and embedders take, either whole (``options=ServerOptions(...)``) or as keyword arguments of
the same names (``serve(handler, max_message_size=1 << 24)``); no adapter lists the settings
again. The machine's settings are documented on :class:`~wsmachine.ServerConnection` and
:class:`~wsmachine.ClientConnection`, the session's on :class:`~wsmachine.adapters.session.Session`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..connection import (
    DEFAULT_MAX_HANDSHAKE_HEADERS,
    DEFAULT_MAX_HANDSHAKE_LINE,
    DEFAULT_MAX_HANDSHAKE_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_REJECTION_BODY,
    LIMIT_MINIMUMS,
    ClientConnection,
    Connection,
    ServerConnection,
    check_limits,
)
from ..extensions.base import Extension
from ..handshake import HeaderInput
from ..origin import OriginPolicy

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_LINGER_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_REPLY_TIMEOUT",
    "DEFAULT_WRITE_HIGH_WATER",
    "DEFAULT_WRITE_LIMIT",
    "FLUSH_BYTES",
    "GRACE_SECONDS",
    "RECV_SIZE",
    "ClientOptions",
    "Options",
    "ServerOptions",
    "resolve",
]

#: Seconds a peer has to finish the opening handshake (a client: the TCP connection too).
DEFAULT_OPEN_TIMEOUT = 10.0
#: Seconds the closing handshake and the TCP close may take before the socket is dropped.
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Seconds to wait for the Pong that answers a keepalive Ping.
DEFAULT_PING_TIMEOUT = 20.0
#: Seconds to wait for the peer's end of stream after ours, at most.
DEFAULT_LINGER_TIMEOUT = 2.0
#: Seconds the application's replies to messages it has not read yet may delay the Close
#: this side owes after the peer's Close or a violation.
DEFAULT_REPLY_TIMEOUT = 1.0
#: Messages received and not yet taken by the application before reading pauses.
DEFAULT_MAX_QUEUE = 16
#: Write-buffer size above which a peer is no longer read from (adapters that buffer writes).
DEFAULT_WRITE_HIGH_WATER = 1 << 20
#: Write-buffer size above which a peer is dropped (adapters that buffer writes).
DEFAULT_WRITE_LIMIT = 16 << 20
#: Bytes an adapter asks of one read (the asyncio adapter's read buffer).
RECV_SIZE = 256 * 1024
#: Extra seconds a close waits past the session's own timeouts before dropping everything.
GRACE_SECONDS = 1.0
#: Bytes of messages an application sends in one turn (one step of the event loop, one
#: handler call) after which the adapter writes at once instead of at the turn's end: an
#: echo of a read's 64 messages costs one ``send()``, and a fast sender still meets flow
#: control in time.
FLUSH_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """The settings both roles share. Use :class:`ServerOptions` or :class:`ClientOptions`.

    Machine (see :class:`~wsmachine.ServerConnection` for each):

    :param subprotocols: server: the subprotocols it speaks, in order of preference;
        client: the ones it offers.
    :param extensions: the extensions to accept (server) or offer (client).
    :param max_message_size: largest incoming message after decompression (1009 above).
    :param max_frame_size: largest incoming frame; by default ``max_message_size``.
    :param max_fragments: most frames in one message; by default from ``max_message_size``.
    :param stream: deliver messages piece by piece (each frame), ``final`` on the last.
    :param auto_pong: answer every Ping with a Pong (the machine does it).
    :param max_handshake_size: largest HTTP head of the opening handshake.
    :param max_handshake_line: longest line of that head, with its CRLF.
    :param max_handshake_headers: most header lines in that head.
    :param close_reasons: give the Close sent on a peer's violation a short standard reason
        (``False``: the code alone).

    Session (see :class:`~wsmachine.adapters.session.Session`):

    :param open_timeout: seconds for the opening handshake (a client: the TCP connection
        too); then the connection is dropped.
    :param close_timeout: seconds for the closing handshake and the TCP close; then the
        socket is dropped.
    :param ping_interval: seconds between keepalive Pings (``None``: no keepalive).
    :param ping_timeout: seconds to wait for a keepalive Pong; then the connection is closed
        with 1011.
    :param linger_timeout: after this side ended the TCP stream, seconds to wait for the
        peer's end of stream (at most ``close_timeout``).
    :param reply_timeout: how long, after the peer's Close or a violation, this side's Close
        waits for the application to take the messages received before it and answer them.
    :param max_queue: messages received and not yet taken before reading pauses.

    Adapters that buffer writes (selector, asyncio):

    :param write_high_water: write-buffer size above which the selector adapter stops
        reading from the peer (until it drains below a quarter of it), and the asyncio
        adapter's ``send()`` waits.
    :param write_limit: write-buffer size above which the connection is dropped: a peer that
        does not read cannot make this side hold more. One message larger than this cannot
        be sent; raise it for bulk transfers.
    """

    subprotocols: Sequence[str] = ()
    extensions: Sequence[Extension] = ()
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_frame_size: int | None = None
    max_fragments: int | None = None
    stream: bool = False
    auto_pong: bool = True
    max_handshake_size: int = DEFAULT_MAX_HANDSHAKE_SIZE
    max_handshake_line: int = DEFAULT_MAX_HANDSHAKE_LINE
    max_handshake_headers: int = DEFAULT_MAX_HANDSHAKE_HEADERS
    close_reasons: bool = True
    open_timeout: float = DEFAULT_OPEN_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    ping_interval: float | None = None
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    linger_timeout: float = DEFAULT_LINGER_TIMEOUT
    reply_timeout: float = DEFAULT_REPLY_TIMEOUT
    max_queue: int = DEFAULT_MAX_QUEUE
    write_high_water: int = DEFAULT_WRITE_HIGH_WATER
    write_limit: int = DEFAULT_WRITE_LIMIT

    def __post_init__(self) -> None:
        # The machine's size limits too, so that a bad one fails here, not at each connection.
        check_limits(
            **{name: getattr(self, name) for name in LIMIT_MINIMUMS if hasattr(self, name)}
        )
        for name in ("open_timeout", "close_timeout", "ping_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        for name in ("linger_timeout", "reply_timeout"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative")
        if self.ping_interval is not None and not self.ping_interval > 0:
            raise ValueError("ping_interval must be positive, or None for no keepalive")
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if self.write_high_water < 0 or self.write_limit < self.write_high_water:
            raise ValueError("write_limit must be at least write_high_water, itself >= 0")
        # Tuples, so that options are hashable and nobody changes them under a connection.
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
        object.__setattr__(self, "extensions", tuple(self.extensions))

    @property
    def close_wait(self) -> float:
        """The longest a close takes: ``close_timeout`` plus ``linger_timeout``."""
        return self.close_timeout + self.linger_timeout

    def _settings_of(self, machine: type[Connection]) -> dict[str, Any]:
        """This object's values of the settings ``machine``'s constructor takes."""
        return {name: getattr(self, name) for name in _parameters(machine)}


@functools.cache
def _parameters(machine: type[Connection]) -> tuple[str, ...]:
    """The keyword settings of a machine's constructor: read from it, so that a setting added
    there cannot be forgotten here (a test checks every one is an option)."""
    parameters = inspect.signature(machine).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions(Options):
    """Every setting of a server-side connection; those of :class:`Options`, and:

    :param origin_policy: an :class:`~wsmachine.OriginPolicy`: upgrades from other origins
        are answered with 403 by the machine. ``None`` accepts any ``Origin``.
    """

    origin_policy: OriginPolicy | None = None

    def connection(self) -> ServerConnection:
        """A new machine with these settings."""
        return ServerConnection(**self._settings_of(ServerConnection))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions(Options):
    """Every setting of a client-side connection; those of :class:`Options`, and:

    :param origin: the ``Origin`` header to send, if any.
    :param extra_headers: more request headers.
    :param max_rejection_body: how much of a refusal's body to keep.
    """

    origin: str | None = None
    extra_headers: HeaderInput = ()
    max_rejection_body: int = DEFAULT_MAX_REJECTION_BODY

    def __post_init__(self) -> None:
        Options.__post_init__(self)
        object.__setattr__(self, "extra_headers", tuple(self.extra_headers))

    def connection(self, host: str, resource: str = "/") -> ClientConnection:
        """A new machine with these settings, its upgrade request for ``host`` (the ``Host``
        header) and ``resource`` (the request target) already queued."""
        return ClientConnection(host, resource, **self._settings_of(ClientConnection))


_O = TypeVar("_O", bound=Options)


def resolve(kind: type[_O], options: _O | None, settings: Mapping[str, Any]) -> _O:
    """The options an adapter runs with: ``options`` (by default ``kind()``) with the keyword
    ``settings`` laid over it.

    :raises TypeError: a setting ``kind`` does not have (the message names it).
    :raises ValueError: a setting out of range.
    """
    base = kind() if options is None else options
    if not isinstance(base, kind):
        raise TypeError(f"options must be {kind.__name__}, not {type(base).__name__}")
    if not settings:
        return base
    names = {field.name for field in dataclasses.fields(kind)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise TypeError(f"unknown {kind.__name__} setting(s): {', '.join(unknown)}")
    return dataclasses.replace(base, **settings)
