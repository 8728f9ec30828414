"""The demo chat server: ``python -m wsmachine serve``.

It runs the :mod:`selector <wsmachine.adapters.selector>` server, serves the chat page of
:mod:`wsmachine.demo.page` at ``/`` and accepts WebSocket upgrades at ``/ws`` on the same
port. Every message goes to every connected client, the sender included, or with
``echo=True`` back to its sender only. It accepts permessage-deflate. It logs one line per
connect, disconnect, refused upgrade and error.

The page and plain-text clients (``python -m wsmachine client``) share one room; its rules
(names, the greeting, the page's JSON protocol) are in :mod:`wsmachine.demo.room`, which the
asyncio chat server of the docs uses too.

With ``redis=`` (``serve --redis URL``) the room spans processes and machines: a
:class:`~wsmachine.demo.relay.Relay` publishes each message once on a Redis channel and
delivers what the other processes published; JSON clients also receive the number online
in all (``{"type": "presence", "online": N}``). ``serve --workers N`` runs N such processes
on one port (:mod:`wsmachine.demo.workers`).

With ``http2=True`` (``serve --http2``) the port also speaks HTTP/2
(:mod:`wsmachine.adapters.http2`): the page and each WebSocket can be a stream of one
HTTP/2 connection (RFC 8441), cleartext with prior knowledge, or over TLS with
``certfile`` (``--certfile``), where ALPN lets a browser choose HTTP/2.
"""

from __future__ import annotations

