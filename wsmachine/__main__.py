"""Command-line entry point: ``python -m wsmachine demo``.

``demo`` runs a whole WebSocket conversation between a :class:`~wsmachine.ClientConnection`
and a :class:`~wsmachine.ServerConnection` in memory, printing the bytes on the wire and the
events each side sees. It shows the sans-IO API with no sockets at all.
"""

from __future__ import annotations

import argparse
import sys
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


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m wsmachine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run a client and a server in memory and show the wire")
    parser.parse_args(argv)
    return demo()


if __name__ == "__main__":
    sys.exit(main())
