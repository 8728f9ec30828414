"""The trio adapter's edges branch coverage found unreached (issue 14): close() timing out or
cancelled, a peer that resets TCP while a message is written, the body of ``open_websocket``
raising or cancelled, a server handler raising. Real loopback sockets, every wait bounded."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Awaitable, Callable

import pytest

trio = pytest.importorskip("trio", reason="trio is optional: pip install wsmachine[trio]")

from tests.raw_peer import assert_gave_up, deaf, raw_server  # noqa: E402
from wsmachine import ServerConnection  # noqa: E402
from wsmachine.adapters import ConnectionClosed  # noqa: E402
from wsmachine.adapters.trio import Server, WebSocket, connect, open_websocket, serve  # noqa: E402

TIMEOUT = 5.0


def run(test: Callable[[], Awaitable[None]], timeout: float = 20) -> None:
    async def bounded() -> None:
        with trio.fail_after(timeout):
            await test()

    trio.run(bounded)


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/"


def test_close_gives_up_on_a_peer_that_never_answers() -> None:
    async def main(port: int) -> None:
        async with trio.open_nursery() as nursery:
            ws = await connect(nursery, url(port), close_timeout=0.2, linger_timeout=0.1)
            started = trio.current_time()
            await ws.close()
            assert trio.current_time() - started < TIMEOUT
            assert_gave_up(ws.closed)

    with raw_server(deaf) as port:
        run(lambda: main(port))


def test_a_cancelled_close_drops_the_connection() -> None:
    async def main(port: int) -> None:
        async with trio.open_nursery() as nursery:
            ws = await connect(nursery, url(port))
            with trio.move_on_after(0.1) as scope:
                await ws.close()
            assert scope.cancelled_caught
            with pytest.raises(ConnectionClosed) as info:
                await ws.send("too late")
            assert isinstance(info.value.error, ConnectionAbortedError)

    with raw_server(deaf) as port:
        run(lambda: main(port))


def test_a_peer_resetting_tcp_during_a_write_ends_the_connection() -> None:
    def resets(sock: socket.socket, _: ServerConnection, __: threading.Event) -> None:
        assert sock.recv(65536)  # the first bytes of the message
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    async def main(port: int) -> None:
        async with trio.open_nursery() as nursery:
            ws = await connect(nursery, url(port))
            with pytest.raises(ConnectionClosed) as info:
                # Larger than the loopback buffers: the write is under way when the RST comes.
                await ws.send(bytes(64 << 20))
                await ws.recv()
            assert info.value.code == 1006
            assert info.value.remote is None

    with raw_server(resets) as port:
        run(lambda: main(port))


def with_server(handler: Callable[[WebSocket], Awaitable[None]]) -> Callable[..., None]:
    def decorate(body: Callable[[Server], Awaitable[None]]) -> None:
        async def main() -> None:
            async with trio.open_nursery() as nursery:
                server: Server = await nursery.start(serve, handler, "127.0.0.1", 0)
                try:
                    await body(server)
                finally:
                    await server.shutdown()

        run(main)

    return decorate


def test_an_exception_in_the_open_websocket_body_closes_with_1011() -> None:
    codes: list[int] = []

    async def record(ws: WebSocket) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            codes.append(closed.code)

    @with_server(record)
    async def _(server: Server) -> None:
        with pytest.raises(ValueError, match="the body failed"):
            async with open_websocket(url(server.port)) as ws:
                raise ValueError("the body failed")
        closed = ws.closed
        assert closed is not None and closed.local is not None
        assert (closed.local.code, closed.local.reason) == (1011, "internal error")
        with trio.fail_after(TIMEOUT):
            while not codes:
                await trio.sleep(0.01)
        assert codes == [1011]


def test_a_cancelled_open_websocket_body_drops_the_connection() -> None:
    async def wait(ws: WebSocket) -> None:
        async for _ in ws:
            pass

    @with_server(wait)
    async def _(server: Server) -> None:
        with trio.move_on_after(0.1) as scope:
            async with open_websocket(url(server.port)) as ws:
                await trio.sleep(TIMEOUT)
        assert scope.cancelled_caught
        closed = ws.closed
        assert closed is not None
        assert closed.local is None  # dropped, no Close sent
        assert isinstance(closed.error, ConnectionAbortedError)


def test_a_handler_that_raises_closes_with_1011() -> None:
    async def broken(ws: WebSocket) -> None:
        await ws.recv()
        raise RuntimeError("boom")

    @with_server(broken)
    async def _(server: Server) -> None:
        async with open_websocket(url(server.port)) as ws:
            await ws.send("x")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (1011, "internal error")
