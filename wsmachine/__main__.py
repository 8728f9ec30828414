"""Command-line entry point: ``python -m wsmachine demo | serve | client``.

``serve`` runs the demo chat server (:mod:`wsmachine.demo`): a page at ``/`` for a browser and
WebSocket upgrades on the same port. ``client URL`` is an interactive line client: each line
typed (or piped in) is sent as a text message, and every message received is printed (marked
``< `` when the output is a terminal, as is when it is piped). Its exit status is 0 when the
connection ends with 1000, 1 otherwise.

``demo`` runs a whole WebSocket conversation between a :class:`~wsmachine.ClientConnection`
and a :class:`~wsmachine.ServerConnection` in memory, printing the bytes on the wire and the
events each side sees. It shows the sans-IO API with no sockets at all.

Errors are one line on stderr; the exit status is 2 for a usage error, 1 for a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib.util
import os
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import NoReturn
from urllib.parse import urlsplit

from . import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    CloseCode,
    Connection,
    Event,
    Handshake,
    Ping,
    ServerConnection,
    Text,
)
from .adapters import ConnectionClosed, HandshakeError
from .adapters.blocking import WebSocket, connect
from .demo import serve as run_server

#: The help text: the module docstring is for Sphinx, this is for a terminal.
DESCRIPTION = """\
Try wsmachine, a sans-IO WebSocket library, from a terminal.

  serve    the demo chat server: a page at / for a browser, WebSockets on the same port
  client   a line client: sends each line typed or piped in, prints each message received
  demo     a client and a server talking in memory, with the bytes on the wire

Errors are one line on stderr; the exit status is 2 for a usage error, 1 for a failure.
"""

SERVE_DESCRIPTION = """\
The demo chat server: a page at / for a browser, WebSocket upgrades at /ws on the same port.
Every message goes to every client (--echo: back to its sender only). Ctrl-C stops it, closing
every connection with 1001.

With --redis, the chat spans processes and machines: each message is published once on a Redis
pub/sub channel and every server delivers what the others published (at most once: messages
sent while Redis is unreachable are lost, counted and logged; Redis must be reachable at start).
--workers N runs N processes on one port, and needs --redis. The relay needs redis-py:
pip install 'wsmachine[redis]'.

With --http2 the port also speaks HTTP/2: the page and the WebSockets can be streams of one
HTTP/2 connection (RFC 8441), cleartext with prior knowledge, or over TLS with --certfile
(and --keyfile), where a browser picks HTTP/2 by ALPN. It needs h2:
pip install 'wsmachine[http2]'.
"""

CLIENT_DESCRIPTION = """\
Send each line typed (or piped in) as a text message and print each message received:
binary ones as their size and first bytes. On a terminal, received lines start with "< " so
they stand apart from typed ones; piped output is the messages as they are. When the input
ends, the client waits for the answers (--wait), then closes with 1000.

With --http2 the WebSocket is a stream of an HTTP/2 connection (RFC 8441): cleartext with
prior knowledge for ws://, ALPN h2 for wss://. It needs h2: pip install 'wsmachine[http2]'.

