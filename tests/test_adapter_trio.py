"""The trio adapter on real loopback sockets, both roles, and against `websockets`."""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

trio = pytest.importorskip("trio", reason="trio is optional: pip install wsmachine[trio]")

from websockets.sync.client import connect as ws_connect  # noqa: E402
from websockets.sync.server import ServerConnection as WSServerConnection  # noqa: E402
from websockets.sync.server import serve as ws_serve  # noqa: E402

from tests.raw_peer import deaf, raw_server  # noqa: E402
from wsmachine import ClientConnection, OriginPolicy, ServerConnection  # noqa: E402
from wsmachine.adapters import ConnectionClosed, HandshakeError, HTTPResponse  # noqa: E402
from wsmachine.adapters.trio import Server, WebSocket, connect, open_websocket, serve  # noqa: E402
from wsmachine.events import Close, Text  # noqa: E402
from wsmachine.testing import FrameBuilder  # noqa: E402

SAME_ORIGIN = OriginPolicy(allow_missing=True, allow_same_host=True)


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
            assert await (await ws.ping(b"are you there")).wait() >= 0
            waiter = await ws.ping()
            assert await waiter.wait() >= 0
            assert ws.latency is not None
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
        async with open_websocket(url(server.port), origin=f"http://127.0.0.1:{server.port}") as ws:
            await ws.send("same origin")
            assert await ws.recv() == "same origin"
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := await stream.receive_some(65536):
            answer += chunk
        assert answer.endswith(b"\r\n\r\nok")
        await stream.aclose()

    with_server(echo, body, origin_policy=SAME_ORIGIN, http_handler=pages)


def test_peer_vanishing_mid_message() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.recv()

    async def body(server: Server) -> None:
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
    def deaf(sock: socket.socket, conn: ServerConnection, ended: threading.Event) -> None:
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass  # never answer

    async def main(port: int) -> None:
        async with open_websocket(
            url(port), ping_interval=0.05, ping_timeout=0.2, close_timeout=0.3
        ) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert isinstance(info.value.error, TimeoutError)
            assert info.value.local is not None
            assert info.value.local.code == 1011

    with raw_server(deaf) as port:
        run(lambda: main(port))


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


def test_http_handler_500_when_it_raises_and_default_426() -> None:
    def broken(request: Any) -> HTTPResponse | None:
        raise RuntimeError("boom")

    async def get(port: int, path: str) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while chunk := await stream.receive_some(65536):
            answer += chunk
        await stream.aclose()
        return answer

    async def broken_body(server: Server) -> None:
        assert (await get(server.port, "/health")).startswith(b"HTTP/1.1 500 ")
        async with open_websocket(url(server.port)) as ws:  # the server still serves
            await ws.send("ok")
            assert await ws.recv() == "ok"

    async def default_body(server: Server) -> None:
        assert (await get(server.port, "/")).startswith(b"HTTP/1.1 426 ")

    with_server(echo, broken_body, http_handler=broken)
    with_server(echo, default_body)


def test_messages_kept_after_close() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.recv()
        for word in ("one", "two", "three"):
            await ws.send(word)
        await ws.recv()  # until the client closes

    async def body(server: Server) -> None:
        async with trio.open_nursery() as nursery:
            ws = await connect(nursery, url(server.port))
            await ws.send("go")
            # The server's replies to "go" precede its Close, which it holds until the
            # handler comes back: all three are read before close() returns.
            await ws.close()
            assert await ws.recv() == "one"
            closed = ws.closed
            assert closed is not None
            assert closed.ok
            assert await ws.recv() == "two"
            event = await ws.recv_event()
            assert isinstance(event, Text)
            assert event.data == "three"
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.ok

    with_server(handler, body)


