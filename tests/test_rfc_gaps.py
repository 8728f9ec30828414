"""Requirements of RFC 6455 and RFC 7692 that no other test file proved, found while writing
the conformance matrix (docs/conformance/). Real bytes in, real bytes out.

Tests marked ``xfail(strict=True)`` are open bugs: each reason says which rule is broken. When
a bug is fixed the test passes, strict xfail turns that into a failure, and the mark must go;
the matrix then shows the row as tested.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import h11
import pytest

from wsmachine import (
    Accepted,
    ClientConnection,
    Close,
    Connection,
    Handshake,
    LocalProtocolError,
    Ping,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.adapters._common import parse_url
from wsmachine.adapters.blocking import WebSocket, connect, serve
from wsmachine.extensions import PerMessageDeflate

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
MASK = b"\x37\xfa\x21\x3d"  # RFC 6455 §5.7
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RSV1 = 0x40
TIMEOUT = 10.0


# -- bytes, written here from RFC 6455 §5.2 and §4.2.2 -------------------------------------------


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 0x10000:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def to(conn: Connection, opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A frame as ``conn``'s peer sends it: clients mask, servers do not."""
    return frame(opcode, payload, fin=fin, mask=not conn.client)


def unframe(data: bytes, *, masked: bool) -> list[tuple[int, bool, int, bytes]]:
    """``(opcode, fin, rsv, payload)`` of each frame in ``data``."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert bool(b1 & 0x80) == masked
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos : pos + 8])
            pos += 8
        key = data[pos : pos + 4] if masked else b""
        pos += len(key)
        payload = data[pos : pos + n]
        pos += n
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        out.append((b0 & 0x0F, bool(b0 & 0x80), b0 & 0x70, payload))
    return out


def sent(conn: Connection) -> list[tuple[int, bool, int, bytes]]:
    return unframe(conn.data_to_send(), masked=conn.client)


def request(*extra: str) -> bytes:
    lines = [
        "GET /chat HTTP/1.1",
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def key_of(client: ClientConnection) -> str:
    for line in client.data_to_send().split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"sec-websocket-key":
            return value.strip().decode()
    raise AssertionError("no Sec-WebSocket-Key")


def answer(key: str, *lines: str, accept: str | None = None) -> bytes:
    """A 101 answer with these header lines; ``accept`` replaces the right accept value."""
    if accept is None:
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    head = [
        "HTTP/1.1 101 Switching Protocols",
        *lines,
        f"Sec-WebSocket-Accept: {accept}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def open_server(**settings: object) -> ServerConnection:
    server = ServerConnection(**settings)  # type: ignore[arg-type]
    (event,) = server.receive_data(request())
    assert isinstance(event, Handshake)
    server.accept(event)
    assert server.data_to_send().startswith(b"HTTP/1.1 101 ")
    return server


def open_client(**settings: object) -> ClientConnection:
    client = ClientConnection("server.example.com", "/chat", **settings)  # type: ignore[arg-type]
    key = key_of(client)
    (event,) = client.receive_data(answer(key, "Upgrade: websocket", "Connection: Upgrade"))
    assert isinstance(event, Accepted)
    return client


@pytest.fixture(params=["server", "client"])
def make_open(request: pytest.FixtureRequest) -> Callable[[], Connection]:
    """An OPEN connection of either role, reached with raw bytes."""
    return open_server if request.param == "server" else open_client


def assert_refused(client: ClientConnection, events: list[object]) -> Rejected:
    """The client failed the handshake: a Rejected event with an error, nothing to send."""
    (event,) = events
    assert isinstance(event, Rejected), events
    assert isinstance(event.error, RemoteProtocolError)
    assert client.state is State.REJECTED
    assert client.data_to_send() == b""
    assert client.should_close()
    return event


# ================================================================================================
# RFC 6455 §4.1: the client's side of the opening handshake
# ================================================================================================


class TestClientHandshake:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("ws://example.com/chat?room=1", (False, "example.com", 80, "/chat?room=1", None)),
            ("wss://example.com", (True, "example.com", 443, "/", None)),
            ("WS://Example.com:8080", (False, "example.com", 8080, "/", "example.com:8080")),
            ("wss://[::1]:9443/x", (True, "::1", 9443, "/x", "[::1]:9443")),
        ],
    )
    def test_url_gives_host_port_and_resource(
        self, url: str, expected: tuple[bool, str, int, str, str | None]
    ) -> None:
        # §3 and §4.1 step 1: the URL's parts, with the default ports 80 and 443.
        secure, host, port, resource, host_header = expected
        target = parse_url(url)
        assert (target.secure, target.host, target.port, target.resource) == (
            secure,
            host,
            port,
            resource,
        )
        assert target.host_header == (host_header or host)

    @pytest.mark.parametrize(
        "url",
        ["http://example.com/", "example.com/chat", "ws://example.com/chat#part", "ws:///chat"],
    )
    def test_url_that_is_not_a_websocket_url_is_refused(self, url: str) -> None:
        # §4.1 step 1: an invalid URL fails the connection before anything is sent; §3: no
        # fragment in a WebSocket URL.
        with pytest.raises(ValueError, match=r"WebSocket URL|fragment|host"):
            parse_url(url)

    @pytest.mark.parametrize("path", ["chat", "*", "/chat#part"])
    def test_request_target_must_be_a_resource_name(self, path: str) -> None:
        with pytest.raises(LocalProtocolError):
            ClientConnection("example.com", path)

    @pytest.mark.parametrize("host", ["", "a b", "example.com:http"])
    def test_host_must_be_a_host(self, host: str) -> None:
        with pytest.raises(LocalProtocolError):
            ClientConnection(host, "/")

    @pytest.mark.parametrize(
        ("upgrade", "connection"),
        [("WebSocket", "UPGRADE"), ("WEBSOCKET", "keep-alive, Upgrade"), ("websocket", "upgrade")],
    )
    def test_101_tokens_match_case_insensitively(self, upgrade: str, connection: str) -> None:
        # §4.1, answer steps 2 and 3: ASCII case-insensitive matches.
        client = ClientConnection("example.com")
        data = answer(key_of(client), f"Upgrade: {upgrade}", f"Connection: {connection}")
        (event,) = client.receive_data(data)
        assert isinstance(event, Accepted)
        assert client.state is State.OPEN

    def test_accept_value_is_compared_without_surrounding_whitespace(self) -> None:
        # §4.1, answer step 4: leading and trailing whitespace is ignored.
        client = ClientConnection("example.com")
        key = key_of(client)
        right = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        data = answer(key, "Upgrade: websocket", "Connection: Upgrade", accept=f"  {right}\t")
        (event,) = client.receive_data(data)
        assert isinstance(event, Accepted)

    @pytest.mark.parametrize(
        "value",
        ["permessage-deflate;; x", "permessage-deflate; =1", 'permessage-deflate; a="b c"'],
    )
    def test_malformed_extensions_header_in_the_101_fails(self, value: str) -> None:
        # RFC 6455 §9.1: a value that breaks the grammar fails the connection, in either role.
        client = ClientConnection("example.com", extensions=[PerMessageDeflate()])
        data = answer(
            key_of(client),
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Extensions: {value}",
        )
        event = assert_refused(client, client.receive_data(data))
        assert "Sec-WebSocket-Extensions" in str(event.error)


# ================================================================================================
# RFC 6455 §4.2.2: the server answers with any HTTP status it needs
# ================================================================================================


class TestServerAnswers:
    @pytest.mark.parametrize(
        ("status", "headers"),
        [
            (401, [("WWW-Authenticate", 'Basic realm="chat"')]),  # §4.2.2 step 2
            (302, [("Location", "/elsewhere")]),  # §4.2.2 step 3
            (404, []),  # §4.2.2 step 4, /resource name/
            (403, []),  # §4.2.2 step 4, /origin/; §10.2
        ],
    )
    def test_any_http_status_answers_an_upgrade(
        self, status: int, headers: list[tuple[str, str]]
    ) -> None:
        client = ClientConnection("server.example.com", "/chat", origin="http://evil.example")
        server = ServerConnection()
        (event,) = server.receive_data(client.data_to_send())
        assert isinstance(event, Handshake)
        assert event.origin == "http://evil.example"
        server.reject(event, status=status, headers=headers, body=b"not here\n")
        wire = server.data_to_send()
        # An independent HTTP parser reads the answer.
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method="GET", target="/chat", headers=[("Host", "x")]))
        parser.send(h11.EndOfMessage())
        parser.receive_data(wire)
        response = parser.next_event()
        assert isinstance(response, h11.Response)
        assert response.status_code == status
        got = [(k.decode(), v.decode()) for k, v in response.headers]
        for name, value in headers:
            assert (name.lower(), value) in got
        assert server.should_close()
        (rejected,) = client.receive_data(wire)
        assert isinstance(rejected, Rejected)
        assert (rejected.status_code, rejected.body, rejected.error) == (
            status,
            b"not here\n",
            None,
        )
        assert client.state is State.REJECTED


# ================================================================================================
# RFC 6455 §4.1 step 5, §10.6: wss:// runs TLS, with SNI, and fails on a bad certificate
# ================================================================================================


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and its key, made with the openssl tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class TLSEchoServer:
    """One TLS connection on 127.0.0.1, answered by a ServerConnection that echoes text."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.server_names: list[str | None] = []
        self.context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TLSEchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(TIMEOUT)
        self.listener.close()

    def _run(self) -> None:
        self.listener.settimeout(TIMEOUT)
        try:
            raw, _ = self.listener.accept()
        except OSError as error:
            self.errors.append(error)
            return
        raw.settimeout(TIMEOUT)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as error:  # the client refused our certificate
            self.errors.append(error)
            raw.close()
            return
        with tls:
            conn = ServerConnection()
            while not conn.should_close():
                data = tls.recv(65536)
                events = conn.receive_data(data) if data else conn.receive_eof()
                for event in events:
                    if isinstance(event, Handshake):
                        conn.accept(event)
                    elif isinstance(event, Text) and conn.can_send:
                        conn.send_text(event.data)
                tls.sendall(conn.data_to_send())
                if not data:
                    break


