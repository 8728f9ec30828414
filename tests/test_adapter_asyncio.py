"""The asyncio adapter on real loopback sockets, both roles, and against `websockets`.

Every test runs its own event loop (the standard one; uvloop too where it says so), bounded
by :func:`asyncio.timeout`. Waits are on events: a message, a closed connection, a future a
handler sets. Where the adapter offers no event to await (a write buffer filling up), the test
polls the condition with :func:`until`, bounded too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection as WSServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed as WSConnectionClosed

from tests.raw_peer import raw_server
from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Handshake,
    HTTPRequest,
    OriginPolicy,
    ServerConnection,
    Text,
)
from wsmachine.adapters import ConnectionClosed, HandshakeError, HTTPResponse
from wsmachine.adapters.asyncio import WebSocket, broadcast, connect, serve
from wsmachine.demo.page import PAGE
from wsmachine.extensions import PerMessageDeflate
from wsmachine.testing import FrameBuilder

ROOT = Path(__file__).resolve().parent.parent
HOWTO = ROOT / "docs" / "howto" / "asyncio.rst"
#: Seconds any one test may take.
TIMEOUT = 10.0
SAME_ORIGIN = OriginPolicy(allow_missing=True, allow_same_host=True)

uvloop: Any
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional (and not on Windows)
    uvloop = None

LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop", marks=pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
    ),
]


def run(test: Callable[[], Coroutine[Any, Any, None]], loop: str = "asyncio") -> None:
    """Run ``test`` on a new event loop, at most TIMEOUT seconds."""

    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT):
            await test()

    factory = uvloop.new_event_loop if loop == "uvloop" and uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(bounded())


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``condition`` (for states no event announces), at most ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not {what} after {timeout} s") from None


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def url(port: int, path: str = "/") -> str:
    return f"ws://127.0.0.1:{port}{path}"


async def http_get(port: int, path: str, method: str = "GET") -> bytes:
    """A plain HTTP request; the whole answer, up to the server's end of stream."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


@contextlib.asynccontextmanager
async def raw_client(
    port: int, rcvbuf: int | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, ClientConnection]]:
    """A TCP client whose handshake is made by a bare machine; then the test writes frames."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    conn = ClientConnection(f"127.0.0.1:{port}", "/")
    writer.write(conn.data_to_send())
    events: list[Any] = []
    while not events:
        events = conn.receive_data(await reader.read(65536))
    assert isinstance(events[0], Accepted)
    try:
        yield reader, writer, conn
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# -- messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_echo_both_roles(loop: str) -> None:
    seen: list[Any] = []
    ended: asyncio.Event

    async def handler(ws: WebSocket) -> None:
        assert ws.request is not None
        seen.append((ws.request.path, ws.remote_address[0], ws.subprotocol))
        await ws.send("from the server")
        await ws.send(b"\x00binary")
        await echo(ws)  # ends when the client closes with 1000
        seen.append("iteration ended")
        ended.set()

    async def main() -> None:
        nonlocal ended
        ended = asyncio.Event()
        async with (
            serve(handler, "127.0.0.1", 0) as server,
            connect(url(server.port, "/room?x=1")) as ws,
        ):
            assert await ws.recv() == "from the server"
            assert await ws.recv() == b"\x00binary"
            await ws.send("héllo ✓")
            assert await ws.recv() == "héllo ✓"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            await ws.send(bytearray(b"byte array"))
            assert await ws.recv() == b"byte array"
            await ws.send(memoryview(b"a view"))
            assert await ws.recv() == b"a view"
            before = ws.closed, ws.close_code, ws.close_reason
            assert before == (None, None, None)
            assert ws.accepted is not None
            assert ws.remote_address[1] == server.port
        closed = ws.closed
        assert closed is not None
        assert closed.ok
        assert closed.local is not None
        assert closed.local.code == 1000
        assert ws.close_code == 1000
        assert ws.close_reason == ""
        await ended.wait()  # the handler's iteration ended with the closing handshake

    run(main, loop)
    assert seen == [("/room?x=1", "127.0.0.1", None), "iteration ended"]


def test_empty_messages_are_sent_at_once() -> None:
    """An empty message adds no bytes to the write batch, but goes out like any other (the
    batch once held it back: Autobahn 1.1.1, 1.2.1, 9.7.1 and 9.8.1 timed out)."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
            async with asyncio.timeout(5):
                await ws.send("")
                assert await ws.recv() == ""
                await ws.send(b"")
                assert await ws.recv() == b""
                for _ in range(100):
                    await ws.send("")
                assert [await ws.recv() for _ in range(100)] == [""] * 100

    run(main)


