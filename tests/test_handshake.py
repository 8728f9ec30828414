"""The opening handshake, RFC 6455 §4, in both roles.

Requests and responses are written by hand here and the machine's answers are parsed back with
h11 acting as the other side, so every check looks at real bytes on the wire.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import h11
import pytest

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    ExtensionOffer,
    Handshake,
    HTTPRequest,
    LocalProtocolError,
    Ping,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.close_codes import CloseInfo
from wsmachine.extensions import PerMessageDeflate
from wsmachine.handshake import accept_key
from wsmachine.testing import ConnectionPair

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
MASK = b"\x01\x02\x03\x04"

DEFAULT_HEADERS = (
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY),
    ("Sec-WebSocket-Version", "13"),
)


def request(
    *replace: tuple[str, str | None],
    method: str = "GET",
    target: str = "/chat",
    version: str = "1.1",
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> bytes:
    """An upgrade request. Each ``(name, value)`` in ``replace`` takes the place of the default
    header of that name (``None`` drops it); ``extra`` headers are appended."""
    changes = {name.lower(): value for name, value in replace}
    lines = [f"{method} {target} HTTP/{version}"]
    for name, value in DEFAULT_HEADERS:
        value = changes.get(name.lower(), value)
        if value is not None:
            lines.append(f"{name}: {value}")
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A short client frame, masked with a fixed key (RFC 6455 §5.2, §5.3)."""
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + MASK + masked


