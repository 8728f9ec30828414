"""wsmachine as uvicorn's WebSocket protocol, edges branch coverage found unreached (issue
14): messages that arrived before the app's close stay readable, a send without data is
ignored, a send after the client left raises ClientDisconnected (which uvicorn swallows), and
a denial body after the denial ended is refused. A real uvicorn server on loopback, a real
client, every wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest

pytest.importorskip("uvicorn")

from uvicorn.protocols.utils import ClientDisconnected
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.uvicorn_server import App
from tests.uvicorn_server import run as run_within
from tests.uvicorn_server import serve as uvicorn_serve

TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def serve(app: App) -> AsyncIterator[int]:
    async with uvicorn_serve(app, timeout=TIMEOUT) as (_, port):
        yield port


def run(coro: Awaitable[None]) -> None:
    run_within(coro, TIMEOUT * 3)


def test_messages_that_came_before_the_apps_close_stay_readable() -> None:
    arrived = asyncio.Event()
    got: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await arrived.wait()  # both messages are in, unread
        await send({"type": "websocket.close", "code": 4000, "reason": "enough"})
        got.extend([await receive() for _ in range(3)])

    async def main() -> None:
        async with serve(app) as port, ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("text first")
            await ws.send(b"then bytes")
            await asyncio.wait_for(await ws.ping(), TIMEOUT)  # answered after both were read
            arrived.set()
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "enough")
            async with asyncio.timeout(TIMEOUT):
                while len(got) < 3:
                    await asyncio.sleep(0.01)

    run(main())
    assert got == [
        {"type": "websocket.receive", "text": "text first"},
        {"type": "websocket.receive", "bytes": b"then bytes"},
        {"type": "websocket.disconnect", "code": 4000, "reason": "enough"},
    ]


def test_a_send_without_data_is_ignored() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send"})  # neither bytes nor text
        await send({"type": "websocket.send", "text": "the only message"})
        await receive()

    async def main() -> None:
        async with serve(app) as port, ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            assert await ws.recv() == "the only message"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.1)

    run(main())


def test_a_send_after_the_client_left_raises_client_disconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raised: list[BaseException] = []
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except BaseException as exc:
            raised.append(exc)
            raise  # uvicorn's protocol swallows it: not an application error
        finally:
            done.set()

    async def main() -> None:
        async with serve(app) as port:
            async with ws_connect(f"ws://127.0.0.1:{port}/"):
                pass
            await asyncio.wait_for(done.wait(), TIMEOUT)
            await asyncio.sleep(0.05)  # the app's task ends

    with caplog.at_level(logging.ERROR):
        run(main())
    assert len(raised) == 1 and isinstance(raised[0], ClientDisconnected)
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]


def test_a_denial_body_after_the_denial_ended_is_refused() -> None:
    errors: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})
        try:
            await send({"type": "websocket.http.response.body", "body": b"more"})
        except RuntimeError as exc:
            errors.append(exc)

    async def main() -> None:
        async with serve(app) as port:
            with pytest.raises(InvalidStatus) as info:
                async with ws_connect(f"ws://127.0.0.1:{port}/"):
                    pass
            assert info.value.response.status_code == 403
            assert info.value.response.body == b"no"
            async with asyncio.timeout(TIMEOUT):
                while not errors:
                    await asyncio.sleep(0.01)

    run(main())
    assert "complete" in str(errors[0])