def test_large_messages_and_many_small() -> None:
    big = bytes(range(256)) * (5 << 12)  # 5 MiB
    text = "ü" * (5 << 19)  # 5 MiB of UTF-8

    async def main() -> None:
        async with (
            serve(echo, "127.0.0.1", 0, max_message_size=8 << 20) as server,
            connect(url(server.port), max_message_size=8 << 20) as ws,
        ):
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(text)
            assert await ws.recv() == text
            for i in range(300):
                await ws.send(str(i))
            assert [await ws.recv() for _ in range(300)] == [str(i) for i in range(300)]

    run(main)


def test_many_concurrent_clients() -> None:
    async def client(port: int, index: int) -> None:
        async with connect(url(port)) as ws:
            for i in range(20):
                await ws.send(f"{index}:{i}")
                assert await ws.recv() == f"{index}:{i}"

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            await asyncio.gather(*(client(server.port, index) for index in range(40)))

    run(main)


def test_concurrent_recv_calls_each_get_a_message() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
            receivers = [asyncio.create_task(ws.recv()) for _ in range(3)]
            await asyncio.sleep(0)  # all three wait
            receivers[0].cancel()  # one of them gives up: the others still wait
            await ws.send("one")
            await ws.send("two")
            got = await asyncio.gather(*receivers[1:])
            assert sorted(map(str, got)) == ["one", "two"]

    run(main)


def test_stream_setting_with_recv_event() -> None:
    def fragments(sock: socket.socket, conn: ServerConnection, ended: threading.Event) -> None:
        conn.send_text("hel", final=False)
        conn.send_text("lo ", final=False)
        conn.send_text("wörld", final=True)
        sock.sendall(conn.data_to_send())
        while not conn.should_close():  # answer until the client has closed
            data = sock.recv(65536)
            conn.receive_data(data) if data else conn.receive_eof()
            sock.sendall(conn.data_to_send())

    async def main(port: int) -> None:
        async with connect(url(port), stream=True) as ws:
            pieces = []
            while True:
                event = await ws.recv_event()
                assert isinstance(event, Text)
                pieces.append((event.data, event.final))
                if event.final:
                    break
            assert pieces == [("hel", False), ("lo ", False), ("wörld", True)]

    with raw_server(fragments) as port:
        run(lambda: main(port))


def test_unknown_setting_raises_type_error() -> None:
    with pytest.raises(TypeError, match="no_such_setting"):
        connect("ws://127.0.0.1:1/", no_such_setting=1)
    with pytest.raises(TypeError, match="no_such_setting"):
        serve(echo, "127.0.0.1", 0, no_such_setting=1)
    with pytest.raises(ValueError, match="max_queue"):
        serve(echo, "127.0.0.1", 0, max_queue=0)


# -- closing ----------------------------------------------------------------------------------


def test_close_code_and_reason_both_ways() -> None:
    server_saw: asyncio.Future[ConnectionClosed]

    async def handler(ws: WebSocket) -> None:
        message = await ws.recv()
        if message == "close it yourself":
            await ws.close(4002, "the server's reason ✓")
            closed = ws.closed
            assert closed is not None
            server_saw.set_result(closed)
            return
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            server_saw.set_result(closed)

    async def main() -> None:
        nonlocal server_saw
        async with serve(handler, "127.0.0.1", 0) as server:
            # The client closes.
            server_saw = asyncio.get_running_loop().create_future()
            ws = await connect(url(server.port))
            await ws.send("wait")
            await ws.close(4001, "bye ünïcode")
            with pytest.raises(ConnectionClosed) as info:
                await ws.send("too late")
            assert info.value.local is not None
            assert (info.value.local.code, info.value.local.reason) == (4001, "bye ünïcode")
            assert info.value.remote is not None
            assert info.value.remote.code == 4001  # echoed
            assert not info.value.ok  # 4001 is no normal closure
            assert (ws.close_code, ws.close_reason) == (4001, "")  # the server echoes the code
            seen = await server_saw
            assert (seen.code, seen.reason) == (4001, "bye ünïcode")

            # The server closes.
            server_saw = asyncio.get_running_loop().create_future()
            ws = await connect(url(server.port))
            await ws.send("close it yourself")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (4002, "the server's reason ✓")
            await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (4002, "the server's reason ✓")
            seen = await server_saw
            assert seen.local is not None
            assert seen.local.code == 4002
            assert seen.error is None

            # 1001 (going away) is a normal closure too: ok.
            ws = await connect(url(server.port))
            await ws.send("wait")
            await ws.close(1001, "going")
            closed = ws.closed
            assert closed is not None
            assert closed.ok, closed
            with pytest.raises(ConnectionClosed) as info:
                await ws.ping()

    run(main)


