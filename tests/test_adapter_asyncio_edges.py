"""The asyncio adapter's edges branch coverage found unreached (issue 14): a peer that ends
TCP without a Close, close() giving up on a deaf peer, and the server's lifecycle calls out of
order (serve_forever without start, close before start, close twice). Real loopback sockets,
every wait bounded."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tests.raw_peer import assert_gave_up, deaf, raw_server
from wsmachine import ServerConnection
from wsmachine.adapters import ConnectionClosed
from wsmachine.adapters.asyncio import WebSocket, connect, serve

TIMEOUT = 5.0


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT * 2):
            await test()

    asyncio.run(bounded())


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def test_a_peer_ending_tcp_without_a_close_is_a_1006() -> None:
    def leaves(sock: socket.socket, _: ServerConnection, __: threading.Event) -> None:
        sock.shutdown(socket.SHUT_WR)  # FIN, no Close frame
        sock.recv(65536)

    async def main(port: int) -> None:
        ws = await connect(f"ws://127.0.0.1:{port}/")
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.code == 1006
        assert info.value.remote is None
        await ws.close()

    with raw_server(leaves) as port:
        run(lambda: main(port))


def test_close_gives_up_on_a_peer_that_never_answers() -> None:
    async def main(port: int) -> None:
        ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=0.2, linger_timeout=0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await ws.close()
        assert loop.time() - started < TIMEOUT
        assert_gave_up(ws.closed)

    with raw_server(deaf) as port:
        run(lambda: main(port))


def test_serve_forever_starts_the_server_itself_and_close_ends_it() -> None:
    async def main() -> None:
        server = serve(echo)
        assert server.sockets == ()  # not listening yet
        task = asyncio.create_task(server.serve_forever())
        while not server.port:
            await asyncio.sleep(0.005)
        sockets: tuple[socket.socket, ...] = server.sockets
        assert [sock.getsockname()[1] for sock in sockets] == [server.port]
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        await server.close()
        await server.close()  # twice: no effect
        async with asyncio.timeout(TIMEOUT):
            await task
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)

    run(main)


def test_closing_a_server_never_started() -> None:
    async def main() -> None:
        server = serve(echo)
        await server.close()
        assert server.connections == frozenset()
        assert server.sockets == ()

    run(main)
