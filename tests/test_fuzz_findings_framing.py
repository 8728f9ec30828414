"""The framing findings of the independent fuzz (issue 17), one class per finding.

Each test feeds the bytes the fuzz found (or their neighbours). The suite runs them on the C
parser and, with ``pytest --pure-python``, on its Python twin: both must answer the same.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import pytest

from wsmachine import (
    Accepted,
    ClientConnection,
    Close,
    Connection,
    Handshake,
    InvalidArgumentError,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.adapters.options import ClientOptions, ServerOptions
from wsmachine.connection import LIMIT_MINIMUMS, MAX_LIMIT
from wsmachine.extensions import PerMessageDeflate
from wsmachine.handshake import accept_key

KEY = b"\x01\x02\x03\x04"
REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def frame(op: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    """One frame, masked with ``KEY`` (as a client sends) unless ``mask=False``."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | op])
    bit = 0x80 if mask else 0
    head += bytes([bit | n]) if n < 126 else bytes([bit | 126]) + n.to_bytes(2, "big")
    if not mask:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def open_server(deflate: bool = False, **settings: Any) -> ServerConnection:
    """An OPEN server after a raw upgrade request, permessage-deflate agreed if asked."""
    server = ServerConnection(extensions=[PerMessageDeflate()] if deflate else [], **settings)
    offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
    (request,) = server.receive_data(REQUEST + offer + b"\r\n")
    assert isinstance(request, Handshake)
    server.accept(request)
    assert server.data_to_send().startswith(b"HTTP/1.1 101 ")
    assert bool(server.extensions) is deflate
    return server


def open_client(deflate: bool = False, **settings: Any) -> ClientConnection:
    """An OPEN client after a raw 101, permessage-deflate agreed if asked."""
    client = ClientConnection(
        "example.com", "/chat", extensions=[PerMessageDeflate()] if deflate else [], **settings
    )
    request = client.data_to_send()
    key = request.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0].decode()
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n"
    )
    if deflate:
        response += b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    (accepted,) = client.receive_data(response + b"\r\n")
    assert isinstance(accepted, Accepted)
    return client


OPENERS: dict[str, Callable[..., Connection]] = {"server": open_server, "client": open_client}


def peer_frame(conn: Connection, op: int, payload: bytes, **kw: Any) -> bytes:
    """A frame as the peer of ``conn`` sends it: masked towards a server only."""
    return frame(op, payload, mask=not conn.client, **kw)


