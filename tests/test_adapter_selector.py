"""The selector server on real loopback sockets: echo, sizes, many clients, timers,
vanishing peers, back-pressure, shutdown, and the `websockets` library as the client."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as WSConnectionClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from wsmachine import Accepted, Binary, ClientConnection, Close, Ping, Text
from wsmachine.adapters import ConnectionClosed, HTTPResponse, same_origin
from wsmachine.adapters.blocking import connect
from wsmachine.adapters.selector import Handler, Peer, Server
from wsmachine.events import Event, Handshake, HTTPRequest


class Recorder(Handler):
    """Echoes, and records what happened, for the test thread to check."""

    def __init__(self) -> None:
        self.opened: list[Peer] = []
        self.closed: list[ConnectionClosed] = []
        self.errors: list[BaseException] = []
        self.messages: list[str | bytes] = []
        self.done = threading.Event()
        self.lock = threading.Lock()

    def on_open(self, peer: Peer) -> None:
        with self.lock:
            self.opened.append(peer)

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        with self.lock:
            self.messages.append(message)
        peer.send(message)

    def on_close(self, peer: Peer, closed: ConnectionClosed) -> None:
        with self.lock:
            self.closed.append(closed)
        self.done.set()

    def on_error(self, peer: Peer, error: BaseException) -> None:
        with self.lock:
            self.errors.append(error)
        self.done.set()


@contextlib.contextmanager
def running(handler: Handler, **options: Any) -> Iterator[Server]:
    server = Server(handler, "127.0.0.1", 0, **options)
    thread = server.start()
    try:
        yield server
    finally:
        server.stop(timeout=15)
        assert not thread.is_alive()


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


class RawClient:
    """A client on a plain socket with wsmachine's machine: it can misbehave on purpose."""

    def __init__(self, port: int, rcvbuf: int | None = None, **options: Any) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:  # before connect(), so the TCP window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.conn = ClientConnection(f"127.0.0.1:{port}", "/", **options)
        self.sock.sendall(self.conn.data_to_send())
        events = self.read()
        assert isinstance(events[0], Accepted), events

    def read(self) -> list[Event]:
        data = self.sock.recv(65536)
        return self.conn.receive_data(data) if data else self.conn.receive_eof()

    def read_until_eof(self, timeout: float = 5.0) -> list[Event]:
        self.sock.settimeout(timeout)
        events: list[Event] = []
        for _ in range(10_000):
            data = self.sock.recv(65536)
            if not data:
                return events
            events += self.conn.receive_data(data)
        raise AssertionError("no EOF")

    def close(self) -> None:
        self.sock.close()


def test_echo_text_and_binary_with_websockets_client() -> None:
    recorder = Recorder()
    with running(recorder) as server, ws_connect(url(server)) as ws:
        ws.send("héllo ✓")
        assert ws.recv(5) == "héllo ✓"
        ws.send(b"\x00\xffbinary")
        assert ws.recv(5) == b"\x00\xffbinary"
        ws.send("")
        assert ws.recv(5) == ""
    wait_until(lambda: recorder.closed)
    assert recorder.closed[0].ok
    assert recorder.closed[0].code == 1000