class TestTLS:
    def test_wss_runs_tls_with_sni(self, certificate: tuple[Path, Path]) -> None:
        cert, key = certificate
        client_context = ssl.create_default_context(cafile=str(cert))
        with TLSEchoServer(cert, key) as server:
            url = f"wss://localhost:{server.port}/secure"
            with connect(url, ssl_context=client_context, open_timeout=TIMEOUT) as ws:
                ws.send("over TLS")
                assert ws.recv(timeout=TIMEOUT) == "over TLS"
        assert server.server_names == ["localhost"]  # RFC 6455 §4.1 step 5: SNI
        assert server.errors == []

    def test_wss_with_an_untrusted_certificate_fails(self, certificate: tuple[Path, Path]) -> None:
        cert, key = certificate
        with TLSEchoServer(cert, key) as server, pytest.raises(ssl.SSLCertVerificationError):
            connect(
                f"wss://localhost:{server.port}/",
                ssl_context=ssl.create_default_context(),
                open_timeout=TIMEOUT,
            )
        assert server.errors, "the server saw its TLS handshake fail"


# ================================================================================================
# RFC 6455 §7.1.1: the server closes TCP first, cleanly
# ================================================================================================


class TestCleanTCPClose:
    def test_server_half_closes_after_its_close_then_drains(self) -> None:
        def echo(ws: WebSocket) -> None:
            for message in ws:
                ws.send(message)

        server = serve(echo, "127.0.0.1", 0)
        thread = server.start()
        try:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            with sock:
                client = ClientConnection(f"127.0.0.1:{server.port}")
                sock.sendall(client.data_to_send())
                events: list[object] = []
                while not events:
                    events = list(client.receive_data(sock.recv(65536)))
                assert isinstance(events[0], Accepted)
                client.close(1000, "bye")
                sock.sendall(client.data_to_send())
                # The server answers with its Close, then sends its FIN first (§7.1.1).
                events = []
                while data := sock.recv(65536):
                    events += client.receive_data(data)
                assert events == [Close(code=1000)]
                assert not client.should_close()  # clean: the client waited for the server
                assert client.receive_eof() == []
                assert client.should_close()
                # The server shut down only its sending side and still reads: late bytes are
                # dropped, not answered with a reset, and our FIN ends the connection.
                sock.sendall(b"late bytes after the closing handshake")
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(1) == b""
        finally:
            server.stop(timeout=15)
        thread.join(TIMEOUT)
        assert not thread.is_alive()