def test_messages_kept_readable_after_close() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.recv()
        for word in ("one", "two", "three"):
            await ws.send(word)
        await ws.recv()  # until the client closes

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            ws = await connect(url(server.port))
            await ws.send("go")
            # The replies to "go" precede the server's Close: all three are read before
            # close() returns, and stay readable.
            await ws.close()
            closed = ws.closed
            assert closed is not None
            assert closed.ok
            assert await ws.recv() == "one"
            assert await ws.recv() == "two"
            event = await ws.recv_event()
            assert isinstance(event, Text)
            assert event.data == "three"
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.ok
            assert [message async for message in ws] == []

    run(main)


def test_replies_precede_the_close_owed_after_a_violation() -> None:
    """A message and a bad frame in one write: the echo goes out before the 1002 Close."""

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with raw_client(server.port) as (reader, writer, conn):
                build = FrameBuilder(client=True)
                writer.write(build.text("before the error") + build.frame(0x3, b""))
                events: list[Any] = []
                while chunk := await reader.read(65536):
                    events += conn.receive_data(chunk)
            received = [e for e in events if isinstance(e, Text | Close)]
            assert isinstance(received[0], Text)
            assert received[0].data == "before the error"
            assert isinstance(received[1], Close)
            assert received[1].code == 1002

    run(main)


def test_handler_exception_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(ws: WebSocket) -> None:
        await ws.recv()
        raise RuntimeError("boom")

    async def main() -> None:
        async with serve(broken, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
            await ws.send("x")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.code == 1011

    with caplog.at_level(logging.ERROR, logger="wsmachine.adapters.asyncio"):
        run(main)
    assert any("handler failed" in r.message and r.exc_info for r in caplog.records)


def test_graceful_server_close_sends_1001() -> None:
    async def main() -> None:
        server = await serve(echo, "127.0.0.1", 0).start()
        forever = asyncio.create_task(server.serve_forever())
        clients = [await connect(url(server.port)) for _ in range(5)]
        for ws in clients:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        assert len(server.connections) == 5
        waiting = [asyncio.create_task(ws.recv()) for ws in clients]
        await server.close()
        await forever  # serve_forever() returns
        assert not server.connections
        for ws, task in zip(clients, waiting, strict=True):
            with pytest.raises(ConnectionClosed) as info:
                await task
            assert (info.value.code, info.value.reason) == (1001, "server shutting down")
            await ws.wait_closed()
            closed = ws.closed
            assert closed is not None
            assert closed.ok
        with pytest.raises(OSError):  # no longer listening
            await connect(url(server.port), open_timeout=2)

    run(main)


def test_server_close_does_not_wait_for_stuck_handlers_or_handshakes() -> None:
    """A handler that ignores the close is cancelled, and a client still in the opening
    handshake is dropped: neither holds ``close()`` for its timeouts."""

    async def stuck(ws: WebSocket) -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        async with serve(stuck, "127.0.0.1", 0, open_timeout=30) as server:
            ws = await connect(url(server.port))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            started = time.monotonic()
            await server.close()
            assert time.monotonic() - started < 3
            assert await reader.read() == b""  # the silent client was dropped
            writer.close()
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.code == 1001

    run(main)


# -- timeouts and keepalive -------------------------------------------------------------------


def test_ping_returns_the_latency() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server.port)) as ws:
            before = ws.latency
            assert before is None
            latency = await ws.ping(b"are you there")
            assert 0 <= latency < 5
            assert ws.latency == latency
            many = await asyncio.gather(*(ws.ping() for _ in range(5)))
            assert all(0 <= each < 5 for each in many)

    run(main)


def test_ping_fails_when_the_connection_ends() -> None:
    def silent(sock: socket.socket, conn: ServerConnection, ended: threading.Event) -> None:
        sock.recv(65536)  # the Ping, never answered; then vanish

    async def main(port: int) -> None:
        ws = await connect(url(port))
        with pytest.raises(ConnectionClosed) as info:
            await ws.ping()
        assert info.value.remote is None
        with pytest.raises(ConnectionClosed):
            await ws.ping()
        await ws.close()

    with raw_server(silent, auto_pong=False) as port:
        run(lambda: main(port))


