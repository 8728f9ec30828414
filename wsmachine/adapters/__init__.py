"""I/O adapters: the machine on real sockets.

- :mod:`wsmachine.adapters.selector`: one thread, many connections (server and clients), on
  :mod:`selectors`.
- :mod:`wsmachine.adapters.blocking`: blocking sockets, a thread per connection.
- :mod:`wsmachine.adapters.trio`: trio streams (needs ``pip install wsmachine[trio]``).

Adapters own sockets, timers and scheduling; the protocol stays in the machine. What they
share is exported here.
"""

from ._common import (
    CloseInfo,
    ConnectionClosed,
    HandshakeError,
    HTTPResponse,
    WebSocketURL,
    parse_url,
    same_origin,
)

__all__ = [
    "CloseInfo",
    "ConnectionClosed",
    "HTTPResponse",
    "HandshakeError",
    "WebSocketURL",
    "parse_url",
    "same_origin",
]