def test_large_messages_both_ways() -> None:
    size = 8 << 20
    payload = bytes(range(256)) * (size // 256)
    with (
        running(Recorder(), max_message_size=16 << 20, write_high_water=256 << 10) as server,
        ws_connect(url(server), max_size=16 << 20) as ws,
    ):
        ws.send(payload)
        assert ws.recv(20) == payload
        text = "é" * (3 << 20)
        ws.send(text)
        assert ws.recv(20) == text


def test_message_over_the_limit_closes_with_1009() -> None:
    recorder = Recorder()
    with running(recorder, max_message_size=1000) as server, ws_connect(url(server)) as ws:
        ws.send(b"x" * 1001)
        with pytest.raises(WSConnectionClosed) as info:
            ws.recv(5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009
    wait_until(lambda: recorder.closed)
    assert recorder.closed[0].local is not None
    assert recorder.closed[0].local.code == 1009


def test_many_concurrent_clients() -> None:
    clients = 40
    rounds = 20
    recorder = Recorder()
    failures: list[BaseException] = []

    def chat(index: int) -> None:
        try:
            with ws_connect(url(recorder_server)) as ws:
                for i in range(rounds):
                    message = f"client {index} message {i}"
                    ws.send(message)
                    assert ws.recv(10) == message
        except BaseException as exc:
            failures.append(exc)

    with running(recorder) as recorder_server:
        threads = [threading.Thread(target=chat, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not failures, failures[:3]
        wait_until(lambda: len(recorder.closed) == clients)
    assert len(recorder.messages) == clients * rounds
    assert all(closed.ok for closed in recorder.closed)


def test_broadcast_reaches_every_client() -> None:
    class Broadcast(Recorder):
        server: Server

        def on_message(self, peer: Peer, message: str | bytes) -> None:
            self.server.broadcast(message)

    handler = Broadcast()
    with running(handler) as server:
        handler.server = server
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(ws_connect(url(server))) for _ in range(5)]
            wait_until(lambda: len(handler.opened) == 5)
            sockets[0].send("to all")
            assert [ws.recv(5) for ws in sockets] == ["to all"] * 5
            # From another thread, through call_soon_threadsafe.
            done = threading.Event()
            counts: list[int] = []

            def from_loop() -> None:
                counts.append(server.broadcast(b"bin", exclude=handler.opened[0]))
                done.set()

            server.call_soon_threadsafe(from_loop)
            assert done.wait(5)
            assert counts == [4]


def test_handshake_timeout_drops_a_silent_client() -> None:
    recorder = Recorder()
    with running(recorder, open_timeout=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
            start = time.monotonic()
            assert sock.recv(1024) == b""  # the server closed the connection
            elapsed = time.monotonic() - start
        assert 0.2 < elapsed < 3
        wait_until(lambda: recorder.errors)
        assert isinstance(recorder.errors[0], TimeoutError)
        assert not server.peers
    assert not recorder.opened


def test_peer_vanishing_mid_message() -> None:
    recorder = Recorder()
    with running(recorder) as server:
        client = RawClient(server.port)
        wait_until(lambda: recorder.opened)
        client.conn.send_binary(b"x" * 100_000)
        frame = client.conn.data_to_send()
        client.sock.sendall(frame[: len(frame) // 2])
        client.close()
        wait_until(lambda: recorder.closed)
        closed = recorder.closed[0]
        assert closed.code == 1006
        assert closed.remote is None
        assert not recorder.messages
        assert not server.peers


def test_peer_resetting_the_connection() -> None:
    recorder = Recorder()
    with running(recorder) as server:
        client = RawClient(server.port)
        wait_until(lambda: recorder.opened)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST
        wait_until(lambda: recorder.closed)
        assert recorder.closed[0].code == 1006
        assert not server.peers


def test_close_timeout_drops_a_peer_that_never_answers() -> None:
    class Closer(Recorder):
        def on_open(self, peer: Peer) -> None:
            super().on_open(peer)
            peer.close(1000, "go")

    recorder = Closer()
    with running(recorder, close_timeout=0.3) as server:
        client = RawClient(server.port)
        client.sock.settimeout(5)
        # Read the server's Close but never send ours back (auto_pong does not echo Close
        # until receive_data is called: we stop reading here).
        start = time.monotonic()
        wait_until(lambda: recorder.closed, timeout=5)
        assert time.monotonic() - start < 3
        closed = recorder.closed[0]
        assert isinstance(closed.error, TimeoutError)
        assert closed.local is not None
        assert closed.local.code == 1000
        client.close()


def test_keepalive_ping_timeout_closes_with_1011() -> None:
    recorder = Recorder()
    with running(recorder, ping_interval=0.1, ping_timeout=0.2, close_timeout=0.5) as server:
        client = RawClient(server.port, auto_pong=False)
        events = client.read()
        assert any(isinstance(event, Ping) for event in events)
        client.sock.sendall(client.conn.data_to_send())  # nothing: auto_pong is off
        events = client.read_until_eof()
        close = next(event for event in events if isinstance(event, Close))
        assert close.code == 1011
        wait_until(lambda: recorder.closed)
        assert isinstance(recorder.closed[0].error, TimeoutError)
        client.close()


def test_keepalive_keeps_a_live_client() -> None:
    recorder = Recorder()
    with (
        running(recorder, ping_interval=0.05, ping_timeout=0.5) as server,
        ws_connect(url(server)) as ws,
    ):
        time.sleep(0.4)  # several Ping / Pong rounds (the websockets client answers)
        ws.send("still here")
        assert ws.recv(5) == "still here"
    wait_until(lambda: recorder.closed)
    assert recorder.closed[0].ok


def test_graceful_shutdown_closes_everyone_with_1001() -> None:
    recorder = Recorder()
    server = Server(recorder, "127.0.0.1", 0)
    thread = server.start()
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(ws_connect(url(server))) for _ in range(5)]
        wait_until(lambda: len(recorder.opened) == 5)
        server.shutdown()
        for ws in sockets:
            with pytest.raises(WSConnectionClosed) as info:
                ws.recv(5)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1001
    thread.join(10)
    assert not thread.is_alive()
    assert len(recorder.closed) == 5
    assert all(closed.local and closed.local.code == 1001 for closed in recorder.closed)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_origin_check_refuses_with_403_and_a_body() -> None:
    with running(Recorder(), check_origin=same_origin) as server:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(url(server), origin="http://evil.example")  # type: ignore[arg-type]
        response = info.value.response
        assert response.status_code == 403
        assert b"evil.example" in response.body
        host = f"http://127.0.0.1:{server.port}"
        with ws_connect(url(server), origin=host) as ws:  # type: ignore[arg-type]
            ws.send("same origin")
            assert ws.recv(5) == "same origin"


def test_on_handshake_can_refuse_and_subprotocols_pass_through() -> None:
    class Picky(Recorder):
        def on_handshake(self, peer: Peer, handshake: Handshake) -> HTTPResponse | None:
            if handshake.path != "/ok":
                return HTTPResponse(401, [("content-type", "text/plain")], b"who are you")
            return None

    recorder = Picky()
    with running(recorder, subprotocols=["chat", "superchat"]) as server:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(url(server, "/no"))
        assert info.value.response.status_code == 401
        with ws_connect(url(server, "/ok"), subprotocols=["superchat"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "superchat"
        wait_until(lambda: recorder.opened)
        assert recorder.opened[0].subprotocol == "superchat"


def test_plain_http_on_the_same_port() -> None:
    class Pages(Recorder):
        def on_http(self, request: HTTPRequest) -> HTTPResponse:
            if request.path == "/health":
                return HTTPResponse(200, [("content-type", "text/plain")], b"ok")
            return super().on_http(request)

    def get(port: int, path: str) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    with running(Pages()) as server:
        health = get(server.port, "/health")
        assert health.startswith(b"HTTP/1.1 200 ")
        assert health.endswith(b"\r\n\r\nok")
        other = get(server.port, "/other")
        assert other.startswith(b"HTTP/1.1 426 ")
        assert b"WebSocket" in other


def test_back_pressure_pauses_reading_and_the_limit_drops_the_peer() -> None:
    chunk = b"z" * 65536
    states: list[bool] = []

    class Flood(Recorder):
        def on_open(self, peer: Peer) -> None:
            super().on_open(peer)
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        def on_message(self, peer: Peer, message: str | bytes) -> None:
            for _ in range(40):  # 2.5 MiB toward a client that does not read
                peer.send(chunk)
                states.append(peer.paused)

    recorder = Flood()
    with running(recorder, write_high_water=256 << 10, write_limit=1 << 20) as server:
        client = RawClient(server.port, rcvbuf=4096)
        client.conn.send_text("go")
        client.sock.sendall(client.conn.data_to_send())
        wait_until(lambda: recorder.closed)
        closed = recorder.closed[0]
        assert isinstance(closed.error, BufferError)
        assert not server.peers
        client.close()
    assert True in states  # paused first, then dropped


def test_paused_peer_resumes_when_it_drains() -> None:
    seen: list[tuple[bool, int]] = []

    class Burst(Recorder):
        def on_open(self, peer: Peer) -> None:
            super().on_open(peer)
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        def on_message(self, peer: Peer, message: str | bytes) -> None:
            if message == "burst":
                for _ in range(16):
                    peer.send(b"y" * 65536)  # 1 MiB: above the high-water mark
                seen.append((peer.paused, peer.buffered))
            else:
                peer.send(message)

    recorder = Burst()
    with (
        running(recorder, write_high_water=128 << 10) as server,
        connect(url(server), max_queue=64) as ws,
    ):
        ws.send("burst")
        for _ in range(16):
            assert ws.recv(10) == b"y" * 65536
        ws.send("after")  # read again once the buffer drained
        assert ws.recv(10) == "after"
    assert seen and seen[0][0] is True and seen[0][1] > 128 << 10


def test_exception_in_a_callback_closes_with_1011() -> None:
    class Broken(Recorder):
        def on_message(self, peer: Peer, message: str | bytes) -> None:
            raise RuntimeError("boom")

    recorder = Broken()
    with running(recorder) as server, ws_connect(url(server)) as ws:
        ws.send("x")
        with pytest.raises(WSConnectionClosed) as info:
            ws.recv(5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1011
    wait_until(lambda: recorder.errors)
    assert isinstance(recorder.errors[0], RuntimeError)


def test_bad_request_is_answered_by_the_machine() -> None:
    recorder = Recorder()
    with running(recorder) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400 ")
        wait_until(lambda: recorder.errors)
    assert not recorder.opened


def test_timers_run_on_the_loop() -> None:
    fired: list[float] = []
    with running(Recorder()) as server:
        start = time.monotonic()

        def schedule() -> None:
            server.call_later(0.1, lambda: fired.append(time.monotonic() - start))
            server.call_later(0.05, lambda: fired.append(-1.0)).cancel()

        server.call_soon_threadsafe(schedule)
        wait_until(lambda: fired)
        assert 0.05 < fired[0] < 2
        assert -1.0 not in fired


def test_permessage_deflate_with_websockets_client() -> None:
    from wsmachine.extensions import PerMessageDeflate

    recorder = Recorder()
    text = "compressible " * 10_000
    with (
        running(recorder, extensions=[PerMessageDeflate()]) as server,
        ws_connect(url(server)) as ws,  # websockets offers permessage-deflate by default
    ):
        assert [ext.name for ext in ws.protocol.extensions] == ["permessage-deflate"]
        for _ in range(3):
            ws.send(text)
            assert ws.recv(5) == text
        ws.send(b"\x00" * 100_000)
        assert ws.recv(5) == b"\x00" * 100_000


def test_messages_in_the_read_that_closes_are_still_answered() -> None:
    """A message and the Close (or a bad frame) in one write: the echo precedes our Close."""
    recorder = Recorder()
    with running(recorder) as server:
        client = RawClient(server.port)
        client.conn.send_text("one")
        client.conn.send_binary(b"two")
        client.conn.close(1000, "bye")
        client.sock.sendall(client.conn.data_to_send())  # all three frames in one write
        events = client.read_until_eof()
        client.close()
    assert events[:3] == [Text(data="one"), Binary(data=b"two"), Close(code=1000)]

    recorder = Recorder()
    with running(recorder) as server:
        client = RawClient(server.port)
        client.conn.send_text("kept")
        wire = client.conn.data_to_send() + b"\x83\x80abcd"  # then opcode 3: reserved
        client.sock.sendall(wire)
        events = client.read_until_eof()
        client.close()
    assert events[0] == Text(data="kept")
    assert isinstance(events[1], Close) and events[1].code == 1002