def test_keepalive_with_a_live_peer() -> None:
    server_latency: list[float | None] = []

    async def handler(ws: WebSocket) -> None:
        message = await ws.recv()
        server_latency.append(ws.latency)
        await ws.send(message)
        await echo(ws)

    async def main() -> None:
        async with (
            serve(handler, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=2) as server,
            connect(url(server.port), ping_interval=0.05, ping_timeout=2) as ws,
        ):
            await asyncio.sleep(0.3)  # the test's length: several keepalive rounds
            await ws.send("alive")
            assert await ws.recv() == "alive"
            assert ws.latency is not None
            assert 0 <= ws.latency < 2
        closed = ws.closed
        assert closed is not None
        assert closed.ok

    run(main)
    assert server_latency
    assert server_latency[0] is not None


def test_keepalive_timeout_closes_with_1011_both_roles() -> None:
    server_saw: list[ConnectionClosed] = []

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            server_saw.append(closed)

    async def main() -> None:
        # The client pings; the server never answers.
        async with (
            serve(echo, "127.0.0.1", 0, auto_pong=False) as server,
            connect(url(server.port), ping_interval=0.05, ping_timeout=0.2) as ws,
        ):
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert isinstance(info.value.error, TimeoutError)
            assert info.value.local is not None
            assert info.value.local.code == 1011
            await ws.wait_closed()
            closed = ws.closed
            assert closed is not None
            assert isinstance(closed.error, TimeoutError)
            assert not closed.ok
        # The server pings; the client never answers.
        async with (
            serve(handler, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.2) as server,
            connect(url(server.port), auto_pong=False) as ws,
        ):
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.code == 1011
            assert info.value.reason == "keepalive ping timeout"
        assert len(server_saw) == 1
        assert isinstance(server_saw[0].error, TimeoutError)

    run(main)


def test_client_open_timeout_against_a_silent_server() -> None:
    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never answers
            started = time.monotonic()
            with pytest.raises(HandshakeError) as info:
                await connect(url(listener.getsockname()[1]), open_timeout=0.3)
            assert time.monotonic() - started < 3
            assert isinstance(info.value.error, TimeoutError)

    run(main)


def test_server_drops_a_silent_client() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, open_timeout=0.3) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            started = time.monotonic()
            assert await reader.read() == b""
            assert time.monotonic() - started < 3
            writer.close()
            await writer.wait_closed()
            assert not server.connections

    run(main)


def test_cancelled_connect_leaves_no_connection_open() -> None:
    ended: asyncio.Future[bytes]

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ended.set_result(await reader.read())  # the upgrade request, then the end
        except OSError:
            ended.set_result(b"reset")
        writer.close()

    async def main() -> None:
        nonlocal ended
        ended = asyncio.get_running_loop().create_future()
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await connect(url(port))
        assert (await ended).startswith((b"GET / HTTP/1.1\r\n", b"reset"))
        server.close()
        await server.wait_closed()

    run(main)


def test_connection_refused_is_an_os_error() -> None:
    async def main() -> None:
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        with pytest.raises(OSError):
            await connect(url(port))

    run(main)


# -- HTTP on the same port ----------------------------------------------------------------------


def test_refused_upgrade_by_process_request() -> None:
    def process_request(request: Handshake | HTTPRequest) -> HTTPResponse | None:
        if isinstance(request, Handshake) and request.path != "/chat":
            return HTTPResponse(404, [("content-type", "text/plain")], b"no such room")
        return None

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            with pytest.raises(HandshakeError) as info:
                await connect(url(server.port, "/lobby"))
            assert info.value.status_code == 404
            assert info.value.body == b"no such room"
            assert (b"content-type", b"text/plain") in info.value.headers
            async with connect(url(server.port, "/chat")) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"

    run(main)


def test_origin_policy_refuses_with_403() -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, origin_policy=SAME_ORIGIN) as server:
            with pytest.raises(HandshakeError) as info:
                await connect(url(server.port), origin="http://evil.example")
            assert info.value.status_code == 403
            assert b"evil.example" in info.value.body
            async with connect(url(server.port), origin=f"http://127.0.0.1:{server.port}") as ws:
                await ws.send("same origin")
                assert await ws.recv() == "same origin"

    run(main)