# ================================================================================================
# RFC 6455 §5.5.1, §5.5.2, §7.1.7: closing and failing
# ================================================================================================


class TestClosing:
    @pytest.mark.parametrize("reason", ["\ud800", "a\udfffb"])
    def test_close_reason_with_a_lone_surrogate_raises(
        self, make_open: Callable[[], Connection], reason: str
    ) -> None:
        # §5.5.1: the reason is UTF-8, and a lone surrogate has no UTF-8 form.
        conn = make_open()
        with pytest.raises(LocalProtocolError, match="surrogate"):
            conn.close(1000, reason)
        assert conn.state is State.OPEN
        assert conn.data_to_send() == b""

    def test_simultaneous_close(self) -> None:
        # §5.5.1, §7.1.5: both sides send Close at once; each reads the other's, answers
        # nothing more, and the server closes TCP first.
        server, client = open_server(), open_client()
        server.close(1001, "server")
        client.close(1000, "client")
        from_server, from_client = server.data_to_send(), client.data_to_send()
        assert unframe(from_server, masked=False) == [(CLOSE, True, 0, b"\x03\xe9server")]
        assert unframe(from_client, masked=True) == [(CLOSE, True, 0, b"\x03\xe8client")]
        # The client's Close reaches the server, the server's reaches the client.
        assert server.receive_data(frame(CLOSE, b"\x03\xe8client")) == [
            Close(code=1000, reason="client")
        ]
        assert client.receive_data(from_server) == [Close(code=1001, reason="server")]
        assert server.data_to_send() == client.data_to_send() == b""
        assert server.state is client.state is State.CLOSED
        assert server.should_close()
        assert not client.should_close()  # the client waits for the server's TCP close

    def test_close_after_a_failure_is_not_processed(
        self, make_open: Callable[[], Connection]
    ) -> None:
        # §7.1.7: after failing, nothing from the peer is processed, not even its Close.
        conn = make_open()
        (close,) = conn.receive_data(to(conn, 0x3))  # a reserved opcode
        assert isinstance(close, Close)
        assert close.code == 1002
        assert [f[0] for f in sent(conn)] == [CLOSE]
        assert conn.receive_data(to(conn, CLOSE, b"\x03\xe8")) == []
        assert conn.receive_data(to(conn, PING, b"?")) == []
        assert conn.data_to_send() == b""

    def test_ping_after_our_close_is_answered(self, make_open: Callable[[], Connection]) -> None:
        conn = make_open()
        conn.close(1000)
        conn.data_to_send()
        assert conn.receive_data(to(conn, PING, b"late")) == [Ping(payload=b"late")]
        assert sent(conn) == [(PONG, True, 0, b"late")]


