"""End-to-end echo over loopback: wsmachine's selector server against a `websockets` asyncio
echo server, in the same run.

Usage::

    python -m benchmarks.echo_loopback [--seconds 1.0] [--repeat 3] [--quick]

Each server runs in its own process (so the client and the server do not share a GIL); one
client, the same for both, sends a binary message and waits for its echo, over and over.
The client is the bare machine on a blocking socket, so its cost is small and equal for both
servers: the difference is the servers'. Sizes 16 B, 1 KiB and 64 KiB; rounds are
interleaved; the table shows the median round trips per second and the ratio
wsmachine / websockets (> 1: wsmachine's server is faster). Every echo is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from pathlib import Path

from wsmachine import Accepted, Binary, ClientConnection, Ping, Pong

from .machine import start_server, stop_server

SIZES = {"16 B": 16, "1 KiB": 1024, "64 KiB": 64 * 1024}
SERVERS = ("wsmachine", "websockets")
ROOT = Path(__file__).resolve().parent.parent
#: Upper bound on round trips in one timed run (the clock stops it long before).
MAX_ROUNDS = 10_000_000


# -- the servers (run in a child process) ---------------------------------------------------


def serve_wsmachine() -> None:
    from wsmachine.adapters.selector import Handler, Peer, Server

    class Echo(Handler):
        def on_message(self, peer: Peer, message: str | bytes) -> None:
            peer.send(message)

    server = Server(Echo(), "127.0.0.1", 0, max_message_size=1 << 20)
    print(server.port, flush=True)
    server.serve_forever()


def serve_websockets() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(
            echo, "127.0.0.1", 0, compression=None, max_size=1 << 20, ping_interval=None
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            print(port, flush=True)
            await server.serve_forever()

    asyncio.run(main())


# -- the client -----------------------------------------------------------------------------


class Client:
    """The bare machine on a blocking socket: the cheapest client we can write."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = ClientConnection(f"127.0.0.1:{port}", "/", max_message_size=1 << 20)
        self.sock.sendall(self.conn.data_to_send())
        events = self.conn.receive_data(self.sock.recv(65536))
        assert events and isinstance(events[0], Accepted), events

    def round_trips(self, payload: bytes, seconds: float) -> float:
        """Echo ``payload`` for ``seconds``; return round trips per second."""
        conn, sock = self.conn, self.sock
        send_binary, data_to_send, receive_data = (
            conn.send_binary,
            conn.data_to_send,
            conn.receive_data,
        )
        count = 0
        start = time.perf_counter()
        end = start + seconds
        now = start
        while now < end and count < MAX_ROUNDS:
            for _ in range(10):
                send_binary(payload)
                sock.sendall(data_to_send())
                echo: Binary | None = None
                while echo is None:
                    for event in receive_data(sock.recv(262144)):
                        if isinstance(event, Binary):
                            echo = event
                        elif not isinstance(event, Ping | Pong):  # a Pong goes out next send
                            raise AssertionError(f"unexpected event: {event!r:.80}")
                if len(echo.data) != len(payload):
                    raise AssertionError(f"wrong echo of {len(echo.data)} bytes")
            count += 10
            now = time.perf_counter()
        if echo is None or echo.data != payload:
            raise AssertionError("the echo differs from the message")
        return count / (now - start)

    def close(self) -> None:
        self.conn.close()
        self.sock.sendall(self.conn.data_to_send())
        self.sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per size and server")
    parser.add_argument("--quick", action="store_true", help="0.2 s runs, once")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve == "wsmachine":
        serve_wsmachine()
        return 0
    if args.serve == "websockets":
        serve_websockets()
        return 0
    seconds, repeat = (0.2, 1) if args.quick else (args.seconds, args.repeat)

    processes = {name: start_server("benchmarks.echo_loopback", name) for name in SERVERS}
    try:
        clients = {name: Client(port) for name, (_, port) in processes.items()}
        for client in clients.values():  # warm up both
            client.round_trips(b"w" * 64, 0.1)
        rates: dict[tuple[str, str], list[float]] = {}
        for label, size in SIZES.items():
            payload = os.urandom(size)
            for turn in range(repeat):
                order = SERVERS if turn % 2 == 0 else SERVERS[::-1]
                for name in order:
                    rate = clients[name].round_trips(payload, seconds)
                    rates.setdefault((label, name), []).append(rate)
        for client in clients.values():
            client.close()
    finally:
        for process, _ in processes.values():
            stop_server(process)

    print(f"echo round trips per second over loopback ({repeat} x {seconds} s, median)")
    print(f"{'size':>8}  {'wsmachine':>12}  {'websockets':>12}  {'ratio':>6}")
    for label in SIZES:
        ours = statistics.median(rates[label, "wsmachine"])
        theirs = statistics.median(rates[label, "websockets"])
        print(f"{label:>8}  {ours:12,.0f}  {theirs:12,.0f}  {ours / theirs:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