def test_plain_http_by_process_request_and_the_default_426() -> None:
    def pages(request: Handshake | HTTPRequest) -> HTTPResponse | None:
        if isinstance(request, HTTPRequest) and request.path == "/health":
            return HTTPResponse(200, [("content-type", "text/plain")], b"ok")
        return None

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=pages) as server:
            answer = await http_get(server.port, "/health")
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert answer.endswith(b"\r\n\r\nok")
            assert (await http_get(server.port, "/other")).startswith(b"HTTP/1.1 426 ")
            async with connect(url(server.port)) as ws:  # upgrades still work
                await ws.send("ws")
                assert await ws.recv() == "ws"
        async with serve(echo, "127.0.0.1", 0) as server:
            answer = await http_get(server.port, "/")
            assert answer.startswith(b"HTTP/1.1 426 ")
            assert b"upgrade: websocket" in answer.lower()

    run(main)


def test_process_request_raising_answers_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: Handshake | HTTPRequest) -> HTTPResponse | None:
        raise RuntimeError("boom")

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=broken) as server:
            assert (await http_get(server.port, "/health")).startswith(b"HTTP/1.1 500 ")
            with pytest.raises(HandshakeError) as info:
                await connect(url(server.port))
            assert info.value.status_code == 500
            assert not server.connections

    with caplog.at_level(logging.ERROR, logger="wsmachine.adapters.asyncio"):
        run(main)
    failures = [r for r in caplog.records if "process_request failed" in r.message]
    assert len(failures) == 2
    assert all(r.exc_info for r in failures)


# -- back-pressure and broadcast ----------------------------------------------------------------


def test_back_pressure_stops_reading_then_send_waits_then_resumes() -> None:
    """The handler does not call recv: the server reads ``max_queue`` messages (and what
    came in the same read) and stops reading; the kernel's buffers fill, then the client's
    write buffer, and its send() waits until the handler reads again."""
    chunk = b"\x5a" * (64 << 10)
    count = 400  # 25 MiB: more than the kernel's buffers hold on loopback
    server_side: asyncio.Future[WebSocket]
    go: asyncio.Event

    async def reluctant(ws: WebSocket) -> None:
        server_side.set_result(ws)
        await go.wait()
        for _ in range(count):
            assert await ws.recv() == chunk
        await ws.send("all read")
        await echo(ws)

    async def main() -> None:
        nonlocal server_side, go
        server_side = asyncio.get_running_loop().create_future()
        go = asyncio.Event()
        async with (
            serve(reluctant, "127.0.0.1", 0, max_queue=4) as server,
            connect(url(server.port), write_high_water=256 << 10) as ws,
        ):
            theirs = await server_side
            sent = 0

            async def sender() -> None:
                nonlocal sent
                for _ in range(count):
                    await ws.send(chunk)
                    sent += 1

            sending = asyncio.create_task(sender())
            # Reading stops once max_queue messages wait; the read that got there may have
            # brought a few more (up to a receive buffer's worth: 256 KiB, 3 or 4 of these).
            await until(lambda: not ws._can_write and theirs.session.queued >= 4, "blocked")
            assert 4 <= theirs.session.queued <= 4 + 4
            assert not theirs.session.reading()
            assert not theirs._reading
            assert not sending.done()
            assert sent < count
            transport = ws._transport
            assert transport is not None
            assert transport.get_write_buffer_size() > 256 << 10
            go.set()  # the handler reads: the server reads, the client's buffer drains
            await sending
            assert sent == count
            assert await ws.recv() == "all read"

    run(main)


def test_send_waits_for_a_peer_that_does_not_read() -> None:
    """The server's send() waits above write_high_water while the client does not read."""
    chunk = b"\xa5" * (64 << 10)
    count = 200
    progress: list[int] = []

    async def flood(ws: WebSocket) -> None:
        for i in range(count):
            await ws.send(chunk)
            progress.append(i)
        await ws.send("done")
        await ws.recv()

    async def main() -> None:
        async with (
            serve(flood, "127.0.0.1", 0, write_high_water=128 << 10) as server,
            raw_client(server.port, rcvbuf=16 << 10) as (reader, writer, conn),
        ):
            await until(lambda: any(not c._can_write for c in server.connections), "paused")
            stalled = len(progress)
            assert stalled < count
            (theirs,) = server.connections
            transport = theirs._transport
            assert transport is not None
            assert transport.get_write_buffer_size() > 128 << 10
            # Now read: the server's send() resumes, and every message arrives, in order.
            received: list[Any] = []
            while not received or received[-1] != "done":
                events = conn.receive_data(await reader.read(1 << 20))
                received += [e.data for e in events if isinstance(e, Text | Binary)]
            assert received == [chunk] * count + ["done"]
            assert len(progress) == count
            conn.close()
            writer.write(conn.data_to_send())

    run(main)


