"""The Autobahn peers on :mod:`wsmachine.adapters.asyncio`, through its public API only.

Server role: :func:`~wsmachine.adapters.asyncio.serve` with a handler that echoes each
message, in ``asyncio.run`` in a thread of its own. Client role:
:func:`~wsmachine.adapters.asyncio.connect` for each case, in an ``asyncio.run`` per case.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import traceback

from wsmachine.adapters import ConnectionClosed
from wsmachine.adapters.asyncio import Server, WebSocket, connect, serve

from .common import POLL_SECONDS, AdapterPeers, EchoServer, Limits, PeerSettings, SessionResult

__all__ = ["PEERS", "session", "start_echo_server"]

#: Seconds for the server's thread to start listening.
START_SECONDS = 10.0


async def _echo(ws: WebSocket) -> None:
    async for message in ws:
        with contextlib.suppress(ConnectionClosed):  # closing meanwhile: the loop ends
            await ws.send(message)


def start_echo_server(settings: PeerSettings) -> EchoServer:
    """An asyncio server on 127.0.0.1, a port the OS picks, in ``asyncio.run`` in a new
    thread; stopped with its ``close`` from this thread."""
    started: queue.Queue[tuple[Server, asyncio.AbstractEventLoop] | BaseException] = queue.Queue()
    errors: list[str] = []

    async def main() -> None:
        async with serve(_echo, "127.0.0.1", 0, **settings.options()) as server:
            started.put((server, asyncio.get_running_loop()))
            await server.serve_forever()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as error:  # before the start: raised below; after: reported
            errors.append(traceback.format_exc())
            started.put(error)

    thread = threading.Thread(target=run, name="autobahn-asyncio-server", daemon=True)
    thread.start()
    first = started.get(timeout=START_SECONDS)
    if isinstance(first, BaseException):
        raise RuntimeError("the asyncio echo server did not start") from first
    server, loop = first

    def stop(timeout: float) -> list[str]:
        with contextlib.suppress(RuntimeError):  # the loop ended already: see errors
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout)
        thread.join(timeout)
        alive = [f"thread {thread.name} still runs after stop()"] if thread.is_alive() else []
        return errors + alive

    return EchoServer(f"ws://127.0.0.1:{server.port}", stop)


async def _session(url: str, settings: PeerSettings, echo: bool, limits: Limits) -> SessionResult:
    received: list[str | bytes] = []
    async with connect(url, **settings.options()) as ws:
        while (left := limits.left()) > 0:
            try:
                # Bounded waits, so that the deadline is noticed; a cancelled recv() loses
                # no message.
                message = await asyncio.wait_for(ws.recv(), min(left, POLL_SECONDS))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return SessionResult("closed", received)
            if not echo:
                received.append(message)
                continue
            with contextlib.suppress(ConnectionClosed):  # closing: the next recv() says so
                await ws.send(message)
    return SessionResult("deadline", received)


def session(url: str, settings: PeerSettings, *, echo: bool, limits: Limits) -> SessionResult:
    """Connect to ``url`` and echo (or keep) messages until the connection is closed."""
    return asyncio.run(_session(url, settings, echo, limits))


PEERS = AdapterPeers(start_echo_server, session)