Exit status: 0 when the connection ends with 1000, 1 when it ends otherwise (the server's
1001 or 1009, an error: the code and reason are printed) or cannot open, 2 for a usage error.
"""

#: The widest line ``demo`` prints; longer values are cut where a piece ends, marked "...".
DEMO_WIDTH = 100
#: Fields this short are shown whole, even on a line over ``DEMO_WIDTH``.
SHORT_FIELD = 24


def _fit(value: object, room: int) -> str:
    """``repr(value)`` in at most about ``room`` characters, cut between whole pieces.

    A string is cut between characters and a sequence between items, so what is shown stays
    well formed; ``...`` marks what was left out.
    """
    text = repr(value)
    if len(text) <= room:
        return text
    if isinstance(value, str | bytes):
        low, high = 0, len(value)  # the longest prefix whose repr fits with the "..."
        while low < high:
            middle = (low + high + 1) // 2
            if len(repr(value[:middle])) + 3 <= room:
                low = middle
            else:
                high = middle - 1
        return repr(value[:low]) + "..."
    if isinstance(value, tuple | list):
        shown: list[str] = []
        used = len("(...)")
        for item in value:
            piece = repr(item)
            if used + len(piece) + 2 > room:
                break
            shown.append(piece)
            used += len(piece) + 2
        brackets = "()" if isinstance(value, tuple) else "[]"
        return brackets[0] + ", ".join([*shown, "..."]) + brackets[1]
    return f"{type(value).__name__}(...)"


def _show_event(event: Event, room: int) -> str:
    """An event as its repr, its longest fields shortened until the whole fits ``room``."""
    values = {field.name: getattr(event, field.name) for field in dataclasses.fields(event)}
    shown = {name: repr(value) for name, value in values.items()}

    def render() -> str:
        inner = ", ".join(f"{name}={text}" for name, text in shown.items())
        return f"{type(event).__name__}({inner})"

    while (excess := len(render()) - room) > 0:
        name = max(shown, key=lambda key: len(shown[key]))
        if len(shown[name]) <= SHORT_FIELD:
            break  # cutting a short field would hide more than it saves
        shorter = _fit(values[name], max(len(shown[name]) - excess, SHORT_FIELD))
        if len(shorter) >= len(shown[name]):
            break
        shown[name] = shorter
    return render()


def _wire(direction: str, data: bytes) -> None:
    head = f"  {direction} {len(data):5d} bytes  "
    print(head + _fit(data, DEMO_WIDTH - len(head)))


def _carry(sender: Connection, receiver: Connection, direction: str) -> list[Event]:
    data = sender.data_to_send()
    if not data:
        return []
    _wire(direction, data)
    events = receiver.receive_data(data)
    for event in events:
        head = f"  {'server' if direction == '->' else 'client'} sees "
        print(head + _show_event(event, DEMO_WIDTH - len(head)))
    return events


def demo() -> int:
    """Run the in-memory conversation; return the exit status."""
    client = ClientConnection("localhost:12345", "/chat", subprotocols=["chat"])
    server = ServerConnection(subprotocols=["chat"])

    print("1. The opening handshake (RFC 6455 §4), parsed and written with h11")
    for event in _carry(client, server, "->"):
        if isinstance(event, Handshake):
            server.accept(event)
    accepted = _carry(server, client, "<-")
    assert isinstance(accepted[0], Accepted)

    print("2. Messages: the client masks its frames, the server echoes them")
    client.send_text("Ping")
    client.send_binary(bytes(range(8)))
    client.send_text("héllo, ", final=False)  # a message in two fragments
    client.ping(b"are you there?")
    client.send_text("wörld")
    for event in _carry(client, server, "->"):
        if isinstance(event, Text):
            server.send_text(event.data)
        elif isinstance(event, Binary):
            server.send_binary(event.data)
        elif isinstance(event, Ping):
            pass  # the Pong is already queued
    _carry(server, client, "<-")

    print("3. The closing handshake (RFC 6455 §7): the server echoes the Close")
    client.close(1000, "done")
    closes = _carry(client, server, "->")
    _carry(server, client, "<-")
    assert isinstance(closes[0], Close)
    print(f"  server: state {server.state.name}, close TCP now: {server.should_close()}")
    print(f"  client: state {client.state.name}, waits for the server to close TCP")
    return 0


#: After the input ends, the client waits at most this long in all for more messages.
MAX_WAIT_AFTER_INPUT = 30.0
#: Marks a received message's line on a terminal, apart from the lines typed.
RECEIVED_MARK = "< "


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, as one space."""
    return " ".join(text.split())


def _code_name(code: int) -> str:
    """``1001 (going away)``: a close code and its registered name, if it has one."""
    try:
        return f"{code} ({CloseCode(code).name.lower().replace('_', ' ')})"
    except ValueError:
        return str(code)


