"""The HTTP/2 server and client's edges branch coverage found unreached (issue 14): a stream
aborted or closed 1011 by its handler, broadcast and keepalive over streams, shutdown with
streams open (close, refused new streams, GOAWAY), the connection lost or broken, pages
(HEAD, Content-Length given, a header h2 refuses), a CONNECT that ends its stream at once, a
peer's WebSocket violation, and the client's timeouts and refusals. Loopback sockets, every
wait bounded."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

h2_connection = pytest.importorskip("h2.connection")

import h2.config  # noqa: E402
import h2.errors  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

from wsmachine import Close, Ping, Pong, ServerConnection  # noqa: E402
from wsmachine.adapters import ConnectionClosed, HandshakeError, HTTPResponse  # noqa: E402
from wsmachine.adapters.http2 import Client, ClientStream, Server, Stream  # noqa: E402
from wsmachine.adapters.selector import Handler  # noqa: E402
from wsmachine.events import HTTPRequest  # noqa: E402
from wsmachine.extended_connect import ClientOpening  # noqa: E402

TIMEOUT = 5.0


class Recorder(Handler):
    """Echoes; ``abort`` aborts the stream, ``boom`` raises; records what happened."""

    def __init__(self) -> None:
        self.streams: list[Any] = []
        self.closed: dict[int, ConnectionClosed] = {}
        self.errors: list[BaseException] = []

    def on_open(self, peer: Any) -> None:
        self.streams.append(peer)

    def on_message(self, peer: Any, message: str | bytes) -> None:
        if message == "abort":
            peer.abort()
        elif message == "boom":
            raise RuntimeError("the handler broke")
        else:
            peer.send(message)

    def on_http(self, request: HTTPRequest) -> HTTPResponse | None:
        if request.path == "/sized":
            return HTTPResponse(200, [("content-length", "5")], b"sized")
        if request.path == "/bad-header":
            # Connection-specific: no place in HTTP/2 (RFC 9113 §8.2.2).
            return HTTPResponse(200, [("proxy-connection", "keep-alive")], b"never sent")
        return HTTPResponse(200, [("content-type", "text/plain")], b"page\n")

    def on_close(self, peer: Any, closed: ConnectionClosed) -> None:
        self.closed[getattr(peer, "stream_id", 0)] = closed

    def on_error(self, peer: Any, error: BaseException) -> None:
        self.errors.append(error)


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@contextlib.contextmanager
def serving(**settings: Any) -> Iterator[tuple[Server, Recorder]]:
    handler = Recorder()
    server = Server(handler, "127.0.0.1", 0, **settings)
    thread = server.start()
    try:
        yield server, handler
    finally:
        server.stop(10)
        thread.join(10)
        assert not thread.is_alive()


def client_of(server: Server, **settings: Any) -> Client:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    return Client(sock, f"127.0.0.1:{server.port}", timeout=TIMEOUT, **settings)


def in_loop(server: Server, call: Callable[[], Any]) -> Any:
    done = threading.Event()
    result: list[Any] = []

    def run() -> None:
        result.append(call())
        done.set()

    server.call_soon_threadsafe(run)
    assert done.wait(TIMEOUT)
    return result[0]


class RawH2:
    """A plain ``h2`` client on a blocking socket; its events are kept per stream."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
        self.h2 = h2_connection.H2Connection(config)
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.flush()
        self.pump(lambda: self.of(0, h2.events.RemoteSettingsChanged))

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, until: Callable[[], object]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not until():
            left = deadline - time.monotonic()
            assert left > 0, "timed out"
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                return
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    assert event.stream_id is not None
                    with contextlib.suppress(Exception):
                        self.h2.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                self.events.append(event)
            self.flush()

    def of(self, stream_id: int, kind: type[Any]) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (getattr(e, "stream_id", None) or 0) == stream_id
        ]

    def request(self, headers: list[tuple[bytes, bytes]], *, end_stream: bool = False) -> int:
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        self.flush()
        return stream_id

    def status(self, stream_id: int) -> bytes:
        self.pump(lambda: self.of(stream_id, h2.events.ResponseReceived))
        headers = dict(self.of(stream_id, h2.events.ResponseReceived)[0].headers)
        return bytes(headers[b":status"])

    def close(self) -> None:
        self.sock.close()


def page(method: bytes, path: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", b"127.0.0.1"),
    ]


def connect_headers() -> list[tuple[bytes, bytes]]:
    return ClientOpening("127.0.0.1", "/", scheme="http").headers


# -- the server ---------------------------------------------------------------------------


