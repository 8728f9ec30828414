"""Every limit: its default, the error above it, that it holds however the bytes are split,
and that it is checked before the memory it guards is spent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import RFC_KEY
from wsmachine import (
    Binary,
    ClientConnection,
    Close,
    Event,
    Handshake,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.close_codes import CloseInfo
from wsmachine.connection import default_max_fragments
from wsmachine.handshake import accept_key
from wsmachine.testing import ConnectionPair, FrameBuilder

CLIENT_FRAMES = FrameBuilder(client=True)
SERVER_FRAMES = FrameBuilder(client=False)


def request(*headers: str, target: str = "/") -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {RFC_KEY}",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def feed(conn: ServerConnection | ClientConnection, data: bytes, step: int | None) -> list[Event]:
    if step is None:
        return conn.receive_data(data)
    events: list[Event] = []
    for i in range(0, len(data), step):
        events += conn.receive_data(data[i : i + step])
    return events


def open_server(**settings: object) -> ServerConnection:
    server = ServerConnection(**settings)  # type: ignore[arg-type]
    (event,) = server.receive_data(request())
    assert isinstance(event, Handshake)
    server.accept(event)
    server.data_to_send()
    return server


def failure(events: list[Event]) -> Close:
    assert events, "expected a Close event"
    close = events[-1]
    assert isinstance(close, Close) and close.error is not None, events
    return close


# ------------------------------------------------------------------------------------------------
# Fragments per message
# ------------------------------------------------------------------------------------------------


class TestMaxFragments:
    def test_default_scales_with_max_message_size(self) -> None:
        assert default_max_fragments(1 << 20) == 4096
        assert default_max_fragments(64) == 4096
        assert default_max_fragments(64 << 20) == 262144  # Autobahn 9.3.1: 65,536 fragments

    def test_invalid_setting(self) -> None:
        with pytest.raises(ValueError, match="max_fragments"):
            ServerConnection(max_fragments=0)

    @pytest.mark.parametrize("stream", [False, True])
    def test_at_the_limit_passes(self, stream: bool) -> None:
        server = open_server(max_fragments=4, stream=stream)
        events = server.receive_data(CLIENT_FRAMES.message(b"abcd", [1, 1, 1]))
        assert b"".join(e.data for e in events if isinstance(e, Binary)) == b"abcd"
        assert server.state is State.OPEN
        # The count starts again with each message.
        events = server.receive_data(CLIENT_FRAMES.message("wxyz", [1, 1, 1]))
        assert "".join(e.data for e in events if isinstance(e, Text)) == "wxyz"

    @pytest.mark.parametrize("stream", [False, True])
    def test_one_more_fails_with_1009(self, stream: bool) -> None:
        server = open_server(max_fragments=4, stream=stream)
        events = server.receive_data(CLIENT_FRAMES.message(b"abcde", [1, 1, 1, 1]))
        close = failure(events)
        assert close.code == 1009
        assert "max_fragments" in str(close.error)
        assert close.reason == "too many fragments"  # never the limit itself
        assert server.state is State.REMOTE_CLOSING
        reason = close.reason.encode()
        assert server.data_to_send() == bytes([0x88, 2 + len(reason)]) + b"\x03\xf1" + reason
        assert server.state is State.CLOSED
        assert server.close_sent == CloseInfo(1009, close.reason)

    def test_flood_of_empty_continuations_fails_at_the_default(self) -> None:
        server = open_server()
        flood = CLIENT_FRAMES.binary(b"", fin=False) + CLIENT_FRAMES.continuation(b"", fin=False)
        flood += CLIENT_FRAMES.continuation(b"", fin=False) * 5000
        close = failure(server.receive_data(flood))
        assert close.code == 1009
        assert server._msg_frames == 4096  # the 4097th frame was refused, not kept

    def test_control_frames_between_fragments_do_not_count(self) -> None:
        server = open_server(max_fragments=2)
        data = CLIENT_FRAMES.message(b"ab", [1], between=CLIENT_FRAMES.ping(b"p") * 10)
        events = server.receive_data(data)
        assert events[-1] == Binary(data=b"ab")

    def test_client_role(self) -> None:
        pair = ConnectionPair(client={"max_fragments": 2})
        pair.handshake()
        close = failure(pair.client.receive_data(SERVER_FRAMES.message(b"abc", [1, 1])))
        assert close.code == 1009

    @settings(max_examples=30, deadline=None)
    @given(sizes=st.lists(st.integers(0, 3), max_size=8), limit=st.integers(1, 6))
    def test_holds_for_any_fragmentation(self, sizes: list[int], limit: int) -> None:
        data = CLIENT_FRAMES.message(b"x" * sum(sizes), sizes)
        frames = len(_fragments(sizes))
        server = open_server(max_fragments=limit)
        events = feed(server, data, 1)
        if frames <= limit:
            assert events == [Binary(data=b"x" * sum(sizes))]
        else:
            assert failure(events).code == 1009


def _fragments(sizes: list[int]) -> list[int]:
    """The fragments FrameBuilder.message makes for a payload of sum(sizes)."""
    return [*sizes] if sizes and sum(sizes) else [*sizes, 0]


# ------------------------------------------------------------------------------------------------
# The HTTP head: line length, header count, total size
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [None, 1, 7])
class TestServerHead:
    def test_long_request_line_gets_414(self, step: int | None) -> None:
        server = ServerConnection(max_handshake_line=100)
        events = feed(server, request(target="/" + "a" * 120), step)
        (rejected,) = events
        assert isinstance(rejected, Rejected)
        assert rejected.status_code == 414
        assert isinstance(rejected.error, RemoteProtocolError)
        assert "request line" in str(rejected.error)
        assert server.data_to_send().startswith(b"HTTP/1.1 414 ")
        assert server.state is State.REJECTED

    def test_request_line_at_the_limit_passes(self, step: int | None) -> None:
        target = "/" + "a" * 100
        line = len(f"GET {target} HTTP/1.1\r\n")
        server = ServerConnection(max_handshake_line=line)
        (event,) = feed(server, request(target=target), step)
        assert isinstance(event, Handshake)

    def test_long_header_line_gets_431(self, step: int | None) -> None:
        server = ServerConnection(max_handshake_line=200)
        (rejected,) = feed(server, request("Cookie: " + "c" * 300), step)
        assert isinstance(rejected, Rejected)
        assert rejected.status_code == 431
        assert "header line" in str(rejected.error)

    def test_too_many_headers_get_431(self, step: int | None) -> None:
        extra = [f"X-{i}: {i}" for i in range(10)]
        ok = ServerConnection(max_handshake_headers=15)  # 5 of the request + 10
        (event,) = feed(ok, request(*extra), step)
        assert isinstance(event, Handshake)
        server = ServerConnection(max_handshake_headers=14)
        (rejected,) = feed(server, request(*extra), step)
        assert isinstance(rejected, Rejected)
        assert rejected.status_code == 431
        assert "header lines" in str(rejected.error)

    def test_default_header_count(self, step: int | None) -> None:
        extra = [f"X-{i}: 1" for i in range(124)]  # with the 5 of the request: 129
        (rejected,) = feed(ServerConnection(), request(*extra), step)
        assert isinstance(rejected, Rejected) and rejected.status_code == 431
        (event,) = feed(ServerConnection(), request(*extra[:-1]), step)
        assert isinstance(event, Handshake)

    def test_total_size_gets_431(self, step: int | None) -> None:
        data = request(*[f"X-{i}: " + "v" * 50 for i in range(10)])
        (rejected,) = feed(ServerConnection(max_handshake_size=len(data) - 1), data, step)
        assert isinstance(rejected, Rejected) and rejected.status_code == 431
        assert "max_handshake_size" in str(rejected.error)
        (event,) = feed(ServerConnection(max_handshake_size=len(data)), data, step)
        assert isinstance(event, Handshake)

    def test_first_limit_crossed_wins(self, step: int | None) -> None:
        # The total size runs out inside a line that is also too long: whichever limit
        # is crossed first in the stream decides, however the bytes are split.
        data = request("X-Long: " + "v" * 500)
        start = data.index(b"X-Long")
        size_first = ServerConnection(max_handshake_size=start + 100, max_handshake_line=200)
        (rejected,) = feed(size_first, data, step)
        assert isinstance(rejected, Rejected) and "max_handshake_size" in str(rejected.error)
        line_first = ServerConnection(max_handshake_size=start + 300, max_handshake_line=200)
        (rejected,) = feed(line_first, data, step)
        assert isinstance(rejected, Rejected) and "max_handshake_line" in str(rejected.error)

    def test_bare_lf_lines_are_bounded_too(self, step: int | None) -> None:
        data = request(*[f"X-{i}: 1" for i in range(3)]).replace(b"\r\n", b"\n")
        (rejected,) = feed(ServerConnection(max_handshake_headers=7), data, step)
        assert isinstance(rejected, Rejected) and rejected.status_code == 431


@pytest.mark.parametrize("step", [None, 7])  # byte by byte is slow here: smaller limits cover it
def test_default_line_limit(step: int | None) -> None:
    (event,) = feed(ServerConnection(), request("Cookie: " + "c" * 8150), step)
    assert isinstance(event, Handshake)
    (rejected,) = feed(ServerConnection(), request("Cookie: " + "c" * 8190), step)
    assert isinstance(rejected, Rejected) and rejected.status_code == 431


def test_invalid_handshake_limits() -> None:
    for kwargs in (
        {"max_handshake_line": 0},
        {"max_handshake_size": 0},
        {"max_handshake_headers": -1},
    ):
        with pytest.raises(ValueError, match="max_handshake"):
            ServerConnection(**kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_handshake"):
            ClientConnection("h", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_rejection_body"):
        ClientConnection("h", max_rejection_body=-1)


def _response(
    client: ClientConnection, *headers: str, status: str = "101 Switching Protocols"
) -> bytes:
    head = client.data_to_send()
    key = head.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0].decode()
    lines = [
        f"HTTP/1.1 {status}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize("step", [None, 1, 5])
class TestClientHead:
    def test_long_status_line(self, step: int | None) -> None:
        client = ClientConnection("h", max_handshake_line=40)
        data = _response(client, status="101 Switching Protocols" + " and more" * 5)
        (rejected,) = feed(client, data, step)
        assert isinstance(rejected, Rejected) and "status line" in str(rejected.error)
        assert client.state is State.REJECTED

    def test_long_header_line(self, step: int | None) -> None:
        client = ClientConnection("h", max_handshake_line=100)
        (rejected,) = feed(client, _response(client, "X: " + "x" * 100), step)
        assert isinstance(rejected, Rejected) and "header line" in str(rejected.error)

    def test_header_count(self, step: int | None) -> None:
        client = ClientConnection("h", max_handshake_headers=4)
        (rejected,) = feed(client, _response(client, "X-A: 1", "X-B: 2"), step)
        assert isinstance(rejected, Rejected) and "header lines" in str(rejected.error)
        client = ClientConnection("h", max_handshake_headers=5)
        (accepted,) = feed(client, _response(client, "X-A: 1", "X-B: 2"), step)
        assert not isinstance(accepted, Rejected)

    def test_each_interim_head_has_its_own_budget(self, step: int | None) -> None:
        client = ClientConnection("h", max_handshake_headers=3)
        interim = b"HTTP/1.1 100 Continue\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n" * 3
        events = feed(client, interim + _response(client), step)
        assert [type(e).__name__ for e in events] == ["Accepted"]
        client = ClientConnection("h", max_handshake_headers=3)
        interim = b"HTTP/1.1 100 Continue\r\nA: 1\r\n\r\nHTTP/1.1 100 Continue\r\n"
        interim += b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"
        (rejected,) = feed(client, interim, step)
        assert isinstance(rejected, Rejected) and "header lines" in str(rejected.error)

    def test_rejection_body_is_bounded(self, step: int | None) -> None:
        client = ClientConnection("h", max_rejection_body=10)
        client.data_to_send()
        body = b"b" * 1000
        data = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1000\r\n\r\n" + body
        (rejected,) = feed(client, data, step)
        assert isinstance(rejected, Rejected)
        assert (rejected.status_code, rejected.body, rejected.error) == (403, b"b" * 10, None)