import functools
import secrets
import signal
import socket
import ssl
import string
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from ..adapters import ConnectionClosed, HTTPResponse, not_found
from ..adapters.selector import Handler, Peer, Server
from ..close_codes import CloseInfo
from ..errors import ProtocolError
from ..events import Handshake, HTTPRequest
from ..extensions import PerMessageDeflate
from ..origin import OriginPolicy
from .page import ICON, PAGE
from .room import Member, Room, Said, wants_json
from .workers import run_workers

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["ENDPOINT", "ICON", "PAGE", "ChatHandler", "chat_server", "new_node", "serve"]

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
    :param node: this process's tag in a room that spans processes: it prefixes member ids
        and log lines.
    """

    def __init__(self, *, echo: bool = False, out: TextIO | None = None, node: str = "") -> None:
        self.echo = echo
        self.out = out
        self.server: Server | None = None
        #: The open WebSocket connections; sockets that never upgraded are not in it.
        self.members: set[Peer] = set()
        #: Who is in the chat and what each one receives.
        self.room = Room(node)
        #: Carries the chat to and from other processes (set by :func:`chat_server`).
        self.relay: Relay | None = None
        self._tag = f"[{node}] " if node else ""

    def log(self, text: str) -> None:
        """Write one log line, time-stamped."""
        out = self.out if self.out is not None else sys.stdout
        # One write per line: workers share one stdout, and print() writes the text and the
        # newline separately, so two workers' lines could run together.
        out.write(f"{time.strftime('%H:%M:%S')} {self._tag}{text}\n")
        out.flush()

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
            f"connect    {_peer_name(peer.address)} path={path.split('?')[0]}{_over(peer)} "
            f"name={member.name} ({len(self.members)} connected)"
        )
        greeting = self.room.welcome(member)
        if greeting is not None:
            peer.send(greeting)  # to this tab only
        self._count_changed()

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        """Broadcast the message (or echo it): JSON to the page, plain text to the others."""
        said = self.room.say(_member(peer), message)
        if said is None:
            return
        for target in [peer] if self.echo else [p for p in self.members if p.open]:
            target.send(said.to(_member(target)))
        if self.relay is not None:
            self.relay.publish(said)  # the other processes deliver it to their clients

    # -- the relay's side (in the loop's thread) ---------------------------------------

    def relayed(self, saids: list[Said]) -> None:
        """Deliver what other processes' clients said to this process's clients."""
        targets = [(p, _member(p)) for p in self.members if p.open]
        for said in saids:
            for target, member in targets:
                target.send(said.to(member))

    def elsewhere(self, count: int) -> None:
        """The other processes now have ``count`` clients in all."""
        if count != self.room.elsewhere:
            self.room.elsewhere = count
            self._tell_presence()

    def _count_changed(self) -> None:
        # Presence is part of the protocol only when the room spans processes: a lone
        # server's clients see what they always saw.
        if self.relay is not None:
            self.relay.set_local(len(self.members))
            self._tell_presence()

    def _tell_presence(self) -> None:
        presence = self.room.presence()
        for peer in self.members:
            if peer.open and _member(peer).json:
                peer.send(presence)

    def on_close(self, peer: Peer, closed: ConnectionClosed) -> None:
        """Log how the client left: the Close that started the closing handshake, who sent
        it, and the answer."""
        self.members.discard(peer)
        member = peer.data.get("member")
        if isinstance(member, Member):
            self.room.leave(member)
            self._count_changed()
        first = peer.session.conn.closed_first
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


def _over(peer: Peer) -> str:
    """`` over HTTP/2 stream N`` for a WebSocket on an HTTP/2 stream (RFC 8441), else ``""``."""
    stream_id = getattr(peer, "stream_id", None)  # only an HTTP/2 Stream has one
    return f" over HTTP/2 stream {stream_id}" if stream_id is not None else ""


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
    redis: str | None = None,
    channel: str = "wsmachine-chat",
    node: str | None = None,
    sock: socket.socket | None = None,
    http2: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    **settings: Any,
) -> tuple[Server, ChatHandler]:
    """Make the demo's server and its handler (not yet running): what :func:`serve` runs,
    for tests and embedding. ``settings`` are laid over the demo's (e.g. ``max_message_size``).

    :param redis: a Redis URL: relay the chat through its pub/sub ``channel``; the handler's
        :attr:`~ChatHandler.relay` is made, not started (``handler.relay.start()``).
    :param node: this process's tag on the channel (default: a random one, with ``redis``).
    :param sock: a listening socket to serve on instead of binding ``host`` and ``port``.
    :param http2: serve HTTP/2 beside HTTP/1.1 on the port
        (:class:`wsmachine.adapters.http2.Server`; needs ``wsmachine[http2]``).
    :param ssl_context: serve TLS with it (with ``http2`` only: the HTTP/2 server does TLS).
    :raises OSError: the address cannot be listened on.
    :raises wsmachine.demo.relay.RelayError: ``redis`` is not a Redis URL.
    """
    tag = (node or new_node()) if redis is not None else ""
    handler = ChatHandler(echo=echo, out=out, node=tag)
    options: dict[str, Any] = {
        "extensions": [PerMessageDeflate()] if deflate else [],
        # Browsers on a page of this host, and clients that send no Origin (RFC 6455 §10.2).
        "origin_policy": OriginPolicy(allow_missing=True, allow_same_host=True),
        "ping_interval": 30.0,
    }
    if ssl_context is not None and not http2:
        raise ValueError("TLS is served by the HTTP/2 server: give http2=True with ssl_context")
    if http2:
        from ..adapters.http2 import Server as HTTP2Server  # noqa: PLC0415 - h2 is optional

        options["ssl_context"] = ssl_context
        server: Server = HTTP2Server(handler, host, port, sock=sock, **{**options, **settings})
    else:
        server = Server(handler, host, port, sock=sock, **{**options, **settings})
    handler.server = server
    if redis is not None:
        from .relay import Relay  # noqa: PLC0415 - redis-py is optional: wsmachine[redis]

        try:
            handler.relay = Relay(
                redis,
                channel=channel,
                node=tag,
                call_soon=server.call_soon_threadsafe,
                deliver=handler.relayed,
                elsewhere=handler.elsewhere,
                log=handler.log,
            )
        except BaseException:
            server.close()
            raise
    return server, handler


def new_node() -> str:
    """A random tag for a process on a relay channel: four lowercase letters (one chance in
    about 46,000 that two of ten processes draw the same)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(4))


