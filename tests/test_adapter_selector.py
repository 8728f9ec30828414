"""The selector adapter on real loopback sockets, both roles: echo, sizes, many connections,
timers, vanishing peers, back-pressure, shutdown, and the `websockets` library as the client
of our server and as the server of our client."""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from websockets.exceptions import ConnectionClosed as WSConnectionClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import ServerConnection as WSServerConnection
from websockets.sync.server import serve as ws_serve

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    OriginPolicy,
    Ping,
    ServerConnection,
    Text,
)
from wsmachine.adapters import CloseInfo, ConnectionClosed, HandshakeError, HTTPResponse
from wsmachine.adapters.blocking import connect
from wsmachine.adapters.selector import Handler, Loop, Peer, Server
from wsmachine.events import Event, Handshake, HTTPRequest

T = TypeVar("T")

SAME_ORIGIN = OriginPolicy(allow_missing=True, allow_same_host=True)


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
    with running(Recorder(), origin_policy=SAME_ORIGIN) as server:
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
    # After each send: (queued?, still open?, paused?, bytes waiting in the write buffer).
    states: list[tuple[bool, bool, bool, int]] = []

    class Flood(Recorder):
        def on_open(self, peer: Peer) -> None:
            super().on_open(peer)
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        def on_message(self, peer: Peer, message: str | bytes) -> None:
            for _ in range(40):  # 2.5 MiB toward a client that does not read
                queued = peer.send(chunk)
                states.append((queued, peer.open, peer.paused, peer.buffered))

    recorder = Flood()
    high_water, limit = 256 << 10, 1 << 20
    with running(recorder, write_high_water=high_water, write_limit=limit) as server:
        client = RawClient(server.port, rcvbuf=4096)
        client.conn.send_text("go")
        client.sock.sendall(client.conn.data_to_send())
        wait_until(lambda: recorder.closed)
        closed = recorder.closed[0]
        assert isinstance(closed.error, BufferError)
        assert not server.peers
        client.close()
    queued, still_open, paused, buffered = (list(column) for column in zip(*states, strict=True))
    # Order: open and reading, then open and paused, then dropped by the send that passed the
    # limit (queued, then closed); every later send refused. Never back.
    first_pause = paused.index(True)
    drop = still_open.index(False)
    assert 0 < first_pause < drop < len(states) - 1
    assert not any(paused[:first_pause]) and all(paused[first_pause:drop])
    assert all(still_open[:drop]) and not any(still_open[drop:])
    assert all(queued[: drop + 1]) and not any(queued[drop + 1 :])
    # The pause came with the buffer over the high-water mark, the drop past the limit.
    assert buffered[first_pause] > high_water
    assert all(size <= limit for size in buffered[:drop])
    assert "over the limit" in str(closed.error)


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


# -- the client role: Loop.connect ------------------------------------------------------------


class Client(Handler):
    """A client handler that records what happened, for the test thread to check."""

    def __init__(self, *, send_on_open: tuple[str | bytes, ...] = ()) -> None:
        self.send_on_open = send_on_open
        self.opened = threading.Event()
        self.messages: queue.Queue[str | bytes] = queue.Queue()
        self.closed: list[ConnectionClosed] = []
        self.errors: list[BaseException] = []
        self.done = threading.Event()  # on_close, or on_error before the connection opened
        self.peer: Peer | None = None

    def on_open(self, peer: Peer) -> None:
        self.peer = peer
        self.opened.set()
        for message in self.send_on_open:
            peer.send(message)

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        self.messages.put(message)

    def on_close(self, peer: Peer, closed: ConnectionClosed) -> None:
        self.closed.append(closed)
        self.done.set()

    def on_error(self, peer: Peer, error: BaseException) -> None:
        self.errors.append(error)
        if not self.opened.is_set():
            self.done.set()

    def recv(self, timeout: float = 5.0) -> str | bytes:
        return self.messages.get(timeout=timeout)


@contextlib.contextmanager
def client_loop() -> Iterator[Loop]:
    loop = Loop()
    thread = loop.start()
    try:
        yield loop
    finally:
        loop.stop(timeout=15)
        assert not thread.is_alive()


def in_loop(loop: Loop, function: Callable[[], T]) -> T:
    """Run ``function`` in the loop's thread and return its result (or raise its error)."""
    box: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def call() -> None:
        try:
            box.append(function())
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    loop.call_soon_threadsafe(call)
    assert done.wait(5), "the loop did not run the call"
    if failure:
        raise failure[0]
    return box[0]