def compressed(data: bytes) -> bytes:
    """``data`` as a peer's one-frame compressed message (RFC 7692 §7.2.1)."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]


def failure(events: list[Any]) -> Close:
    close = events[-1]
    assert isinstance(close, Close), events
    assert isinstance(close.error, RemoteProtocolError), close
    return close


# -- issue 17 item 1: size settings out of range ------------------------------------------------


class TestSizeSettingsAreBounded:
    """``max_message_size=2**64`` was accepted, then the first frame raised OverflowError from
    the C parser (the Python twin took it), and with permessage-deflate 2**63 - 1 overflowed
    zlib in both paths. Every size setting is now an int up to 2**63 - 1, checked at once."""

    @pytest.mark.parametrize("name", sorted(LIMIT_MINIMUMS))
    @pytest.mark.parametrize("value", [MAX_LIMIT + 1, 2**64, 2**100])
    def test_too_large_is_refused_by_the_constructor(self, name: str, value: int) -> None:
        if name != "max_rejection_body":
            with pytest.raises(InvalidArgumentError, match=rf"{name} must be at most 2\*\*63 - 1"):
                ServerConnection(**{name: value})
            with pytest.raises(InvalidArgumentError, match=r"RFC 6455 §5\.2"):
                ServerOptions(**{name: value})
        with pytest.raises(InvalidArgumentError, match=rf"{name} must be at most 2\*\*63 - 1"):
            ClientConnection("example.com", **{name: value})
        with pytest.raises(InvalidArgumentError, match=name):
            ClientOptions(**{name: value})

    @pytest.mark.parametrize("name", sorted(LIMIT_MINIMUMS))
    def test_below_the_minimum_is_refused(self, name: str) -> None:
        value = LIMIT_MINIMUMS[name] - 1
        with pytest.raises(InvalidArgumentError, match=f"{name} must be"):
            ClientConnection("example.com", **{name: value})
        with pytest.raises(ValueError, match=name):  # InvalidArgumentError is a ValueError
            ClientOptions(**{name: value})

    @pytest.mark.parametrize("value", [1.5, 1e6, "1000", True])
    def test_not_an_int_is_refused(self, value: object) -> None:
        # A float used to reach the C parser and raise TypeError from receive_data.
        with pytest.raises(TypeError, match="max_message_size must be an int"):
            ServerConnection(max_message_size=value)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="max_frame_size must be an int"):
            ServerOptions(max_frame_size=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("deflate", [False, True])
    @pytest.mark.parametrize("frame_size", [None, MAX_LIMIT])
    def test_the_largest_limit_works(self, role: str, deflate: bool, frame_size: int) -> None:
        conn = OPENERS[role](deflate, max_message_size=MAX_LIMIT, max_frame_size=frame_size)
        wire = peer_frame(conn, 0x1, b"hi") + peer_frame(conn, 0x1, b"ho", fin=False)
        if deflate:
            wire += peer_frame(conn, 0x0, b"!") + peer_frame(
                conn, 0x1, compressed(b"hello"), rsv=0x40
            )
        else:
            wire += peer_frame(conn, 0x0, b"!")
        events = conn.receive_data(wire)
        expected = [Text(data="hi"), Text(data="ho!")]
        assert events == [*expected, Text(data="hello")] if deflate else expected
        assert conn.state is State.OPEN

    def test_the_largest_limits_everywhere(self) -> None:
        settings = {name: MAX_LIMIT for name in LIMIT_MINIMUMS if name != "max_rejection_body"}
        server = open_server(True, **settings)
        assert server.receive_data(frame(0x1, compressed(b"x" * 1000), rsv=0x40)) == [
            Text(data="x" * 1000)
        ]
        client = open_client(True, max_rejection_body=MAX_LIMIT, **settings)
        assert client.receive_data(frame(0x2, b"", mask=False)) != []


# -- issue 17 item 6: invalid UTF-8 in an unfinished uncompressed continuation -----------------


class TestUncompressedTextFailsFastWithDeflate:
    """With permessage-deflate agreed, a message sent uncompressed (RSV1 clear) is plain text:
    a bad byte in a continuation frame that has only partly arrived fails at once with 1007,
    as it does without the extension. It used to wait for the end of the frame."""

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("deflate", [False, True])
    def test_fuzz_input(self, role: str, deflate: bool) -> None:
        conn = OPENERS[role](deflate)
        assert conn.receive_data(peer_frame(conn, 0x1, b"ok", fin=False)) == []
        continuation = peer_frame(conn, 0x0, b"\xff" + b"x" * 20)
        events = conn.receive_data(continuation[:-10])
        close = failure(events)
        assert close.code == 1007
        assert "not valid UTF-8" in str(close.error)
        assert conn.state is State.REMOTE_CLOSING

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_at_the_first_bad_byte_however_split(self, role: str) -> None:
        for cut in range(1, 40):
            conn = OPENERS[role](True)
            # "é" is split across the two frames; the bad byte is the continuation's 5th.
            wire = peer_frame(conn, 0x1, b"ok \xc3", fin=False)
            second = peer_frame(conn, 0x0, b"\xa9 ok\xfe" + b"y" * 30)
            header = len(second) - 35
            events = conn.receive_data(wire + second[:cut])
            if cut < header + 5:
                assert events == [], cut
            else:
                assert failure(events).code == 1007, cut

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_valid_text_still_arrives(self, role: str) -> None:
        conn = OPENERS[role](True)
        wire = peer_frame(conn, 0x1, "hé".encode()[:2], fin=False)
        wire += peer_frame(conn, 0x0, "é".encode()[1:] + "llo wörld".encode())
        events: list[Any] = []
        for i in range(len(wire)):  # byte by byte: every frame is peeked into
            events += conn.receive_data(wire[i : i + 1])
        assert events == [Text(data="héllo wörld")]

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_compressed_text_is_checked_as_each_frame_inflates(self, role: str) -> None:
        # Raw DEFLATE bytes say nothing about the text: the bad byte shows once the frame that
        # carries it has arrived and inflated.
        conn = OPENERS[role](True)
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        one = deflater.compress(b"ok") + deflater.flush(zlib.Z_SYNC_FLUSH)
        two = deflater.compress(b"\xff" + b"x" * 20) + deflater.flush(zlib.Z_SYNC_FLUSH)
        assert conn.receive_data(peer_frame(conn, 0x1, one, fin=False, rsv=0x40)) == []
        continuation = peer_frame(conn, 0x0, two[:-4])
        assert conn.receive_data(continuation[:-2]) == []
        assert failure(conn.receive_data(continuation[-2:])).code == 1007

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("step", [None, 1])
    def test_rsv1_on_the_continuation_wins_however_split(self, role: str, step: int | None) -> None:
        # RSV1 on a continuation is a 1002 (RFC 7692 §6.1) that shows when the frame is whole:
        # its payload is not text to check, so the outcome must not depend on the split.
        conn = OPENERS[role](True)
        wire = peer_frame(conn, 0x1, b"ok", fin=False)
        wire += peer_frame(conn, 0x0, b"\xff" + b"x" * 20, rsv=0x40)
        if step is None:
            events = conn.receive_data(wire)
        else:
            events = [e for i in range(len(wire)) for e in conn.receive_data(wire[i : i + 1])]
        close = failure(events)
        assert close.code == 1002
        assert "RSV1 set on a continuation frame" in str(close.error)
