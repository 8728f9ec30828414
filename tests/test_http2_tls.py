"""TLS on the HTTP/2 server's port: ALPN picks HTTP/2 or HTTP/1.1 (RFC 7301, RFC 8441 §3),
WebSockets run over either, on loopback sockets with a self-signed certificate (tests/certs.py)."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("h2.connection")
pytest.importorskip("cryptography.x509")

from tests.certs import make_certificate
from wsmachine.adapters import HandshakeError, HTTPResponse
from wsmachine.adapters.blocking import connect
from wsmachine.adapters.http2 import Client, Server, Stream
from wsmachine.adapters.selector import Handler, Peer
from wsmachine.adapters.tls import RECORD_SIZE, TLSSocket, server_context
from wsmachine.events import HTTPRequest
from wsmachine.extensions import PerMessageDeflate

TIMEOUT = 10.0


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def client_context(cert: Path, alpn: list[str] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context


class Echo(Handler):
    """Echoes; ``big N`` answers N bytes; records which kind of peer each WebSocket was."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.errors: list[BaseException] = []

    def on_http(self, request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse(200, [("content-type", "text/plain")], b"page " + request.path.encode())

    def on_open(self, peer: Peer) -> None:
        self.kinds.append("h2" if isinstance(peer, Stream) else "http/1.1")

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("big "):
            peer.send(b"x" * int(message[4:]))
        else:
            peer.send(message)

    def on_error(self, peer: Peer, error: BaseException) -> None:
        self.errors.append(error)


@pytest.fixture
def served(certificate: tuple[Path, Path]) -> Iterator[tuple[Server, Echo]]:
    handler = Echo()
    context = server_context(str(certificate[0]), str(certificate[1]))
    server = Server(handler, "127.0.0.1", 0, ssl_context=context, extensions=[PerMessageDeflate()])
    thread = server.start()
    yield server, handler
    server.stop(5)
    thread.join(5)
    assert not thread.is_alive()


def tls_client(port: int, cert: Path, alpn: list[str]) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return client_context(cert, alpn).wrap_socket(raw, server_hostname="localhost")


def test_alpn_h2_carries_websocket_streams(
    served: tuple[Server, Echo], certificate: tuple[Path, Path]
) -> None:
    server, handler = served
    sock = tls_client(server.port, certificate[0], ["h2", "http/1.1"])
    assert sock.selected_alpn_protocol() == "h2"
    with Client(sock, f"localhost:{server.port}", scheme="https") as client:
        streams = [client.open("/chat") for _ in range(3)]
        for number, stream in enumerate(streams):
            stream.send(f"hello {number}")
        assert [stream.recv() for stream in streams] == ["hello 0", "hello 1", "hello 2"]
        # Several TLS records per read: the server must read on without a kernel signal.
        size = 40 * RECORD_SIZE + 7
        streams[0].send(b"y" * size)
        assert streams[0].recv() == b"y" * size
        streams[1].send(f"big {size}")
        assert streams[1].recv() == b"x" * size
        for stream in streams:
            assert stream.close().code == 1000
    assert handler.kinds == ["h2", "h2", "h2"]
    assert handler.errors == []


def test_alpn_http11_serves_pages_and_websockets(
    served: tuple[Server, Echo], certificate: tuple[Path, Path]
) -> None:
    server, handler = served
    context = client_context(certificate[0], ["http/1.1"])
    page = http.client.HTTPSConnection("localhost", server.port, timeout=TIMEOUT, context=context)
    try:
        page.request("GET", "/index")
        answer = page.getresponse()
        assert (answer.status, answer.read()) == (200, b"page /index")
    finally:
        page.close()
    ws = connect(f"wss://localhost:{server.port}/", ssl_context=context, open_timeout=TIMEOUT)
    try:
        ws.send("over TLS")
        assert ws.recv(timeout=TIMEOUT) == "over TLS"
        ws.send(f"big {300_000}")
        assert ws.recv(timeout=TIMEOUT) == b"x" * 300_000
    finally:
        ws.close(timeout=TIMEOUT)
    assert ws.closed is not None and ws.closed.code == 1000
    assert handler.kinds == ["http/1.1"]


def test_a_cleartext_client_is_refused_and_others_go_on(
    served: tuple[Server, Echo], certificate: tuple[Path, Path]
) -> None:
    server, handler = served
    with pytest.raises(HandshakeError):  # the server hung up: this was not TLS
        plain = connect(f"ws://127.0.0.1:{server.port}/", open_timeout=TIMEOUT)
        plain.close(timeout=TIMEOUT)
    assert any(isinstance(error, ssl.SSLError) for error in handler.errors)
    sock = tls_client(server.port, certificate[0], ["h2"])
    with Client(sock, f"localhost:{server.port}", scheme="https") as client:
        stream = client.open()
        stream.send("still here")
        assert stream.recv() == "still here"
        stream.close()


def test_tls_socket_retries_a_send_the_kernel_could_not_take(
    certificate: tuple[Path, Path],
) -> None:
    """A send the kernel cannot finish raises BlockingIOError; the same bytes sent again are
    acknowledged once their records went out, and the peer reads each byte once."""
    listener = socket.create_server(("127.0.0.1", 0))
    context = server_context(str(certificate[0]), str(certificate[1]))
    received = bytearray()
    raw = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
    accepted, _ = listener.accept()
    listener.close()
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    accepted.setblocking(False)
    server = TLSSocket(accepted, context)
    done = threading.Event()

    def client_side() -> None:
        tls = client_context(certificate[0], None).wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"go")
        done.wait(TIMEOUT)  # do not read until the server's sends have backed up
        while len(received) < total:
            data = tls.recv(65536)
            if not data:
                break
            received.extend(data)
        tls.close()

    total = 2_000_000
    payload = bytes(range(256)) * (total // 256) + bytes(total % 256)
    thread = threading.Thread(target=client_side)
    thread.start()
    try:
        first = b""
        for _ in range(10_000):  # the handshake, then the client's "go"
            try:
                first = server.recv(10)
                break
            except BlockingIOError:
                threading.Event().wait(0.001)
        assert first == b"go" and server.version is not None
        offset, blocked = 0, 0
        for _ in range(1_000_000):
            if offset == total:
                break
            try:
                offset += server.send(memoryview(payload)[offset:])
            except BlockingIOError:
                blocked += 1
                done.set()
                threading.Event().wait(0.0005)
        assert offset == total
        assert blocked > 0  # the kernel's buffer did fill up
    finally:
        done.set()
        thread.join(TIMEOUT)
        accepted.close()
    assert bytes(received) == payload


def test_tls_socket_stands_in_for_a_socket(certificate: tuple[Path, Path]) -> None:
    """What the loop asks of a socket, through TLS: send before the handshake waits, the
    handshake and ALPN, recv_into, the end of the stream (read twice), the socket's calls."""
    listener = socket.create_server(("127.0.0.1", 0))
    raw = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
    client_address = raw.getsockname()
    accepted, _ = listener.accept()
    listener.close()
    accepted.setblocking(False)
    server = TLSSocket(accepted, server_context(str(certificate[0]), str(certificate[1])))
    with pytest.raises(BlockingIOError):
        server.send(b"too early")  # nothing can be said before the handshake
    with pytest.raises(BlockingIOError):
        server.recv(10)  # nothing has come yet
    done, ended = threading.Event(), threading.Event()

    def client_side() -> None:
        context = client_context(certificate[0], ["h2"])
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello")
            done.wait(TIMEOUT)
            tls.shutdown(socket.SHUT_WR)  # the TCP stream ends, without close_notify
            ended.wait(TIMEOUT)

    thread = threading.Thread(target=client_side)
    thread.start()
    try:
        buffer = bytearray(16)
        got = 0
        for _ in range(10_000):
            try:
                got = server.recv_into(buffer)
                break
            except BlockingIOError:
                threading.Event().wait(0.001)
        assert bytes(buffer[:got]) == b"hello"
        assert server.alpn == "h2" and server.version is not None
        assert "alpn='h2'" in repr(server)
        assert server.getsockname() == accepted.getsockname()
        assert server.getpeername() == client_address
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        done.set()
        ends = []
        for _ in range(10_000):
            try:
                ends.append(server.recv(10))
            except BlockingIOError:
                threading.Event().wait(0.001)
                continue
            if len(ends) == 2:
                break
        assert ends == [b"", b""]  # the end of the stream, and again once it has ended
        server.shutdown(socket.SHUT_RD)  # no close_notify for the reading half
    finally:
        done.set()
        ended.set()
        thread.join(TIMEOUT)
        server.close()
