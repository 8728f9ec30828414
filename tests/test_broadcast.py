"""Broadcast: one message framed once (wsmachine.broadcast) and the adapters' broadcasts.

The core: the prepared frame is the frame send_text/send_binary would queue, it parses back
at a client, and a connection it does not fit (client role, an extension, a fragmented message
under way, not OPEN) refuses it. The adapters, over real sockets on 127.0.0.1: every client
gets every message once and in order, whether the frame was shared or framed per connection
(permessage-deflate), and a closing connection gets none.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.sync.client import connect as ws_sync_connect

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Handshake,
    InvalidArgumentError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.adapters import ConnectionClosed
from wsmachine.adapters.asyncio import WebSocket, broadcast, serve
from wsmachine.adapters.options import ServerOptions
from wsmachine.adapters.selector import Handler, Peer, Server
from wsmachine.adapters.session import Session
from wsmachine.broadcast import PreparedMessage, prepare
from wsmachine.extensions import PerMessageDeflate

TIMEOUT = 30.0


def opened_pair(deflate: bool = False) -> tuple[ServerConnection, ClientConnection]:
    """A server and a client machine past the opening handshake."""
    extensions = [PerMessageDeflate()] if deflate else []
    server = ServerConnection(extensions=extensions)
    client = ClientConnection("example.com", "/", extensions=extensions)
    (handshake,) = server.receive_data(client.data_to_send())
    assert isinstance(handshake, Handshake)
    server.accept(handshake)
    (accepted,) = client.receive_data(server.data_to_send())
    assert isinstance(accepted, Accepted)
    return server, client


# -- the core ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("text", [True, False])
def test_the_prepared_frame_is_what_send_would_queue_and_parses_back(size: int, text: bool) -> None:
    message: str | bytes = (
        "é" * (size // 2) + "a" * (size % 2)
        if text
        else bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    )
    prepared = prepare(message)
    server, client = opened_pair()
    if isinstance(message, str):
        server.send_text(message)
    else:
        server.send_binary(message)
    assert prepared.frame == server.data_to_send()
    assert server.send_prepared(prepared) is True
    frame = server.data_to_send()
    assert frame == prepared.frame
    assert len(prepared) == len(prepared.payload)
    (event,) = client.receive_data(frame)
    assert isinstance(event, Text if text else Binary)
    assert event.data == message
    assert prepared.message == message


def test_prepare_takes_bytes_like_and_refuses_a_lone_surrogate() -> None:
    for data in (bytearray(b"abc"), memoryview(b"abc")):
        prepared = prepare(data)
        assert prepared.message == b"abc" and type(prepared.message) is bytes
        assert prepared.frame == b"\x82\x03abc"
    assert "binary, 3 bytes" in repr(prepared)
    assert "text" in repr(prepare("x"))
    with pytest.raises(InvalidArgumentError):
        prepare("\ud800")


def test_a_connection_the_frame_does_not_fit_refuses_it() -> None:
    prepared = prepare("shared")
    # A client masks its frames.
    server, client = opened_pair()
    assert client.send_prepared(prepared) is False
    assert client.data_to_send() == b""
    # permessage-deflate: its own compressed frame, which the client inflates.
    server, client = opened_pair(deflate=True)
    assert server.extensions
    assert server.send_prepared(prepared) is False
    assert server.data_to_send() == b""
    server.send_text(prepared.message)  # type: ignore[arg-type]
    (event,) = client.receive_data(server.data_to_send())
    assert isinstance(event, Text) and event.data == "shared"
    # A fragmented message under way: the frame would split it.
    server, client = opened_pair()
    server.send_text("part ", final=False)
    assert server.send_prepared(prepared) is False
    server.send_text("end")
    assert server.send_prepared(prepared) is True
    events = client.receive_data(server.data_to_send())
    assert [e.data for e in events] == ["part end", "shared"]  # type: ignore[attr-defined]
    # Closing, closed, still connecting.
    server, client = opened_pair()
    server.close()
    assert server.state is State.CLOSING
    assert server.send_prepared(prepared) is False
    assert ServerConnection().send_prepared(prepared) is False
    # REMOTE_CLOSING: a reply may still be sent, framed by send_text; not the shared frame.
    server, client = opened_pair()
    client.close()
    server.receive_data(client.data_to_send())
    assert server.state is State.REMOTE_CLOSING
    assert server.send_prepared(prepared) is False


def test_the_session_shares_the_frame_or_falls_back_to_send() -> None:
    options = ServerOptions()
    prepared = prepare(b"\x01\x02")
    for deflate in (False, True):
        session = Session.server(
            ServerOptions(extensions=[PerMessageDeflate()] if deflate else []), 0.0
        )
        client = ClientConnection("h", "/", extensions=[PerMessageDeflate()] if deflate else [])
        session.feed(client.data_to_send(), 0.0)
        client.receive_data(session.data_to_send())
        session.send_prepared(prepared)
        data = session.data_to_send()
        assert (data == prepared.frame) is not deflate
        (event,) = client.receive_data(data)
        assert isinstance(event, Binary) and event.data == b"\x01\x02"
        session.close(0.0)
        with pytest.raises(ConnectionClosed):
            session.send_prepared(prepared)
        session.abort(ConnectionResetError())
        with pytest.raises(ConnectionClosed):
            session.send_prepared(prepared)
    assert options.extensions == ()
    assert isinstance(prepared, PreparedMessage)


# -- the asyncio adapter ----------------------------------------------------------------------


def run(test: Callable[[], Any]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT):
            await test()

    asyncio.run(bounded())


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not {what} after {timeout} s") from None


@pytest.mark.parametrize("paced", [True, False])
def test_asyncio_broadcast_reaches_every_client_once_in_order(paced: bool) -> None:
    """Plain clients (the frame shared) and permessage-deflate ones (framed each), a burst of
    broadcasts in one step or one per step; a closing connection is left out."""
    count = 40
    messages: list[str | bytes] = [
        f"message {i}" if i % 3 else bytes([i]) * i for i in range(count)
    ]

    async def handler(ws: WebSocket) -> None:
        await ws.wait_closed()

    async def main() -> None:
        async with (
            serve(handler, "127.0.0.1", 0, extensions=[PerMessageDeflate()]) as server,
            contextlib.AsyncExitStack() as stack,
        ):
            plain = [
                await stack.enter_async_context(
                    ws_connect(f"ws://127.0.0.1:{server.port}/", compression=None)
                )
                for _ in range(6)
            ]
            deflate = [
                await stack.enter_async_context(ws_connect(f"ws://127.0.0.1:{server.port}/"))
                for _ in range(3)
            ]
            closing = await stack.enter_async_context(
                ws_connect(f"ws://127.0.0.1:{server.port}/", compression=None)
            )
            await until(lambda: len(server.connections) == 10, "all open")
            compressed = [ws for ws in server.connections if ws.session.conn.extensions]
            assert len(compressed) == 3
            # The server closes one: it is CLOSING and gets no broadcast.
            local = closing.local_address
            (ours,) = [ws for ws in server.connections if ws.remote_address == local]
            ours.session.close(0.0)
            ours._pump()
            assert ours.state is State.CLOSING
            sent = []
            for message in messages:
                sent.append(broadcast(server.connections, message))
                if paced:
                    await asyncio.sleep(0)
            assert sent == [9] * count
            for ws in plain + deflate:
                assert [await ws.recv() for _ in range(count)] == messages
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(plain[0].recv(), 0.2)  # nothing more

    run(main)


def test_asyncio_broadcast_writes_in_one_loop_callback() -> None:
    """A broadcast schedules one callback for all its connections, and broadcasts of the
    same step share it: one write per connection."""
    writes: list[int] = []

    async def handler(ws: WebSocket) -> None:
        await ws.wait_closed()

    async def main() -> None:
        async with (
            serve(handler, "127.0.0.1", 0) as server,
            contextlib.AsyncExitStack() as stack,
        ):
            clients = [
                await stack.enter_async_context(ws_connect(f"ws://127.0.0.1:{server.port}/"))
                for _ in range(5)
            ]
            await until(lambda: len(server.connections) == 5, "all open")
            loop = asyncio.get_running_loop()
            scheduled: list[object] = []
            call_soon = loop.call_soon

            def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
                scheduled.append(callback)
                return call_soon(callback, *args, **kwargs)

            for ws in server.connections:
                transport: Any = ws._transport
                write = transport.write

                def counted(data: bytes, write: Any = write) -> None:
                    writes.append(len(data))
                    write(data)

                transport.write = counted
            loop.call_soon = counting  # type: ignore[method-assign]
            try:
                assert broadcast(server.connections, "one") == 5
                assert broadcast(server.connections, "two") == 5
            finally:
                del loop.call_soon
            assert len(scheduled) == 1
            for client in clients:
                assert [await client.recv(), await client.recv()] == ["one", "two"]
            assert writes == [10] * 5  # both frames in one write per connection

    run(main)


# -- the selector adapter ---------------------------------------------------------------------


class Recorder(Handler):
    def __init__(self) -> None:
        self.opened: list[Peer] = []

    def on_open(self, peer: Peer) -> None:
        self.opened.append(peer)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_selector_broadcast_reaches_every_client_once_in_order() -> None:
    count = 30
    messages: list[str | bytes] = [f"m{i}" if i % 2 else bytes([i]) * 200 for i in range(count)]
    recorder = Recorder()
    server = Server(recorder, "127.0.0.1", 0, extensions=[PerMessageDeflate()])
    server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/"
        with contextlib.ExitStack() as stack:
            plain = [stack.enter_context(ws_sync_connect(url, compression=None)) for _ in range(4)]
            deflate = [stack.enter_context(ws_sync_connect(url)) for _ in range(2)]
            closing = stack.enter_context(ws_sync_connect(url, compression=None))
            wait_until(lambda: len(recorder.opened) == 7)
            done = threading.Event()
            counts: list[int] = []

            def burst() -> None:
                (ours,) = [p for p in recorder.opened if p.address == closing.local_address]
                ours.close()
                assert ours.state is State.CLOSING
                # A burst in one step, then one more in the next step.
                counts.extend(server.broadcast(m) for m in messages[:-1])
                server.call_soon_threadsafe(final)

            def final() -> None:
                counts.append(server.broadcast(messages[-1]))
                done.set()

            server.call_soon_threadsafe(burst)
            assert done.wait(TIMEOUT)
            assert counts == [6] * count
            for ws in plain + deflate:
                assert [ws.recv(TIMEOUT) for _ in range(count)] == messages
            compressed = [p for p in recorder.opened if p.session.conn.extensions]
            assert len(compressed) == 2
    finally:
        server.stop(timeout=15)


def test_selector_broadcast_of_large_messages_buffers_what_the_kernel_does_not_take() -> None:
    """Frames larger than the socket buffers: the rest waits in the peer's write buffer and
    goes out as the client reads, in order."""
    messages = [bytes([i]) * (512 << 10) for i in range(6)]
    recorder = Recorder()
    server = Server(recorder, "127.0.0.1", 0)
    server.start()
    try:
        url = f"ws://127.0.0.1:{server.port}/"
        with contextlib.ExitStack() as stack:
            clients = []
            for _ in range(3):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)  # fills fast
                sock.connect(("127.0.0.1", server.port))
                clients.append(
                    stack.enter_context(
                        ws_sync_connect(url, sock=sock, compression=None, max_size=None)
                    )
                )
            wait_until(lambda: len(recorder.opened) == 3)
            done = threading.Event()
            counts: list[int] = []
            buffered: list[int] = []

            def burst() -> None:
                counts.extend(server.broadcast(m) for m in messages[:3])
                server.call_soon_threadsafe(paced)

            def paced() -> None:
                buffered.append(sum(p.buffered for p in recorder.opened))
                counts.extend(server.broadcast(m) for m in messages[3:])
                done.set()

            server.call_soon_threadsafe(burst)
            assert done.wait(TIMEOUT)
            assert counts == [3] * len(messages)
            assert len(buffered) == 1
            for ws in clients:
                assert [ws.recv(TIMEOUT) for _ in messages] == messages
            wait_until(lambda: all(p.buffered == 0 for p in recorder.opened))
    finally:
        server.stop(timeout=15)