def test_concurrent_senders_all_resume() -> None:
    """Several tasks wait in send() on one connection: each resumes when the buffer drains,
    and one of them cancelled does not strand the others."""
    chunk = b"\x3c" * (64 << 10)
    count = 60
    done: list[str] = []

    async def senders(ws: WebSocket) -> None:
        async def send_many(name: str) -> None:
            for _ in range(count):
                await ws.send(chunk)
            done.append(name)

        tasks = [asyncio.create_task(send_many(name)) for name in ("a", "b", "c")]
        await until(lambda: not ws._can_write, "paused")
        tasks[0].cancel()  # waiting in send(): the others go on
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.send("done")
        await ws.recv()

    async def main() -> None:
        async with (
            serve(senders, "127.0.0.1", 0, write_high_water=64 << 10) as server,
            raw_client(server.port, rcvbuf=16 << 10) as (reader, writer, conn),
        ):
            await until(lambda: any(not c._can_write for c in server.connections), "paused")
            messages = 0
            last: Any = None
            while last != "done":
                for event in conn.receive_data(await reader.read(1 << 20)):
                    messages += 1
                    last = event.data if isinstance(event, Text) else None
            assert sorted(done) == ["b", "c"]
            assert 2 * count < messages <= 3 * count + 1
            conn.close()
            writer.write(conn.data_to_send())

    run(main)


def test_broadcast_skips_a_peer_whose_buffer_is_full() -> None:
    chunk = b"\x33" * (64 << 10)
    opened: asyncio.Queue[WebSocket]

    async def handler(ws: WebSocket) -> None:
        opened.put_nowait(ws)
        await ws.wait_closed()

    async def main() -> None:
        nonlocal opened
        opened = asyncio.Queue()
        async with serve(handler, "127.0.0.1", 0, write_high_water=64 << 10) as server:
            async with (
                connect(url(server.port)) as fast,
                raw_client(server.port, rcvbuf=16 << 10) as _slow,
            ):
                for _ in range(2):
                    await opened.get()
                assert len(server.connections) == 2
                counts = []
                for _ in range(1000):  # until the slow peer's buffer is above the mark
                    counts.append(broadcast(server.connections, chunk))
                    assert await fast.recv() == chunk
                    if counts[-1] == 1:
                        break
                assert counts[-1] == 1, "the slow peer was never skipped"
                assert set(counts[:-1]) <= {2}
                # The fast peer still gets every message, the slow one is skipped each time.
                assert broadcast(server.connections, "text too") == 1
                assert await fast.recv() == "text too"
                slow = [ws for ws in server.connections if not ws._can_write]
                assert len(slow) == 1
            assert broadcast([], "nobody") == 0

    run(main)


def test_write_limit_drops_a_peer_that_floods_pings_and_never_reads() -> None:
    """Pongs the peer does not read pile up in the write buffer: above write_limit the
    connection is dropped, rather than the buffer growing without bound."""
    saw: asyncio.Future[ConnectionClosed]

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as closed:
            saw.set_result(closed)

    async def main() -> None:
        nonlocal saw
        saw = asyncio.get_running_loop().create_future()
        options = {"write_high_water": 16 << 10, "write_limit": 256 << 10}
        async with (
            serve(handler, "127.0.0.1", 0, **options) as server,
            raw_client(server.port, rcvbuf=16 << 10) as (_, writer, _conn),
        ):
            ping = FrameBuilder(client=True).ping(b"p" * 125)
            with contextlib.suppress(OSError):
                for _ in range(400):  # 20 MiB of Pongs, at most
                    writer.write(ping * 400)
                    await writer.drain()
                    if saw.done():
                        break
            closed = await saw
            assert isinstance(closed.error, BufferError)
            assert "write_limit" in str(closed.error) or "limit" in str(closed.error)

    run(main)


