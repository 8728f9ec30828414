"""The demo chat server: ``python -m wsmachine serve``.

It runs the :mod:`selector <wsmachine.adapters.selector>` server, serves the chat page of
:mod:`wsmachine.demo.page` at ``/`` and accepts WebSocket upgrades on the same port. Every
message goes to every connected client, the sender included, or with ``echo=True`` back to
its sender only. It accepts permessage-deflate. It logs one line per connect, disconnect and
error.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, TextIO

from ..adapters import ConnectionClosed, HTTPResponse, not_found
from ..adapters.selector import Handler, Peer, Server
from ..events import HTTPRequest
from ..extensions import PerMessageDeflate
from ..origin import OriginPolicy
from .page import PAGE

__all__ = ["PAGE", "ChatHandler", "serve"]


def _peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


class ChatHandler(Handler):
    """Serves the page, and broadcasts (or echoes) every message.

    :param echo: send each message back to its sender only.
    :param out: where the log lines go.
    """

    def __init__(self, *, echo: bool = False, out: TextIO | None = None) -> None:
        self.echo = echo
        self.out = out
        self.server: Server | None = None

    def log(self, text: str) -> None:
        """Write one log line, time-stamped."""
        out = self.out if self.out is not None else sys.stdout
        print(f"{time.strftime('%H:%M:%S')} {text}", file=out, flush=True)

    def on_http(self, request: HTTPRequest) -> HTTPResponse:
        """Serve the page at ``/``; 404 elsewhere."""
        if request.method in ("GET", "HEAD") and request.path.split("?")[0] in ("/", "/index.html"):
            return HTTPResponse(
                200,
                [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")],
                PAGE.encode("utf-8"),
            )
        return not_found(request)

    def on_open(self, peer: Peer) -> None:
        """Log the new client."""
        handshake = peer.handshake
        path = handshake.path if handshake is not None else "?"
        count = len(self.server.peers) if self.server is not None else 0
        self.log(f"connect    {_peer_name(peer.address)} path={path} ({count} connected)")

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        """Broadcast the message, or echo it."""
        if self.echo or self.server is None:
            peer.send(message)
        else:
            self.server.broadcast(message)

    def on_close(self, peer: Peer, closed: ConnectionClosed) -> None:
        """Log how the client left."""
        reason = f" reason={closed.reason!r}" if closed.reason else ""
        error = f" error={closed.error}" if closed.error is not None else ""
        self.log(f"disconnect {_peer_name(peer.address)} code={closed.code}{reason}{error}")

    def on_error(self, peer: Peer, error: BaseException) -> None:
        """Log the error."""
        self.log(f"error      {_peer_name(peer.address)} {type(error).__name__}: {error}")


def serve(
    host: str = "127.0.0.1", port: int = 12345, *, echo: bool = False, deflate: bool = True
) -> int:
    """Run the demo server until SIGINT or SIGTERM; return the exit status.

    :param deflate: accept permessage-deflate (RFC 7692) when a client offers it.
    """
    handler = ChatHandler(echo=echo)
    extensions = [PerMessageDeflate()] if deflate else []
    try:
        server = Server(
            handler,
            host,
            port,
            extensions=extensions,
            # Browsers on a page of this host, and clients that send no Origin (RFC 6455 §10.2).
            origin_policy=OriginPolicy(allow_missing=True, allow_same_host=True),
            ping_interval=30.0,
        )
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    handler.server = server
    shown = f"[{host}]" if ":" in host else host
    mode = "echo to the sender" if echo else "broadcast to everyone"
    mode += ", permessage-deflate" if deflate else ""
    handler.log(f"serving http://{shown}:{server.port}/ ({mode}); open it in a browser")
    handler.log(f"WebSocket endpoint ws://{shown}:{server.port}/ws; Ctrl-C stops")

    def stop(signum: int, frame: object) -> None:
        handler.log(f"{signal.Signals(signum).name}: closing every connection with 1001")
        server.shutdown()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    handler.log("stopped")
    return 0
