"""Command-line entry point: ``python -m wsmachine demo | serve | client``.

``serve`` runs the demo chat server (:mod:`wsmachine.demo`): a page at ``/`` for a browser and
WebSocket upgrades on the same port. ``client URL`` is an interactive line client: each line
typed (or piped in) is sent as a text message, and every message received is printed.

``demo`` runs a whole WebSocket conversation between a :class:`~wsmachine.ClientConnection`
and a :class:`~wsmachine.ServerConnection` in memory, printing the bytes on the wire and the
events each side sees. It shows the sans-IO API with no sockets at all.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections.abc import Sequence

from . import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Connection,
    Event,
    Handshake,
    Ping,
    ServerConnection,
    Text,
)
from .adapters import ConnectionClosed, HandshakeError
from .adapters.blocking import connect
from .demo import serve as run_server


def _wire(direction: str, data: bytes) -> None:
    shown = data if len(data) <= 60 else data[:57] + b"..."
    print(f"  {direction} {len(data):5d} bytes  {shown!r}")


def _carry(sender: Connection, receiver: Connection, direction: str) -> list[Event]:
    data = sender.data_to_send()
    if not data:
        return []
    _wire(direction, data)
    events = receiver.receive_data(data)
    for event in events:
        print(f"  {'server' if direction == '->' else 'client'} sees {event!r:.110}")
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


def client(
    url: str,
    *,
    origin: str | None = None,
    subprotocols: Sequence[str] = (),
    timeout: float = 10.0,
    wait: float = 0.5,
) -> int:
    """Run the line client; return the exit status (0 after a clean close).

    When the input ends, it keeps printing messages until none came for ``wait`` seconds,
    then closes with 1000.
    """
    try:
        ws = connect(url, origin=origin, subprotocols=subprotocols, open_timeout=timeout)
    except (HandshakeError, OSError, ValueError) as exc:
        print(f"cannot connect to {url}: {exc}", file=sys.stderr)
        return 1
    chosen = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
    print(f"connected to {url}{chosen}; type lines to send, end with Ctrl-D", file=sys.stderr)
    ended: list[ConnectionClosed] = []
    last_message = [time.monotonic()]

    def show() -> None:
        try:
            for message in ws:
                last_message[0] = time.monotonic()
                if isinstance(message, str):
                    print(message, flush=True)
                else:
                    print(f"[binary, {len(message)} bytes] {message[:32].hex()}", flush=True)
        except ConnectionClosed as closed:
            ended.append(closed)

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
        pass
    ws.close()
    printer.join(5.0)
    closed = ws.closed
    if closed is not None:
        print(closed, file=sys.stderr)
    return 0 if closed is not None and closed.error is None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m wsmachine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run a client and a server in memory and show the wire")
    serve = commands.add_parser(
        "serve", help="run the demo chat server: a page for a browser and WebSockets"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=12345, help="port (0: any free port)")
    serve.add_argument(
        "--echo", action="store_true", help="send each message back to its sender only"
    )
    serve.add_argument("--no-deflate", action="store_true", help="do not accept permessage-deflate")
    line_client = commands.add_parser(
        "client", help="an interactive client: send typed or piped lines, print messages"
    )
    line_client.add_argument("url", help="e.g. ws://127.0.0.1:12345/ws")
    line_client.add_argument("--origin", help="the Origin header to send")
    line_client.add_argument(
        "--subprotocol", action="append", default=[], help="a subprotocol to offer (repeatable)"
    )
    line_client.add_argument(
        "--timeout", type=float, default=10.0, help="seconds for the opening handshake"
    )
    line_client.add_argument(
        "--wait",
        type=float,
        default=0.5,
        help="when the input ends, close once no message came for this long (seconds)",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_server(args.host, args.port, echo=args.echo, deflate=not args.no_deflate)
    if args.command == "client":
        return client(
            args.url,
            origin=args.origin,
            subprotocols=args.subprotocol,
            timeout=args.timeout,
            wait=args.wait,
        )
    return demo()


if __name__ == "__main__":
    sys.exit(main())