def _why_not_connected(url: str, exc: BaseException) -> str:
    """One line on why the connection did not open, with a hint where one helps."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "WRONG_VERSION_NUMBER":  # the answer was not TLS: plain HTTP, say
            plain = "ws://" + url.split("://", 1)[1]
            return f"the server does not speak TLS (wss://); try {plain}"
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return exc.strerror  # without the "[Errno 111]"
    return str(exc) or type(exc).__name__


def _how_it_ended(closed: ConnectionClosed, by_server: bool) -> str:
    """One line: who closed, the code and its name, the reason, the error if any."""
    reason = f" {closed.reason!r}" if closed.reason else ""
    if closed.error is not None:
        error = _one_line(f"{type(closed.error).__name__}: {closed.error}")
        return f"connection failed: {_code_name(closed.code)}{reason}; {error}"
    who = "the server closed the connection" if by_server else "closed"
    return f"{who}: {_code_name(closed.code)}{reason}"


class _HTTP2Line:
    """The line client's WebSocket on an HTTP/2 stream (RFC 8441): the calls the line client
    makes of a blocking ``WebSocket``, for a printing thread and a sending one. The HTTP/2
    client is for one thread, so a lock takes turns; a reader waits at most ``TURN`` seconds
    per turn, so a typed line goes out at once."""

    TURN = 0.05

    def __init__(
        self, url: str, *, origin: str | None, subprotocols: Sequence[str], timeout: float
    ) -> None:
        from .adapters.http2 import Client  # noqa: PLC0415 - h2 is optional

        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        try:
            if secure:
                context = ssl.create_default_context()
                context.set_alpn_protocols(["h2"])
                sock = context.wrap_socket(sock, server_hostname=host)
                if sock.selected_alpn_protocol() != "h2":
                    raise HandshakeError(f"{parts.netloc} did not agree to HTTP/2 (ALPN h2)")
            self._client = Client(
                sock,
                parts.netloc,
                scheme="https" if secure else "http",
                timeout=timeout,
                origin=origin,
                subprotocols=list(subprotocols),
            )
        except BaseException:
            sock.close()
            raise
        try:
            self._stream = self._client.open(parts.path or "/", timeout=timeout)
        except BaseException:
            self._client.close()
            raise
        self._lock = threading.Lock()
        #: How the WebSocket ended, once it has.
        self.closed: ConnectionClosed | None = None

    @property
    def subprotocol(self) -> str | None:
        return self._stream.subprotocol

    def __iter__(self) -> Iterator[str | bytes]:
        while True:
            with self._lock:
                if self.closed is not None:  # close() ended it while this thread waited
                    return
                try:
                    message = self._stream.recv(timeout=self.TURN)
                except TimeoutError:
                    continue
                except ConnectionClosed as closed:
                    self.closed = closed
                    raise
            yield message

    def send(self, message: str) -> None:
        with self._lock:
            if self.closed is not None:
                raise self.closed
            self._stream.send(message)

    def close(self) -> None:
        with self._lock:
            try:
                if self.closed is None:
                    conn = self._stream.conn
                    close = self._stream.close(timeout=5.0)
                    sent = conn.close_sent or conn.close_owed
                    self.closed = ConnectionClosed(sent, conn.close_received, close.error)
            except (OSError, TimeoutError) as exc:
                conn = self._stream.conn
                self.closed = ConnectionClosed(conn.close_sent, conn.close_received, exc)
            finally:
                self._client.close()


def _missing_h2() -> str | None:
    """Why HTTP/2 cannot be used here, or ``None`` when it can."""
    if importlib.util.find_spec("h2") is None:
        return "--http2 needs h2, which is not installed: pip install 'wsmachine[http2]'"
    return None


def client(
    url: str,
    *,
    origin: str | None = None,
    subprotocols: Sequence[str] = (),
    timeout: float = 10.0,
    wait: float = 0.5,
    http2: bool = False,
) -> int:
    """Run the line client; return the exit status: 0 when the connection ends with 1000.

    When the input ends, it keeps printing messages until none came for ``wait`` seconds,
    then closes with 1000. On a terminal, received lines start with :data:`RECEIVED_MARK`.
    With ``http2`` the WebSocket is a stream of an HTTP/2 connection (RFC 8441).
    """
    ws: WebSocket | _HTTP2Line
    try:
        if http2:
            ws = _HTTP2Line(url, origin=origin, subprotocols=subprotocols, timeout=timeout)
        else:
            ws = connect(url, origin=origin, subprotocols=subprotocols, open_timeout=timeout)
    except (HandshakeError, OSError, ValueError) as exc:
        print(
            f"cannot connect to {url}: {_one_line(_why_not_connected(url, exc))}", file=sys.stderr
        )
        return 1
    chosen = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
    print(f"connected to {url}{chosen}; type lines to send, end with Ctrl-D", file=sys.stderr)
    if subprotocols and ws.subprotocol is None:
        offered = ", ".join(subprotocols)
        print(
            f"warning: the server chose none of the subprotocols offered ({offered})",
            file=sys.stderr,
        )
    mark = RECEIVED_MARK if sys.stdout.isatty() else ""  # piped output stays the bare messages
    last_message = [time.monotonic()]

    def show() -> None:
        try:
            for message in ws:
                last_message[0] = time.monotonic()
                if isinstance(message, str):
                    print(f"{mark}{message}", flush=True)
                else:
                    hexed = message[:32].hex()
                    print(f"{mark}[binary, {len(message)} bytes] {hexed}", flush=True)
        except ConnectionClosed:
            pass  # ws.closed tells how, after close() below
        except BrokenPipeError:
            pass  # the reader of our output went away: close below

    printer = threading.Thread(target=show, name="printer", daemon=True)
    printer.start()
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            lines.put(line.rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    try:
        while printer.is_alive():
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                # The input ended: let the answers to the last lines arrive, then close.
                give_up = time.monotonic() + MAX_WAIT_AFTER_INPUT
                last_message[0] = max(last_message[0], time.monotonic())
                while printer.is_alive() and time.monotonic() < give_up:
                    if time.monotonic() - last_message[0] >= wait:
                        break
                    time.sleep(0.02)
                break
            try:
                ws.send(line)
            except ConnectionClosed:
                break
    except KeyboardInterrupt:
        pass  # Ctrl-C: a normal end, closed with 1000 below
    by_server = not printer.is_alive()  # the messages ended before this side closed
    ws.close()
    printer.join(5.0)
    closed = ws.closed
    if closed is None:  # close() gave up waiting for the connection's thread
        print("connection failed: the close did not finish", file=sys.stderr)
        return 1
    print(_how_it_ended(closed, by_server), file=sys.stderr)
    return 0 if closed.error is None and closed.code == 1000 else 1


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: message (see --help)`` and exit with status 2."""
        self.exit(2, f"{self.prog}: {_one_line(message)} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    """A TCP port for argparse: 0 to 65535 (0: the system picks a free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 0-65535 (0: any free port)")
    return port


def _seconds(text: str) -> float:
    """A duration for argparse: a number of seconds, not negative."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a duration in seconds")
    return seconds


def _workers(text: str) -> int:
    """A number of worker processes for argparse: 1 or more."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of processes: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{count} workers: at least 1 is needed")
    return count


def _redis_url(text: str) -> str:
    """A Redis URL for argparse: ``redis://``, ``rediss://`` or ``unix://``."""
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise argparse.ArgumentTypeError(f"not a redis://HOST:PORT/DB URL: {text!r}")
    try:
        parts.port  # noqa: B018 - checks the port
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    return text


def _ws_url(text: str) -> str:
    """A WebSocket URL for argparse: ``ws://`` or ``wss://`` and a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not a ws:// or wss:// URL: {text!r}")
    try:
        parts.port  # noqa: B018 - checks the port
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    return text


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the server cannot listen on ``host``:``port``, as one line; ``None`` if it can.

    Trying here, before the demo server binds, lets the message say what to do instead; a
    port taken in between still gets the server's own report.
    """
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # create_server() appends "(while attempting to bind on address ...)": drop it.
        reason = (exc.strerror or str(exc)).split(" (while attempting", 1)[0]
        if exc.errno is not None and exc.errno < 0:  # a getaddrinfo() error: the name
            hint = "check --host"
        elif exc.errno == errno.EADDRINUSE:
            hint = "try --port 0 for a free port"
        elif exc.errno == errno.EACCES:
            hint = "ports below 1024 need privileges: try --port 0 for a free port"
        else:
            hint = "check --host and --port"
        return f"cannot listen on {shown}: {reason}; {hint}"
    return None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m wsmachine",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="run a client and a server in memory and show the wire",
        description="Run a WebSocket conversation in memory; print the bytes and the events.",
    )
    serve = commands.add_parser(
        "serve",
        help="run the demo chat server: a page for a browser and WebSockets",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port", type=_port, default=12345, help="port (default: %(default)s; 0: any free port)"
    )
    serve.add_argument(
        "--echo", action="store_true", help="send each message back to its sender only"
    )
    serve.add_argument("--no-deflate", action="store_true", help="do not accept permessage-deflate")
    serve.add_argument(
        "--redis",
        metavar="URL",
        type=_redis_url,
        help="relay the chat through Redis pub/sub, e.g. redis://127.0.0.1:6379/0",
    )
    serve.add_argument(
        "--channel",
        metavar="NAME",
        default="wsmachine-chat",
        help="the Redis channel of the chat (default: %(default)s)",
    )
    serve.add_argument(
        "--http2",
        action="store_true",
        help="serve HTTP/2 beside HTTP/1.1: WebSockets as RFC 8441 streams",
    )
    serve.add_argument(
        "--certfile",
        metavar="PEM",
        help="serve TLS (https://, wss://) with this certificate chain (needs --http2)",
    )
    serve.add_argument(
        "--keyfile", metavar="PEM", help="the private key, if not in --certfile's file"
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        type=_workers,
        default=1,
        help="processes sharing the port, each with its own loop (default: %(default)s; "
        "more than 1 needs --redis)",
    )
    line_client = commands.add_parser(
        "client",
        help="an interactive client: send typed or piped lines, print messages",
        description=CLIENT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    line_client.add_argument("url", type=_ws_url, help="e.g. ws://127.0.0.1:12345/ws")
    line_client.add_argument("--origin", help="the Origin header to send (default: none)")
    line_client.add_argument(
        "--http2",
        action="store_true",
        help="open the WebSocket as a stream of an HTTP/2 connection (RFC 8441)",
    )
    line_client.add_argument(
        "--subprotocol",
        action="append",
        default=[],
        help="a subprotocol to offer (repeatable; a warning tells when the server chose none)",
    )
    line_client.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        help="seconds for the opening handshake (default: %(default)s)",
    )
    line_client.add_argument(
        "--wait",
        type=_seconds,
        default=0.5,
        help="when the input ends, close once no message came for this long "
        "(default: %(default)s seconds)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            if args.workers > 1 and args.redis is None:
                parser.error(
                    f"--workers {args.workers} needs --redis URL: processes share the chat "
                    "only through Redis"
                )
            if args.redis is not None and args.echo:
                parser.error("--echo and --redis do not mix: an echo is never relayed")
            if args.certfile is None and args.keyfile is not None:
                parser.error("--keyfile goes with --certfile")
            if args.certfile is not None and not args.http2:
                parser.error("--certfile needs --http2: TLS is served by the HTTP/2 server")
            if args.http2 and (problem := _missing_h2()):
                print(problem, file=sys.stderr)
                return 1
            if args.redis is not None and importlib.util.find_spec("redis") is None:
                print(
                    "--redis needs redis-py, which is not installed: "
                    "pip install 'wsmachine[redis]'",
                    file=sys.stderr,
                )
                return 1
            if problem := _cannot_listen(args.host, args.port):
                print(problem, file=sys.stderr)
                return 1
            return run_server(
                args.host,
                args.port,
                echo=args.echo,
                deflate=not args.no_deflate,
                redis=args.redis,
                channel=args.channel,
                workers=args.workers,
                http2=args.http2,
                certfile=args.certfile,
                keyfile=args.keyfile,
            )
        if args.command == "client":
            if args.http2 and (problem := _missing_h2()):
                print(problem, file=sys.stderr)
                return 1
            return client(
                args.url,
                http2=args.http2,
                origin=args.origin,
                subprotocols=args.subprotocol,
                timeout=args.timeout,
                wait=args.wait,
            )
        return demo()
    except BrokenPipeError:
        # The reader of our output left (``| head``): no traceback, and none at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130  # Ctrl-C before a command could handle it (the shell's 128 + SIGINT)


if __name__ == "__main__":
    sys.exit(main())