@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailing: bytes

    def get(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


def parse_response(data: bytes, *, method: str = "GET") -> Response:
    """Parse a server's answer with h11 playing the client that sent an upgrade request."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(
            method=method,
            target="/chat",
            headers=[("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade")],
        )
    )
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    head: h11.Response | h11.InformationalResponse | None = None
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.InformationalResponse | h11.Response):
            head = event
            if event.status_code == 101:
                break
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(f"incomplete response {data!r}: {event!r}")
    assert head is not None
    return Response(head.status_code, head.reason, list(head.headers), body, conn.trailing_data[0])


def server_events(data: bytes, **settings: object) -> tuple[ServerConnection, list[object]]:
    server = ServerConnection(**settings)  # type: ignore[arg-type]
    return server, list(server.receive_data(data))


def refused(
    data: bytes, status: int, *, method: str = "GET", **settings: object
) -> tuple[Rejected, Response]:
    """Feed a bad request; check the refusal event, state and queued response; return them."""
    server, events = server_events(data, **settings)
    assert len(events) == 1
    (event,) = events
    assert isinstance(event, Rejected)
    assert event.status_code == status
    assert isinstance(event.error, RemoteProtocolError)
    assert event.error.status_hint == status
    assert server.state is State.REJECTED
    assert server.should_close()
    assert server.close_expected()
    response = parse_response(server.data_to_send(), method=method)
    assert response.status == status
    # A HEAD request gets the head only (RFC 9110 §9.3.2), with the body's length.
    assert response.body == (b"" if method == "HEAD" else event.body)
    assert response.get(b"content-length") == [str(len(event.body)).encode()]
    assert event.body.startswith(f"{status} ".encode())
    assert response.get(b"connection") == [b"close"]
    assert response.get(b"content-type") == [b"text/plain; charset=utf-8"]
    # The connection is over: more input changes nothing.
    assert server.receive_data(request()) == []
    assert server.data_to_send() == b""
    return event, response


def handshake_of(server: ServerConnection, data: bytes = b"") -> Handshake:
    (event,) = server.receive_data(data or request())
    assert isinstance(event, Handshake)
    return event


# ------------------------------------------------------------------------------------------------
# RFC 6455 §4.2.1: the server reads the client's opening handshake.
# ------------------------------------------------------------------------------------------------


class TestServerReadsRequest:
    def test_valid_request_gives_handshake_event(self) -> None:
        server, events = server_events(request(extra=(("Origin", "http://example.com"),)))
        assert events == [
            Handshake(
                path="/chat",
                host="server.example.com",
                origin="http://example.com",
                subprotocols=(),
                extensions=(),
                headers=(
                    (b"host", b"server.example.com"),
                    (b"upgrade", b"websocket"),
                    (b"connection", b"Upgrade"),
                    (b"sec-websocket-key", RFC_KEY.encode()),
                    (b"sec-websocket-version", b"13"),
                    (b"origin", b"http://example.com"),
                ),
            )
        ]
        assert server.state is State.CONNECTING
        assert server.data_to_send() == b""  # nothing is answered before accept() or reject()
        assert not server.should_close()
        assert not server.close_expected()

    def test_origin_is_none_when_absent(self) -> None:
        _, (event,) = server_events(request())
        assert isinstance(event, Handshake)
        assert event.origin is None

    def test_request_target_keeps_the_query(self) -> None:
        _, (event,) = server_events(request(target="/runCase?case=1&agent=x"))
        assert isinstance(event, Handshake)
        assert event.path == "/runCase?case=1&agent=x"

    def test_subprotocols_from_comma_lists_and_repeated_headers_in_order(self) -> None:
        data = request(
            extra=(
                ("Sec-WebSocket-Protocol", "chat, superchat"),
                ("Sec-WebSocket-Protocol", " v2.json ,,"),
            )
        )
        _, (event,) = server_events(data)
        assert isinstance(event, Handshake)
        assert event.subprotocols == ("chat", "superchat", "v2.json")

    def test_extension_offers_parsed_in_order(self) -> None:
        data = request(
            extra=(
                ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-a"),
                ("Sec-WebSocket-Extensions", 'x-b; p="1"'),
            )
        )
        _, (event,) = server_events(data)
        assert isinstance(event, Handshake)
        assert event.extensions == (
            ExtensionOffer("permessage-deflate", (("client_max_window_bits", None),)),
            ExtensionOffer("x-a"),
            ExtensionOffer("x-b", (("p", "1"),)),
        )

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("Sec-WebSocket-Protocol", "chat/1"),
            ("Sec-WebSocket-Protocol", "a b"),
            ("Sec-WebSocket-Extensions", "x; =1"),
            ("Sec-WebSocket-Extensions", 'x; p="unterminated'),
        ],
    )
    def test_malformed_list_header_is_400(self, name: str, value: str) -> None:
        event, _ = refused(request(extra=((name, value),)), 400)
        assert name in str(event.error)

    @pytest.mark.parametrize(
        ("upgrade", "connection"),
        [
            ("websocket", "Upgrade"),
            ("WebSocket", "upgrade"),
            ("WEBSOCKET", "UPGRADE"),
            ("h2c, websocket", "keep-alive, Upgrade"),
            ("websocket", "keep-alive,upgrade"),
            ("foo/1.0, WebSocket", "Upgrade, close"),
        ],
    )
    def test_upgrade_and_connection_tokens_case_insensitive_in_lists(
        self, upgrade: str, connection: str
    ) -> None:
        _, events = server_events(request(("Upgrade", upgrade), ("Connection", connection)))
        assert [type(e) for e in events] == [Handshake]

    def test_connection_token_in_a_repeated_header(self) -> None:
        data = request(("Connection", "keep-alive"), extra=(("Connection", "Upgrade"),))
        _, events = server_events(data)
        assert [type(e) for e in events] == [Handshake]

    def test_upgrade_token_in_a_repeated_header(self) -> None:
        data = request(("Upgrade", "h2c"), extra=(("Upgrade", "websocket"),))
        _, events = server_events(data)
        assert [type(e) for e in events] == [Handshake]

    @pytest.mark.parametrize("upgrade", [None, "", "h2c", "websockets"])
    def test_a_key_without_upgrade_websocket_is_400_not_plain_http(
        self, upgrade: str | None
    ) -> None:
        # It is a WebSocket client's handshake that lost its Upgrade: failing it says why;
        # taking it for a plain request would hand the application a request to serve.
        event, response = refused(request(("Upgrade", upgrade)), 400)
        assert "Upgrade: websocket" in str(event.error)
        assert b"Sec-WebSocket-Key" in response.body

    @pytest.mark.parametrize("connection", [None, "keep-alive", "upgraded", "close"])
    def test_connection_without_upgrade_token_is_400(self, connection: str | None) -> None:
        event, _ = refused(request(("Connection", connection)), 400)
        assert "Connection" in str(event.error)

    @pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "DELETE"])
    def test_method_other_than_get_is_405_with_allow(self, method: str) -> None:
        event, response = refused(request(method=method), 405, method=method)
        assert response.get(b"allow") == [b"GET"]
        assert (b"allow", b"GET") in event.headers
        assert method in str(event.error)

    def test_http_1_0_is_400(self) -> None:
        event, _ = refused(request(version="1.0"), 400)
        assert "HTTP/1.0" in str(event.error)

    def test_missing_host_is_400_from_h11(self) -> None:
        event, _ = refused(request(("Host", None)), 400)
        assert "Host" in str(event.error)

    def test_two_host_headers_are_400(self) -> None:
        refused(request(extra=(("Host", "other.example.com"),)), 400)

    @pytest.mark.parametrize(
        "key",
        [
            None,  # missing
            "",
            "dGhlIHNhbXBsZSBub25jZQ",  # 22 characters: padding dropped
            "AAAAAAAAAAAAAAAAAAAAAAAA",  # 24 characters without padding: 18 bytes
            base64.b64encode(bytes(15)).decode(),  # 20 characters
            base64.b64encode(bytes(17)).decode(),  # 24 characters, 17 bytes
            "AAAAAAAAAAAAAAAAAAAAA===",  # bad padding
            "AAAAAAAAAAAAAAAAAAAAAA=A",  # padding in the middle
            "dGhlIHNhbXBsZSBub25jZQ!=",  # not base64
            "dGhlIHNhbXBsZSBub25jZQ==AAAA",  # 28 characters
        ],
    )
    def test_key_not_base64_of_16_bytes_is_400(self, key: str | None) -> None:
        event, _ = refused(request(("Sec-WebSocket-Key", key)), 400)
        assert "Sec-WebSocket-Key" in str(event.error)

    def test_key_twice_is_400(self) -> None:
        data = request(extra=(("Sec-WebSocket-Key", base64.b64encode(bytes(16)).decode()),))
        event, _ = refused(data, 400)
        assert "2 times" in str(event.error)

    def test_any_base64_of_16_bytes_is_a_key(self) -> None:
        for raw in (bytes(16), b"\xff" * 16, bytes(range(16))):
            key = base64.b64encode(raw).decode()
            _, events = server_events(request(("Sec-WebSocket-Key", key)))
            assert [type(e) for e in events] == [Handshake]

    @pytest.mark.parametrize("version", [None, "8", "12", "14", "13, 8", "013", ""])
    def test_version_other_than_13_is_426_naming_13(self, version: str | None) -> None:
        event, response = refused(request(("Sec-WebSocket-Version", version)), 426)
        assert response.get(b"sec-websocket-version") == [b"13"]
        assert (b"sec-websocket-version", b"13") in event.headers

    def test_version_twice_is_426(self) -> None:
        refused(request(extra=(("Sec-WebSocket-Version", "13"),)), 426)

    @pytest.mark.parametrize(
        "extra",
        [
            (("Content-Length", "5"),),
            (("Transfer-Encoding", "chunked"),),
        ],
    )
    def test_request_with_a_body_is_400(self, extra: tuple[tuple[str, str], ...]) -> None:
        event, _ = refused(request(extra=extra), 400)
        assert "body" in str(event.error)

    def test_content_length_zero_is_no_body(self) -> None:
        _, events = server_events(request(extra=(("Content-Length", "0"),)))
        assert [type(e) for e in events] == [Handshake]

    def test_garbage_is_400(self) -> None:
        refused(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400)

    def test_non_ascii_target_is_400(self) -> None:
        refused(request(target="/caf\xe9"), 400)

    @pytest.mark.parametrize("name", ["Host", "Origin"])
    def test_non_ascii_host_or_origin_is_400(self, name: str) -> None:
        data = (
            request((name, "caf\xe9.example"))
            if name == "Host"
            else request(extra=((name, "http://caf\xe9.example"),))
        )
        event, _ = refused(data, 400)
        assert name in str(event.error)

    @pytest.mark.parametrize("start", [b"\r\n", b"\n", b" ", b"\x00", b"\x16\x03\x01"])
    @pytest.mark.parametrize("chunk", [1, 1 << 20])
    def test_head_starting_with_a_control_byte_is_400_however_split(
        self, start: bytes, chunk: int
    ) -> None:
        data = start + request()
        server = ServerConnection()
        events = []
        for i in range(0, len(data), chunk):
            events += server.receive_data(data[i : i + chunk])
        (event,) = events
        assert isinstance(event, Rejected)
        assert event.status_code == 400
        assert str(event.error).startswith(
            f"malformed HTTP request: it starts with byte 0x{start[0]:02x}"
        )


class TestHeadSizeLimit:
    """``max_handshake_size`` bounds the request head, however the bytes are split."""

    LIMIT = 1024

    def padded(self, size: int) -> bytes:
        base = request(extra=(("X-Pad", ""),))
        data = request(extra=(("X-Pad", "a" * (size - len(base))),))
        assert len(data) == size
        return data

    def feed(self, data: bytes, chunk: int) -> tuple[ServerConnection, list[object]]:
        server = ServerConnection(max_handshake_size=self.LIMIT)
        events: list[object] = []
        for i in range(0, len(data), chunk):
            events += server.receive_data(data[i : i + chunk])
        return server, events

    @pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
    def test_head_at_the_limit_is_read(self, chunk: int) -> None:
        _, events = self.feed(self.padded(self.LIMIT), chunk)
        assert [type(e) for e in events] == [Handshake]

    @pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
    @pytest.mark.parametrize("excess", [1, 2, 5000])
    def test_head_over_the_limit_is_431(self, chunk: int, excess: int) -> None:
        server, events = self.feed(self.padded(self.LIMIT + excess), chunk)
        assert len(events) == 1
        event = events[0]
        assert isinstance(event, Rejected)
        assert event.status_code == 431
        # The same event, body included, whether h11 saw the head incomplete or whole.
        assert event.body == f"431 {event.error}\n".encode()
        assert "exceeds 1024 bytes" in str(event.error)
        assert server.state is State.REJECTED
        assert parse_response(server.data_to_send()).status == 431

    def test_frames_after_the_head_do_not_count(self) -> None:
        data = self.padded(self.LIMIT) + masked_frame(0x1, b"x" * 100)
        _, events = self.feed(data, 1 << 20)
        assert [type(e) for e in events] == [Handshake]


class TestPlainHTTP:
    """A request without ``Upgrade: websocket`` is reported to the caller to answer."""

    def test_plain_request_is_httprequest_answerable_with_200(self) -> None:
        data = b"GET /health?full=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"
        server, events = server_events(data)
        assert events == [
            HTTPRequest(
                method="GET", path="/health?full=1", headers=((b"host", b"a"), (b"accept", b"*/*"))
            )
        ]
        (event,) = events
        assert isinstance(event, HTTPRequest)
        assert server.state is State.CONNECTING
        server.reject(event, status=200, headers=[("Content-Type", "text/plain")], body=b"ok")
        out = server.data_to_send()
        assert out == (
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: 2\r\n"
            b"Connection: close\r\n"
            b"\r\n"
            b"ok"
        )
        response = parse_response(out)
        assert (response.status, response.body) == (200, b"ok")
        assert server.state is State.REJECTED
        assert server.should_close()

    def test_post_with_body_is_httprequest(self) -> None:
        data = b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        server, (event,) = server_events(data)
        assert isinstance(event, HTTPRequest)
        assert (event.method, event.path) == ("POST", "/form")
        server.reject(event, status=404, body=b"none")
        response = parse_response(server.data_to_send(), method="POST")
        assert (response.status, response.reason, response.body) == (404, b"Not Found", b"none")

    def test_large_body_is_not_read_and_answer_still_works(self) -> None:
        body = b"x" * 100_000  # far beyond max_frame_size + max_handshake_size
        head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"
        server, events = server_events(head, max_message_size=1024, max_handshake_size=1024)
        (event,) = events
        assert isinstance(event, HTTPRequest)
        assert server.receive_data(body) == []  # the body is not ours to read
        assert server.state is State.CONNECTING
        server.reject(event, status=413, body=b"too big")
        response = parse_response(server.data_to_send(), method="POST")
        assert (response.status, response.body) == (413, b"too big")
        assert server.should_close()

    def test_head_request_answer_has_no_body(self) -> None:
        server, (event,) = server_events(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert isinstance(event, HTTPRequest)
        server.reject(event, status=200, body=b"hello")
        out = server.data_to_send()
        assert out.endswith(b"\r\n\r\n")
        response = parse_response(out, method="HEAD")
        assert response.get(b"content-length") == [b"5"]
        assert response.body == b""

    def test_accept_refuses_an_httprequest(self) -> None:
        server, (event,) = server_events(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(LocalProtocolError, match="reject"):
            server.accept(event)  # type: ignore[arg-type]
        assert server.state is State.CONNECTING
        assert server.data_to_send() == b""


class TestServerReject:
    def test_reject_403_with_body_parses_as_http(self) -> None:
        server = ServerConnection()
        event = handshake_of(server)
        server.reject(
            event, status=403, headers=[("Content-Type", "text/plain")], body=b"go away\n"
        )
        response = parse_response(server.data_to_send())
        assert response.status == 403
        assert response.reason == b"Forbidden"
        assert response.body == b"go away\n"
        assert response.get(b"content-type") == [b"text/plain"]
        assert response.get(b"content-length") == [b"8"]
        assert response.get(b"connection") == [b"close"]
        assert response.trailing == b""
        assert server.state is State.REJECTED
        assert server.should_close()
        assert server.close_expected()

    def test_unregistered_status_has_an_empty_reason(self) -> None:
        server = ServerConnection()
        server.reject(handshake_of(server), status=599)
        out = server.data_to_send()
        assert out.startswith(b"HTTP/1.1 599 \r\n")
        assert parse_response(out).status == 599

    def test_reject_defaults_to_403_without_body(self) -> None:
        server = ServerConnection()
        server.reject(handshake_of(server))
        response = parse_response(server.data_to_send())
        assert (response.status, response.body) == (403, b"")
        assert response.get(b"content-length") == [b"0"]

    def test_reject_keeps_callers_content_length_and_connection(self) -> None:
        server = ServerConnection()
        server.reject(
            handshake_of(server),
            status=503,
            headers=[(b"Content-Length", b"2"), ("Connection", "close"), ("Retry-After", "5")],
            body=b"no",
        )
        response = parse_response(server.data_to_send())
        assert response.status == 503
        assert response.get(b"content-length") == [b"2"]
        assert response.get(b"connection") == [b"close"]
        assert response.get(b"retry-after") == [b"5"]

    @pytest.mark.parametrize("status", [100, 101, 199, 600, 0])
    def test_status_out_of_range_raises_and_keeps_waiting(self, status: int) -> None:
        server = ServerConnection()
        event = handshake_of(server)
        with pytest.raises(LocalProtocolError, match=str(status)):
            server.reject(event, status=status)
        assert server.state is State.CONNECTING
        assert server.data_to_send() == b""
        server.reject(event, status=400)
        assert parse_response(server.data_to_send()).status == 400

    @pytest.mark.parametrize(
        "headers",
        [
            [("X-Bad", "a\r\nInjected: 1")],
            [("Bad Name", "v")],
            [("X-Euro", "\u20ac")],
        ],
    )
    def test_bad_header_raises_local_error(self, headers: list[tuple[str, str]]) -> None:
        server = ServerConnection()
        event = handshake_of(server)
        with pytest.raises(LocalProtocolError):
            server.reject(event, headers=headers)
        assert server.state is State.CONNECTING

    def test_reject_with_a_foreign_event_raises(self) -> None:
        server = ServerConnection()
        event = handshake_of(server)
        twin = Handshake(
            path=event.path,
            host=event.host,
            origin=event.origin,
            subprotocols=event.subprotocols,
            extensions=event.extensions,
            headers=event.headers,
        )
        assert twin == event
        with pytest.raises(LocalProtocolError, match="the event this connection reported"):
            server.reject(twin)
        with pytest.raises(LocalProtocolError, match="the event this connection reported"):
            server.accept(twin)
        assert server.state is State.CONNECTING

    def test_answer_before_any_request_raises(self) -> None:
        other = ServerConnection()
        event = handshake_of(other)
        server = ServerConnection()
        with pytest.raises(LocalProtocolError, match="CONNECTING"):
            server.accept(event)
        with pytest.raises(LocalProtocolError, match="CONNECTING"):
            server.reject(event)

    def test_answer_twice_raises_naming_the_state(self) -> None:
        server = ServerConnection()
        event = handshake_of(server)
        server.reject(event)
        with pytest.raises(LocalProtocolError, match="REJECTED"):
            server.reject(event)
        with pytest.raises(LocalProtocolError, match="REJECTED"):
            server.accept(event)
        server = ServerConnection()
        event = handshake_of(server)
        server.accept(event)
        with pytest.raises(LocalProtocolError, match="OPEN"):
            server.accept(event)
        with pytest.raises(LocalProtocolError, match="OPEN"):
            server.reject(event)

    def test_eof_during_handshake(self) -> None:
        server = ServerConnection()
        assert server.receive_data(request()[:20]) == []
        (event,) = server.receive_eof()
        assert event == Close(code=1006)
        assert isinstance(event.error, RemoteProtocolError)
        assert event.error.close_code == 1006
        assert server.state is State.CLOSED
        assert server.should_close()
        assert server.receive_eof() == []
        with pytest.raises(LocalProtocolError, match="receive_eof"):
            server.receive_data(b"x")

    def test_eof_with_a_request_waiting_for_an_answer(self) -> None:
        server = ServerConnection()
        event = handshake_of(server)
        (close,) = server.receive_eof()
        assert close == Close(code=1006)
        with pytest.raises(LocalProtocolError, match="CLOSED"):
            server.accept(event)


# ------------------------------------------------------------------------------------------------
# RFC 6455 §4.2.2: the server's opening handshake (accept).
# ------------------------------------------------------------------------------------------------


class TestServerAccept:
    def test_accept_known_answer_from_rfc_1_3(self) -> None:
        server = ServerConnection()
        assert server.accept(handshake_of(server)) == []
        out = server.data_to_send()
        assert out == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n"
            b"\r\n"
        )
        response = parse_response(out)
        assert response.status == 101
        assert response.get(b"sec-websocket-accept") == [RFC_ACCEPT.encode()]
        assert server.state is State.OPEN
        assert not server.should_close()
        assert not server.close_expected()

    def test_accept_key_function_known_answer(self) -> None:
        assert accept_key(RFC_KEY) == RFC_ACCEPT
        assert accept_key(RFC_KEY.encode()) == RFC_ACCEPT

    def test_default_subprotocol_is_the_servers_first_offered_one(self) -> None:
        server = ServerConnection(subprotocols=["v3", "superchat", "chat"])
        data = request(extra=(("Sec-WebSocket-Protocol", "chat, superchat"),))
        server.accept(handshake_of(server, data))
        assert parse_response(server.data_to_send()).get(b"sec-websocket-protocol") == [
            b"superchat"
        ]

    def test_agreed_subprotocol_and_extensions_on_both_sides(self) -> None:
        pair = ConnectionPair(
            client={"subprotocols": ["v2", "chat"], "extensions": [PerMessageDeflate()]},
            server={"subprotocols": ["chat", "v2"], "extensions": [PerMessageDeflate()]},
        )
        assert (pair.client.subprotocol, pair.server.subprotocol) == (None, None)
        assert pair.client.extensions == pair.server.extensions == ()
        pair.handshake()
        assert pair.server.subprotocol == pair.client.subprotocol == "chat"
        assert [e.name for e in pair.server.extensions] == ["permessage-deflate"]
        assert pair.client.extensions == pair.server.extensions

    def test_explicit_subprotocol(self) -> None:
        server = ServerConnection(subprotocols=["superchat"])
        data = request(extra=(("Sec-WebSocket-Protocol", "chat, superchat"),))
        server.accept(handshake_of(server, data), subprotocol="chat")
        assert parse_response(server.data_to_send()).get(b"sec-websocket-protocol") == [b"chat"]

    def test_no_subprotocol_header_when_none_is_common(self) -> None:
        server = ServerConnection(subprotocols=["superchat"])
        data = request(extra=(("Sec-WebSocket-Protocol", "chat"),))
        server.accept(handshake_of(server, data))
        assert parse_response(server.data_to_send()).get(b"sec-websocket-protocol") == []

    @pytest.mark.parametrize("offered", [None, "chat", "chat, v2"])
    def test_unoffered_subprotocol_raises_and_keeps_waiting(self, offered: str | None) -> None:
        server = ServerConnection()
        extra = (("Sec-WebSocket-Protocol", offered),) if offered else ()
        event = handshake_of(server, request(extra=extra))
        with pytest.raises(LocalProtocolError, match="superchat"):
            server.accept(event, subprotocol="superchat")
        assert server.state is State.CONNECTING
        assert server.data_to_send() == b""
        server.accept(event)
        assert server.state is State.OPEN

    def test_extra_headers_str_and_bytes(self) -> None:
        server = ServerConnection()
        server.accept(
            handshake_of(server),
            extra_headers=[("X-Server", "wsmachine"), (b"Set-Cookie", b"a=1")],
        )
        response = parse_response(server.data_to_send())
        assert response.get(b"x-server") == [b"wsmachine"]
        assert response.get(b"set-cookie") == [b"a=1"]

    @pytest.mark.parametrize(
        "headers",
        [[("X-Bad", "a\r\nb")], [("X-Bad", "a\nb")], [("", "v")], [("X", "\u20ac")]],
    )
    def test_bad_extra_header_raises_local_error(self, headers: list[tuple[str, str]]) -> None:
        server = ServerConnection()
        event = handshake_of(server)
        with pytest.raises(LocalProtocolError):
            server.accept(event, extra_headers=headers)
        assert server.state is State.CONNECTING
        assert server.data_to_send() == b""

    def test_frames_pipelined_in_the_same_read_come_from_accept(self) -> None:
        server = ServerConnection()
        data = request() + masked_frame(0x1, b"hello") + masked_frame(0x9, b"p")
        events = server.receive_data(data)
        assert [type(e) for e in events] == [Handshake]
        (event,) = events
        assert isinstance(event, Handshake)
        assert server.data_to_send() == b""
        assert server.accept(event) == [Text(data="hello"), Ping(payload=b"p")]
        out = server.data_to_send()
        head, _, frames = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert frames == b"\x8a\x01p"  # the Pong follows the 101

    def test_frames_in_later_reads_before_accept_come_from_accept(self) -> None:
        server = ServerConnection()
        event = handshake_of(server)
        frame = masked_frame(0x2, b"\x00\x01", fin=False) + masked_frame(0x0, b"\x02")
        for i in range(len(frame)):
            assert server.receive_data(frame[i : i + 1]) == []
        assert server.accept(event) == [Binary(data=b"\x00\x01\x02")]

    def test_bad_pipelined_frame_fails_at_accept(self) -> None:
        server = ServerConnection()
        event = handshake_of(server, request() + b"\x81\x01x")  # unmasked
        (close,) = server.accept(event)
        assert isinstance(close, Close)
        assert close.code == 1002
        assert server.state is State.REMOTE_CLOSING  # the failing Close is owed
        assert server.closed_first == "local"
        assert server.close_sent is None
        reason = close.reason.encode()
        wire = server.data_to_send()  # the 101, then the failing Close
        assert wire.startswith(b"HTTP/1.1 101 ")
        assert wire.endswith(bytes([0x88, 2 + len(reason)]) + b"\x03\xea" + reason)
        assert server.state is State.CLOSED
        assert server.close_sent == CloseInfo(1002, close.reason)
        assert server.close_received is None

    @pytest.mark.parametrize("split", [False, True])
    def test_too_much_early_data_is_refused(self, split: bool) -> None:
        server = ServerConnection(max_message_size=100, max_handshake_size=1024)
        early = masked_frame(0x2, b"x" * 120) * 10
        if split:
            events = server.receive_data(request())
            events += server.receive_data(early)
        else:
            events = server.receive_data(request() + early)
        assert [type(e) for e in events] == [Handshake, Rejected]
        rejected = events[1]
        assert isinstance(rejected, Rejected)
        assert rejected.status_code == 400
        assert server.state is State.REJECTED
        assert parse_response(server.data_to_send()).status == 400

    def test_extension_negotiated(self) -> None:
        server = ServerConnection(extensions=[PerMessageDeflate()])
        data = request(extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),))
        server.accept(handshake_of(server, data))
        assert parse_response(server.data_to_send()).get(b"sec-websocket-extensions") == [
            b"permessage-deflate"
        ]

    def test_extension_not_offered_is_not_accepted(self) -> None:
        server = ServerConnection(extensions=[PerMessageDeflate()])
        data = request(extra=(("Sec-WebSocket-Extensions", "x-unknown"),))
        server.accept(handshake_of(server, data))
        assert parse_response(server.data_to_send()).get(b"sec-websocket-extensions") == []


# ------------------------------------------------------------------------------------------------
# RFC 6455 §4.1: the client's opening handshake and its checks of the answer.
# ------------------------------------------------------------------------------------------------


def parse_request(data: bytes) -> h11.Request:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    return event


def header(req: h11.Request, name: bytes) -> list[bytes]:
    return [value for key, value in req.headers if key == name]


def key_of(client_request: bytes) -> str:
    (key,) = header(parse_request(client_request), b"sec-websocket-key")
    return key.decode()


def response_to(
    key: str,
    *replace: tuple[str, str | None],
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A 101 answering ``key``, edited like :func:`request` edits a request."""
    defaults = (
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    )
    changes = {name.lower(): value for name, value in replace}
    lines = ["HTTP/1.1 101 Switching Protocols"]
    for name, value in defaults:
        value = changes.get(name.lower(), value)
        if value is not None:
            lines.append(f"{name}: {value}")
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def new_client(**settings: object) -> tuple[ClientConnection, str]:
    client = ClientConnection("server.example.com", "/chat", **settings)  # type: ignore[arg-type]
    return client, key_of(client.data_to_send())


class TestClientRequest:
    def test_request_headers(self) -> None:
        client = ClientConnection("example.com:8080", "/chat?room=1")
        req = parse_request(client.data_to_send())
        assert req.method == b"GET"
        assert req.target == b"/chat?room=1"
        assert req.http_version == b"1.1"
        assert header(req, b"host") == [b"example.com:8080"]
        assert header(req, b"upgrade") == [b"websocket"]
        assert header(req, b"connection") == [b"Upgrade"]
        assert header(req, b"sec-websocket-version") == [b"13"]
        assert header(req, b"origin") == []
        assert header(req, b"sec-websocket-protocol") == []
        assert header(req, b"sec-websocket-extensions") == []
        assert client.state is State.CONNECTING
        assert client.data_to_send() == b""  # queued once, by the constructor

    def test_optional_request_headers(self) -> None:
        client = ClientConnection(
            "h",
            subprotocols=["chat", "superchat"],
            extensions=[PerMessageDeflate()],
            origin="http://example.com",
            extra_headers=[("Authorization", "Bearer x"), (b"X-B", b"1")],
        )
        req = parse_request(client.data_to_send())
        assert req.target == b"/"
        assert header(req, b"origin") == [b"http://example.com"]
        assert header(req, b"sec-websocket-protocol") == [b"chat, superchat"]
        (offer,) = header(req, b"sec-websocket-extensions")
        assert offer.startswith(b"permessage-deflate")
        assert header(req, b"authorization") == [b"Bearer x"]
        assert header(req, b"x-b") == [b"1"]

    def test_key_is_fresh_base64_of_16_bytes(self) -> None:
        keys = [key_of(ClientConnection("h").data_to_send()) for _ in range(50)]
        for key in keys:
            assert len(key) == 24
            assert len(base64.b64decode(key, validate=True)) == 16
        assert len(set(keys)) == len(keys)

    def test_request_is_accepted_by_our_server(self) -> None:
        client = ClientConnection("h", "/p", subprotocols=["chat"], origin="o")
        (event,) = ServerConnection().receive_data(client.data_to_send())
        assert isinstance(event, Handshake)
        assert (event.path, event.host, event.origin, event.subprotocols) == (
            "/p",
            "h",
            "o",
            ("chat",),
        )

    @pytest.mark.parametrize(
        "settings",
        [
            {"extra_headers": [("X", "a\r\nb")]},
            {"extra_headers": [("X Y", "a")]},
            {"extra_headers": [("X", "\u20ac")]},
            {"path": "/caf\xe9"},
            {"origin": "http://caf\xe9.example"},
            {"subprotocols": ["a b"]},
            {"subprotocols": ["chat", ""]},
            {"subprotocols": ["a,b"]},
            {"subprotocols": ["chat", "chat"]},
        ],
    )
    def test_bad_request_settings_raise_local_error(self, settings: dict[str, object]) -> None:
        with pytest.raises(LocalProtocolError):
            ClientConnection("h", **settings)  # type: ignore[arg-type]


class TestClientReadsAnswer:
    def test_accepted_event_fields(self) -> None:
        client, key = new_client(subprotocols=["chat", "superchat"])
        data = response_to(key, extra=(("Sec-WebSocket-Protocol", "superchat"), ("X-A", "1")))
        (event,) = client.receive_data(data)
        assert event == Accepted(
            subprotocol="superchat",
            extensions=(),
            headers=(
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", accept_key(key).encode()),
                (b"sec-websocket-protocol", b"superchat"),
                (b"x-a", b"1"),
            ),
        )
        assert client.state is State.OPEN
        assert not client.should_close()
        assert not client.close_expected()
        assert client.data_to_send() == b""

    def test_accepted_without_subprotocol(self) -> None:
        client, key = new_client(subprotocols=["chat"])
        (event,) = client.receive_data(response_to(key))
        assert isinstance(event, Accepted)
        assert event.subprotocol is None

    @pytest.mark.parametrize("chunk", [1, 3, 1000])
    def test_accepted_in_pieces(self, chunk: int) -> None:
        client, key = new_client()
        data = response_to(key)
        events = []
        for i in range(0, len(data), chunk):
            events += client.receive_data(data[i : i + chunk])
        assert [type(e) for e in events] == [Accepted]

    def test_extension_accepted(self) -> None:
        client, key = new_client(extensions=[PerMessageDeflate()])
        data = response_to(key, extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),))
        (event,) = client.receive_data(data)
        assert isinstance(event, Accepted)
        assert event.extensions == (ExtensionOffer("permessage-deflate"),)

    @pytest.mark.parametrize(
        ("replace", "extra", "needle"),
        [
            ((("Sec-WebSocket-Accept", RFC_ACCEPT),), (), "Sec-WebSocket-Accept"),
            ((("Sec-WebSocket-Accept", None),), (), "Sec-WebSocket-Accept"),
            ((), (("Sec-WebSocket-Accept", RFC_ACCEPT),), "2 times"),
            ((("Upgrade", None),), (), "Upgrade"),
            ((("Upgrade", "h2c"),), (), "Upgrade"),
            ((("Connection", None),), (), "Connection"),
            ((("Connection", "keep-alive"),), (), "Connection"),
            ((), (("Sec-WebSocket-Protocol", "superchat"),), "subprotocol"),
            ((), (("Sec-WebSocket-Protocol", "chat, v2"),), "subprotocol"),
            ((), (("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "v2")), "subprot"),
            ((), (("Sec-WebSocket-Extensions", "x-unoffered"),), "extension"),
            ((), (("Sec-WebSocket-Extensions", "permessage-deflate"),), "extension"),
        ],
    )
    def test_invalid_101_is_rejected_with_error(
        self,
        replace: tuple[tuple[str, str | None], ...],
        extra: tuple[tuple[str, str], ...],
        needle: str,
    ) -> None:
        client, key = new_client(subprotocols=["chat", "v2"])
        data = response_to(key, *replace, extra=extra) + b"\x81\x02hi"
        (event,) = client.receive_data(data)
        assert isinstance(event, Rejected)
        assert event.status_code == 101
        assert isinstance(event.error, RemoteProtocolError)
        assert needle in str(event.error)
        assert client.state is State.REJECTED
        assert client.should_close()
        assert client.close_expected()
        assert client.data_to_send() == b""  # fail without a Close frame: no connection
        assert client.receive_data(b"\x81\x02hi") == []
        with pytest.raises(LocalProtocolError, match="REJECTED"):
            client.send_text("x")

    def test_invalid_101_keeps_its_headers(self) -> None:
        client, key = new_client()
        data = response_to(key, ("Sec-WebSocket-Accept", RFC_ACCEPT), extra=(("Server", "x/1"),))
        (event,) = client.receive_data(data)
        assert isinstance(event, Rejected)
        assert (b"server", b"x/1") in event.headers
        assert (b"sec-websocket-accept", RFC_ACCEPT.encode()) in event.headers

    def test_non_101_with_body(self) -> None:
        client, _ = new_client()
        data = (
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nno way"
        )
        (event,) = client.receive_data(data)
        assert event == Rejected(
            status_code=403,
            headers=((b"content-type", b"text/plain"), (b"content-length", b"6")),
            body=b"no way",
        )
        assert isinstance(event, Rejected)
        assert event.error is None
        assert client.state is State.REJECTED
        assert client.should_close()

    @pytest.mark.parametrize("chunk", [1, 10, 10000])
    def test_non_101_body_over_max_rejection_body_is_truncated(self, chunk: int) -> None:
        client, _ = new_client(max_rejection_body=10)
        data = b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n" + bytes(range(100))
        events = []
        for i in range(0, len(data), chunk):
            events += client.receive_data(data[i : i + chunk])
        assert events == [
            Rejected(status_code=500, headers=((b"content-length", b"100"),), body=bytes(range(10)))
        ]
        assert client.state is State.REJECTED

    def test_non_101_body_exactly_max_rejection_body_is_whole(self) -> None:
        client, _ = new_client(max_rejection_body=10)
        data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\n0123456789"
        (event,) = client.receive_data(data)
        assert isinstance(event, Rejected)
        assert event.body == b"0123456789"

    def test_non_101_body_until_eof(self) -> None:
        client, _ = new_client()
        assert client.receive_data(b"HTTP/1.1 503 Busy\r\nX: y\r\n\r\nbusy ") == []
        assert client.receive_data(b"now") == []
        assert client.receive_data(b"") == []  # an empty read is not the end
        assert client.state is State.CONNECTING
        (event,) = client.receive_eof()
        assert event == Rejected(status_code=503, headers=((b"x", b"y"),), body=b"busy now")
        assert isinstance(event, Rejected)
        assert event.error is None
        assert client.state is State.REJECTED
        assert client.should_close()

    def test_chunked_non_101(self) -> None:
        client, _ = new_client()
        data = (
            b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        (event,) = client.receive_data(data)
        assert isinstance(event, Rejected)
        assert (event.status_code, event.body) == (401, b"abcde")

    def test_interim_1xx_then_final_answer(self) -> None:
        client, _ = new_client()
        data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
        (event,) = client.receive_data(data)
        assert event == Rejected(status_code=403, headers=((b"content-length", b"0"),))

    def test_frames_after_the_101_in_the_same_read(self) -> None:
        client, key = new_client()
        data = response_to(key) + b"\x81\x02hi" + b"\x89\x01p" + b"\x82\x01"
        events = client.receive_data(data)
        assert [type(e) for e in events] == [Accepted, Text, Ping]
        assert events[1:] == [Text(data="hi"), Ping(payload=b"p")]
        pong = client.data_to_send()
        assert pong[0] == 0x8A
        assert pong[1] == 0x80 | 1  # masked, one byte
        assert bytes([pong[6] ^ pong[2]]) == b"p"
        assert client.receive_data(b"z") == [Binary(data=b"z")]

    def test_bad_frame_after_the_101_fails_the_connection(self) -> None:
        client, key = new_client()
        events = client.receive_data(response_to(key) + b"\x81\x82abcdxx")  # masked by server
        assert [type(e) for e in events] == [Accepted, Close]
        close = events[1]
        assert isinstance(close, Close)
        assert close.code == 1002
        assert client.state is State.REMOTE_CLOSING  # the failing Close is owed
        assert not client.should_close()
        assert client.close_sent is None
        assert client.data_to_send()[:1] == b"\x88"
        assert client.state is State.CLOSED
        assert client.should_close()
        assert client.close_sent == CloseInfo(1002, close.reason)
        assert client.close_received is None
        assert client.closed_first == "local"

    def test_eof_before_any_answer(self) -> None:
        client, _ = new_client()
        assert client.receive_data(b"HTTP/1.1 101 Switching") == []
        (event,) = client.receive_eof()
        assert event == Close(code=1006)
        assert isinstance(event, Close)
        assert isinstance(event.error, RemoteProtocolError)
        assert client.state is State.CLOSED
        assert client.should_close()
        assert client.receive_eof() == []

    def test_eof_in_a_body_with_content_length(self) -> None:
        client, _ = new_client()
        assert client.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nab") == []
        (event,) = client.receive_eof()
        assert isinstance(event, Rejected)
        assert event.status_code == 403
        assert isinstance(event.error, RemoteProtocolError)
        assert client.state is State.REJECTED

    @pytest.mark.parametrize("chunk", [1, 1 << 20])
    def test_answer_starting_with_a_control_byte(self, chunk: int) -> None:
        client, key = new_client()
        data = b"\r\n" + response_to(key)
        events = []
        for i in range(0, len(data), chunk):
            events += client.receive_data(data[i : i + chunk])
        (event,) = events
        assert isinstance(event, Rejected)
        assert str(event.error).startswith("malformed HTTP response: it starts with byte 0x0d")

    def test_control_byte_after_an_interim_answer(self) -> None:
        client, _ = new_client()
        data = b"HTTP/1.1 100 Continue\r\n\r\n\x00HTTP/1.1 200 OK\r\n\r\n"
        for chunk in (1, 1 << 20):
            client, _ = new_client()
            events = []
            for i in range(0, len(data), chunk):
                events += client.receive_data(data[i : i + chunk])
            (event,) = events
            assert isinstance(event, Rejected)
            assert "byte 0x00" in str(event.error)

    def test_garbage_answer(self) -> None:
        client, _ = new_client()
        (event,) = client.receive_data(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        assert isinstance(event, Rejected)
        assert event.status_code == 0
        assert isinstance(event.error, RemoteProtocolError)
        assert client.state is State.REJECTED

    @pytest.mark.parametrize("chunk", [1, 50, 1 << 20])
    def test_answer_head_over_max_handshake_size(self, chunk: int) -> None:
        client, key = new_client(max_handshake_size=512)
        data = response_to(key, extra=(("X-Pad", "a" * 600),))
        events = []
        for i in range(0, len(data), chunk):
            events += client.receive_data(data[i : i + chunk])
        assert len(events) == 1
        event = events[0]
        assert isinstance(event, Rejected)
        assert event.status_code == 0
        assert "exceeds 512 bytes" in str(event.error)
        assert client.state is State.REJECTED

    def test_empty_read_during_handshake_is_nothing(self) -> None:
        client, key = new_client()
        assert client.receive_data(b"") == []
        assert client.state is State.CONNECTING
        server = ServerConnection()
        assert server.receive_data(b"") == []
        assert server.receive_data(bytearray()) == []
        assert server.state is State.CONNECTING
        assert server.data_to_send() == b""
        (event,) = client.receive_data(memoryview(response_to(key)))
        assert isinstance(event, Accepted)
