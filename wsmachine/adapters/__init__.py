"""I/O adapters: the machine on real sockets.

- :mod:`wsmachine.adapters.selector`: one thread, many connections (server and clients), on
  :mod:`selectors`.
- :mod:`wsmachine.adapters.blocking`: blocking sockets, a thread per connection.
- :mod:`wsmachine.adapters.trio`: trio streams (needs ``pip install wsmachine[trio]``).

Every adapter runs each connection on a :class:`~wsmachine.adapters.session.Session`, the
I/O-free object that holds the rules around the machine (timeouts, keepalive, the HTTP
answer, the order of replies and Close, when to close TCP), and takes its settings as one
:class:`ServerOptions` or :class:`ClientOptions` (or their keyword arguments). Adapters own
sockets, threads or tasks, and wake-ups; nothing else. What they share is exported here.
"""

from ..close_codes import CloseInfo
from ._common import (
    ConnectionClosed,
    HandshakeError,
    HTTPHandler,
    HTTPResponse,
    WebSocketURL,
    not_found,
    parse_url,
    upgrade_required,
)
from .options import ClientOptions, Options, ServerOptions
from .session import PongCallback, Session

__all__ = [
    "ClientOptions",
    "CloseInfo",
    "ConnectionClosed",
    "HTTPHandler",
    "HTTPResponse",
    "HandshakeError",
    "Options",
    "PongCallback",
    "ServerOptions",
    "Session",
    "WebSocketURL",
    "not_found",
    "parse_url",
    "upgrade_required",
]
