"""The trio adapter on real loopback sockets, both roles, and against `websockets`."""

from __future__ import annotations

import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

trio = pytest.importorskip("trio", reason="trio is optional: pip install wsmachine[trio]")

from websockets.sync.client import connect as ws_connect  # noqa: E402
from websockets.sync.server import ServerConnection as WSServerConnection  # noqa: E402
from websockets.sync.server import serve as ws_serve  # noqa: E402

from wsmachine.adapters import ConnectionClosed, HandshakeError, HTTPResponse, same_origin  # noqa: E402
from wsmachine.adapters.trio import Server, WebSocket, open_websocket, serve  # noqa: E402


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def run(test: Callable[[], Awaitable[None]], timeout: float = 30) -> None:
    async def bounded() -> None:
        with trio.fail_after(timeout):
            await test()

    trio.run(bounded)


def url(port: int, path: str = "/") -> str:
    return f"ws://127.0.0.1:{port}{path}"


def with_server(
    handler: Callable[[WebSocket], Awaitable[None]],
    body: Callable[[Server], Awaitable[None]],
    **options: Any,
) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(serve, handler, "127.0.0.1", 0)
            try:
                await body(server)
            finally:
                await server.shutdown()

    if options:

        async def main_with_options() -> None:
            async with trio.open_nursery() as nursery:
                server = Server(handler, "127.0.0.1", 0, **options)
                await nursery.start(server.run)
                try:
                    await body(server)
                finally:
                    await server.shutdown()

        run(main_with_options)
    else:
        run(main)


def test_echo_both_roles() -> None:
    async def body(server: Server) -> None:
        async with open_websocket(url(server.port)) as ws:
            await ws.send("héllo ✓")
            assert await ws.recv() == "héllo ✓"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            pong = await ws.ping()
            await pong.wait()
        closed = ws.closed
        assert closed is not None
        assert closed.ok

    with_server(echo, body)


def test_large_messages_and_many_small() -> None:
    big = bytes(range(256)) * (8 << 12)  # 8 MiB

    async def body(server: Server) -> None:
        async with open_websocket(url(server.port), max_message_size=16 << 20) as ws:
            await ws.send(big)
            assert await ws.recv() == big
            for i in range(300):
                await ws.send(str(i))
            assert [await ws.recv() for _ in range(300)] == [str(i) for i in range(300)]

    with_server(echo, body, max_message_size=16 << 20)


def test_many_concurrent_clients() -> None:
    async def client(port: int, index: int) -> None:
        async with open_websocket(url(port)) as ws:
            for i in range(20):
                await ws.send(f"{index}:{i}")
                assert await ws.recv() == f"{index}:{i}"

    async def body(server: Server) -> None:
        async with trio.open_nursery() as nursery:
            for index in range(40):
                nursery.start_soon(client, server.port, index)

    with_server(echo, body)


def test_close_code_and_reason_and_cancelled_recv_loses_nothing() -> None:
    seen: list[ConnectionClosed] = []

    async def handler(ws: WebSocket) -> None:
        await ws.send("one")
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            seen.append(closed)

    async def body(server: Server) -> None:
        async with open_websocket(url(server.port)) as ws:
            with trio.move_on_after(0.05):
                await trio.sleep(1)  # a cancelled wait; then the message is still there
            with trio.move_on_after(0):
                await ws.recv()
            assert await ws.recv() == "one"
            await ws.close(4005, "bye ünïcode")
            with pytest.raises(ConnectionClosed) as info:
                await ws.send("late")
            assert info.value.local is not None
            assert info.value.local.code == 4005
        await trio.sleep(0.1)

    with_server(handler, body)
    assert seen
    assert (seen[0].code, seen[0].reason) == (4005, "bye ünïcode")


def test_graceful_shutdown_closes_with_1001() -> None:
    async def body(server: Server) -> None:
        async with trio.open_nursery() as nursery:

            async def client() -> None:
                async with open_websocket(url(server.port)) as ws:
                    with pytest.raises(ConnectionClosed) as info:
                        await ws.recv()
                    assert info.value.code == 1001

            for _ in range(5):
                nursery.start_soon(client)
            await trio.sleep(0.2)
            await server.shutdown()

    with_server(echo, body)


def test_handshake_timeout_drops_a_silent_client() -> None:
    async def body(server: Server) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        with trio.fail_after(3):
            assert await stream.receive_some(100) == b""
        await stream.aclose()

    with_server(echo, body, open_timeout=0.3)


def test_client_open_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        async def main() -> None:
            with pytest.raises(HandshakeError):
                async with open_websocket(url(port), open_timeout=0.3):
                    pass

        run(main)


def test_origin_refused_with_403_and_http_handler() -> None:
    def pages(request: Any) -> HTTPResponse | None:
        return HTTPResponse(200, [], b"ok") if request.path == "/health" else None

    async def body(server: Server) -> None:
        with pytest.raises(HandshakeError) as info:
            async with open_websocket(url(server.port), origin="http://evil.example"):
                pass
        assert info.value.status_code == 403
        assert b"evil.example" in info.value.body
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := await stream.receive_some(65536):
            answer += chunk
        assert answer.endswith(b"\r\n\r\nok")
        await stream.aclose()

    with_server(echo, body, check_origin=same_origin, http_handler=pages)


def test_peer_vanishing_mid_message() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.recv()

    async def body(server: Server) -> None:
        from wsmachine import ClientConnection

        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        conn = ClientConnection(f"127.0.0.1:{server.port}", "/")
        await stream.send_all(conn.data_to_send())
        conn.receive_data(await stream.receive_some(65536))
        conn.send_binary(b"x" * 100_000)
        await stream.send_all(conn.data_to_send()[:5000])
        await stream.aclose()
        await trio.sleep(0.2)
        assert not server.connections

    with_server(handler, body)


def test_keepalive_without_pong_closes_with_1011() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def deaf_server() -> None:
        from wsmachine import Handshake, ServerConnection

        sock, _ = listener.accept()
        with sock:
            sock.settimeout(5)
            conn = ServerConnection()
            events = conn.receive_data(sock.recv(65536))
            assert isinstance(events[0], Handshake)
            conn.accept(events[0])
            sock.sendall(conn.data_to_send())
            try:
                while sock.recv(65536):
                    pass  # never answer
            except OSError:
                pass

    thread = threading.Thread(target=deaf_server)
    thread.start()

    async def main() -> None:
        async with open_websocket(
            url(port), ping_interval=0.05, ping_timeout=0.2, close_timeout=0.3
        ) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert isinstance(info.value.error, TimeoutError)
            assert info.value.local is not None
            assert info.value.local.code == 1011

    try:
        run(main)
    finally:
        thread.join(10)
        listener.close()


def test_our_client_against_websockets_server() -> None:
    def handler(ws: WSServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with ws_serve(handler, "127.0.0.1", 0, max_size=16 << 20) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        port = server.socket.getsockname()[1]

        async def main() -> None:
            async with open_websocket(url(port), max_message_size=16 << 20) as ws:
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                big = b"\x01" * (4 << 20)
                await ws.send(big)
                assert await ws.recv() == big

        try:
            run(main)
        finally:
            server.shutdown()
            thread.join(10)


def test_websockets_client_against_our_server() -> None:
    async def body(server: Server) -> None:
        def client() -> None:
            with ws_connect(url(server.port), max_size=16 << 20) as ws:
                ws.send("héllo")
                assert ws.recv(5) == "héllo"
                big = b"\x02" * (4 << 20)
                ws.send(big)
                assert ws.recv(10) == big

        await trio.to_thread.run_sync(client)

    with_server(echo, body, max_message_size=16 << 20)