def open_client(loop: Loop, address: str, handler: Client, **options: Any) -> Peer:
    return in_loop(loop, lambda: loop.connect(address, handler, **options))


def close_all(peers: list[Peer], code: int, reason: str) -> int:
    for peer in peers:
        peer.close(code, reason)
    return len(peers)


def ws_url(port: int, path: str = "/") -> str:
    return f"ws://127.0.0.1:{port}{path}"


@contextlib.contextmanager
def websockets_server(
    handler: Callable[[WSServerConnection], None], **options: Any
) -> Iterator[int]:
    with ws_serve(handler, "127.0.0.1", 0, **options) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield server.socket.getsockname()[1]
        finally:
            server.shutdown()
            thread.join(10)
            assert not thread.is_alive()


@contextlib.contextmanager
def raw_server(serve_one: Callable[[socket.socket], None]) -> Iterator[int]:
    """A listener whose one connection ``serve_one`` handles, in a thread (blocking, 5 s)."""
    listener = socket.create_server(("127.0.0.1", 0))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            listener.settimeout(5)
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(5)
                serve_one(sock)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()
        assert not thread.is_alive()
    assert not failures, failures


def raw_accept(sock: socket.socket, **options: Any) -> ServerConnection:
    """The server side of an opening handshake on a blocking socket, with the bare machine."""
    conn = ServerConnection(**options)
    for _ in range(100):
        events = conn.receive_data(sock.recv(65536))
        if events:
            assert isinstance(events[0], Handshake), events
            conn.accept(events[0])
            sock.sendall(conn.data_to_send())
            return conn
    raise AssertionError("no handshake")


def test_client_echo_against_our_server() -> None:
    recorder = Recorder()
    client = Client()
    with running(recorder, subprotocols=["chat"]) as server, client_loop() as loop:
        peer = open_client(loop, url(server, "/room?x=1"), client, subprotocols=["chat"])
        assert client.opened.wait(5)
        assert peer.client and peer.open
        assert peer.subprotocol == "chat"
        assert peer.accepted is not None and peer.accepted.subprotocol == "chat"
        assert peer.address == ("127.0.0.1", server.port)
        for message in ("héllo ✓", b"\x00\xffbinary", "", b""):
            assert in_loop(loop, lambda m=message: peer.send(m))  # type: ignore[misc]
            assert client.recv() == message
        wait_until(lambda: recorder.opened)
        assert recorder.opened[0].handshake is not None
        assert recorder.opened[0].handshake.path == "/room?x=1"
        in_loop(loop, peer.close)
        assert client.done.wait(5)
        wait_until(lambda: recorder.closed)
        assert peer.done and not loop.peers
    assert client.closed[0].ok
    assert recorder.closed[0].ok
    assert not client.errors


