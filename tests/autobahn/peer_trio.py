"""The Autobahn peers on :mod:`wsmachine.adapters.trio`, through its public API only.

Server role: a :class:`~wsmachine.adapters.trio.Server` whose handler echoes each message,
run by ``trio.run`` in a thread of its own. Client role:
:func:`~wsmachine.adapters.trio.open_websocket` for each case, in a ``trio.run`` per case.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback

import trio

from wsmachine.adapters import ConnectionClosed
from wsmachine.adapters.trio import Server, WebSocket, open_websocket

from .common import (
    POLL_SECONDS,
    AdapterPeers,
    EchoServer,
    Limits,
    PeerSettings,
    SessionResult,
)

__all__ = ["PEERS", "session", "start_echo_server"]

#: Seconds for the server's thread to start listening.
START_SECONDS = 10.0


async def _echo(ws: WebSocket) -> None:
    async for message in ws:
        # Closing meanwhile: the loop ends with the connection. Leaving it here instead would
        # leave the async generator unfinished, which trio reports (a ResourceWarning).
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message)


def start_echo_server(settings: PeerSettings) -> EchoServer:
    """A trio :class:`~wsmachine.adapters.trio.Server` on 127.0.0.1, a port the OS picks,
    in ``trio.run`` in a new thread; stopped with its ``shutdown`` from this thread."""
    started: queue.Queue[tuple[Server, trio.lowlevel.TrioToken] | BaseException] = queue.Queue()
    errors: list[str] = []

    async def main() -> None:
        server = Server(_echo, "127.0.0.1", 0, **settings.options())
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            started.put((server, trio.lowlevel.current_trio_token()))

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # before the start: raised below; after: reported
            errors.append(traceback.format_exc())
            started.put(error)

    thread = threading.Thread(target=run, name="autobahn-trio-server", daemon=True)
    thread.start()
    first = started.get(timeout=START_SECONDS)
    if isinstance(first, BaseException):
        raise RuntimeError("the trio echo server did not start") from first
    server, token = first

    def stop(timeout: float) -> list[str]:
        with contextlib.suppress(trio.RunFinishedError):  # it ended already: see errors
            trio.from_thread.run(server.shutdown, trio_token=token)
        thread.join(timeout)
        alive = [f"thread {thread.name} still runs after stop()"] if thread.is_alive() else []
        return errors + alive

    return EchoServer(f"ws://127.0.0.1:{server.port}", stop)


async def _session(url: str, settings: PeerSettings, echo: bool, limits: Limits) -> SessionResult:
    received: list[str | bytes] = []
    async with open_websocket(url, **settings.options()) as ws:
        while (left := limits.left()) > 0:
            message: str | bytes | None = None
            # Bounded waits, so that the deadline and the stop flag are noticed; a cancelled
            # recv() loses no message.
            with trio.move_on_after(min(left, POLL_SECONDS)):
                try:
                    message = await ws.recv()
                except ConnectionClosed:
                    return SessionResult("closed", received)
            if message is None:
                continue
            if not echo:
                received.append(message)
                continue
            # Closing meanwhile: the next recv() says so.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)
    return SessionResult("deadline", received)


def session(url: str, settings: PeerSettings, *, echo: bool, limits: Limits) -> SessionResult:
    """Connect to ``url`` and echo (or keep) messages until the connection is closed."""
    return trio.run(_session, url, settings, echo, limits)


PEERS = AdapterPeers(start_echo_server, session)