# -- interop with the websockets library -------------------------------------------------------


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_websockets_client_against_our_server(deflate: bool) -> None:
    big = b"\x02" * (4 << 20)
    text = "compressible " * 10_000
    extensions = [PerMessageDeflate()] if deflate else []

    async def main() -> None:
        async with serve(
            echo, "127.0.0.1", 0, max_message_size=8 << 20, extensions=extensions
        ) as server:
            async with ws_connect(url(server.port), max_size=8 << 20) as theirs:
                assert theirs.response is not None
                negotiated = theirs.response.headers.get("Sec-WebSocket-Extensions")
                assert (negotiated is not None) == deflate
                await theirs.send("héllo")
                assert await theirs.recv() == "héllo"
                await theirs.send(text)
                assert await theirs.recv() == text
                await theirs.send(big)
                assert await theirs.recv() == big
                pong = await theirs.ping()
                await asyncio.wait_for(pong, 5)
                await theirs.close(4003, "done")
            assert theirs.close_code == 4003
            # They see our shutdown as 1001.
            async with ws_connect(url(server.port)) as theirs:
                await theirs.send("a")
                assert await theirs.recv() == "a"
                await server.close()
                with pytest.raises(WSConnectionClosed) as info:
                    await theirs.recv()
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == 1001

    run(main)


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_our_client_against_websockets_server(deflate: bool) -> None:
    big = b"\xab" * (4 << 20)
    text = "compressible " * 10_000

    async def handler(ws: WSServerConnection) -> None:
        async for message in ws:
            if message == "close please":
                await ws.close(4002, "as asked")
                return
            await ws.send(message)

    async def main() -> None:
        compression = "deflate" if deflate else None
        async with ws_serve(
            handler, "127.0.0.1", 0, max_size=8 << 20, compression=compression
        ) as theirs:
            port = theirs.sockets[0].getsockname()[1]
            extensions = [PerMessageDeflate()]  # offered; accepted only with deflate
            async with connect(url(port), max_message_size=8 << 20, extensions=extensions) as ws:
                assert ws.accepted is not None
                names = [ext.name for ext in ws.accepted.extensions]
                assert names == (["permessage-deflate"] if deflate else [])
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                for _ in range(3):
                    await ws.send(text)
                    assert await ws.recv() == text
                await ws.send(big)
                assert await ws.recv() == big
                assert await ws.ping() >= 0
            closed = ws.closed
            assert closed is not None
            assert closed.ok, closed
            ws = await connect(url(port))
            await ws.send("close please")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (4002, "as asked")
            await ws.close()

    run(main)


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost``, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    arguments = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    arguments += " -subj /CN=localhost -addext subjectAltName=DNS:localhost"
    subprocess.run(
        [openssl, *arguments.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.parametrize("loop", LOOPS)
def test_wss_both_roles(
    loop: str, certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    server_closed: asyncio.Future[ConnectionClosed | None]

    async def handler(ws: WebSocket) -> None:
        await echo(ws)
        await ws.wait_closed()
        server_closed.set_result(ws.closed)

    async def main() -> None:
        nonlocal server_closed
        server_closed = asyncio.get_running_loop().create_future()
        async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
            where = f"wss://localhost:{server.port}/"
            async with connect(where, ssl=client_context) as ws:
                await ws.send("secure")
                assert await ws.recv() == "secure"
                await ws.send(b"\x00" * (1 << 20))
                assert await ws.recv() == b"\x00" * (1 << 20)
            closed = ws.closed
            assert closed is not None
            assert closed.ok, closed
            with pytest.raises(ssl.SSLCertVerificationError):  # an unknown certificate
                await connect(where, open_timeout=5)
            seen = await server_closed
            assert seen is not None
            assert seen.ok, seen

    with caplog.at_level(logging.WARNING):
        run(main, loop)
    assert not [r for r in caplog.records if "eof_received" in r.getMessage()]


# -- the how-to guide's code --------------------------------------------------------------------


def _code_blocks() -> list[str]:
    """The Python code blocks of docs/howto/asyncio.rst, dedented."""
    if not HOWTO.exists():
        return []
    text = HOWTO.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"\.\. code-block:: python\n((?:\n|    .*\n)+)", text):
        lines = match.group(1).splitlines()
        blocks.append("\n".join(line[4:] for line in lines).strip() + "\n")
    return blocks


BLOCKS = _code_blocks()
CHAT = [block for block in BLOCKS if "def chat_server" in block]
PROGRAMS = [block for block in BLOCKS if block not in CHAT]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def test_the_howto_has_its_examples() -> None:
    assert len(CHAT) == 1
    assert len(PROGRAMS) >= 7


@pytest.mark.parametrize("index", range(len(PROGRAMS)))
def test_every_howto_program_runs_as_written(
    index: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Each block is a whole program: run in a fresh interpreter, with cert.pem and key.pem
    in its working directory for the TLS one."""
    block = PROGRAMS[index]
    if "import uvloop" in block and uvloop is None:
        pytest.skip("uvloop is not installed")
    if "cert.pem" in block:
        cert, key = request.getfixturevalue("certificate")
        shutil.copy(cert, tmp_path / "cert.pem")
        shutil.copy(key, tmp_path / "key.pem")
    program = tmp_path / f"example{index}.py"
    program.write_text(block, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        env=_env(),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the example printed nothing"
    assert not result.stderr, result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="the example stops on SIGINT")
def test_the_howto_chat_server_serves_the_page_and_broadcasts(tmp_path: Path) -> None:
    """chat.py as written: started on a free port, it serves the page, broadcasts every
    message to everyone, refuses other origins, and on SIGINT closes every client with 1001."""
    (chat,) = CHAT
    program = tmp_path / "chat.py"
    program.write_text(chat, encoding="utf-8")

    async def main() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            str(program),
            "0",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            cwd=tmp_path,
        )
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            first = (await process.stdout.readline()).decode()
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
            assert found, first
            port = int(found.group(1))
            page = await http_get(port, "/")
            assert page.startswith(b"HTTP/1.1 200 ")
            assert page.endswith(PAGE.encode("utf-8"))
            assert (await http_get(port, "/nothing")).startswith(b"HTTP/1.1 404 ")
            with pytest.raises(HandshakeError) as info:
                await connect(url(port, "/ws"), origin="http://evil.example")
            assert info.value.status_code == 403
            alice = await connect(url(port, "/ws"), origin=f"http://127.0.0.1:{port}")
            bob = await connect(url(port, "/ws"), extensions=[PerMessageDeflate()])
            assert bob.accepted is not None
            assert [ext.name for ext in bob.accepted.extensions] == ["permessage-deflate"]
            await bob.send("bob is here")  # both are in the room once bob's echo is back
            assert await bob.recv() == "bob is here"
            await alice.send("hello, everyone")
            assert await bob.recv() == "hello, everyone"
            received = await alice.recv()
            if received == "bob is here":  # alice had joined before bob spoke
                received = await alice.recv()
            assert received == "hello, everyone"  # the sender gets it too
            with pytest.raises(HandshakeError) as elsewhere:
                await connect(url(port, "/elsewhere"))
            assert elsewhere.value.status_code == 404
            # The page's JSON protocol (the demo's Room): a greeting for the new tab alone,
            # names on messages, plain text for the others.
            carol = await connect(url(port, "/ws?format=json"))
            welcome = json.loads(await carol.recv())
            assert welcome["type"] == "welcome" and welcome["online"] == 3
            await carol.send(json.dumps({"type": "message", "name": "carol", "text": "hi"}))
            said = json.loads(await carol.recv())
            assert said == {"type": "message", "id": welcome["id"], "from": "carol", "text": "hi"}
            assert await alice.recv() == "hi" and await bob.recv() == "hi"
            process.send_signal(signal.SIGINT)
            for ws in (alice, bob, carol):
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.code == 1001
                await ws.wait_closed()
            assert await process.wait() == 0
            out = first + (await process.stdout.read()).decode()
            assert out.count("connect    ") == 3
            assert out.count("disconnect ") == 3
            assert "stopped" in out
            assert not await process.stderr.read()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    run(main)


@pytest.mark.parametrize("loop", LOOPS)
def test_one_mib_messages_are_read_into_the_machine(
    loop: str, receive_paths: dict[str, int]
) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    text = "ü✓" * (1 << 18)  # 1.25 MiB of UTF-8

    async def main() -> None:
        async with (
            serve(echo, "127.0.0.1", 0, max_message_size=2 << 20) as server,
            connect(url(server.port), max_message_size=2 << 20) as ws,
        ):
            for _ in range(3):
                await ws.send(payload)
                assert await ws.recv() == payload
                await ws.send(text)
                assert await ws.recv() == text

    run(main, loop)
    # The transport read into the machine's buffer (BufferedProtocol.get_buffer), both ends.
    assert receive_paths["data"] == 0
    assert receive_paths["into_bytes"] >= 6 * (len(payload) + len(text.encode()))
