"""wsmachine as uvicorn's WebSocket protocol (``wsmachine.integrations.uvicorn``).

A real ``uvicorn.Server`` on a loopback socket the OS picked, behind both of uvicorn's HTTP
parsers, with real clients (``websockets`` and wsmachine's own asyncio client); and uvicorn's
own WebSocket test suite run over our class (``tests/uvicorn_suite/run.py``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import h11
import pytest

pytest.importorskip("uvicorn")

import uvicorn
import websockets.exceptions
from websockets.asyncio.client import connect as ws_connect

from tests.uvicorn_server import run as run_within
from tests.uvicorn_server import serve
from wsmachine.adapters.asyncio import connect as wm_connect
from wsmachine.adapters.session import Session
from wsmachine.integrations.uvicorn import WSMachineProtocol, server_options

TIMEOUT = 10.0

HTTP_PARSERS = [
    "h11",
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("httptools") is None, reason="httptools not installed"
        ),
    ),
]


def run(coro: Awaitable[None]) -> None:
    run_within(coro, 30)


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    subprotocols = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": subprotocols[-1] if subprotocols else None,
            "headers": [(b"x-path", scope["path"].encode())],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close please":
            await send({"type": "websocket.close", "code": 4001, "reason": "as asked"})
            continue
        await send({"type": "websocket.send", **{k: v for k, v in message.items() if k != "type"}})


def test_options_from_config() -> None:
    config = uvicorn.Config(
        echo,
        ws_max_size=1234,
        ws_max_queue=7,
        ws_ping_interval=0,
        ws_ping_timeout=None,
        ws_per_message_deflate=False,
    )
    options = server_options(config)
    assert options.max_message_size == 1234
    assert options.max_queue == 7
    assert options.ping_interval is None
    assert options.extensions == ()
    assert server_options(uvicorn.Config(echo)).extensions  # deflate by default


@pytest.mark.parametrize("http", HTTP_PARSERS)
def test_echo_with_websockets_client(http: str) -> None:
    async def main() -> None:
        async with (
            serve(echo, http) as (_, port),
            ws_connect(f"ws://127.0.0.1:{port}/a%20b?x=1", subprotocols=["one", "two"]) as ws,
        ):
            assert ws.subprotocol == "two"
            assert ws.response is not None
            assert ws.response.headers["x-path"] == "/a b"
            assert ws.response.headers["server"] == "uvicorn"
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            await ws.send("")  # empty messages leave the write batch too
            assert await ws.recv() == ""
            await ws.send(b"")
            assert await ws.recv() == b""
            assert ws.protocol.extensions  # permessage-deflate agreed

    run(main())


@pytest.mark.parametrize("http", HTTP_PARSERS)
def test_wsmachine_client_and_close_both_ways(http: str) -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                disconnects.append(message)
                return
            await send({"type": "websocket.send", "text": message["text"].upper()})

    async def main() -> None:
        async with serve(app, http) as (_, port):
            async with wm_connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("abc")
                assert await ws.recv() == "ABC"
                await ws.close(4000, "bye")
            for _ in range(100):
                if disconnects:
                    break
                await asyncio.sleep(0.01)
            assert disconnects == [{"type": "websocket.disconnect", "code": 4000, "reason": "bye"}]
            # A clean close from the client: both Close frames with 1000.
            async with wm_connect(f"ws://127.0.0.1:{port}/") as ws2:
                await ws2.send("x")
                assert await ws2.recv() == "X"
            assert ws2.closed is not None and ws2.closed.ok

    run(main())


@pytest.mark.parametrize("http", HTTP_PARSERS)
def test_app_close_code_and_reason(http: str) -> None:
    async def main() -> None:
        async with serve(echo, http) as (_, port), ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("close please")
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4001
            assert ws.close_reason == "as asked"

    run(main())


@pytest.mark.parametrize("http", HTTP_PARSERS)
def test_max_size_closes_with_1009(http: str) -> None:
    disconnects: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            pass
        disconnects.append(message)

    async def main() -> None:
        async with serve(app, http, ws_max_size=100) as (_, port):
            async with ws_connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
                await ws.send(b"x" * 100)  # at the limit: fine
                await ws.send(b"x" * 101)
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1009
            for _ in range(100):
                if disconnects:
                    break
                await asyncio.sleep(0.01)
            assert disconnects and disconnects[0]["code"] == 1009

    run(main())


@pytest.mark.parametrize("http", HTTP_PARSERS)
def test_denial_response_and_errors(http: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/deny":
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"entry"})
        elif scope["path"] == "/forbid":
            await send({"type": "websocket.close"})
        else:
            raise RuntimeError("boom")  # before accept: 500

    async def status_of(port: int, path: str) -> tuple[int, bytes]:
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with ws_connect(f"ws://127.0.0.1:{port}{path}"):
                pass
        response = info.value.response
        return response.status_code, response.body or b""

    async def main() -> None:
        async with serve(app, http) as (_, port):
            assert await status_of(port, "/deny") == (401, b"no entry")
            assert (await status_of(port, "/forbid"))[0] == 403
            assert await status_of(port, "/fail") == (500, b"Internal Server Error")

    run(main())


@pytest.mark.parametrize("http", HTTP_PARSERS)
def test_denial_body_is_streamed_as_the_app_sends_it(http: str) -> None:
    """A denial in several pieces leaves piece by piece (chunked): the client reads the
    first before the application sends the second. An application that stops before the
    last piece leaves the response unfinished (no last chunk), not passed off as whole."""
    first_read = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"wait", "more_body": True})
        if scope["path"] == "/cut":
            return
        async with asyncio.timeout(TIMEOUT):
            await first_read.wait()
        await send({"type": "websocket.http.response.body", "body": b" for it"})

    writers: list[asyncio.StreamWriter] = []

    async def upgrade(port: int, path: str) -> tuple[asyncio.StreamReader, h11.Connection]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        client = h11.Connection(h11.CLIENT)
        headers = [
            ("Host", f"127.0.0.1:{port}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ]
        writer.write(client.send(h11.Request(method="GET", target=path, headers=headers)) or b"")
        writer.write(client.send(h11.EndOfMessage()) or b"")
        return reader, client

    async def next_event(reader: asyncio.StreamReader, client: h11.Connection) -> Any:
        while True:
            event = client.next_event()
            if event is not h11.NEED_DATA:
                return event
            client.receive_data(await reader.read(65536))

    async def main() -> None:
        try:
            await streamed()
        finally:
            for writer in writers:
                writer.close()

    async def streamed() -> None:
        async with serve(app, http) as (_, port):
            reader, client = await upgrade(port, "/stream")
            head = await next_event(reader, client)
            assert isinstance(head, h11.Response) and head.status_code == 403
            assert (b"transfer-encoding", b"chunked") in head.headers
            assert (await next_event(reader, client)).data == b"wait"
            first_read.set()
            assert (await next_event(reader, client)).data == b" for it"
            assert isinstance(await next_event(reader, client), h11.EndOfMessage)

            reader, client = await upgrade(port, "/cut")
            assert isinstance(await next_event(reader, client), h11.Response)
            assert (await next_event(reader, client)).data == b"wait"
            with pytest.raises(h11.RemoteProtocolError):  # the stream ends mid-body
                await next_event(reader, client)

    run(main())


@pytest.mark.parametrize("http", HTTP_PARSERS)
def test_shutdown_closes_with_1012(http: str) -> None:
    disconnects: list[dict[str, Any]] = []
    accepted = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        disconnects.append(await receive())

    async def main() -> None:
        async with serve(app, http) as (server, port):
            ws = await wm_connect(f"ws://127.0.0.1:{port}/")
            await accepted.wait()
            await server.shutdown()
            await ws.wait_closed()
            assert ws.close_code == 1012
        assert disconnects == [{"type": "websocket.disconnect", "code": 1012}]

    run(main())


@pytest.mark.parametrize("http", HTTP_PARSERS)
def test_keepalive_pings(http: str) -> None:
    async def main() -> None:
        async with (
            serve(echo, http, ws_ping_interval=0.05, ws_ping_timeout=5) as (server, port),
            ws_connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws,
        ):
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, WSMachineProtocol)
            session = protocol.session
            assert isinstance(session, Session)
            for _ in range(200):
                if session.latency is not None:
                    break
                await asyncio.sleep(0.01)
            assert session.latency is not None  # a keepalive Ping was answered
            await ws.send("still here")
            assert await ws.recv() == "still here"

    run(main())


SUITE = Path(__file__).parent / "uvicorn_suite" / "run.py"


@pytest.mark.skipif(
    importlib.util.find_spec("httpx2") is None,
    reason="uvicorn's test suite needs httpx2 (and anyio's pytest plugin): not installed",
)
def test_uvicorn_own_websocket_suite() -> None:
    """uvicorn's tests/protocols/test_websocket.py, fetched from its sdist, over our class."""
    spec = importlib.util.spec_from_file_location("uvicorn_suite_run", SUITE)
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = suite  # its dataclass looks itself up there
    spec.loader.exec_module(suite)
    try:
        result = suite.run()
    except suite.DownloadError as exc:
        pytest.skip(f"cannot download uvicorn's sdist (no network or package index?): {exc}")
    print(result.summary())
    for failure in result.failures:
        print("  FAILED", failure)
    assert result.passed > 0, result.output[-3000:]
    assert result.failed == 0 and result.returncode == 0, (
        result.summary() + "\n" + "\n".join(result.failures) + "\n" + result.output[-5000:]
    )