# ================================================================================================
# RFC 6455 §10.3: the application cannot change a frame once it is queued
# ================================================================================================


class TestMaskingSecurity:
    @pytest.mark.parametrize("kind", [bytearray, memoryview])
    def test_payload_is_fixed_when_queued(self, kind: type) -> None:
        client = open_client()
        buffer = bytearray(b"GET / HTTP/1.1")
        client.send_binary(kind(buffer))
        client.ping(kind(buffer))
        buffer[:] = b"X" * len(buffer)  # the application changes its buffer afterwards
        assert sent(client) == [
            (BINARY, True, 0, b"GET / HTTP/1.1"),
            (PING, True, 0, b"GET / HTTP/1.1"),
        ]


# ================================================================================================
# RFC 7692: permessage-deflate
# ================================================================================================


def deflate_request(*offers: str) -> bytes:
    return request(*(f"Sec-WebSocket-Extensions: {offer}" for offer in offers))


def extension_lines(head: bytes) -> list[str]:
    return [
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-extensions:")
    ]


class TestPermessageDeflate:
    def test_compressed_hello_is_the_rfc_example(self) -> None:
        # RFC 7692 §7.2.1, checked against §7.2.3.1: DEFLATE, sync flush, and the trailing
        # 00 00 ff ff removed; RSV1 on the frame.
        server = ServerConnection(extensions=[PerMessageDeflate()])
        (event,) = server.receive_data(deflate_request("permessage-deflate"))
        assert isinstance(event, Handshake)
        server.accept(event)
        server.data_to_send()
        server.send_text("Hello")
        assert server.data_to_send() == b"\xc1\x07" + bytes.fromhex("f248cdc9c90700")

    @pytest.mark.parametrize(
        "offers",
        [
            ["permessage-deflate"],
            ["permessage-deflate, permessage-deflate; client_no_context_takeover"],
        ],
        ids=["one-offer", "two-offers"],
    )
    def test_server_accepts_one_rsv1_extension_only(self, offers: list[str]) -> None:
        server = ServerConnection(
            extensions=[PerMessageDeflate(), PerMessageDeflate(server_no_context_takeover=True)]
        )
        (event,) = server.receive_data(deflate_request(*offers))
        assert isinstance(event, Handshake)
        server.accept(event)
        elements = [e for line in extension_lines(server.data_to_send()) for e in line.split(",")]
        assert len(elements) == 1, elements
        assert len(server.extensions) == 1

    def test_client_fails_when_two_rsv1_extensions_are_accepted(self) -> None:
        client = ClientConnection(
            "example.com",
            extensions=[PerMessageDeflate(), PerMessageDeflate(client_no_context_takeover=True)],
        )
        data = answer(
            key_of(client),
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate",
        )
        assert_refused(client, client.receive_data(data))
