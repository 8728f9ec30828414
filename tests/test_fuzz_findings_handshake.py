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
        assert texts == {"the chunked body of the HTTP 403 response is malformed (RFC 9112 §7.1)"}

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
