"""The blocking adapter's edges branch coverage found unreached (issue 14): a Ping whose
connection ends first, a peer that resets TCP, an HTTP handler that raises, sockets given by
the caller, and the server's lifecycle calls made out of order. Real loopback sockets, every
wait bounded."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.raw_peer import assert_gave_up, deaf, raw_server
from wsmachine import ServerConnection
from wsmachine.adapters import ConnectionClosed, HTTPResponse
from wsmachine.adapters.blocking import Server, WebSocket, connect, serve
from wsmachine.events import HTTPRequest

TIMEOUT = 5.0


def echo(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    thread = server.start()
    try:
        yield server
    finally:
        server.stop(timeout=15)
        assert not thread.is_alive()


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


def reset(sock: socket.socket) -> None:
    """Close with an RST (linger 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_ping_fails_with_connection_closed_when_tcp_ends_before_the_pong() -> None:
    def silent_then_gone(
        sock: socket.socket, conn: ServerConnection, done: threading.Event
    ) -> None:
        assert sock.recv(65536)  # the Ping arrives; no Pong is sent
        sock.shutdown(socket.SHUT_WR)

    with raw_server(silent_then_gone) as port:
        ws = connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)
        future = ws.ping(b"anyone?")
        error = future.exception(TIMEOUT)
        assert isinstance(error, ConnectionClosed)
        assert error.code == 1006  # no Close frame: the TCP connection just ended
        assert ws.wait_closed(TIMEOUT)


def test_a_peer_resetting_tcp_ends_the_connection_with_1006() -> None:
    def resets(sock: socket.socket, conn: ServerConnection, done: threading.Event) -> None:
        assert sock.recv(65536)  # the first bytes of the message
        reset(sock)

    with raw_server(resets) as port:
        ws = connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)
        # Larger than the loopback buffers: the write is under way when the RST comes.
        with contextlib.suppress(ConnectionClosed):
            ws.send(bytes(64 << 20))
        assert ws.wait_closed(TIMEOUT)
        closed = ws.closed
        assert closed is not None and closed.code == 1006
        assert closed.remote is None  # no Close frame came
        with pytest.raises(ConnectionClosed):
            ws.send("too late")


def test_an_http_handler_that_raises_is_answered_500_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(request: HTTPRequest) -> HTTPResponse | None:
        raise RuntimeError("page broke")

    with running(serve(echo, http_handler=broken)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        with sock:
            sock.sendall(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 500 ")
    (record,) = [r for r in caplog.records if r.getMessage() == "the HTTP handler failed"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and "page broke" in str(record.exc_info[1])


def test_sockets_given_by_the_caller_on_both_sides() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    server = serve(echo, sock=listener)
    assert server.port == listener.getsockname()[1]
    with running(server):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        with connect(url(server), sock=sock) as ws:
            ws.send("over my socket")
            assert ws.recv(TIMEOUT) == "over my socket"
            (peer,) = server.connections
            assert peer.remote_address == sock.getsockname()
        deadline = time.monotonic() + TIMEOUT
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.connections == frozenset()


def test_the_first_shutdown_code_is_the_one_sent() -> None:
    with running(serve(echo)) as server, connect(url(server)) as ws:
        ws.send("hi")
        assert ws.recv(TIMEOUT) == "hi"
        server.shutdown(4001, "first")
        server.shutdown(4002, "second")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(TIMEOUT)
        assert (info.value.code, info.value.reason) == (4001, "first")


def test_a_server_starts_once() -> None:
    with running(serve(echo)) as server, pytest.raises(RuntimeError, match="already started"):
        server.start()


def test_a_server_never_started_stops_and_closes_its_listener() -> None:
    with serve(echo) as server:
        port = server.port
        server.stop(timeout=1)  # no thread to wait for
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_close_gives_up_on_a_peer_that_never_answers() -> None:
    with raw_server(deaf) as port:
        ws = connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)
        started = time.monotonic()
        ws.close(timeout=0.2)
        assert time.monotonic() - started < TIMEOUT
        assert ws.wait_closed(TIMEOUT)
        assert_gave_up(ws.closed)


def test_wss_to_a_server_without_tls_fails_and_closes_the_socket() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_in_clear() -> None:
            with contextlib.suppress(OSError):
                listener.settimeout(TIMEOUT)
                peer, _ = listener.accept()
                with peer:
                    peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                    peer.recv(65536)

        thread = threading.Thread(target=answer_in_clear)
        thread.start()
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with pytest.raises(ssl.SSLError):
            connect(f"wss://127.0.0.1:{port}/", sock=sock, open_timeout=TIMEOUT)
        assert sock.fileno() == -1  # closed by connect
        thread.join(TIMEOUT)


def test_leaving_a_started_server_stops_it() -> None:
    with serve(echo) as server:
        thread = server.start()
        with connect(url(server)) as ws:
            ws.send("x")
            assert ws.recv(TIMEOUT) == "x"
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_a_reset_while_reading_ends_the_connection_with_1006() -> None:
    def resets_at_once(sock: socket.socket, _: ServerConnection, __: threading.Event) -> None:
        reset(sock)

    with raw_server(resets_at_once) as port:
        ws = connect(f"ws://127.0.0.1:{port}/", open_timeout=TIMEOUT)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(TIMEOUT)
        assert info.value.code == 1006
        assert ws.wait_closed(TIMEOUT)
