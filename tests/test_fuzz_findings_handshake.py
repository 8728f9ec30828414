"""The opening-handshake findings of the independent fuzz (issue 17), one class per finding.

Each test feeds the bytes the fuzz found (or their neighbours) and checks the machine's answer
on the wire, so a regression shows as the same input getting a 101 again.
"""

from __future__ import annotations

import re

import h11
import pytest

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Handshake,
    HTTPRequest,
    InvalidArgumentError,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
)
from wsmachine.handshake import accept_key

#: The fuzz's upgrade request, without its final CRLF: ``REQ + b"\r\n"`` is complete.
REQ = (
    b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def answer(data: bytes) -> list[object]:
    """Feed a whole request to a fresh server; return its events."""
    return list(ServerConnection().receive_data(data))


def handshake(data: bytes) -> Handshake:
    (event,) = answer(data)
    assert isinstance(event, Handshake), event
    return event


def new_client() -> tuple[ClientConnection, str]:
    """A client whose request was sent; also its key."""
    client = ClientConnection("example.com", "/chat")
    found = re.search(rb"Sec-WebSocket-Key: (\S+)\r\n", client.data_to_send())
    assert found is not None
    return client, found.group(1).decode()


def switch(key: str, version: bytes = b"1.1") -> bytes:
    """A valid 101 for ``key``, in HTTP/``version``."""
    return (
        b"HTTP/" + version + b" 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )


def refusal(data: bytes, status: int = 400) -> str:
    """Feed a request that must be refused with ``status``; return the error's text.

    Fed whole and byte by byte: the refusal and its text must not depend on the split.
    """
    texts = []
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        server = ServerConnection()
        events = [event for piece in pieces for event in server.receive_data(piece)]
        assert len(events) == 1, events
        (event,) = events
        assert isinstance(event, Rejected), event
        assert event.status_code == status
        assert isinstance(event.error, RemoteProtocolError)
        assert server.state is State.REJECTED
        assert server.data_to_send().startswith(f"HTTP/1.1 {status} ".encode())
        texts.append(str(event.error))
    assert texts[0] == texts[1]
    return texts[0]


# ------------------------------------------------------------------------------------------------
# 4. An upgrade in HTTP/1.2 is "HTTP/1.1 or higher" (RFC 6455 §4.2.1).
# ------------------------------------------------------------------------------------------------


class TestRequestVersion:
    @pytest.mark.parametrize("version", [b"1.1", b"1.2", b"1.9"])
    def test_http_1_1_or_a_later_http_1_is_accepted(self, version: bytes) -> None:
        server = ServerConnection()
        (event,) = server.receive_data(REQ.replace(b"HTTP/1.1", b"HTTP/" + version) + b"\r\n")
        assert isinstance(event, Handshake)
        server.accept(event)
        # The answer is in the version this server speaks (RFC 9110 §6.2).
        assert server.data_to_send().startswith(b"HTTP/1.1 101 ")
        assert server.state is State.OPEN

    def test_http_1_0_is_400(self) -> None:
        text = refusal(REQ.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n")
        assert "HTTP/1.0" in text and "§4.2.1" in text

    @pytest.mark.parametrize("version", [b"0.9", b"2.0", b"3.1"])
    def test_another_major_version_is_505(self, version: bytes) -> None:
        text = refusal(REQ.replace(b"HTTP/1.1", b"HTTP/" + version) + b"\r\n", 505)
        assert f"HTTP/{version.decode()}" in text and "§4.2.1" in text


# ------------------------------------------------------------------------------------------------
# 8. A 101 in HTTP/1.0 (which has no 101) or HTTP/3.1 is not a switch (RFC 6455 §4.1).
# ------------------------------------------------------------------------------------------------


class TestSwitchVersion:
    @pytest.mark.parametrize("version", [b"1.0", b"3.1", b"2.0", b"0.9"])
    def test_101_in_another_version_fails_the_handshake(self, version: bytes) -> None:
        client, key = new_client()
        (event,) = client.receive_data(switch(key, version) + b"\x81\x02hi")
        assert isinstance(event, Rejected)
        assert event.status_code == 101
        assert isinstance(event.error, RemoteProtocolError)
        text = str(event.error)
        assert f"HTTP/{version.decode()}" in text and "§4.1" in text
        assert client.state is State.REJECTED
        assert client.data_to_send() == b""  # no connection: no Close frame

    @pytest.mark.parametrize("version", [b"1.1", b"1.2"])
    def test_101_in_http_1_1_or_a_later_http_1_switches(self, version: bytes) -> None:
        client, key = new_client()
        (event,) = client.receive_data(switch(key, version))
        assert isinstance(event, Accepted)
        assert client.state is State.OPEN

    def test_a_refusal_in_http_1_0_is_a_plain_answer(self) -> None:
        client, _ = new_client()
        (event,) = client.receive_data(b"HTTP/1.0 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
        assert event == Rejected(status_code=403, headers=((b"content-length", b"2"),), body=b"no")
        assert isinstance(event, Rejected) and event.error is None


# ------------------------------------------------------------------------------------------------
# 7. A broken refusal body is described in our words, whatever the read boundaries.
# ------------------------------------------------------------------------------------------------


def client_outcome(pieces: list[bytes], eof: bool = False) -> Rejected:
    client, _ = new_client()
    events = [event for piece in pieces for event in client.receive_data(piece)]
    if eof:
        events += client.receive_eof()
    (event,) = events
    assert isinstance(event, Rejected)
    assert client.state is State.REJECTED
    return event


def every_split(data: bytes) -> list[list[bytes]]:
    """The data whole, byte by byte, and cut once at every offset."""
    cuts = [[data], [data[i : i + 1] for i in range(len(data))]]
    return cuts + [[data[:i], data[i:]] for i in range(1, len(data))]


class TestRefusalBodyErrors:
    CHUNKED = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"

    @pytest.mark.parametrize(
        "body",
        [
            b"1\r\nxAB\r\n",  # the fuzz's: a chunk footer that is not CRLF
            b"zz\r\n",  # a chunk size that is not hex
            b"0\r\nbad trailer\r\n\r\n",  # a trailer that is not a field line
        ],
    )
    def test_malformed_chunked_body_has_one_text_however_split(self, body: bytes) -> None:
        data = self.CHUNKED + body
        texts = set()
        for pieces in every_split(data):
            event = client_outcome(pieces)
            assert event.status_code == 403
            assert (b"transfer-encoding", b"chunked") in event.headers
            assert isinstance(event.error, RemoteProtocolError)
            texts.add(str(event.error))
        assert texts == {
            "the chunked body of the HTTP 403 response is malformed, or its chunk lines and "
            "trailer section pass 16384 bytes (RFC 9112 §7.1)"
        }

    @pytest.mark.parametrize(
        "data",
        [
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nab",
            CHUNKED + b"5\r\nab",
        ],
    )
    def test_body_cut_short_by_the_end_of_the_stream(self, data: bytes) -> None:
        texts = set()
        for pieces in every_split(data):
            event = client_outcome(pieces, eof=True)
            assert event.status_code == 403
            texts.add(str(event.error))
        assert texts == {
            "the stream ended inside the body of the HTTP 403 response (RFC 9112 §6.3)"
        }

    @pytest.mark.parametrize("role", ["client", "server"])
    def test_a_refused_head_shows_bytes_not_a_bytearray(self, role: str) -> None:
        if role == "client":
            event = client_outcome([b"HTTP/1.1 403 Forbidden\r\nbad header\r\n\r\n"])
        else:
            (event,) = answer(b"GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n")
            assert isinstance(event, Rejected)
            assert b"bytearray" not in event.body
        text = str(event.error)
        assert "bytearray" not in text
        assert "b'bad header'" in text


# ------------------------------------------------------------------------------------------------
# 5. Any method can be answered, and a refused answer leaves a valid one possible.
# ------------------------------------------------------------------------------------------------


def read_answer(method: str, target: str, data: bytes) -> tuple[h11.Response, bytes]:
    """Parse a server's answer with h11 playing the client that sent ``method target``."""
    peer = h11.Connection(h11.CLIENT)
    peer.send(h11.Request(method=method, target=target, headers=[("Host", "example.com:80")]))
    peer.send(h11.EndOfMessage())
    peer.receive_data(data)
    head = peer.next_event()
    assert isinstance(head, h11.Response)
    body = b""
    while not isinstance(event := peer.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data), event
        body += event.data
    return head, body


class TestAnswerAnyMethod:
    CONNECT = b"CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n"

    def waiting(self, data: bytes) -> tuple[ServerConnection, HTTPRequest]:
        server = ServerConnection()
        (event,) = server.receive_data(data)
        assert isinstance(event, HTTPRequest)
        return server, event

    @pytest.mark.parametrize("status", [200, 204, 299])
    def test_2xx_to_connect_is_refused_and_a_valid_answer_follows(self, status: int) -> None:
        server, event = self.waiting(self.CONNECT)
        assert event.method == "CONNECT" and event.path == "example.com:80"
        with pytest.raises(InvalidArgumentError, match=r"CONNECT .*tunnel.*RFC 9110 §9.3.6"):
            server.reject(event, status=status, body=b"" if status == 204 else b"hello")
        assert server.data_to_send() == b""
        assert server.request is event  # still waiting
        server.reject(event, status=405, headers=[("Allow", "GET")], body=b"no tunnels")
        head, body = read_answer("CONNECT", "example.com:80", server.data_to_send())
        assert head.status_code == 405 and body == b"no tunnels"
        assert (b"allow", b"GET") in head.headers
        assert server.state is State.REJECTED

    @pytest.mark.parametrize("status", [300, 400, 405, 501, 503])
    def test_connect_is_answered_with_an_error_status(self, status: int) -> None:
        server, event = self.waiting(self.CONNECT)
        server.reject(event, status=status, body=b"no")
        head, body = read_answer("CONNECT", "example.com:80", server.data_to_send())
        assert (head.status_code, body) == (status, b"no")

    @pytest.mark.parametrize(
        ("method", "target"), [("OPTIONS", "*"), ("PATCH", "/x"), ("BREW", "/pot"), ("TRACE", "/")]
    )
    def test_a_method_the_server_does_not_serve_gets_501(self, method: str, target: str) -> None:
        server, event = self.waiting(f"{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        assert (event.method, event.path) == (method, target)
        server.reject(event, status=501, body=b"not here")
        head, body = read_answer(method, target, server.data_to_send())
        assert (head.status_code, body) == (501, b"not here")
        assert server.state is State.REJECTED


# ------------------------------------------------------------------------------------------------
# 2. The request target of an upgrade is a resource name (RFC 6455 §4.1, §4.2.1 item 1).
# ------------------------------------------------------------------------------------------------


def with_target(target: bytes, host: bytes = b"example.com") -> bytes:
    data = REQ.replace(b"Host: example.com\r\n", b"Host: " + host + b"\r\n", 1)
    return data.replace(b"/chat", target, 1) + b"\r\n"


class TestRequestTarget:
    @pytest.mark.parametrize(
        "target",
        [
            b"*",  # asterisk-form (OPTIONS)
            b"example.com:80",  # authority-form (CONNECT)
            b"hdtp://x/y",  # an unknown scheme
            b"chat",  # relative, no leading slash
            b"ws://example.com/chat",  # ws and wss URIs are not sent in a request line
            b"wss://example.com/chat",
            b"mailto:someone@example.com",
            b"http:/chat",
        ],
    )
    def test_a_target_that_is_not_a_resource_name_is_400(self, target: bytes) -> None:
        text = refusal(with_target(target))
        assert repr(target.decode()) in text and "§4.2.1" in text

    @pytest.mark.parametrize("target", [b"/chat#part", b"http://example.com/chat#part"])
    def test_a_fragment_is_400(self, target: bytes) -> None:
        assert "fragment" in refusal(with_target(target))

    @pytest.mark.parametrize(
        ("target", "host", "path"),
        [
            (b"/chat?room=1", b"example.com", "/chat?room=1"),
            (b"//chat", b"example.com", "//chat"),  # empty segments are a valid path
            (b"http://example.com/chat", b"example.com", "/chat"),
            (b"HTTP://Example.COM/chat?a=b", b"example.com", "/chat?a=b"),
            (b"http://example.com:80/chat", b"example.com", "/chat"),  # the default port
            (b"http://example.com/chat", b"example.com:80", "/chat"),
            (b"https://example.com:443/", b"example.com", "/"),
            (b"https://example.com:8443/x", b"example.com:8443", "/x"),
            (b"http://example.com", b"example.com", "/"),  # an empty path is "/"
            (b"http://example.com?q", b"example.com", "/?q"),
            (b"http://[::1]:8080/chat", b"[::1]:8080", "/chat"),
        ],
    )
    def test_resource_names_and_absolute_http_uris_are_accepted(
        self, target: bytes, host: bytes, path: str
    ) -> None:
        event = handshake(with_target(target, host))
        assert event.path == path  # the resource name, whatever form named it
        assert event.host == host.decode()

    @pytest.mark.parametrize(
        ("target", "host"),
        [
            (b"http://other.example/chat", b"example.com"),
            (b"http://example.com:8080/chat", b"example.com"),
            (b"https://example.com/chat", b"example.com:80"),  # https defaults to 443
            (b"http://user@example.com/chat", b"example.com"),  # no userinfo (RFC 9110 §4.2.4)
            (b"http:///chat", b"example.com"),
            (b"http://ex%ample/chat", b"example.com"),
        ],
    )
    def test_an_absolute_uri_must_name_the_hosts_authority(
        self, target: bytes, host: bytes
    ) -> None:
        text = refusal(with_target(target, host))
        assert "Host" in text and "§4.2.1" in text

    def test_a_plain_request_may_use_any_form(self) -> None:
        # Only an upgrade names a WebSocket resource; the application answers the others.
        for target in ("*", "example.com:80", "http://example.com/x"):
            (event,) = answer(f"OPTIONS {target} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode())
            assert event == HTTPRequest(
                method="OPTIONS", path=target, headers=((b"host", b"example.com"),)
            )


# ------------------------------------------------------------------------------------------------
# 3. The Host header is host[:port] (RFC 9112 §3.2), never folded (RFC 9112 §5.2).
# ------------------------------------------------------------------------------------------------


class TestHost:
    @pytest.mark.parametrize(
        "host",
        [
            b"ex ample",
            b"example.com:http",
            b"example.com:123456",
            b"a/b",
            b"a@b",
            b"%zz",
            b"[::1",
            b"[not:ip]",
            b"[:::]",
            b"::1",  # an IPv6 address without its brackets
            b"example.com\x01",
        ],
    )
    def test_a_host_that_is_not_host_and_port_is_400(self, host: bytes) -> None:
        text = refusal(REQ.replace(b"example.com", host, 1) + b"\r\n")
        assert "Host" in text and "RFC 9112 §3.2" in text

    def test_an_empty_host_is_400_for_an_upgrade(self) -> None:
        text = refusal(REQ.replace(b"example.com", b"", 1) + b"\r\n")
        assert "Host" in text and "§4.1" in text

    def test_an_upgrade_in_a_later_http_1_without_host_is_400(self) -> None:
        # h11 requires Host of HTTP/1.1 requests only.
        data = REQ.replace(b"HTTP/1.1", b"HTTP/1.2").replace(b"Host: example.com\r\n", b"")
        assert "Host" in refusal(data + b"\r\n")

    @pytest.mark.parametrize(
        "host",
        [
            b"example.com",
            b"EXAMPLE.com:8080",
            b"127.0.0.1:1",
            b"[::1]",
            b"[2001:db8::7]:443",
            b"[v1.fe80::a+en1]",
            b"xn--caf-dma.example",
            b"caf%C3%A9.example",
            b"example.com.",
            b"example.com:",  # an empty port is allowed (RFC 3986 §3.2.3)
        ],
    )
    def test_valid_hosts_are_accepted(self, host: bytes) -> None:
        assert handshake(REQ.replace(b"example.com", host, 1) + b"\r\n").host == host.decode()

    @pytest.mark.parametrize(
        "fold",
        [
            b"Host: example.com\r\n : v\r\n",  # the fuzz's: h11 made it 'example.com : v'
            b"Host: example.com\r\n\tv\r\n",
            b"Host: example.com\r\nX-A: 1\r\n  2\r\n",  # a fold in any header
        ],
    )
    def test_a_folded_line_is_400(self, fold: bytes) -> None:
        text = refusal(REQ.replace(b"Host: example.com\r\n", fold, 1) + b"\r\n")
        assert "folding" in text and "RFC 9112 §2.2, §5.2" in text

    def test_whitespace_before_the_first_header_is_400(self) -> None:
        data = REQ.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\n X: y\r\n", 1) + b"\r\n"
        assert "whitespace" in refusal(data)

    @pytest.mark.parametrize(
        "head",
        [
            b"GET / HTTP/1.1\r\nHost: ex ample\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
        ],
    )
    def test_a_plain_request_with_a_bad_host_or_fold_is_400_too(self, head: bytes) -> None:
        # RFC 9112 §3.2 and §5.2 hold for any request, not only upgrades.
        refusal(head)

    @pytest.mark.parametrize(
        "head", [b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nHost:\r\n\r\n"]
    )
    def test_a_plain_request_without_a_host_name_is_reported(self, head: bytes) -> None:
        # HTTP/1.0 needs no Host; an empty Host is allowed when the target has no
        # authority (RFC 9110 §7.2): the application decides.
        (event,) = answer(head)
        assert isinstance(event, HTTPRequest)

    def test_a_folded_response_header_is_read_by_the_client(self) -> None:
        # A user agent replaces a fold with a space instead (RFC 9112 §5.2).
        client, _ = new_client()
        data = b"HTTP/1.1 403 Forbidden\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n"
        (event,) = client.receive_data(data)
        assert isinstance(event, Rejected) and event.error is None
        assert (b"x-a", b"1 2") in event.headers


class TestRefusalFramingBound:
    """Found by the long run of ``handshake_client`` (2026-12-03), fixed 2026-12-04.

    h11 bounds only an event still incomplete (``max_incomplete_event_size``, here the
    client's ``max_handshake_size``): a refusal's chunked body whose trailer section or chunk
    line was longer than that passed in one read and failed as "malformed" in small ones.
    The client now counts every byte of the body's framing (chunk lines, the CRLFs after
    chunk data, the trailer section) against ``max_handshake_size``, whatever the reads.
    """

    LIMIT = 2048
    CHUNKED = b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n"
    TOO_LONG = (
        "the chunked body of the HTTP 500 response is malformed, or its chunk lines and "
        "trailer section pass 2048 bytes (RFC 9112 §7.1)"
    )

    @staticmethod
    def outcomes(data: bytes) -> set[tuple[int, bytes, str | None]]:
        """The outcome of ``data`` whole, in reads of several sizes around the limit, and
        cut once at a few offsets; a set, so one element means split-independent."""
        sizes = (1, 7, 100, 2047, 2048, 2049, 4095, 4096, 4097)
        splits = [[data]] + [[data[i : i + n] for i in range(0, len(data), n)] for n in sizes]
        splits += [[data[:cut], data[cut:]] for cut in range(1, len(data), 97)]
        seen = set()
        for pieces in splits:
            client = ClientConnection(
                "example.com", max_handshake_size=TestRefusalFramingBound.LIMIT
            )
            client.data_to_send()
            (event,) = [e for piece in pieces for e in client.receive_data(piece)]
            assert isinstance(event, Rejected) and event.status_code == 500
            seen.add(
                (event.status_code, event.body, None if event.error is None else str(event.error))
            )
        return seen

    @staticmethod
    def framing(trailers: int) -> bytes:
        """A body of one chunk and ``trailers`` trailer fields of 50 bytes each."""
        fields = b"".join(b"X-T%02d: %s\r\n" % (i, b"v" * 41) for i in range(trailers))
        return b"5\r\nhello\r\n0\r\n" + fields + b"\r\n"

    def test_trailer_section_within_the_limit_is_read(self) -> None:
        # Framing: 3 + 2 + 3 + 40 * 50 + 2 = 2010 bytes.
        assert self.outcomes(self.CHUNKED + self.framing(40)) == {(500, b"hello", None)}

    def test_trailer_section_past_the_limit_fails_however_split(self) -> None:
        # 60 fields: 3010 bytes of framing, the finding's shape.
        assert self.outcomes(self.CHUNKED + self.framing(60)) == {(500, b"", self.TOO_LONG)}

    @pytest.mark.parametrize(("extension", "passes"), [(2030, True), (2040, False), (3000, False)])
    def test_long_chunk_line_counts_with_the_rest(self, extension: int, passes: bool) -> None:
        # The framing is the chunk line (extension + 4 bytes) plus 7 more bytes: 2041 and
        # 2051 bytes, either side of the limit.
        body = b"5;" + b"a" * extension + b"\r\nhello\r\n0\r\n\r\n"
        expected = (500, b"hello", None) if passes else (500, b"", self.TOO_LONG)
        assert self.outcomes(self.CHUNKED + body) == {expected}

    def test_many_small_chunks_are_bounded_in_one_large_read(self) -> None:
        # 100,000 one-byte chunks: 5 bytes of framing each. Before the bound this kept
        # 64 KiB of body from 600 KB of framing; the client now stops past the limit.
        data = self.CHUNKED + b"1\r\nx\r\n" * 100_000 + b"0\r\n\r\n"
        client = ClientConnection("example.com")
        client.data_to_send()
        (event,) = client.receive_data(data)
        assert isinstance(event, Rejected)
        assert str(event.error).endswith("pass 16384 bytes (RFC 9112 §7.1)")

    def test_101_in_a_large_read_keeps_every_byte_after_it(self) -> None:
        # The client hands h11 a large read in steps; the frames after the 101 arrive whole.
        client, key = new_client()
        payload = bytes(range(256)) * 80  # 20 KiB: the 101 and the frame span 6 steps
        frame = b"\x82\x7e" + len(payload).to_bytes(2, "big") + payload
        accepted, message = client.receive_data(switch(key) + frame)
        assert isinstance(accepted, Accepted)
        assert isinstance(message, Binary) and message.data == payload

    def test_refusal_in_large_reads_is_whole(self) -> None:
        # Reads larger than the client's steps into h11: one incomplete, one completing.
        body = bytes(range(256)) * 40
        data = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10240\r\n\r\n" + body
        for pieces in ([data], [data[:9000], data[9000:]]):
            expected = Rejected(
                status_code=403, headers=((b"content-length", b"10240"),), body=body
            )
            assert client_outcome(pieces) == expected
