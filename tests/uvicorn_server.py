"""A real ``uvicorn.Server`` with wsmachine as its WebSocket protocol, on a loopback socket the
OS picked, for the uvicorn integration's tests; every wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn

from wsmachine.integrations.uvicorn import WSMachineProtocol

__all__ = ["App", "run", "serve"]

#: An ASGI application.
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(
    app: App, http: str = "h11", *, timeout: float = 10.0, **settings: Any
) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """Serve ``app`` behind uvicorn's ``http`` parser (``settings`` go to ``uvicorn.Config``);
    yields the server and its port, started within ``timeout`` and stopped on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, ws=WSMachineProtocol, http=http, lifespan="off", log_level="warning", **settings
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(timeout):
            while not server.started:
                if task.done():
                    task.result()  # a failed start raises here rather than timing out
                await asyncio.sleep(0.01)
        yield server, port
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(timeout):
                await task
        finally:
            sock.close()


def run(coro: Awaitable[None], timeout: float) -> None:
    """Run ``coro`` in a new event loop, failing it after ``timeout`` seconds."""

    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())