def serve(
    host: str = "127.0.0.1",
    port: int = 12345,
    *,
    echo: bool = False,
    deflate: bool = True,
    redis: str | None = None,
    channel: str = "wsmachine-chat",
    workers: int = 1,
    http2: bool = False,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> int:
    """Run the demo server until SIGINT or SIGTERM; return the exit status.

    :param deflate: accept permessage-deflate (RFC 7692) when a client offers it.
    :param redis: a Redis URL: relay the chat through its pub/sub ``channel``. Redis must be
        reachable at start (else one line on stderr and status 1); later outages are retried.
    :param workers: processes sharing the port, each with its own loop (needs ``redis``
        when more than one).
    :param http2: serve HTTP/2 beside HTTP/1.1 (WebSockets as RFC 8441 streams).
    :param certfile: serve TLS with this certificate chain (and ``keyfile``, if the key is
        apart), ALPN offering ``h2`` and ``http/1.1`` (with ``http2`` only). A file that
        cannot be loaded: one line on stderr and status 1.
    """
    if workers > 1 and redis is None:
        raise ValueError("more than one worker needs a relay (redis=...) to share the chat")
    if certfile is not None and not http2:
        raise ValueError("TLS is served by the HTTP/2 server: certfile needs http2=True")
    context: ssl.SSLContext | None = None
    if certfile is not None:
        from ..adapters.tls import server_context  # noqa: PLC0415 - only with TLS

        try:
            context = server_context(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            print(f"cannot load the certificate {certfile}: {exc}", file=sys.stderr)
            return 1
    if redis is not None:
        from .relay import RelayError, check  # noqa: PLC0415 - optional, as above

        try:
            check(redis)
        except RelayError as exc:
            print(exc, file=sys.stderr)
            return 1
    # One set of arguments for the single process and every worker: a worker adds only
    # its listening socket and its name.
    run = functools.partial(
        _serve,
        host,
        port,
        echo=echo,
        deflate=deflate,
        redis=redis,
        channel=channel,
        http2=http2,
        ssl_context=context,
    )
    if workers > 1:

        def work(number: int, sock: socket.socket) -> int:
            return run(sock=sock, worker=f" worker {number}/{workers}")

        try:
            return run_workers(workers, host, port, work)
        except OSError as exc:
            print(f"cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return 1
    return run()


def _serve(
    host: str,
    port: int,
    *,
    echo: bool,
    deflate: bool,
    redis: str | None,
    channel: str,
    sock: socket.socket | None = None,
    worker: str = "",
    http2: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    try:
        server, handler = chat_server(
            host,
            port,
            echo=echo,
            deflate=deflate,
            redis=redis,
            channel=channel,
            sock=sock,
            http2=http2,
            ssl_context=ssl_context,
        )
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    shown = f"[{host}]" if ":" in host else host
    mode = "echo to the sender" if echo else "broadcast to everyone"
    mode += ", permessage-deflate" if deflate else ""
    if http2:
        mode += ", HTTP/2 over TLS (ALPN h2, http/1.1)" if ssl_context else ", HTTP/2 cleartext"
    http, ws = ("https", "wss") if ssl_context is not None else ("http", "ws")
    relay = handler.relay
    if relay is not None:
        mode += f", relayed on {relay.where}{worker}"
        relay.start()
    handler.log(f"serving {http}://{shown}:{server.port}/ ({mode}); open it in a browser")
    handler.log(f"WebSocket endpoint {ws}://{shown}:{server.port}{ENDPOINT}; Ctrl-C stops")

    def stop(signum: int, frame: object) -> None:
        handler.log(f"{signal.Signals(signum).name}: closing every connection with 1001")
        server.shutdown()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if relay is not None:
            relay.stop()
            handler.log(relay.summary())
    handler.log("stopped")
    return 0