def test_a_stream_the_handler_aborts_is_reset_and_closes_1006() -> None:
    with serving() as (server, handler), client_of(server) as client:
        stream = client.open("/")
        assert stream.subprotocol is None
        (opened,) = handler.streams
        assert isinstance(opened, Stream)
        assert opened.client is False
        assert repr(opened).startswith(f"<Stream {stream.stream_id} of ")
        assert "OPEN" in repr(opened)
        stream.send("abort")
        with pytest.raises(ConnectionClosed) as info:
            stream.recv()
        assert info.value.code == 1006
        wait_until(lambda: stream.stream_id in handler.closed)
        assert handler.closed[stream.stream_id].code == 1006
        assert isinstance(handler.closed[stream.stream_id].error, ConnectionAbortedError)


def test_a_handler_that_raises_closes_its_stream_with_1011() -> None:
    with serving() as (server, handler), client_of(server) as client:
        stream = client.open("/")
        stream.send("boom")
        with pytest.raises(ConnectionClosed) as info:
            stream.recv()
        assert (info.value.code, info.value.reason) == (1011, "internal error")
        assert any(isinstance(e, RuntimeError) for e in handler.errors)
        other = client.open("/")  # the connection and its other streams go on
        other.send("still here")
        assert other.recv() == "still here"


def test_broadcast_reaches_every_stream() -> None:
    with serving() as (server, _), client_of(server) as client:
        streams = [client.open(f"/{i}") for i in range(3)]
        assert in_loop(server, lambda: server.broadcast("to all")) == 3
        assert [s.recv() for s in streams] == ["to all"] * 3


def test_keepalive_pings_each_stream_and_the_client_pings_too() -> None:
    with serving(ping_interval=0.05) as (server, _), client_of(server) as client:
        stream = client.open("/")
        assert isinstance(stream.recv_event(), Ping)  # the server's keepalive
        stream.ping(b"mine")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            event = stream.recv_event()
            if isinstance(event, Pong):
                assert event.payload == b"mine"
                break
        else:
            raise AssertionError("no Pong")


def test_recv_times_out_when_nothing_comes() -> None:
    with serving() as (server, _), client_of(server) as client:
        stream = client.open("/")
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="nothing arrived"):
            stream.recv(timeout=0.05)
        with pytest.raises(TimeoutError):
            stream.recv_event(timeout=0.0)
        assert time.monotonic() - started < TIMEOUT
        stream.send("after")
        assert stream.recv() == "after"


def test_shutdown_closes_the_streams_refuses_new_ones_then_goaway() -> None:
    with serving() as (server, handler):
        raw = RawH2(server.port)
        first = raw.request(connect_headers())
        assert raw.status(first) == b"200"
        server.shutdown(1001, "bye")
        raw.pump(lambda: raw.of(first, h2.events.DataReceived))  # the Close frame
        conn = ServerConnection  # the Close is a server frame: 0x88, code 1001
        data = raw.of(first, h2.events.DataReceived)[0].data
        assert data[:1] == b"\x88" and data[2:4] == (1001).to_bytes(2, "big"), conn
        # The stream still closes (its Close is not answered): a new one is refused.
        second = raw.request(connect_headers())
        raw.pump(lambda: raw.of(second, h2.events.StreamReset))
        (reset,) = raw.of(second, h2.events.StreamReset)
        assert reset.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
        # Dropping the TCP connection ends the last stream with 1006.
        raw.close()
        wait_until(lambda: first in handler.closed)
        assert handler.closed[first].code == 1006


def test_shutdown_after_the_streams_answer_ends_with_goaway() -> None:
    with serving(linger_timeout=0.1) as (server, handler):
        client = client_of(server)
        stream = client.open("/")
        server.shutdown(1001, "bye")
        with pytest.raises(ConnectionClosed) as info:
            stream.recv()
        assert info.value.code == 1001
        # Our machine answered the Close: the server ends the stream, then the connection.
        with pytest.raises(ConnectionResetError, match="closed the HTTP/2 connection"):
            stream.recv_event()
        client.close()
        wait_until(lambda: stream.stream_id in handler.closed)
        assert handler.closed[stream.stream_id].code == 1001