def test_replies_precede_the_close_owed_after_a_violation() -> None:
    """A message and a bad frame in one write: the echo goes out before the 1002 Close."""

    async def body(server: Server) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        conn = ClientConnection(f"127.0.0.1:{server.port}", "/")
        await stream.send_all(conn.data_to_send())
        events: list[Any] = []
        while not events:
            events = conn.receive_data(await stream.receive_some(65536))
        build = FrameBuilder(client=True)
        await stream.send_all(build.text("before the error") + build.frame(0x3, b""))
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                events += conn.receive_data(chunk)
        await stream.aclose()
        received = [e for e in events if isinstance(e, Text | Close)]
        assert isinstance(received[0], Text)
        assert received[0].data == "before the error"
        assert isinstance(received[1], Close)
        assert received[1].code == 1002

    with_server(echo, body)


def test_keepalive_measures_latency_both_sides() -> None:
    latencies: list[float | None] = []

    async def handler(ws: WebSocket) -> None:
        message = await ws.recv()
        latencies.append(ws.latency)
        await ws.send(message)
        await echo(ws)

    async def body(server: Server) -> None:
        async with open_websocket(url(server.port), ping_interval=0.05) as ws:
            await trio.sleep(0.3)
            await ws.send("alive")
            assert await ws.recv() == "alive"
            assert ws.latency is not None
            assert 0 <= ws.latency < 5

    with_server(handler, body, ping_interval=0.05)
    assert latencies
    assert latencies[0] is not None


def test_ping_waiter_fails_when_the_connection_ends() -> None:
    def silent(sock: socket.socket, conn: ServerConnection, ended: threading.Event) -> None:
        sock.settimeout(5)
        sock.recv(65536)  # the Ping, never answered; then vanish

    async def main(port: int) -> None:
        async with open_websocket(url(port)) as ws:
            waiter = await ws.ping()
            with pytest.raises(ConnectionClosed):
                await waiter.wait()
            with pytest.raises(ConnectionClosed):
                await ws.ping()

    with raw_server(silent) as port:
        run(lambda: main(port))


def test_cancelled_send_drops_the_connection() -> None:
    async def main(port: int) -> None:
        async with trio.open_nursery() as nursery:
            ws = await connect(nursery, url(port))
            with trio.move_on_after(0.2) as scope:
                await ws.send(b"x" * (64 << 20))
            assert scope.cancelled_caught
            with trio.fail_after(5):
                await ws.wait_closed()
            closed = ws.closed
            assert closed is not None
            assert isinstance(closed.error, ConnectionAbortedError)
            with pytest.raises(ConnectionClosed):
                await ws.send("late")

    with raw_server(deaf) as port:
        run(lambda: main(port))


def test_stream_option_and_unknown_setting() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send("x" * 100)

    async def body(server: Server) -> None:
        async with open_websocket(url(server.port), stream=True) as ws:
            pieces = []
            while True:
                event = await ws.recv_event()
                pieces.append(event.data)
                if event.final:
                    break
            assert "".join(str(piece) for piece in pieces) == "x" * 100
        with pytest.raises(TypeError, match="no_such_setting"):
            async with open_websocket(url(server.port), no_such_setting=1):
                pass

    with_server(handler, body)
    with pytest.raises(TypeError, match="no_such_setting"):
        Server(echo, no_such_setting=1)


def test_wss_both_roles(tmp_path: Path) -> None:
    """TLS: the client verifies the certificate and SNI; neither side can half-close, so
    the server closes the stream once the Close frames are exchanged."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    arguments = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    arguments += " -subj /CN=localhost -addext subjectAltName=DNS:localhost"
    subprocess.run(
        [openssl, *arguments.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    server = Server(echo)  # its connection task, on TLS streams (the Server has no TLS)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            serve_tls = functools.partial(
                trio.serve_ssl_over_tcp, server._connection, 0, server_context, host="127.0.0.1"
            )
            listeners = await nursery.start(serve_tls)
            port = listeners[0].transport_listener.socket.getsockname()[1]
            async with open_websocket(f"wss://localhost:{port}/", ssl_context=client_context) as ws:
                await ws.send("secure")
                assert await ws.recv() == "secure"
            closed = ws.closed
            assert closed is not None
            assert closed.ok, closed
            with pytest.raises(HandshakeError):  # an unknown certificate
                async with open_websocket(f"wss://localhost:{port}/", open_timeout=5):
                    pass
            nursery.cancel_scope.cancel()

    run(main)
