"""The blocking adapter on real loopback sockets, both roles, and against `websockets`."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as WSConnectionClosed
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import ServerConnection as WSServerConnection
from websockets.sync.server import serve as ws_serve

from tests.raw_peer import raw_server
from wsmachine import OriginPolicy, ServerConnection
from wsmachine.adapters import ConnectionClosed, HandshakeError, HTTPResponse
from wsmachine.adapters.blocking import Server, WebSocket, connect, serve
from wsmachine.events import HTTPRequest

SAME_ORIGIN = OriginPolicy(allow_missing=True, allow_same_host=True)


def echo(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)


@contextlib.contextmanager
def running(handler: Callable[[WebSocket], None], **options: Any) -> Iterator[Server]:
    server = serve(handler, "127.0.0.1", 0, **options)
    thread = server.start()
    try:
        yield server
    finally:
        server.stop(timeout=15)
        assert not thread.is_alive()


def url(server: Server | int, path: str = "/") -> str:
    port = server if isinstance(server, int) else server.port
    return f"ws://127.0.0.1:{port}{path}"


@contextlib.contextmanager
def websockets_server(handler: Callable[[WSServerConnection], None]) -> Iterator[int]:
    with ws_serve(handler, "127.0.0.1", 0, max_size=32 << 20) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield server.socket.getsockname()[1]
        finally:
            server.shutdown()
            thread.join(10)


def test_echo_with_our_client_and_server() -> None:
    with running(echo) as server, connect(url(server)) as ws:
        ws.send("héllo ✓")
        assert ws.recv(5) == "héllo ✓"
        ws.send(b"\x00\x01")
        assert ws.recv(5) == b"\x00\x01"
        ws.send(bytearray(b"ba"))
        assert ws.recv(5) == b"ba"
        assert ws.ping(b"are you there").result(5) >= 0
        assert ws.ping().result(5) >= 0
    closed = ws.closed
    assert closed is not None
    assert closed.ok
    assert closed.local is not None
    assert closed.local.code == 1000


def test_close_code_and_reason_travel_both_ways() -> None:
    got: list[ConnectionClosed] = []

    def handler(ws: WebSocket) -> None:
        try:
            ws.recv(5)
        except ConnectionClosed as closed:
            got.append(closed)

    with running(handler) as server:
        ws = connect(url(server))
        ws.close(4001, "bye ünïcode")
        with pytest.raises(ConnectionClosed) as info:
            ws.send("too late")
        assert info.value.local is not None
        assert (info.value.local.code, info.value.local.reason) == (4001, "bye ünïcode")
        assert info.value.remote is not None
        assert info.value.remote.code == 4001
        for _ in range(100):
            if got:
                break
            time.sleep(0.05)
    assert got
    assert (got[0].code, got[0].reason) == (4001, "bye ünïcode")


def test_large_messages() -> None:
    payload = bytes(range(256)) * (8 << 12)  # 8 MiB
    options = {"max_message_size": 16 << 20}
    with running(echo, **options) as server, connect(url(server), **options) as ws:
        ws.send(payload)
        assert ws.recv(20) == payload


def test_recv_timeout_and_iteration() -> None:
    def handler(ws: WebSocket) -> None:
        for i in range(3):
            ws.send(f"message {i}")
        ws.recv()  # until the client closes

    with running(handler) as server:
        ws = connect(url(server))
        assert [ws.recv(5) for _ in range(3)] == [f"message {i}" for i in range(3)]
        with pytest.raises(TimeoutError):
            ws.recv(0.1)
        ws.close()

    def sender(ws: WebSocket) -> None:
        for i in range(5):
            ws.send(str(i))
        # Returning closes with 1000: iteration on the client ends cleanly.

    with running(sender) as server, connect(url(server)) as ws:
        assert list(ws) == ["0", "1", "2", "3", "4"]


def test_close_from_another_thread_wakes_recv() -> None:
    def handler(ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionClosed):
            ws.recv()

    with running(handler) as server:
        ws = connect(url(server))
        threading.Timer(0.1, ws.close, args=(1000, "from elsewhere")).start()
        with pytest.raises(ConnectionClosed):
            ws.recv(5)
        assert ws.wait_closed(5)


def test_many_concurrent_clients() -> None:
    failures: list[BaseException] = []

    def chat(server: Server, index: int) -> None:
        try:
            with connect(url(server)) as ws:
                for i in range(20):
                    ws.send(f"{index}:{i}")
                    assert ws.recv(10) == f"{index}:{i}"
        except BaseException as exc:
            failures.append(exc)

    with running(echo) as server:
        threads = [threading.Thread(target=chat, args=(server, i)) for i in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not failures, failures[:3]


def test_graceful_shutdown_closes_with_1001() -> None:
    server = serve(echo, "127.0.0.1", 0)
    thread = server.start()
    clients = [connect(url(server)) for _ in range(5)]
    for ws in clients:
        ws.send("hi")
        assert ws.recv(5) == "hi"
    server.stop(timeout=15)
    assert not thread.is_alive()
    for ws in clients:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert info.value.code == 1001
        ws.close()


def test_server_handshake_timeout() -> None:
    with (
        running(echo, open_timeout=0.3) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        start = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - start < 3


def test_client_open_timeout_against_a_silent_server() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        start = time.monotonic()
        with pytest.raises(HandshakeError):
            connect(url(listener.getsockname()[1]), open_timeout=0.3)
        assert time.monotonic() - start < 3


def test_refused_upgrade_raises_with_status_and_body() -> None:
    with running(echo, origin_policy=SAME_ORIGIN) as server:
        with pytest.raises(HandshakeError) as info:
            connect(url(server), origin="http://evil.example")
        assert info.value.status_code == 403
        assert b"evil.example" in info.value.body
        with connect(url(server), origin=f"http://127.0.0.1:{server.port}") as ws:
            ws.send("ok")
            assert ws.recv(5) == "ok"


def test_http_handler_and_default_426() -> None:
    def pages(request: HTTPRequest) -> HTTPResponse | None:
        return HTTPResponse(200, [], b"ok") if request.path == "/health" else None

    def get(port: int, path: str) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    with running(echo, http_handler=pages) as server:
        assert get(server.port, "/health").endswith(b"\r\n\r\nok")
        assert get(server.port, "/").startswith(b"HTTP/1.1 426 ")


def test_handler_exception_closes_with_1011() -> None:
    def broken(ws: WebSocket) -> None:
        ws.recv()
        raise RuntimeError("boom")

    with running(broken) as server, connect(url(server)) as ws:
        ws.send("x")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert info.value.code == 1011


def test_subprotocols_pass_through() -> None:
    seen: list[str | None] = []

    def handler(ws: WebSocket) -> None:
        seen.append(ws.subprotocol)
        echo(ws)

    with (
        running(handler, subprotocols=["v2", "v1"]) as server,
        connect(url(server), subprotocols=["v1", "v2"]) as ws,
    ):
        assert ws.subprotocol == "v2"
    assert seen == ["v2"]


def test_peer_vanishing_mid_message() -> None:
    def vanish(sock: socket.socket, conn: ServerConnection, ended: threading.Event) -> None:
        conn.send_binary(b"x" * 100_000)
        frame = conn.data_to_send()
        sock.sendall(frame[:5000])

    with raw_server(vanish) as port:
        ws = connect(url(port))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert info.value.code == 1006
        assert info.value.remote is None
        ws.close()


def test_keepalive_without_pong_closes_with_1011() -> None:
    def deaf(sock: socket.socket, conn: ServerConnection, ended: threading.Event) -> None:
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass  # read and never answer

    with raw_server(deaf) as port:
        ws = connect(url(port), ping_interval=0.05, ping_timeout=0.2, close_timeout=0.3)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert isinstance(info.value.error, TimeoutError)
        assert info.value.local is not None
        assert info.value.local.code == 1011
        ws.close()


def test_keepalive_with_a_live_server() -> None:
    with running(echo) as server, connect(url(server), ping_interval=0.05) as ws:
        time.sleep(0.3)
        ws.send("alive")
        assert ws.recv(5) == "alive"


# -- interop with the websockets library --------------------------------------------------


def test_our_client_against_websockets_server() -> None:
    def handler(ws: WSServerConnection) -> None:
        for message in ws:
            if message == "close please":
                ws.close(4002, "as asked")
                return
            ws.send(message)

    with websockets_server(handler) as port:
        with connect(url(port), max_message_size=32 << 20) as ws:
            ws.send("héllo")
            assert ws.recv(5) == "héllo"
            big = b"\xab" * (5 << 20)
            ws.send(big)
            assert ws.recv(20) == big
            for i in range(200):
                ws.send(str(i))
            assert [ws.recv(5) for _ in range(200)] == [str(i) for i in range(200)]
            assert ws.ping().result(5) >= 0
        ws = connect(url(port))
        ws.send("close please")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(5)
        assert (info.value.code, info.value.reason) == (4002, "as asked")
        ws.close()


def test_websockets_client_against_our_server() -> None:
    with (
        running(echo, max_message_size=32 << 20) as server,
        ws_connect(url(server), max_size=32 << 20) as ws,
    ):
        ws.send("héllo")
        assert ws.recv(5) == "héllo"
        big = b"\xcd" * (5 << 20)
        ws.send(big)
        assert ws.recv(20) == big
        ws.ping().wait(5)
        ws.close(4003, "done")
    assert ws.close_code == 4003


def test_websockets_client_sees_our_shutdown() -> None:
    server = serve(echo, "127.0.0.1", 0)
    thread = server.start()
    with ws_connect(url(server)) as ws:
        ws.send("a")
        assert ws.recv(5) == "a"
        server.stop(timeout=15)
        with pytest.raises(WSConnectionClosed) as info:
            ws.recv(5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1001
    assert not thread.is_alive()


def test_permessage_deflate_both_ways() -> None:
    from wsmachine.extensions import PerMessageDeflate

    text = "compressible " * 10_000

    def handler(ws: WSServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with (
        websockets_server(handler) as port,  # websockets accepts permessage-deflate
        connect(url(port), extensions=[PerMessageDeflate()]) as ws,
    ):
        assert ws.accepted is not None
        assert [ext.name for ext in ws.accepted.extensions] == ["permessage-deflate"]
        for _ in range(3):
            ws.send(text)
            assert ws.recv(5) == text
    with (
        running(echo, extensions=[PerMessageDeflate()]) as server,
        connect(url(server), extensions=[PerMessageDeflate()]) as ws,
    ):
        assert ws.accepted is not None
        assert ws.accepted.extensions
        ws.send(text)
        assert ws.recv(5) == text


def test_one_mib_messages_are_read_into_the_machine(receive_paths: dict[str, int]) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    text = "ü✓" * (1 << 18)  # 1.25 MiB of UTF-8
    options = {"max_message_size": 2 << 20}
    with running(echo, **options) as server, connect(url(server), **options) as ws:
        for _ in range(3):
            ws.send(payload)
            assert ws.recv(20) == payload
            ws.send(text)
            assert ws.recv(20) == text
    # Both ends (our client and server) read with recv_into() into their machine's buffer.
    assert receive_paths["data"] == 0
    assert receive_paths["into_bytes"] >= 6 * (len(payload) + len(text.encode()))
