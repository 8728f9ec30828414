"""The demo chat server: ``python -m wsmachine serve``.

It runs the :mod:`selector <wsmachine.adapters.selector>` server, serves the chat page of
:mod:`wsmachine.demo.page` at ``/`` and accepts WebSocket upgrades at ``/ws`` on the same
port. Every message goes to every connected client, the sender included, or with
``echo=True`` back to its sender only. It accepts permessage-deflate. It logs one line per
connect, disconnect, refused upgrade and error.

The page and plain-text clients (``python -m wsmachine client``) share one room; its rules
(names, the greeting, the page's JSON protocol) are in :mod:`wsmachine.demo.room`, which the
asyncio chat server of the docs uses too.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, TextIO

from ..adapters import ConnectionClosed, HTTPResponse, not_found
from ..adapters.selector import Handler, Peer, Server
from ..close_codes import CloseInfo
from ..errors import ProtocolError
from ..events import Handshake, HTTPRequest
from ..extensions import PerMessageDeflate
from ..origin import OriginPolicy
from .page import ICON, PAGE
from .room import Member, Room, wants_json

__all__ = ["ENDPOINT", "ICON", "PAGE", "ChatHandler", "chat_server", "serve"]

#: The one path that accepts WebSocket upgrades.
ENDPOINT = "/ws"

_PLAIN = "text/plain; charset=utf-8"
# Upgrade names the protocol to switch to (RFC 9110 §7.8, §15.5.22); a sender of Upgrade lists
# it in Connection, and the connection ends after the answer.
_ADVERTISE = [("upgrade", "websocket"), ("connection", "Upgrade, close")]


def _peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


def _text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> HTTPResponse:
    return HTTPResponse(status, [("content-type", _PLAIN), *(headers or [])], message.encode())


class ChatHandler(Handler):
    """Serves the page, greets each tab, and broadcasts (or echoes) every message.

    :param echo: send each message back to its sender only.
    :param out: where the log lines go (standard output by default).
    """

    def __init__(self, *, echo: bool = False, out: TextIO | None = None) -> None:
        self.echo = echo
        self.out = out
        self.server: Server | None = None
        #: The open WebSocket connections; sockets that never upgraded are not in it.
        self.members: set[Peer] = set()
        #: Who is in the chat and what each one receives.
        self.room = Room()

    def log(self, text: str) -> None:
        """Write one log line, time-stamped."""
        out = self.out if self.out is not None else sys.stdout
        print(f"{time.strftime('%H:%M:%S')} {text}", file=out, flush=True)

    # -- HTTP -----------------------------------------------------------------------------

    def on_http(self, request: HTTPRequest) -> HTTPResponse:
        """Serve the page at ``/`` and its icon; answer a plain request for ``/ws`` with 426;
        404 elsewhere. (A WebSocket handshake without ``Upgrade: websocket`` never comes
        here: the machine answers it with 400, RFC 6455 §4.2.1.)"""
        path = request.path.split("?")[0]
        if path == ENDPOINT:
            return _text(
                426,
                f"{ENDPOINT} is a WebSocket endpoint: connect with a WebSocket client "
                "(or open / in a browser).\n",
                _ADVERTISE,
            )
        if request.method in ("GET", "HEAD"):
            if path in ("/", "/index.html"):
                return HTTPResponse(
                    200,
                    [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")],
                    PAGE.encode("utf-8"),
                )
            if path == "/favicon.ico":  # the page links its icon inline; others ask here
                return HTTPResponse(
                    200,
                    [("content-type", "image/svg+xml"), ("cache-control", "max-age=86400")],
                    ICON.encode("utf-8"),
                )
        return not_found(request)

    def on_handshake(self, peer: Peer, handshake: Handshake) -> HTTPResponse | None:
        """Accept upgrades at ``/ws`` only (404 elsewhere)."""
        path = handshake.path.partition("?")[0]
        if path != ENDPOINT:
            self.log(
                f"refused    {_peer_name(peer.address)} path={path}: 404, upgrades go to {ENDPOINT}"
            )
            return _text(404, f"Not found: {path} (the WebSocket endpoint is {ENDPOINT})\n")
        return None

    # -- WebSocket ------------------------------------------------------------------------

    def on_open(self, peer: Peer) -> None:
        """Name the new client, greet it if it speaks JSON, and log it."""
        path = peer.handshake.path if peer.handshake is not None else "?"
        member = self.room.join(json=wants_json(path))
        peer.data["member"] = member
        self.members.add(peer)
        self.log(
            f"connect    {_peer_name(peer.address)} path={path.split('?')[0]} "
            f"name={member.name} ({len(self.members)} connected)"
        )
        greeting = self.room.welcome(member)
        if greeting is not None:
            peer.send(greeting)  # to this tab only

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        """Broadcast the message (or echo it): JSON to the page, plain text to the others."""
        said = self.room.say(_member(peer), message)
        if said is None:
            return
        for target in [peer] if self.echo else [p for p in self.members if p.open]:
            target.send(said.to(_member(target)))

    def on_close(self, peer: Peer, closed: ConnectionClosed) -> None:
        """Log how the client left: the Close that started the closing handshake, who sent
        it, and the answer."""
        self.members.discard(peer)
        member = peer.data.get("member")
        if isinstance(member, Member):
            self.room.leave(member)
        first = peer.conn.closed_first
        started, answer = (
            (closed.local, closed.remote) if first == "local" else (closed.remote, closed.local)
        )
        if started is None:
            text = "code=1006 (no Close frame)"
        else:
            by = "server" if first == "local" else "client"
            text = f"code={started.code}{self._reason(started)} by={by}"
            if answer is None:
                text += ", no answer"
            elif answer.code != started.code:  # an echo often drops the reason
                text += f", answered {answer.code}{self._reason(answer)}"
        error = f" error={closed.error}" if closed.error is not None else ""
        self.log(
            f"disconnect {_peer_name(peer.address)} {text}{error} ({len(self.members)} connected)"
        )

    @staticmethod
    def _reason(info: CloseInfo) -> str:
        return f" reason={info.reason!r}" if info.reason else ""

    def on_error(self, peer: Peer, error: BaseException) -> None:
        """Log a refused upgrade (403 for a foreign origin, 400, 426, ...) or an error; the
        error that ends an open connection is logged with its disconnect line."""
        if peer.session.opened and error is peer.session.error:
            return
        status = getattr(error, "status_hint", None)
        if not peer.session.opened and isinstance(error, ProtocolError) and status:
            self.log(f"refused    {_peer_name(peer.address)} {status}: {error}")
            return
        self.log(f"error      {_peer_name(peer.address)} {type(error).__name__}: {error}")


def _member(peer: Peer) -> Member:
    member = peer.data["member"]
    assert isinstance(member, Member)
    return member


def chat_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    echo: bool = False,
    deflate: bool = True,
    out: TextIO | None = None,
    **settings: Any,
) -> tuple[Server, ChatHandler]:
    """Make the demo's server and its handler (not yet running): what :func:`serve` runs,
    for tests and embedding. ``settings`` are laid over the demo's (e.g. ``max_message_size``).

    :raises OSError: the address cannot be listened on.
    """
    handler = ChatHandler(echo=echo, out=out)
    options: dict[str, Any] = {
        "extensions": [PerMessageDeflate()] if deflate else [],
        # Browsers on a page of this host, and clients that send no Origin (RFC 6455 §10.2).
        "origin_policy": OriginPolicy(allow_missing=True, allow_same_host=True),
        "ping_interval": 30.0,
    }
    server = Server(handler, host, port, **{**options, **settings})
    handler.server = server
    return server, handler


def serve(
    host: str = "127.0.0.1", port: int = 12345, *, echo: bool = False, deflate: bool = True
) -> int:
    """Run the demo server until SIGINT or SIGTERM; return the exit status.

    :param deflate: accept permessage-deflate (RFC 7692) when a client offers it.
    """
    try:
        server, handler = chat_server(host, port, echo=echo, deflate=deflate)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    shown = f"[{host}]" if ":" in host else host
    mode = "echo to the sender" if echo else "broadcast to everyone"
    mode += ", permessage-deflate" if deflate else ""
    handler.log(f"serving http://{shown}:{server.port}/ ({mode}); open it in a browser")
    handler.log(f"WebSocket endpoint ws://{shown}:{server.port}{ENDPOINT}; Ctrl-C stops")

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