def test_a_broken_http2_connection_ends_its_streams_with_1006() -> None:
    with serving() as (server, handler):
        raw = RawH2(server.port)
        stream_id = raw.request(connect_headers())
        assert raw.status(stream_id) == b"200"
        # A DATA frame on stream 0: a connection error (RFC 9113 §6.1).
        raw.sock.sendall(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00")
        raw.pump(lambda: raw.of(0, h2.events.ConnectionTerminated))
        goaway = raw.of(0, h2.events.ConnectionTerminated)[0]
        assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        wait_until(lambda: stream_id in handler.closed)
        assert handler.closed[stream_id].code == 1006
        assert "HTTP/2 connection error" in str(handler.closed[stream_id].error)
        raw.close()


def test_pages_head_content_length_and_a_header_h2_refuses() -> None:
    with serving() as (server, _):
        raw = RawH2(server.port)
        head = raw.request(page(b"HEAD", b"/"), end_stream=True)
        assert raw.status(head) == b"200"
        raw.pump(lambda: raw.of(head, h2.events.StreamEnded))
        assert raw.of(head, h2.events.DataReceived) == []
        sized = raw.request(page(b"GET", b"/sized"), end_stream=True)
        assert raw.status(sized) == b"200"
        raw.pump(lambda: raw.of(sized, h2.events.StreamEnded))
        headers = dict(raw.of(sized, h2.events.ResponseReceived)[0].headers)
        assert headers[b"content-length"] == b"5"
        assert b"".join(e.data for e in raw.of(sized, h2.events.DataReceived)) == b"sized"
        bad = raw.request(page(b"GET", b"/bad-header"), end_stream=True)
        assert raw.status(bad) == b"500"
        # A request whose body is still coming: answered, then reset with NO_ERROR.
        posted = raw.request(page(b"POST", b"/"))
        assert raw.status(posted) == b"200"
        raw.pump(lambda: raw.of(posted, h2.events.StreamReset))
        assert raw.of(posted, h2.events.StreamReset)[0].error_code == h2.errors.ErrorCodes.NO_ERROR
        raw.close()


def test_a_connect_that_ends_its_stream_is_answered_then_ends_1006() -> None:
    with serving() as (server, handler):
        raw = RawH2(server.port)
        stream_id = raw.request(connect_headers(), end_stream=True)
        assert raw.status(stream_id) == b"200"
        wait_until(lambda: stream_id in handler.closed)
        assert handler.closed[stream_id].code == 1006  # the peer's half ended, no Close
        raw.close()


def violate(raw: RawH2) -> int:
    stream_id = raw.request(connect_headers())
    assert raw.status(stream_id) == b"200"
    raw.h2.send_data(stream_id, b"\x81\x02hi")  # unmasked: clients must mask (RFC 6455 §5.1)
    raw.flush()
    return stream_id


def test_a_violation_on_a_stream_closes_it_with_1002() -> None:
    with serving() as (server, handler):
        raw = RawH2(server.port)
        stream_id = violate(raw)
        raw.pump(lambda: raw.of(stream_id, h2.events.DataReceived))
        data = raw.of(stream_id, h2.events.DataReceived)[0].data
        assert data[:1] == b"\x88" and data[2:4] == (1002).to_bytes(2, "big")
        raw.close()
        wait_until(lambda: stream_id in handler.closed)
        sent = handler.closed[stream_id].local
        assert sent is not None and sent.code == 1002


def test_a_violation_on_a_stream_reaches_on_error_as_on_a_tcp_peer() -> None:
    with serving() as (server, handler):
        raw = RawH2(server.port)
        stream_id = violate(raw)
        raw.pump(lambda: raw.of(stream_id, h2.events.DataReceived))
        raw.close()
        wait_until(lambda: stream_id in handler.closed)
        assert any("mask" in str(error).lower() for error in handler.errors)


# -- the client ---------------------------------------------------------------------------


@contextlib.contextmanager
def h2_server(
    behaviour: Callable[[Any, socket.socket], None], *, extended: bool = True
) -> Iterator[int]:
    """A plain ``h2`` server for one connection, in a thread; yields its port.

    ``extended``: its first SETTINGS frame allows extended CONNECT (RFC 8441 §3). It must be
    the first: the client decides on the first SETTINGS frame it reads, so a later update
    would race it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve_one() -> None:
        with contextlib.suppress(OSError):
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(TIMEOUT)
                config = h2.config.H2Configuration(client_side=False, header_encoding=None)
                conn = h2_connection.H2Connection(config)
                if extended:
                    conn.local_settings = h2.settings.Settings(
                        client=False,
                        initial_values={h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1},
                    )
                conn.initiate_connection()
                sock.sendall(conn.data_to_send())
                behaviour(conn, sock)

    thread = threading.Thread(target=serve_one)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(TIMEOUT)


def read_until(conn: Any, sock: socket.socket, kind: type[Any]) -> Any:
    for _ in range(100):
        data = sock.recv(65536)
        if not data:
            break
        events = conn.receive_data(data)
        sock.sendall(conn.data_to_send())
        for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"no {kind.__name__}")


def test_the_client_refuses_a_server_without_extended_connect() -> None:
    def plain(conn: Any, sock: socket.socket) -> None:
        read_until(conn, sock, h2.events.RemoteSettingsChanged)

    with h2_server(plain, extended=False) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with pytest.raises(HandshakeError, match="SETTINGS_ENABLE_CONNECT_PROTOCOL"):
            Client(sock, f"127.0.0.1:{port}", timeout=TIMEOUT)
        sock.close()


def test_the_client_resets_a_stream_answered_wrongly() -> None:
    resets: list[int] = []

    def wrong(conn: Any, sock: socket.socket) -> None:
        request = read_until(conn, sock, h2.events.RequestReceived)
        # 200 with a subprotocol never offered: the client must fail (RFC 6455 §4.1).
        conn.send_headers(
            request.stream_id, [(b":status", b"200"), (b"sec-websocket-protocol", b"x")]
        )
        sock.sendall(conn.data_to_send())
        resets.append(read_until(conn, sock, h2.events.StreamReset).error_code)

    with h2_server(wrong) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with Client(sock, f"127.0.0.1:{port}", timeout=TIMEOUT) as client:
            with pytest.raises(HandshakeError):
                client.open("/")
            wait_until(lambda: resets)
    assert resets == [h2.errors.ErrorCodes.CANCEL]


def test_the_client_sees_a_stream_ended_without_an_answer_and_a_lost_connection() -> None:
    def ends(conn: Any, sock: socket.socket) -> None:
        request = read_until(conn, sock, h2.events.RequestReceived)
        conn.reset_stream(request.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        sock.sendall(conn.data_to_send())
        read_until(conn, sock, h2.events.RequestReceived)  # the second opening: no answer

    with h2_server(ends) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with Client(sock, f"127.0.0.1:{port}", timeout=TIMEOUT) as client:
            with pytest.raises(HandshakeError, match="without an answer"):
                client.open("/")
            with pytest.raises(ConnectionResetError, match="closed the HTTP/2 connection"):
                client.open("/")


def test_the_client_delivers_eof_to_open_streams_when_the_connection_ends() -> None:
    def answers_then_leaves(conn: Any, sock: socket.socket) -> None:
        request = read_until(conn, sock, h2.events.RequestReceived)
        conn.send_headers(request.stream_id, [(b":status", b"200")])
        sock.sendall(conn.data_to_send())

    with h2_server(answers_then_leaves) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with Client(sock, f"127.0.0.1:{port}", timeout=TIMEOUT) as client:
            stream: ClientStream = client.open("/")
            with pytest.raises(ConnectionResetError):
                stream.recv()
            event = stream.recv_event()
            assert isinstance(event, Close) and event.code == 1006


# -- the connection's first bytes and its end ---------------------------------------------


def test_a_preface_split_across_reads_still_opens_http2() -> None:
    with serving() as (server, _):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        with sock:
            config = h2.config.H2Configuration(client_side=True, header_encoding=None)
            conn = h2_connection.H2Connection(config)
            conn.initiate_connection()
            data = conn.data_to_send()
            sock.sendall(data[:10])  # "PRI * HTTP": HTTP/1.1 or HTTP/2, not known yet
            time.sleep(0.05)
            sock.sendall(data[10:])
            settings: dict[int, int] = {}
            while not settings:
                for event in conn.receive_data(sock.recv(65536)):
                    if isinstance(event, h2.events.RemoteSettingsChanged):
                        settings = {k: v.new_value for k, v in event.changed_settings.items()}
            assert settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1


def test_a_reset_http2_connection_ends_its_streams_with_1006() -> None:
    with serving() as (server, handler):
        raw = RawH2(server.port)
        stream_id = raw.request(connect_headers())
        assert raw.status(stream_id) == b"200"
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # an RST, not a FIN
        wait_until(lambda: stream_id in handler.closed)
        closed = handler.closed[stream_id]
        assert closed.code == 1006
        assert isinstance(closed.error, ConnectionResetError)


class BrokenOnClose(Recorder):
    def on_close(self, peer: Any, closed: ConnectionClosed) -> None:
        super().on_close(peer, closed)
        raise RuntimeError("on_close broke")


def test_an_on_close_that_raises_is_reported_and_the_server_goes_on() -> None:
    handler = BrokenOnClose()
    server = Server(handler, "127.0.0.1", 0)
    thread = server.start()
    try:
        with client_of(server) as client:
            stream = client.open("/")
            assert stream.close(1000, "bye").code == 1000
            wait_until(lambda: handler.errors)
            assert str(handler.errors[0]) == "on_close broke"
            other = client.open("/")
            other.send("still serving")
            assert other.recv() == "still serving"
    finally:
        server.stop(10)
        thread.join(10)