def test_client_large_messages_with_back_pressure() -> None:
    size = 8 << 20
    payload = bytes(range(256)) * (size // 256)
    text = "é" * (3 << 20)
    client = Client()
    with (
        running(Recorder(), max_message_size=16 << 20, write_high_water=256 << 10) as server,
        client_loop() as loop,
    ):
        peer = open_client(
            loop, url(server), client, max_message_size=16 << 20, write_high_water=128 << 10
        )
        assert client.opened.wait(5)
        buffered = in_loop(loop, lambda: (peer.send(payload), peer.buffered)[1])
        assert buffered > 0  # the kernel did not take 8 MiB at once: the rest waits
        assert client.recv(20) == payload
        in_loop(loop, lambda: peer.send(text))
        assert client.recv(20) == text
        in_loop(loop, peer.close)
        assert client.done.wait(5)
    assert client.closed[0].ok


def test_many_clients_on_one_loop() -> None:
    clients = [Client(send_on_open=tuple(f"{i}:{n}" for n in range(10))) for i in range(50)]
    recorder = Recorder()
    with running(recorder) as server, client_loop() as loop:

        def connect_all() -> list[Peer]:
            return [loop.connect(url(server), client) for client in clients]

        peers = in_loop(loop, connect_all)
        assert len(loop.peers) == 50
        for i, client in enumerate(clients):
            assert [client.recv(10) for _ in range(10)] == [f"{i}:{n}" for n in range(10)]
        in_loop(loop, lambda: close_all(peers, 1000, "done"))
        for client in clients:
            assert client.done.wait(10)
            assert client.closed[0].ok
        wait_until(lambda: len(recorder.closed) == 50)
    assert len(recorder.messages) == 500


def test_a_server_connects_to_itself_on_its_own_loop() -> None:
    """Both roles on one thread: the server's loop opens 20 clients to its own port."""
    recorder = Recorder()
    clients = [Client(send_on_open=("ping", b"pong")) for _ in range(20)]
    with running(recorder) as server:
        peers = in_loop(server, lambda: [server.connect(url(server), c) for c in clients])
        for client in clients:
            assert client.recv() == "ping"
            assert client.recv() == b"pong"
        assert sum(peer.client for peer in server.peers) == 20
        assert len(server.peers) == 40
        server_peers = [p for p in server.peers if not p.client]
        assert all(p.open for p in server_peers)
        in_loop(server, lambda: close_all(peers, 4000, "bye"))
        for client in clients:
            assert client.done.wait(5)
        wait_until(lambda: not server.peers)
    assert all(c.closed[0].remote == CloseInfo(4000, "") for c in clients)
    assert all(closed.remote == CloseInfo(4000, "bye") for closed in recorder.closed)


@pytest.mark.parametrize(
    ("offer", "compression"),
    [(False, None), (True, None), (False, "deflate"), (True, "deflate")],
    ids=["plain", "offered-refused", "server-only", "permessage-deflate"],
)
def test_client_against_websockets_server(offer: bool, compression: str | None) -> None:
    from wsmachine.extensions import PerMessageDeflate

    def echo(ws: WSServerConnection) -> None:
        for message in ws:
            if message == "close me":
                ws.close(4001, "server bye")
                return
            ws.send(message)

    text = "compressible " * 20_000
    client = Client()
    with (
        websockets_server(echo, compression=compression, max_size=16 << 20) as port,
        client_loop() as loop,
    ):
        extensions = [PerMessageDeflate()] if offer else []
        peer = open_client(
            loop, ws_url(port), client, extensions=extensions, max_message_size=16 << 20
        )
        assert client.opened.wait(5)
        agreed = [ext.name for ext in peer.conn.extensions]
        assert agreed == (["permessage-deflate"] if offer and compression else [])
        for message in (text, "é✓", b"\x00" * 100_000, bytes(range(256)) * 20_000):
            in_loop(loop, lambda m=message: peer.send(m))  # type: ignore[misc]
            assert client.recv(10) == message
        in_loop(loop, lambda: peer.send("close me"))
        assert client.done.wait(5)
    closed = client.closed[0]
    assert closed.remote == CloseInfo(4001, "server bye")
    assert closed.local == CloseInfo(4001)
    assert closed.error is None


def test_client_closes_with_code_and_reason_against_websockets_server() -> None:
    codes: list[tuple[int | None, str | None]] = []

    def echo(ws: WSServerConnection) -> None:
        with contextlib.suppress(WSConnectionClosed):
            for message in ws:
                ws.send(message)
        codes.append((ws.close_code, ws.close_reason))

    client = Client(send_on_open=("hi",))
    with websockets_server(echo) as port, client_loop() as loop:
        peer = open_client(loop, ws_url(port), client)
        assert client.recv() == "hi"
        start = time.monotonic()
        in_loop(loop, lambda: peer.close(4002, "client bye ✓"))
        assert client.done.wait(5)
        assert time.monotonic() - start < 2  # the server closed TCP: no close_timeout wait
    assert codes == [(4002, "client bye ✓")]
    closed = client.closed[0]
    assert closed.local == CloseInfo(4002, "client bye ✓")
    assert closed.remote == CloseInfo(4002, "client bye ✓")
    assert closed.error is None


def test_clean_close_with_code_and_reason_both_ways_against_our_server() -> None:
    class CloseOnRequest(Recorder):
        def on_message(self, peer: Peer, message: str | bytes) -> None:
            if message == "close me":
                peer.close(4001, "server bye")
            else:
                super().on_message(peer, message)

    # The client closes.
    recorder = CloseOnRequest()
    client = Client()
    with running(recorder) as server, client_loop() as loop:
        peer = open_client(loop, url(server), client, close_timeout=10)
        assert client.opened.wait(5)
        start = time.monotonic()
        in_loop(loop, lambda: peer.close(4000, "client bye"))
        assert client.done.wait(5)
        assert time.monotonic() - start < 2  # the server closed TCP first, at once
        wait_until(lambda: recorder.closed)
    assert client.closed[0].local == CloseInfo(4000, "client bye")
    assert client.closed[0].remote == CloseInfo(4000)
    assert client.closed[0].error is None
    assert recorder.closed[0].remote == CloseInfo(4000, "client bye")
    assert recorder.closed[0].error is None

    # The server closes.
    recorder = CloseOnRequest()
    client = Client(send_on_open=("close me",))
    with running(recorder) as server, client_loop() as loop:
        open_client(loop, url(server), client)
        assert client.done.wait(5)
        wait_until(lambda: recorder.closed)
    assert client.closed[0].remote == CloseInfo(4001, "server bye")
    assert client.closed[0].local == CloseInfo(4001)
    assert client.closed[0].error is None
    assert recorder.closed[0].local == CloseInfo(4001, "server bye")
    assert recorder.closed[0].remote == CloseInfo(4001)


def test_client_waits_for_the_server_to_close_tcp_then_closes_it_itself() -> None:
    """RFC 6455 §7.1.1: after the closing handshake the client waits for the server's FIN; a
    server that never sends it is dropped at close_timeout, and the close is still clean."""
    seen: list[float] = []

    def lingering(sock: socket.socket) -> None:
        conn = raw_accept(sock)
        for _ in range(100):
            events = conn.receive_data(sock.recv(65536))
            if any(isinstance(event, Close) for event in events):
                break
        sock.sendall(conn.data_to_send())  # our Close answer; TCP stays open
        start = time.monotonic()
        assert sock.recv(65536) == b""  # the client gave up waiting and closed
        seen.append(time.monotonic() - start)

    client = Client()
    with raw_server(lingering) as port, client_loop() as loop:
        peer = open_client(loop, ws_url(port), client, close_timeout=0.4)
        assert client.opened.wait(5)
        in_loop(loop, lambda: peer.close(1000, "bye"))
        assert client.done.wait(5)
    assert 0.2 < seen[0] < 3
    assert client.closed[0].ok  # both Close frames went: the TCP close is no error
    assert client.closed[0].remote == CloseInfo(1000)


def test_client_open_timeout_against_a_listener_that_never_answers() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel connects; nobody reads
    client = Client()
    try:
        with client_loop() as loop:
            start = time.monotonic()
            peer = open_client(loop, ws_url(listener.getsockname()[1]), client, open_timeout=0.3)
            assert client.done.wait(5)
            elapsed = time.monotonic() - start
            wait_until(lambda: peer.done)
    finally:
        listener.close()
    assert 0.25 < elapsed < 3
    assert len(client.errors) == 1
    assert isinstance(client.errors[0], TimeoutError)
    assert "opening handshake" in str(client.errors[0])
    assert not client.opened.is_set() and not client.closed


def test_client_connection_refused_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    client = Client()
    with client_loop() as loop:
        peer = open_client(loop, ws_url(port), client)
        assert client.done.wait(5)
        wait_until(lambda: peer.done)
    assert len(client.errors) == 1
    assert isinstance(client.errors[0], ConnectionRefusedError)
    assert not client.closed


def test_client_tries_every_address_of_a_name() -> None:
    """``localhost`` may resolve to ::1 first, where nothing listens: 127.0.0.1 comes next."""
    client = Client(send_on_open=("via localhost",))
    with running(Recorder()) as server, client_loop() as loop:
        open_client(loop, f"ws://localhost:{server.port}/", client)
        assert client.recv() == "via localhost"
    assert client.closed and client.closed[0].ok


def test_client_falls_back_to_the_next_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with several addresses: the first refuses, the second answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "two.invalid":
            return real(host, port, *args, **kwargs)
        tcp = (socket.AF_INET, socket.SOCK_STREAM, 6, "")
        return [(*tcp, ("127.0.0.1", dead)), (*tcp, ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    client = Client(send_on_open=("second address",))
    with running(Recorder()) as server, client_loop() as loop:
        peer = open_client(loop, f"ws://two.invalid:{server.port}/", client)
        assert client.recv() == "second address"
        assert peer.address == ("127.0.0.1", server.port)
        assert not client.errors


def test_server_vanishing_mid_message() -> None:
    def vanish(sock: socket.socket) -> None:
        conn = raw_accept(sock)
        conn.send_binary(b"x" * 100_000)
        frame = conn.data_to_send()
        sock.sendall(frame[: len(frame) // 2])

    client = Client()
    with raw_server(vanish) as port, client_loop() as loop:
        open_client(loop, ws_url(port), client)
        assert client.done.wait(5)
    assert client.messages.empty()
    closed = client.closed[0]
    assert closed.code == 1006
    assert closed.remote is None and closed.local is None
    assert closed.error is not None
    assert not closed.ok


def test_refused_handshake_403_with_body_is_reported() -> None:
    client = Client()
    with (
        running(Recorder(), origin_policy=SAME_ORIGIN) as server,
        client_loop() as loop,
    ):
        peer = open_client(loop, url(server), client, origin="http://evil.example")
        assert client.done.wait(5)
        wait_until(lambda: peer.done)
    [error] = client.errors
    assert isinstance(error, HandshakeError)
    assert error.status_code == 403
    assert b"evil.example" in error.body
    assert "403" in str(error) and "evil.example" in str(error)
    assert not client.opened.is_set() and not client.closed


def test_refused_handshake_from_websockets_server() -> None:
    def refuse(connection: Any, request: Any) -> Any:
        return connection.respond(403, "members only\n")

    client = Client()
    with websockets_server(lambda ws: None, process_request=refuse) as port, client_loop() as loop:
        open_client(loop, ws_url(port), client)
        assert client.done.wait(5)
    [error] = client.errors
    assert isinstance(error, HandshakeError)
    assert error.status_code == 403
    assert error.body == b"members only\n"
    assert "members only" in str(error)


def test_handshake_cut_short_and_invalid_answers_are_reported() -> None:
    def hang_up(sock: socket.socket) -> None:
        sock.recv(65536)  # the request; then close without an answer

    def nonsense(sock: socket.socket) -> None:
        sock.recv(65536)
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")

    for serve_one in (hang_up, nonsense):
        client = Client()
        with raw_server(serve_one) as port, client_loop() as loop:
            open_client(loop, ws_url(port), client)
            assert client.done.wait(5)
        [error] = client.errors
        assert isinstance(error, HandshakeError), error
        assert not client.closed


def ws_echo(ws: WSServerConnection) -> None:
    for message in ws:
        ws.send(message)


def test_client_keepalive_against_websockets_server() -> None:
    client = Client()
    with websockets_server(ws_echo) as port, client_loop() as loop:
        peer = open_client(loop, ws_url(port), client, ping_interval=0.05, ping_timeout=0.5)
        assert client.opened.wait(5)
        time.sleep(0.4)  # several Ping / Pong rounds
        in_loop(loop, lambda: peer.send("still here"))
        assert client.recv() == "still here"
        assert not client.errors


def test_client_keepalive_ping_timeout_closes_with_1011() -> None:
    close_codes: list[int] = []

    def deaf(sock: socket.socket) -> None:
        conn = raw_accept(sock, auto_pong=False)
        for _ in range(100):  # never answers the Pings; reads until the client's Close
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, Close):
                    close_codes.append(event.code)
                    sock.sendall(conn.data_to_send())
                    return

    client = Client()
    with raw_server(deaf) as port, client_loop() as loop:
        open_client(loop, ws_url(port), client, ping_interval=0.1, ping_timeout=0.2)
        assert client.done.wait(5)
    assert close_codes == [1011]
    assert isinstance(client.errors[0], TimeoutError)
    assert client.closed[0].local == CloseInfo(1011, "keepalive ping timeout")


def test_loop_shutdown_closes_client_connections_with_1001() -> None:
    recorder = Recorder()
    clients = [Client() for _ in range(3)]
    with running(recorder) as server:
        loop = Loop()
        thread = loop.start()
        for client in clients:
            open_client(loop, url(server), client)
            assert client.opened.wait(5)
        loop.stop(timeout=10)
        assert not thread.is_alive()
        wait_until(lambda: len(recorder.closed) == 3)
    assert all(c.closed[0].local == CloseInfo(1001, "going away") for c in clients)
    assert all(closed.remote == CloseInfo(1001, "going away") for closed in recorder.closed)
    with pytest.raises(RuntimeError):
        loop.connect(url(server), Client())


def test_client_connect_refuses_bad_urls() -> None:
    with Loop() as loop:
        with pytest.raises(ValueError, match="TLS"):
            loop.connect("wss://127.0.0.1:1/", Client())
        with pytest.raises(ValueError, match="scheme"):
            loop.connect("http://127.0.0.1:1/", Client())
        assert not loop.peers


def test_client_driven_by_run_once_without_a_thread() -> None:
    """The documented idiom: a script runs the loop itself until its connection is done."""

    class Hello(Client):
        def on_message(self, peer: Peer, message: str | bytes) -> None:
            super().on_message(peer, message)
            peer.close(1000, "thanks")

    client = Hello(send_on_open=("hello",))
    with running(Recorder()) as server, Loop() as loop:
        peer = loop.connect(url(server), client)
        deadline = time.monotonic() + 10
        while not peer.done:
            assert time.monotonic() < deadline
            loop.run_once(0.5)
    assert client.recv(0) == "hello"
    assert client.closed[0].ok


def test_client_on_a_socket_of_its_own() -> None:
    """``sock=``: a socket connected elsewhere (a proxy, a test) carries the connection."""
    client = Client(send_on_open=("over my socket",))
    with running(Recorder()) as server, client_loop() as loop:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        peer = open_client(loop, "ws://example.test/", client, sock=sock)
        assert client.recv() == "over my socket"
        assert peer.address == ("127.0.0.1", server.port)
        in_loop(loop, peer.close)
        assert client.done.wait(5)
    assert client.closed[0].ok
    assert sock.fileno() == -1  # the loop closed it


def test_one_mib_messages_are_read_into_the_machine(receive_paths: dict[str, int]) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    text = "ü✓" * (1 << 18)  # 1.25 MiB of UTF-8
    with (
        running(Recorder(), max_message_size=2 << 20) as server,
        ws_connect(url(server), max_size=2 << 20) as ws,
    ):
        for _ in range(3):
            ws.send(payload)
            assert ws.recv(20) == payload
            ws.send(text)
            assert ws.recv(20) == text
    # Every byte the server took went through recv_into() into its machine's buffer.
    assert receive_paths["data"] == 0
    assert receive_paths["into_bytes"] >= 3 * (len(payload) + len(text.encode()))


class CountingSocket:
    """Stands in for a peer's socket and counts its ``send()`` calls (the rest delegates)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends = 0

    def send(self, data: Any) -> int:
        self.sends += 1
        return self._sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BatchRecorder(Recorder):
    """Echoes; counts the socket's sends, and notes them after each big message's sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[CountingSocket] = []
        self.sends_after_big: list[int] = []

    def on_open(self, peer: Peer) -> None:
        counting = CountingSocket(peer.sock)
        peer.sock = counting  # type: ignore[assignment]
        self.sockets.append(counting)
        super().on_open(peer)

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        if message == b"big":  # two answers past FLUSH_BYTES: written before on_message ends
            peer.send(b"x" * 40_000)
            peer.send(b"y" * 40_000)
            self.sends_after_big.append(self.sockets[0].sends)
            return
        super().on_message(peer, message)


def test_echoes_of_one_read_go_out_in_one_send() -> None:
    handler = BatchRecorder()
    with running(handler) as server:
        client = RawClient(server.port)
        try:
            wait_until(lambda: handler.sockets)
            before = handler.sockets[0].sends
            for i in range(64):
                client.conn.send_binary(b"%d" % i)
            client.sock.sendall(client.conn.data_to_send())  # one write: one read, usually
            echoes: list[bytes] = []
            for _ in range(100):
                echoes += [e.data for e in client.read() if isinstance(e, Binary)]
                if len(echoes) == 64:
                    break
            assert echoes == [b"%d" % i for i in range(64)]
            # 64 messages, one send() per read that brought them (loopback may split the
            # write).
            assert 1 <= handler.sockets[0].sends - before <= 4
            # Past FLUSH_BYTES the answers are written at once, inside on_message.
            before = handler.sockets[0].sends
            client.conn.send_binary(b"big")
            client.sock.sendall(client.conn.data_to_send())
            got = 0
            for _ in range(100):
                got += sum(len(e.data) for e in client.read() if isinstance(e, Binary))
                if got == 80_000:
                    break
            assert got == 80_000
            # The bytes can arrive before the handler's next line runs: wait for it.
            wait_until(lambda: bool(handler.sends_after_big))
            assert handler.sends_after_big[0] > before
        finally:
            client.close()
