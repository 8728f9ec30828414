"""permessage-deflate (RFC 7692), tested on the bytes: negotiation, data, bounded inflation.

The peer is modelled here, independently of wsmachine's code: frames are built and parsed by
the small helpers below, and the peer's compressor and decompressor are zlib used exactly as
RFC 7692 §7.2.1 and §7.2.2 describe. The sections follow the RFC:

* §5, §7.1 negotiation: every parameter combination in both roles, offers and responses.
* §6, §7.2 data: compression, context takeover, fragments, RSV1 rules, BFINAL blocks.
* §8.1 (and RFC 6455 §10.4) bounded inflation.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Connection,
    Event,
    ExtensionOffer,
    Handshake,
    LocalProtocolError,
    Ping,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.extensions import PerMessageDeflate, PerMessageDeflateCodec
from wsmachine.extensions.permessage_deflate import max_compressed_size

TAIL = b"\x00\x00\xff\xff"
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NAME = "permessage-deflate"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="

# Random, incompressible data: a second copy compresses to a few bytes only when the LZ77
# window may reach back to the first (context takeover, window >= 2**12).
BLOCK = random.Random(7692).randbytes(3000)
SHORT_TEXT = "permessage-deflate " * 20


# -- frames, written from RFC 6455 §5.2 --------------------------------------------------------


class Frame(NamedTuple):
    fin: bool
    rsv: int
    opcode: int
    payload: bytes


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One frame; masked (as a client sends) unless ``mask=False``."""
    head = bytearray([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head += struct.pack("!BH", bit | 126, n)
    else:
        head += struct.pack("!BQ", bit | 127, n)
    if not mask:
        return bytes(head) + payload
    key = b"\x12\x34\x56\x78"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload)
    return bytes(head) + key + masked


def _mask(payload: bytes) -> bytes:
    key = int.from_bytes(b"\x12\x34\x56\x78" * ((len(payload) + 3) // 4), "big")
    padded = payload + b"\0" * (-len(payload) % 4)
    return (int.from_bytes(padded, "big") ^ key).to_bytes(len(padded), "big")[: len(payload)]


def parse_frames(data: bytes) -> list[Frame]:
    """Every frame in ``data`` (masked or not), which must hold whole frames only."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        pos += 2
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        key = b""
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        pos += n
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frames.append(Frame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, payload))
    assert pos == len(data), "trailing bytes after the last frame"
    return frames


def close_code(frames: Sequence[Frame]) -> int:
    """The code of the single Close frame in ``frames``."""
    [close] = [f for f in frames if f.opcode == CLOSE]
    return int.from_bytes(close.payload[:2], "big")


# -- the peer's compression, written from RFC 7692 §7.2 ----------------------------------------


class RefDeflater:
    """A peer's compressor: DEFLATE, sync flush, the 4-octet tail removed (§7.2.1)."""

    def __init__(self, bits: int = 15, *, reset: bool = False, level: int = 6) -> None:
        self.bits, self.reset, self.level = bits, reset, level
        self.z = self._new()

    def _new(self) -> zlib._Compress:
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.bits)

    def fragments(self, pieces: Sequence[bytes]) -> list[bytes]:
        """Frame payloads of one message sent as ``pieces``."""
        out = []
        for i, piece in enumerate(pieces):
            data = self.z.compress(piece) + self.z.flush(zlib.Z_SYNC_FLUSH)
            if i == len(pieces) - 1:
                assert data.endswith(TAIL)
                data = data[:-4]
            out.append(data)
        if self.reset:
            self.z = self._new()
        return out

    def message(self, data: bytes) -> bytes:
        [payload] = self.fragments([data])
        return payload


class RefInflater:
    """A peer's decompressor: append the tail, inflate (§7.2.2)."""

    def __init__(self, bits: int = 15, *, reset: bool = False) -> None:
        self.bits, self.reset = bits, reset
        self.z = zlib.decompressobj(-bits)

    def message(self, payloads: Sequence[bytes]) -> bytes:
        out = b"".join(self.z.decompress(p) for p in payloads[:-1])
        out += self.z.decompress(payloads[-1] + TAIL)
        assert not self.z.unconsumed_tail
        assert not self.z.eof
        if self.reset:
            self.z = zlib.decompressobj(-self.bits)
        return out


def messages(frames: Iterable[Frame]) -> list[tuple[int, bool, list[bytes]]]:
    """Group data frames into messages: (opcode, compressed, frame payloads)."""
    result: list[tuple[int, bool, list[bytes]]] = []
    current: tuple[int, bool, list[bytes]] | None = None
    for f in frames:
        if f.opcode in (TEXT, BINARY):
            assert current is None
            current = (f.opcode, bool(f.rsv & RSV1), [f.payload])
        elif f.opcode == CONT:
            assert current is not None
            assert f.rsv == 0, "RSV1 is only set on a message's first frame (§6.1)"
            current[2].append(f.payload)
        else:
            continue
        if f.fin:
            result.append(current)
            current = None
    assert current is None
    return result


# -- connections in memory ---------------------------------------------------------------------


@dataclass
class Pair:
    client: ClientConnection
    server: ServerConnection
    handshake: Handshake
    accepted: Accepted
    wire: dict[str, list[bytes]] = field(default_factory=lambda: {"c2s": [], "s2c": []})

    def to_server(self) -> list[Event]:
        data = self.client.data_to_send()
        self.wire["c2s"].append(data)
        return self.server.receive_data(data)

    def to_client(self) -> list[Event]:
        data = self.server.data_to_send()
        self.wire["s2c"].append(data)
        return self.client.receive_data(data)


def open_pair(
    client_ext: Sequence[PerMessageDeflate] = (),
    server_ext: Sequence[PerMessageDeflate] = (),
    **kwargs: object,
) -> Pair:
    """A client and a server after a real handshake over bytes."""
    client = ClientConnection("example.com", "/", extensions=client_ext, **kwargs)  # type: ignore[arg-type]
    server = ServerConnection(extensions=server_ext, **kwargs)  # type: ignore[arg-type]
    [handshake] = server.receive_data(client.data_to_send())
    assert isinstance(handshake, Handshake)
    assert server.accept(handshake) == []
    [accepted] = client.receive_data(server.data_to_send())
    assert isinstance(accepted, Accepted), accepted
    assert client.state is server.state is State.OPEN
    return Pair(client, server, handshake, accepted)


def open_server(
    extensions: Sequence[PerMessageDeflate], offers: Sequence[str], **kwargs: object
) -> tuple[ServerConnection, list[str]]:
    """A server answering a raw request with these ``Sec-WebSocket-Extensions`` lines; returns
    it and the extension header values of its 101 response."""
    lines = [
        "GET / HTTP/1.1",
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *(f"Sec-WebSocket-Extensions: {value}" for value in offers),
    ]
    server = ServerConnection(extensions=extensions, **kwargs)  # type: ignore[arg-type]
    [handshake] = server.receive_data(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(handshake, Handshake), handshake
    server.accept(handshake)
    head = server.data_to_send().decode("latin-1")
    assert head.startswith("HTTP/1.1 101 ")
    values = [
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.lower().startswith("sec-websocket-extensions:")
    ]
    return server, values


def response_to(client: ClientConnection, extension_lines: Sequence[str]) -> bytes:
    """A 101 response to ``client``'s queued request with these extension header lines."""
    request = client.data_to_send().decode("latin-1")
    [key] = [
        line.split(":", 1)[1].strip()
        for line in request.split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    ]
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
        *(f"Sec-WebSocket-Extensions: {value}" for value in extension_lines),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def offer_line(client: ClientConnection) -> list[str]:
    request = client.data_to_send().decode("latin-1")
    return [
        line.split(":", 1)[1].strip()
        for line in request.split("\r\n")
        if line.lower().startswith("sec-websocket-extensions:")
    ]


def compressed_server(**kwargs: object) -> ServerConnection:
    """A server with permessage-deflate (default settings) open after a raw handshake."""
    server, values = open_server([PerMessageDeflate()], [NAME], **kwargs)
    assert values == [NAME]
    return server


def compressed_client(**kwargs: object) -> ClientConnection:
    """A client with permessage-deflate open after a raw 101 accepting it without params."""
    client = ClientConnection("example.com", "/", extensions=[PerMessageDeflate()], **kwargs)  # type: ignore[arg-type]
    [accepted] = client.receive_data(response_to(client, [NAME]))
    assert isinstance(accepted, Accepted)
    return client


def feed(conn: Connection, frames: Sequence[bytes]) -> list[Event]:
    """Feed frames (masked for a server, unmasked for a client) one by one."""
    events: list[Event] = []
    for data in frames:
        events += conn.receive_data(data)
    return events


def peer_frame(conn: Connection, opcode: int, payload: bytes, **kw: object) -> bytes:
    """A frame as the peer of ``conn`` sends it (clients mask)."""
    return frame(opcode, payload, mask=not conn.client, **kw)  # type: ignore[arg-type]


def failure(events: Sequence[Event]) -> Close:
    """The last event, which must be a failing Close."""
    close = events[-1]
    assert isinstance(close, Close), events
    assert isinstance(close.error, RemoteProtocolError), close
    assert close.code == close.error.close_code
    return close


def data_events(events: Sequence[Event]) -> list[Text | Binary]:
    return [e for e in events if isinstance(e, Text | Binary)]


# ==============================================================================================
# §5, §7.1: negotiation
# ==============================================================================================

FLAGS = (False, True)
BITS = (None, 8, 9, 12, 15)


@dataclass(frozen=True)
class Config:
    """PerMessageDeflate's four negotiation parameters."""

    snct: bool = False
    cnct: bool = False
    smwb: int | None = None
    cmwb: int | None = None

    def ext(self) -> PerMessageDeflate:
        return PerMessageDeflate(
            server_no_context_takeover=self.snct,
            client_no_context_takeover=self.cnct,
            server_max_window_bits=self.smwb,
            client_max_window_bits=self.cmwb,
        )

    def __str__(self) -> str:
        return f"snct={self.snct:d},cnct={self.cnct:d},smwb={self.smwb},cmwb={self.cmwb}"


ALL_CONFIGS = [Config(*c) for c in itertools.product(FLAGS, FLAGS, BITS, BITS)]


def expected_offer(c: Config) -> list[tuple[str, str | None]]:
    """What a client with config ``c`` offers (§7.1): it always says it accepts a
    ``client_max_window_bits`` limit."""
    params: list[tuple[str, str | None]] = []
    if c.snct:
        params.append(("server_no_context_takeover", None))
    if c.cnct:
        params.append(("client_no_context_takeover", None))
    if c.smwb is not None:
        params.append(("server_max_window_bits", str(c.smwb)))
    params.append(("client_max_window_bits", None if c.cmwb is None else str(c.cmwb)))
    return params


def expected_response(client: Config, server: Config) -> list[tuple[str, str | None]] | None:
    """Our server's documented answer to our client's offer; ``None``: declined."""
    params: list[tuple[str, str | None]] = []
    if client.snct or server.snct:
        params.append(("server_no_context_takeover", None))
    if client.cnct or server.cnct:
        params.append(("client_no_context_takeover", None))
    wanted = [b for b in (client.smwb, server.smwb) if b is not None]
    if wanted:
        params.append(("server_max_window_bits", str(min(wanted))))
    if server.cmwb is not None:
        params.append(("client_max_window_bits", str(min(client.cmwb or 15, server.cmwb))))
    return params


def check_rfc_response(
    offer: Sequence[tuple[str, str | None]], response: Sequence[tuple[str, str | None]]
) -> None:
    """The constraints RFC 7692 §7.1 puts on a response to ``offer``."""
    o, r = dict(offer), dict(response)
    assert len(r) == len(response), "no parameter twice (§7)"
    assert set(r) <= {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
    if "server_no_context_takeover" in o:  # §7.1.1.1
        assert "server_no_context_takeover" in r
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        assert r.get(flag) is None
    if "server_max_window_bits" in o:  # §7.1.2.1
        assert "server_max_window_bits" in r
        assert int(r["server_max_window_bits"] or 0) <= int(o["server_max_window_bits"] or 0)
    if "client_max_window_bits" in r:  # §7.1.2.2
        assert "client_max_window_bits" in o
        value = r["client_max_window_bits"]
        assert value is not None and 8 <= int(value) <= 15
        if o["client_max_window_bits"] is not None:
            assert int(value) <= int(o["client_max_window_bits"])


@dataclass(frozen=True)
class Negotiated:
    """What both ends may do after a response (the limits, not what a sender chooses)."""

    client_bits: int
    client_reset: bool
    server_bits: int
    server_reset: bool

    @classmethod
    def of(cls, client: Config, response: Sequence[tuple[str, str | None]]) -> Negotiated:
        r = dict(response)
        return cls(
            client_bits=int(r.get("client_max_window_bits") or client.cmwb or 15),
            client_reset="client_no_context_takeover" in r or client.cnct,
            server_bits=int(r.get("server_max_window_bits") or 15),
            server_reset="server_no_context_takeover" in r,
        )


LOCAL_WINDOW = PerMessageDeflate().window_bits  # the default compressor window cap (12)


def check_direction(
    sender: Connection,
    receive: object,
    wire: list[bytes],
    bits: int,
    reset: bool,
) -> None:
    """Send messages one way; check the events, then the frames against the limits.

    The frames must inflate with a decompressor using exactly the negotiated window (and
    reset when no context takeover was negotiated); RSV1 is clear when the window is 8; a
    repeated random block shrinks to a few bytes only under context takeover.
    """
    assert callable(receive)
    sent: list[tuple[int, bytes]] = [
        (BINARY, BLOCK),
        (BINARY, BLOCK),
        (TEXT, SHORT_TEXT.encode()),
        (TEXT, SHORT_TEXT.encode()),
        (BINARY, b""),
    ]
    got: list[Event] = []
    for opcode, data in sent:
        if opcode == TEXT:
            sender.send_text(data.decode())
        else:
            sender.send_binary(data)
        got += receive()
    assert got == [Text(data=d.decode()) if op == TEXT else Binary(data=d) for op, d in sent]
    frames = parse_frames(b"".join(wire[-len(sent) :]))
    msgs = messages(frames)
    assert len(msgs) == len(sent)
    inflater = RefInflater(bits, reset=reset)
    for (opcode, data), (wire_op, compressed, payloads) in zip(sent, msgs, strict=True):
        assert wire_op == opcode
        if bits == 8:
            assert not compressed, "zlib cannot compress with an 8-bit window: send plain"
            assert payloads == [data]
        else:
            assert compressed
            assert inflater.message(payloads) == data
    if bits > 8:
        second = len(msgs[1][2][0])
        if not reset and min(bits, LOCAL_WINDOW) >= 12:
            assert second < 40, "context takeover: the repeated block is back-references"
        else:
            assert second > len(BLOCK), "no context takeover or a small window: no reference"
        if not reset:  # the repeated text refers back to the first copy, in any window
            assert len(msgs[3][2][0]) < len(msgs[2][2][0]) // 2


def check_pair(pair: Pair, n: Negotiated) -> None:
    check_direction(pair.client, pair.to_server, pair.wire["c2s"], n.client_bits, n.client_reset)
    check_direction(pair.server, pair.to_client, pair.wire["s2c"], n.server_bits, n.server_reset)


class TestNegotiationBothRoles:
    """Every combination of the four parameters, on each side, end to end (§7.1)."""

    @pytest.mark.parametrize("client", ALL_CONFIGS, ids=str)
    @pytest.mark.parametrize(
        "server",
        [Config(), Config(True, True, 10, 11), Config(cmwb=9)],
        ids=str,
    )
    def test_client_configs(self, client: Config, server: Config) -> None:
        self._check(client, server)

    @pytest.mark.parametrize("server", ALL_CONFIGS, ids=str)
    @pytest.mark.parametrize(
        "client",
        [Config(), Config(cmwb=10), Config(snct=True, smwb=11), Config(True, True, 9, 13)],
        ids=str,
    )
    def test_server_configs(self, client: Config, server: Config) -> None:
        self._check(client, server)

    def _check(self, client: Config, server: Config) -> None:
        probe = ClientConnection("example.com", "/", extensions=[client.ext()])
        assert offer_line(probe) == [str(ExtensionOffer(NAME, tuple(expected_offer(client))))]
        pair = open_pair([client.ext()], [server.ext()])
        response = expected_response(client, server)
        assert response is not None
        check_rfc_response(expected_offer(client), response)
        assert pair.handshake.extensions == (ExtensionOffer(NAME, tuple(expected_offer(client))),)
        assert pair.accepted.extensions == (ExtensionOffer(NAME, tuple(response)),)
        header = dict(pair.accepted.headers)[b"sec-websocket-extensions"]
        assert header.decode() == str(ExtensionOffer(NAME, tuple(response)))
        check_pair(pair, Negotiated.of(client, response))

    def test_server_needs_a_client_window_limit_the_client_cannot_promise(self) -> None:
        # Server insists on client_max_window_bits; this offer lacks the parameter (§7.1.2.2).
        server, values = open_server([PerMessageDeflate(client_max_window_bits=10)], [NAME])
        assert values == []
        server.send_binary(BLOCK)
        [f] = parse_frames(server.data_to_send())
        assert f.rsv == 0 and f.payload == BLOCK

    def test_no_extension_configured_on_either_side(self) -> None:
        pair = open_pair([], [PerMessageDeflate()])
        assert pair.handshake.extensions == () and pair.accepted.extensions == ()
        pair = open_pair([PerMessageDeflate()], [])
        assert pair.accepted.extensions == ()
        pair.client.send_binary(BLOCK)
        [f] = parse_frames(pair.client.data_to_send())
        assert f.rsv == 0 and f.payload == BLOCK


class TestServerChoosesAnOffer:
    """The server answers the first acceptable offer and declines the others (§5, §7)."""

    def test_several_offers_in_one_header(self) -> None:
        _, values = open_server(
            [PerMessageDeflate()],
            [
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits, "
                "permessage-deflate; client_max_window_bits, permessage-deflate"
            ],
        )
        assert values == ["permessage-deflate; server_max_window_bits=10"]

    def test_repeated_headers(self) -> None:
        _, values = open_server(
            [PerMessageDeflate()],
            ["x-webkit-deflate-frame", "permessage-deflate; server_no_context_takeover", NAME],
        )
        assert values == ["permessage-deflate; server_no_context_takeover"]

    @pytest.mark.parametrize(
        "bad",
        [
            "permessage-deflate; foo",  # unknown parameter
            "permessage-deflate; foo=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=7",  # out of range
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=08",  # leading zero (§7.1.2.1)
            "permessage-deflate; client_max_window_bits=009",
            "permessage-deflate; server_max_window_bits=1.5",  # malformed values
            "permessage-deflate; server_max_window_bits=x",
            'permessage-deflate; client_max_window_bits="+9"',
            "permessage-deflate; server_max_window_bits",  # needs a value
            "permessage-deflate; server_no_context_takeover=1",  # flags take no value
            'permessage-deflate; client_no_context_takeover="x"',
        ],
    )
    def test_bad_offer_declined_next_taken(self, bad: str) -> None:
        _, values = open_server([PerMessageDeflate()], [bad])
        assert values == []
        _, values = open_server([PerMessageDeflate()], [f"{bad}, {NAME}; client_max_window_bits"])
        assert values == [NAME]
        _, values = open_server(
            [PerMessageDeflate()], [bad, "permessage-deflate; client_no_context_takeover"]
        )
        assert values == ["permessage-deflate; client_no_context_takeover"]

    def test_bad_offer_then_no_extension_then_data_is_plain(self) -> None:
        server, values = open_server([PerMessageDeflate()], ["permessage-deflate; foo"])
        assert values == []
        events = server.receive_data(frame(BINARY, b"x", rsv=RSV1))
        assert failure(events).code == 1002  # RSV1 not claimed by any extension

    def test_quoted_value_is_accepted(self) -> None:
        # RFC 6455 §9.1: a quoted-string value is the token inside the quotes.
        _, values = open_server(
            [PerMessageDeflate()], ['permessage-deflate; server_max_window_bits="10"']
        )
        assert values == ["permessage-deflate; server_max_window_bits=10"]

    @pytest.mark.parametrize(
        "value",
        [
            "permessage-deflate; =10",
            "permessage-deflate; server_max_window_bits=",
            'permessage-deflate; client_no_context_takeover=""',
            "permessage-deflate;; client_max_window_bits",
            'permessage-deflate; server_max_window_bits="1 0"',
        ],
    )
    def test_malformed_header_is_a_bad_request(self, value: str) -> None:
        # Not an offer to decline: the header breaks RFC 6455 §9.1's grammar.
        server = ServerConnection(extensions=[PerMessageDeflate()])
        request = (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Extensions: {value}\r\n\r\n"
        )
        [rejected] = server.receive_data(request.encode())
        assert isinstance(rejected, Rejected) and rejected.status_code == 400
        assert server.state is State.REJECTED
        assert server.data_to_send().startswith(b"HTTP/1.1 400 ")


class TestWindowBitsValues:
    """Window bits 8 to 15, with and without values, in offers and responses (§7.1.2)."""

    @pytest.mark.parametrize("bits", range(8, 16))
    def test_server_max_window_bits_offered(self, bits: int) -> None:
        offers = [ExtensionOffer(NAME, (("server_max_window_bits", str(bits)),))]
        response, codec = PerMessageDeflate().accept_offers(offers) or pytest.fail("declined")
        assert response == offers[0]
        assert codec.send_window_bits == (8 if bits == 8 else min(bits, LOCAL_WINDOW))
        assert codec.receive_window_bits == 15

    @pytest.mark.parametrize("bits", range(8, 16))
    @pytest.mark.parametrize("limit", [None, 8, 12, 15])
    def test_client_max_window_bits_offered(self, bits: int, limit: int | None) -> None:
        offers = [ExtensionOffer(NAME, (("client_max_window_bits", str(bits)),))]
        ext = PerMessageDeflate(client_max_window_bits=limit)
        response, codec = ext.accept_offers(offers) or pytest.fail("declined")
        if limit is None:
            # The client promised at most ``bits``; nothing to answer.
            assert response == ExtensionOffer(NAME)
            assert codec.receive_window_bits == bits
        else:
            assert response == ExtensionOffer(
                NAME, (("client_max_window_bits", str(min(bits, limit))),)
            )
            assert codec.receive_window_bits == min(bits, limit)

    @pytest.mark.parametrize("limit", [None, *range(8, 16)])
    def test_client_max_window_bits_without_value(self, limit: int | None) -> None:
        offers = [ExtensionOffer(NAME, (("client_max_window_bits", None),))]
        response, codec = PerMessageDeflate(client_max_window_bits=limit).accept_offers(
            offers
        ) or pytest.fail("declined")
        if limit is None:
            assert response == ExtensionOffer(NAME) and codec.receive_window_bits == 15
        else:
            assert response.params == (("client_max_window_bits", str(limit)),)
            assert codec.receive_window_bits == limit

    @pytest.mark.parametrize("bits", range(8, 16))
    def test_client_accepts_server_window(self, bits: int) -> None:
        ext = PerMessageDeflate()
        codec = ext.accept_response(ExtensionOffer(NAME, (("server_max_window_bits", str(bits)),)))
        assert codec.receive_window_bits == bits
        assert codec.send_window_bits == LOCAL_WINDOW

    @pytest.mark.parametrize("bits", range(8, 16))
    def test_client_accepts_client_window(self, bits: int) -> None:
        codec = PerMessageDeflate().accept_response(
            ExtensionOffer(NAME, (("client_max_window_bits", str(bits)),))
        )
        assert codec.send_window_bits == (8 if bits == 8 else min(bits, LOCAL_WINDOW))
        assert codec.receive_window_bits == 15

    @pytest.mark.parametrize("bits", [-1, 7, 16, 0])
    def test_settings_out_of_range(self, bits: int) -> None:
        with pytest.raises(ValueError, match="8-15"):
            PerMessageDeflate(server_max_window_bits=bits)
        with pytest.raises(ValueError, match="8-15"):
            PerMessageDeflate(client_max_window_bits=bits)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"compress_level": 10},
            {"compress_level": -1},
            {"mem_level": 0},
            {"mem_level": 10},
            {"window_bits": 8},
            {"window_bits": 16},
        ],
    )
    def test_local_settings_out_of_range(self, kwargs: dict[str, int]) -> None:
        with pytest.raises(ValueError):
            PerMessageDeflate(**kwargs)  # type: ignore[arg-type]

    def test_min_size_is_checked(self) -> None:
        # Issue 17 item 1: every size setting is checked when given, not when first used.
        with pytest.raises(ValueError, match="min_size must not be negative"):
            PerMessageDeflate(min_size=-1)
        with pytest.raises(TypeError, match="min_size must be an int"):
            PerMessageDeflate(min_size=1.5)  # type: ignore[arg-type]
        assert PerMessageDeflate(min_size=2**100).min_size == 2**100  # never compresses


class TestClientValidatesTheResponse:
    """A response the client did not offer, or an invalid one, fails the connection (§7.1)."""

    def _reject(self, ext: Sequence[PerMessageDeflate], lines: Sequence[str]) -> Rejected:
        client = ClientConnection("example.com", "/", extensions=ext)
        events = client.receive_data(response_to(client, lines))
        [rejected] = events
        assert isinstance(rejected, Rejected), events
        assert rejected.status_code == 101
        assert isinstance(rejected.error, RemoteProtocolError)
        assert client.state is State.REJECTED
        assert client.data_to_send() == b""  # the handshake failed: no Close frame
        assert client.should_close()
        with pytest.raises(LocalProtocolError):
            client.send_text("x")
        return rejected

    def test_not_offered(self) -> None:
        self._reject([], [NAME])

    def test_unknown_extension(self) -> None:
        self._reject([PerMessageDeflate()], ["x-webkit-deflate-frame"])

    @pytest.mark.parametrize("lines", [[f"{NAME}, {NAME}"], [NAME, NAME]], ids=["one", "two"])
    def test_accepted_twice(self, lines: list[str]) -> None:
        self._reject([PerMessageDeflate()], lines)

    @pytest.mark.parametrize(
        "params",
        [
            "foo",
            "foo=1",
            "server_no_context_takeover; server_no_context_takeover",
            "client_no_context_takeover; client_no_context_takeover",
            "server_max_window_bits=9; server_max_window_bits=9",
            "client_max_window_bits=9; client_max_window_bits=9",
            "server_max_window_bits=7",
            "server_max_window_bits=16",
            "server_max_window_bits=08",
            "server_max_window_bits=a",
            "server_max_window_bits",
            "client_max_window_bits",  # a response must give a value (§7.1.2.2)
            "client_max_window_bits=7",
            "client_max_window_bits=16",
            "client_max_window_bits=010",
            "server_no_context_takeover=1",
            "client_no_context_takeover=yes",
        ],
    )
    def test_invalid_params(self, params: str) -> None:
        rejected = self._reject([PerMessageDeflate()], [f"{NAME}; {params}"])
        assert rejected.error is not None
        assert "RFC 7692" in str(rejected.error)

    @pytest.mark.parametrize(
        ("config", "params"),
        [
            # Asked for a server window of 10: a larger one, or none at all, is not an answer.
            ({"server_max_window_bits": 10}, "server_max_window_bits=11"),
            ({"server_max_window_bits": 10}, ""),
            ({"server_max_window_bits": 10}, "client_max_window_bits=10"),
            # Offered a client window of at most 10: the server cannot ask for more.
            ({"client_max_window_bits": 10}, "client_max_window_bits=11"),
            # Asked for server_no_context_takeover: the response must include it.
            ({"server_no_context_takeover": True}, ""),
            ({"server_no_context_takeover": True}, "client_no_context_takeover"),
        ],
    )
    def test_response_the_offer_does_not_allow(self, config: dict[str, int], params: str) -> None:
        line = f"{NAME}; {params}" if params else NAME
        self._reject([PerMessageDeflate(**config)], [line])  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("config", "params"),
        [
            ({}, "server_max_window_bits=9"),  # not asked, but allowed (§7.1.2.1)
            ({}, "server_no_context_takeover"),
            ({}, "client_no_context_takeover"),
            ({"server_max_window_bits": 10}, "server_max_window_bits=10"),
            ({"server_max_window_bits": 10}, "server_max_window_bits=8"),
            ({"client_max_window_bits": 10}, "client_max_window_bits=10"),
            ({"client_max_window_bits": 10}, "client_max_window_bits=8"),
            ({}, 'server_max_window_bits="12"'),
        ],
    )
    def test_valid_responses(self, config: dict[str, int], params: str) -> None:
        client = ClientConnection("example.com", "/", extensions=[PerMessageDeflate(**config)])  # type: ignore[arg-type]
        [accepted] = client.receive_data(response_to(client, [f"{NAME}; {params}"]))
        assert isinstance(accepted, Accepted)
        assert client.state is State.OPEN


class TestWindowBits8:
    """zlib cannot compress with an 8-bit window: send plain, still receive (§7.1.2.1)."""

    def test_server_window_8_requested(self) -> None:
        pair = open_pair([PerMessageDeflate(server_max_window_bits=8)], [PerMessageDeflate()])
        assert pair.accepted.extensions[0].params == (("server_max_window_bits", "8"),)
        for _ in range(3):
            pair.server.send_text(SHORT_TEXT)
            pair.client.send_text(SHORT_TEXT)
        s2c = parse_frames(pair.server.data_to_send())
        assert [(f.rsv, f.payload) for f in s2c] == [(0, SHORT_TEXT.encode())] * 3
        c2s = parse_frames(pair.client.data_to_send())
        assert all(f.rsv == RSV1 and len(f.payload) < len(SHORT_TEXT) for f in c2s)
        # The server still receives compressed data from the client.
        events = pair.server.receive_data(
            b"".join(frame(f.opcode, f.payload, rsv=f.rsv) for f in c2s)
        )
        assert events == [Text(data=SHORT_TEXT)] * 3

    def test_client_window_8_imposed(self) -> None:
        pair = open_pair([PerMessageDeflate()], [PerMessageDeflate(client_max_window_bits=8)])
        assert pair.accepted.extensions[0].params == (("client_max_window_bits", "8"),)
        pair.client.send_binary(BLOCK + BLOCK)
        [f] = parse_frames(pair.client.data_to_send())
        assert f.rsv == 0 and f.payload == BLOCK + BLOCK
        pair.server.send_binary(BLOCK + BLOCK)
        [g] = parse_frames(pair.server.data_to_send())
        assert g.rsv == RSV1 and len(g.payload) < len(BLOCK) + 100

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_receives_8_bit_window_data(self, role: str) -> None:
        # Messages under 256 bytes from a compressor reset per message only refer back
        # at most 255 bytes: valid data for an 8-bit window.
        if role == "server":
            conn: Connection = open_server(
                [PerMessageDeflate(client_max_window_bits=8)],
                ["permessage-deflate; client_max_window_bits"],
            )[0]
        else:
            conn = ClientConnection(
                "x", "/", extensions=[PerMessageDeflate(server_max_window_bits=8)]
            )
            [accepted] = conn.receive_data(
                response_to(conn, ["permessage-deflate; server_max_window_bits=8"])
            )
            assert isinstance(accepted, Accepted)
        texts = [("ab" * 60 + str(i)) for i in range(5)]
        peer = RefDeflater(9, reset=True)
        events = feed(
            conn, [peer_frame(conn, TEXT, peer.message(t.encode()), rsv=RSV1) for t in texts]
        )
        assert events == [Text(data=t) for t in texts]


class TestNoContextTakeoverIsHonoured:
    """§7.1.1: the side that may not take over context resets; the other resets to match."""

    @pytest.mark.parametrize("negotiated", [False, True])
    def test_server_receiving(self, negotiated: bool) -> None:
        offer = "permessage-deflate; client_no_context_takeover" if negotiated else NAME
        server, values = open_server([PerMessageDeflate()], [offer])
        assert values == [offer]
        # A peer that resets decodes either way.
        resetting = RefDeflater(reset=True)
        events = feed(server, [frame(BINARY, resetting.message(BLOCK), rsv=RSV1) for _ in range(3)])
        assert events == [Binary(data=BLOCK)] * 3
        # A peer that keeps its context refers back to the previous message.
        keeping = RefDeflater(reset=False)
        payloads = [keeping.message(BLOCK) for _ in range(2)]
        assert len(payloads[1]) < 40
        events = feed(server, [frame(BINARY, p, rsv=RSV1) for p in payloads])
        if negotiated:
            # The server reset its window, as agreed: the reference is invalid DEFLATE.
            assert events[0] == Binary(data=BLOCK)
            assert failure(events).code == 1007
            assert close_code(parse_frames(server.data_to_send())) == 1007
        else:
            assert events == [Binary(data=BLOCK)] * 2

    @pytest.mark.parametrize("negotiated", [False, True])
    def test_client_receiving(self, negotiated: bool) -> None:
        ext = PerMessageDeflate(server_no_context_takeover=negotiated)
        client = ClientConnection("x", "/", extensions=[ext])
        line = "permessage-deflate; server_no_context_takeover" if negotiated else NAME
        [accepted] = client.receive_data(response_to(client, [line]))
        assert isinstance(accepted, Accepted)
        keeping = RefDeflater(reset=False)
        payloads = [keeping.message(BLOCK) for _ in range(2)]
        events = feed(client, [frame(BINARY, p, rsv=RSV1, mask=False) for p in payloads])
        if negotiated:
            assert failure(events).code == 1007
        else:
            assert events == [Binary(data=BLOCK)] * 2

    @pytest.mark.parametrize(
        ("offer", "client_resets", "server_resets"),
        [
            (NAME, False, False),
            ("permessage-deflate; client_no_context_takeover", True, False),
            ("permessage-deflate; server_no_context_takeover", False, True),
        ],
    )
    def test_sending(self, offer: str, client_resets: bool, server_resets: bool) -> None:
        server, _ = open_server([PerMessageDeflate()], [offer])
        for _ in range(3):
            server.send_binary(BLOCK)
        frames = parse_frames(server.data_to_send())
        sizes = [len(f.payload) for f in frames]
        if server_resets:
            # Each message inflates alone.
            assert all(
                zlib.decompressobj(-15).decompress(f.payload + TAIL) == BLOCK for f in frames
            )
            assert min(sizes) > len(BLOCK)
        else:
            assert sizes[1] < 40 and sizes[2] < 40
        client = ClientConnection(
            "x", "/", extensions=[PerMessageDeflate(client_no_context_takeover=client_resets)]
        )
        [accepted] = client.receive_data(response_to(client, [offer]))
        assert isinstance(accepted, Accepted)
        for _ in range(3):
            client.send_binary(BLOCK)
        sizes = [len(f.payload) for f in parse_frames(client.data_to_send())]
        assert (min(sizes) > len(BLOCK)) if client_resets else (sizes[1] < 40)


# ==============================================================================================
# §6, §7.2: data
# ==============================================================================================


class TestRFCExamples:
    """The payloads of RFC 7692 §7.2.3, received by both roles."""

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize(
        "payloads",
        [
            ["f248cdc9c90700"],  # §7.2.3.1
            ["000500faff48656c6c6f00"],  # §7.2.3.3: a stored block
            ["f3 48 cd c9 c9 07 00 00"],  # §7.2.3.4: BFINAL set
            ["f2 48 05 00 00 00 ff ff ca c9 c9 07 00"],  # §7.2.3.5: two blocks
        ],
    )
    def test_hello(self, role: str, payloads: list[str]) -> None:
        conn = compressed_server() if role == "server" else compressed_client()
        data = bytes.fromhex(payloads[0])
        events = conn.receive_data(peer_frame(conn, TEXT, data, rsv=RSV1))
        assert events == [Text(data="Hello")]
        # And the connection goes on (§7.2.3.2: the second message refers to the first).
        conn2 = compressed_server() if role == "server" else compressed_client()
        events = feed(
            conn2,
            [
                peer_frame(conn2, TEXT, bytes.fromhex("f248cdc9c90700"), rsv=RSV1),
                peer_frame(conn2, TEXT, bytes.fromhex("f200110000"), rsv=RSV1),
            ],
        )
        assert events == [Text(data="Hello")] * 2

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_empty_fragment(self, role: str) -> None:
        # §7.2.3.6: "Hello" flushed in a first frame, then an empty final fragment.
        conn = compressed_server() if role == "server" else compressed_client()
        events = feed(
            conn,
            [
                peer_frame(
                    conn, TEXT, bytes.fromhex("f248cdc9c90700 0000ffff"), fin=False, rsv=RSV1
                ),
                peer_frame(conn, CONT, b"\x00"),
            ],
        )
        assert events == [Text(data="Hello")]


class TestRoundTrip:
    """Our two ends agree over many messages, with and without context takeover (§7.2.1)."""

    @pytest.mark.parametrize("snct", FLAGS)
    @pytest.mark.parametrize("cnct", FLAGS)
    @pytest.mark.parametrize("bits", [9, 12, 15])
    def test_many_messages(self, snct: bool, cnct: bool, bits: int) -> None:
        ext = PerMessageDeflate(
            server_no_context_takeover=snct,
            client_no_context_takeover=cnct,
            server_max_window_bits=bits,
            client_max_window_bits=bits,
        )
        pair = open_pair([ext], [PerMessageDeflate(window_bits=15)])
        rng = random.Random(bits)
        words = ["alpha", "beta", "gamma", "δέλτα", "🙂", "\x00"]
        sent_text = [" ".join(rng.choices(words, k=rng.randrange(0, 400))) for _ in range(60)]
        sent_bin = [rng.randbytes(rng.randrange(0, 50)) * rng.randrange(1, 40) for _ in range(60)]
        got_s: list[Event] = []
        got_c: list[Event] = []
        for text, data in zip(sent_text, sent_bin, strict=True):
            pair.client.send_text(text)
            pair.client.send_binary(data)
            pair.server.send_binary(data)
            pair.server.send_text(text)
            got_s += pair.to_server()
            got_c += pair.to_client()
        assert got_s == [
            m
            for t, d in zip(sent_text, sent_bin, strict=True)
            for m in (Text(data=t), Binary(data=d))
        ]
        assert got_c == [
            m
            for t, d in zip(sent_text, sent_bin, strict=True)
            for m in (Binary(data=d), Text(data=t))
        ]
        # Every data frame was compressed, and each inflates with the negotiated window.
        for direction, reset in (("c2s", cnct), ("s2c", snct)):
            msgs = messages(parse_frames(b"".join(pair.wire[direction])))
            assert len(msgs) == 120 and all(compressed for _, compressed, _ in msgs)
            inflater = RefInflater(bits, reset=reset)
            assert [inflater.message(p) for _, _, p in msgs] == [
                m
                for t, d in zip(sent_text, sent_bin, strict=True)
                for m in ((t.encode(), d) if direction == "c2s" else (d, t.encode()))
            ]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        snct=st.booleans(),
        cnct=st.booleans(),
        bits=st.integers(9, 15),
        msgs=st.lists(
            st.tuples(
                st.booleans(),
                st.lists(st.binary(max_size=300) | st.just(b"ab" * 500), min_size=1, max_size=4),
                st.booleans(),
            ),
            min_size=1,
            max_size=12,
        ),
    )
    def test_property_fragments_and_opt_out(
        self, snct: bool, cnct: bool, bits: int, msgs: list[tuple[bool, list[bytes], bool]]
    ) -> None:
        ext = PerMessageDeflate(
            server_no_context_takeover=snct,
            client_no_context_takeover=cnct,
            client_max_window_bits=bits,
            server_max_window_bits=bits,
        )
        pair = open_pair([ext], [PerMessageDeflate()])
        for from_client, pieces, compress in msgs:
            sender = pair.client if from_client else pair.server
            for i, piece in enumerate(pieces):
                sender.send_binary(piece, final=i == len(pieces) - 1, compress=compress)
            events = pair.to_server() if from_client else pair.to_client()
            assert events == [Binary(data=b"".join(pieces))]
            wire = pair.wire["c2s" if from_client else "s2c"][-1]
            frames = parse_frames(wire)
            assert len(frames) == len(pieces)
            assert frames[0].rsv == (RSV1 if compress else 0)
            assert all(f.rsv == 0 for f in frames[1:])
            if not compress:
                assert [f.payload for f in frames] == pieces


class TestFragmentedMessages:
    """A compressed message over several frames (RFC 7692 §6.1, RFC 6455 §5.4)."""

    PIECES = ("Hello, ", "", "fragmented ", "compressed " * 50, "world")

    def test_sent_in_pieces(self) -> None:
        pair = open_pair([PerMessageDeflate()], [PerMessageDeflate()])
        for _ in range(3):  # context carries across fragmented messages too
            for i, piece in enumerate(self.PIECES):
                pair.client.send_text(piece, final=i == len(self.PIECES) - 1)
            assert pair.to_server() == [Text(data="".join(self.PIECES))]
        frames = parse_frames(b"".join(pair.wire["c2s"]))
        assert len(frames) == 3 * len(self.PIECES)
        assert [(f.opcode, f.rsv, f.fin) for f in frames[:5]] == [
            (TEXT, RSV1, False),
            (CONT, 0, False),
            (CONT, 0, False),
            (CONT, 0, False),
            (CONT, 0, True),
        ]
        inflater = RefInflater()
        for _, compressed, payloads in messages(frames):
            assert compressed
            assert inflater.message(payloads) == "".join(self.PIECES).encode()

    @pytest.mark.parametrize("stream", [False, True])
    @pytest.mark.parametrize("role", ["server", "client"])
    def test_received_in_pieces(self, stream: bool, role: str) -> None:
        conn = (
            compressed_server(stream=stream)
            if role == "server"
            else compressed_client(stream=stream)
        )
        peer = RefDeflater()
        pieces = [p.encode() for p in self.PIECES]
        for _ in range(3):
            payloads = peer.fragments(pieces)
            frames = [
                peer_frame(
                    conn,
                    TEXT if i == 0 else CONT,
                    p,
                    fin=i == len(payloads) - 1,
                    rsv=RSV1 if i == 0 else 0,
                )
                for i, p in enumerate(payloads)
            ]
            events = feed(conn, frames)
            if stream:
                assert all(isinstance(e, Text) for e in events)
                assert "".join(e.data for e in events if isinstance(e, Text)) == "".join(
                    self.PIECES
                )
                assert [e.final for e in events if isinstance(e, Text)][-1] is True
            else:
                assert events == [Text(data="".join(self.PIECES))]

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_compressed_stream_split_anywhere(self, role: str) -> None:
        # Frames may cut the compressed data at any byte, even inside a code (§6.1).
        data = (SHORT_TEXT * 3).encode()
        payload = RefDeflater().message(data)
        for cut in range(len(payload) + 1):
            conn = compressed_server() if role == "server" else compressed_client()
            frames = [
                peer_frame(conn, TEXT, payload[:cut], fin=False, rsv=RSV1),
                peer_frame(conn, CONT, payload[cut:]),
            ]
            assert feed(conn, frames) == [Text(data=data.decode())], cut

    def test_text_split_inside_a_character(self) -> None:
        conn = compressed_server()
        data = "€uro " * 40
        raw = data.encode()
        pieces = [raw[:1], raw[1:2], raw[2:]]  # "€" is three octets
        payloads = RefDeflater().fragments(pieces)
        events = feed(
            conn,
            [
                frame(TEXT if i == 0 else CONT, p, fin=i == 2, rsv=RSV1 if i == 0 else 0)
                for i, p in enumerate(payloads)
            ],
        )
        assert events == [Text(data=data)]

    def test_control_frames_between_fragments(self) -> None:
        conn = compressed_server()
        payloads = RefDeflater().fragments([b"one ", b"two"])
        events = feed(
            conn,
            [
                frame(BINARY, payloads[0], fin=False, rsv=RSV1),
                frame(PING, b"ping"),
                frame(CONT, payloads[1]),
            ],
        )
        assert events == [Ping(payload=b"ping"), Binary(data=b"one two")]


class TestOptOut:
    """compress=False sends a message as is (RFC 7692 §6, §8)."""

    @pytest.mark.parametrize("kind", ["text", "binary"])
    def test_rsv1_clear_and_raw(self, kind: str) -> None:
        pair = open_pair([PerMessageDeflate()], [PerMessageDeflate()])
        secret = "token=0123456789abcdef " * 4
        for compress in (True, False, True, False, True):
            if kind == "text":
                pair.server.send_text(secret, compress=compress)
            else:
                pair.server.send_binary(secret.encode(), compress=compress)
        wire = pair.server.data_to_send()
        frames = parse_frames(wire)
        assert [f.rsv for f in frames] == [RSV1, 0, RSV1, 0, RSV1]
        assert frames[1].payload == frames[3].payload == secret.encode()
        # Plain messages are not part of the compression context (§7.2.1): the compressed ones
        # decode on their own with one continuous inflater.
        inflater = RefInflater()
        assert [inflater.message([f.payload]) for f in frames if f.rsv] == [secret.encode()] * 3
        expected = Text(data=secret) if kind == "text" else Binary(data=secret.encode())
        assert pair.client.receive_data(wire) == [expected] * 5

    def test_first_fragment_decides(self) -> None:
        pair = open_pair([PerMessageDeflate()], [PerMessageDeflate()])
        pair.client.send_binary(b"a" * 100, final=False, compress=False)
        pair.client.send_binary(b"b" * 100, final=True, compress=True)
        pair.client.send_binary(b"c" * 100, final=False, compress=True)
        pair.client.send_binary(b"d" * 100, final=True, compress=False)
        events = pair.to_server()
        assert events == [
            Binary(data=b"a" * 100 + b"b" * 100),
            Binary(data=b"c" * 100 + b"d" * 100),
        ]
        frames = parse_frames(pair.wire["c2s"][-1])
        assert [f.rsv for f in frames] == [0, 0, RSV1, 0]
        assert [f.payload for f in frames[:2]] == [b"a" * 100, b"b" * 100]
        assert all(len(f.payload) < 20 for f in frames[2:])

    def test_min_size(self) -> None:
        pair = open_pair([PerMessageDeflate()], [PerMessageDeflate(min_size=64)])
        pair.server.send_text("x" * 63)
        pair.server.send_text("x" * 64)
        frames = parse_frames(pair.server.data_to_send())
        assert [f.rsv for f in frames] == [0, RSV1]
        assert frames[0].payload == b"x" * 63

    def test_no_deflate_negotiated_compress_flag_is_harmless(self) -> None:
        pair = open_pair([], [])
        pair.client.send_text("plain", compress=True)
        [f] = parse_frames(pair.client.data_to_send())
        assert f.rsv == 0 and f.payload == b"plain"


class TestRSVRules:
    """RSV1 marks a compressed message's first frame only (§6); never a control frame."""

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_rsv1_on_continuation_of_compressed(self, role: str) -> None:
        conn = compressed_server() if role == "server" else compressed_client()
        payloads = RefDeflater().fragments([b"one", b"two"])
        events = feed(
            conn,
            [
                peer_frame(conn, TEXT, payloads[0], fin=False, rsv=RSV1),
                peer_frame(conn, CONT, payloads[1], rsv=RSV1),
            ],
        )
        assert failure(events).code == 1002
        assert data_events(events) == []
        assert close_code(parse_frames(conn.data_to_send())) == 1002
        assert conn.state is State.CLOSED

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_rsv1_on_continuation_of_plain(self, role: str) -> None:
        conn = compressed_server() if role == "server" else compressed_client()
        events = feed(
            conn,
            [peer_frame(conn, TEXT, b"one", fin=False), peer_frame(conn, CONT, b"two", rsv=RSV1)],
        )
        assert failure(events).code == 1002
        assert data_events(events) == []

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    def test_rsv1_on_control_frame(self, role: str, opcode: int) -> None:
        conn = compressed_server() if role == "server" else compressed_client()
        payload = b"\x03\xe8" if opcode == CLOSE else b"hi"
        events = conn.receive_data(peer_frame(conn, opcode, payload, rsv=RSV1))
        assert failure(events).code == 1002
        assert close_code(parse_frames(conn.data_to_send())) == 1002

    @pytest.mark.parametrize("rsv", [RSV2, RSV3, RSV1 | RSV2])
    def test_other_rsv_bits(self, rsv: int) -> None:
        conn = compressed_server()
        events = conn.receive_data(frame(TEXT, RefDeflater().message(b"x"), rsv=rsv))
        assert failure(events).code == 1002

    def test_rsv1_without_the_extension(self) -> None:
        pair = open_pair([], [])
        events = pair.server.receive_data(frame(TEXT, RefDeflater().message(b"x"), rsv=RSV1))
        assert failure(events).code == 1002

    def test_plain_message_with_extension(self) -> None:
        conn = compressed_server()
        assert conn.receive_data(frame(TEXT, b"plain")) == [Text(data="plain")]


class TestInvalidDeflate:
    """Compressed data that is not DEFLATE fails with 1007 (RFC 7692 §7.2.2, RFC 6455 §7.4.1)."""

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize(
        "payload",
        [
            b"\xff\xff\xff\xff",  # BTYPE 11: reserved
            b"\x07",
            b"\x00\x05\x00\x00\x00hello",  # stored block: LEN and NLEN disagree
            bytes.fromhex("f248cdc9c90700") + b"\x00" * 3 + b"\xff" * 5,
        ],
        ids=["btype11", "btype11-short", "stored-len", "garbage-after"],
    )
    def test_invalid(self, role: str, payload: bytes) -> None:
        conn = compressed_server() if role == "server" else compressed_client()
        events = conn.receive_data(peer_frame(conn, BINARY, payload, rsv=RSV1))
        close = failure(events)
        assert close.code == 1007
        assert data_events(events) == []
        assert close_code(parse_frames(conn.data_to_send())) == 1007

    def test_invalid_in_a_later_fragment(self) -> None:
        conn = compressed_server()
        first = RefDeflater().fragments([b"fine", b"x"])[0]
        events = feed(conn, [frame(BINARY, first, fin=False, rsv=RSV1), frame(CONT, b"\xff\xff")])
        assert failure(events).code == 1007

    def test_reference_before_the_start(self) -> None:
        # A back-reference with nothing before it: distance too far back.
        conn = compressed_server()
        keeping = RefDeflater()
        keeping.message(BLOCK)
        events = conn.receive_data(frame(BINARY, keeping.message(BLOCK), rsv=RSV1))
        assert failure(events).code == 1007

    def test_window_is_the_negotiated_one(self) -> None:
        # We limited the client to a 9-bit window; data referring 3000 bytes back is invalid.
        server, _ = open_server(
            [PerMessageDeflate(client_max_window_bits=9)],
            ["permessage-deflate; client_max_window_bits"],
        )
        wide = RefDeflater(12)
        events = feed(server, [frame(BINARY, wide.message(BLOCK), rsv=RSV1) for _ in range(2)])
        assert events[0] == Binary(data=BLOCK)
        assert failure(events).code == 1007


class TestFinalBlock:
    """A message may end with a BFINAL block (RFC 7692 §7.2.3.4); the next messages, under
    context takeover, must still decode exactly: no data lost, none corrupted."""

    TEXTS = tuple(SHORT_TEXT + str(i) for i in range(4))

    @staticmethod
    def final_block(data: bytes, zdict: bytes, form: str) -> bytes:
        """``data`` compressed as one DEFLATE stream ending with a BFINAL block; it may refer to
        ``zdict`` (the peer kept its window); then the tail processing ``form`` says."""
        z = (
            zlib.compressobj(6, zlib.DEFLATED, -15, zdict=zdict)
            if zdict
            else zlib.compressobj(6, zlib.DEFLATED, -15)
        )
        if form == "finish":  # strip nothing
            return z.compress(data) + z.flush(zlib.Z_FINISH)
        if form == "rfc":  # §7.2.1 steps 2-3: append an empty stored block, remove 4 octets
            return z.compress(data) + z.flush(zlib.Z_FINISH) + b"\x00"
        assert form == "sync-then-finish"  # a sync flush, then an empty final block
        return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH) + z.flush(zlib.Z_FINISH)

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("form", ["finish", "rfc", "sync-then-finish"])
    @pytest.mark.parametrize("referring", [False, True], ids=["fresh", "referring"])
    def test_messages_after_final_blocks(self, role: str, form: str, referring: bool) -> None:
        conn = compressed_server() if role == "server" else compressed_client()
        history = b""
        frames = []
        for text in self.TEXTS:
            data = text.encode()
            payload = self.final_block(data, history if referring else b"", form)
            if referring and history:
                assert len(payload) < len(data) // 4, "the message refers to the previous ones"
            frames.append(peer_frame(conn, TEXT, payload, rsv=RSV1))
            history = (history + data)[-32768:]
        # Then messages from a compressor that kept the window across all of them.
        sync = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=history)
        for text in self.TEXTS:
            out = sync.compress(text.encode()) + sync.flush(zlib.Z_SYNC_FLUSH)
            assert len(out) < 20
            frames.append(peer_frame(conn, TEXT, out[:-4], rsv=RSV1))
        events = feed(conn, frames)
        assert events == [Text(data=t) for t in self.TEXTS * 2]
        assert conn.state is State.OPEN

    @pytest.mark.parametrize("form", ["finish", "rfc"])
    def test_final_block_split_across_frames(self, form: str) -> None:
        first = self.final_block(self.TEXTS[0].encode(), b"", form)
        second = self.final_block(self.TEXTS[1].encode(), self.TEXTS[0].encode(), form)
        for cut in range(len(first) + 1):
            conn = compressed_server()
            events = feed(
                conn,
                [
                    frame(TEXT, first[:cut], fin=False, rsv=RSV1),
                    frame(CONT, first[cut:]),
                    frame(TEXT, second, rsv=RSV1),
                ],
            )
            assert events == [Text(data=t) for t in self.TEXTS[:2]], cut

    def test_final_block_with_receiver_reset(self) -> None:
        server, _ = open_server(
            [PerMessageDeflate()], ["permessage-deflate; client_no_context_takeover"]
        )
        frames = [
            frame(TEXT, self.final_block(t.encode(), b"", "rfc"), rsv=RSV1) for t in self.TEXTS
        ]
        assert feed(server, frames) == [Text(data=t) for t in self.TEXTS]

    def test_large_message_with_final_block_then_reference(self) -> None:
        # The window after a message longer than the window is that message's tail.
        big = random.Random(1).randbytes(50_000)
        conn = compressed_server()
        z = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=big[-32768:])
        second = z.compress(big[-20000:]) + z.flush(zlib.Z_SYNC_FLUSH)
        events = feed(
            conn,
            [
                frame(BINARY, self.final_block(big, b"", "finish"), rsv=RSV1),
                frame(BINARY, second[:-4], rsv=RSV1),
            ],
        )
        assert len(second) < 200
        assert events == [Binary(data=big), Binary(data=big[-20000:])]

    @pytest.mark.parametrize(
        "after",
        [b"\x01", b"\x00\x00", b"\xf2\x48\xcd\xc9\xc9\x07\x00", TAIL, b"\x00" + TAIL],
        ids=["one", "two-zeros", "another-block", "tail", "rfc-octet-and-tail"],
    )
    def test_data_after_the_final_block(self, after: bytes) -> None:
        conn = compressed_server()
        payload = self.final_block(b"Hello", b"", "finish") + after
        events = conn.receive_data(frame(TEXT, payload, rsv=RSV1))
        assert failure(events).code == 1007
        assert data_events(events) == []


# ==============================================================================================
# §8.1, RFC 6455 §10.4: bounded inflation
# ==============================================================================================


LIMIT = 10_000


def sized(n: int) -> bytes:
    """``n`` bytes that compress somewhat."""
    return (b"0123456789abcdef" * (n // 16 + 1))[:n]


class TestBoundedInflation:
    """A message inflating to max_message_size passes; one byte more fails with 1009."""

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("size", [LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 100])
    def test_whole(self, role: str, size: int) -> None:
        kw = {"max_message_size": LIMIT}
        conn = compressed_server(**kw) if role == "server" else compressed_client(**kw)
        events = conn.receive_data(
            peer_frame(conn, BINARY, RefDeflater().message(sized(size)), rsv=RSV1)
        )
        if size <= LIMIT:
            assert events == [Binary(data=sized(size))]
            assert conn.state is State.OPEN
        else:
            assert failure(events).code == 1009
            assert data_events(events) == []
            assert close_code(parse_frames(conn.data_to_send())) == 1009

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("text", [False, True])
    @pytest.mark.parametrize("extra", [0, 1])
    @pytest.mark.parametrize("pieces", [2, 3, 7])
    def test_fragmented(self, role: str, text: bool, extra: int, pieces: int) -> None:
        kw = {"max_message_size": LIMIT}
        conn = compressed_server(**kw) if role == "server" else compressed_client(**kw)
        data = sized(LIMIT + extra)
        bounds = [len(data) * i // pieces for i in range(pieces + 1)]
        parts = [data[a:b] for a, b in itertools.pairwise(bounds)]
        payloads = RefDeflater().fragments(parts)
        opcode = TEXT if text else BINARY
        frames = [
            peer_frame(
                conn, opcode if i == 0 else CONT, p, fin=i == pieces - 1, rsv=RSV1 if i == 0 else 0
            )
            for i, p in enumerate(payloads)
        ]
        events = feed(conn, frames)
        if extra == 0:
            assert events == [Text(data=data.decode()) if text else Binary(data=data)]
        else:
            assert failure(events).code == 1009
            assert data_events(events) == []

    @pytest.mark.parametrize("extra", [0, 1])
    def test_compressed_data_split_anywhere(self, extra: int) -> None:
        # The budget holds however the compressed bytes are cut into frames.
        payload = RefDeflater().message(sized(LIMIT + extra))
        for cut in range(0, len(payload) + 1, 7):
            conn = compressed_server(max_message_size=LIMIT)
            events = feed(
                conn,
                [frame(BINARY, payload[:cut], fin=False, rsv=RSV1), frame(CONT, payload[cut:])],
            )
            if extra:
                assert failure(events).code == 1009, cut
            else:
                assert events == [Binary(data=sized(LIMIT))], cut

    def test_stream_mode_budget(self) -> None:
        conn = compressed_server(max_message_size=LIMIT, stream=True)
        payloads = RefDeflater().fragments([sized(LIMIT), b"x"])
        events = feed(
            conn, [frame(BINARY, payloads[0], fin=False, rsv=RSV1), frame(CONT, payloads[1])]
        )
        assert events[0] == Binary(data=sized(LIMIT), final=False)
        assert failure(events).code == 1009

    def test_budget_resets_per_message(self) -> None:
        conn = compressed_server(max_message_size=LIMIT)
        peer = RefDeflater()
        frames = [frame(BINARY, peer.message(sized(LIMIT)), rsv=RSV1) for _ in range(5)]
        assert feed(conn, frames) == [Binary(data=sized(LIMIT))] * 5

    @staticmethod
    def bomb(gib: float = 1.0) -> list[bytes]:
        """Compressed chunks of ``gib`` GiB of zeros, each inflating to 1 MiB (sync flushed).

        After the first chunk, zlib's output for each further MiB of zeros is identical, so
        two chunks are compressed and the second repeated: fast to build."""
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        mib = b"\0" * (1 << 20)
        first = z.compress(mib) + z.flush(zlib.Z_SYNC_FLUSH)
        steady = z.compress(mib) + z.flush(zlib.Z_SYNC_FLUSH)
        assert z.compress(mib) + z.flush(zlib.Z_SYNC_FLUSH) == steady
        n = int(gib * 1024)
        check = zlib.decompressobj(-15)
        assert len(check.decompress(first + steady * 3)) == 4 << 20
        return [first] + [steady] * (n - 1)

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_gib_bomb_in_one_frame(self, role: str) -> None:
        chunks = self.bomb(1000 / 1024)  # 1000 MiB of zeros
        payload = b"".join(chunks)
        assert payload.endswith(TAIL)
        payload = payload[:-4]
        limit = 1 << 20  # the default max_message_size, which also bounds frames
        assert 1_000_000 < len(payload) < limit  # about 1 MiB on the wire: a legal frame
        conn = compressed_server() if role == "server" else compressed_client()
        data = peer_frame(conn, BINARY, payload, rsv=RSV1)
        tracemalloc.start()
        try:
            start = time.perf_counter()
            events = conn.receive_data(data)
            elapsed = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        close = failure(events)
        assert close.code == 1009
        assert "inflates past" in str(close.error), "stopped while inflating, not by frame size"
        assert data_events(events) == []
        assert elapsed < 2.0
        # The frame (1 MiB) is copied while read, unmasked and given its tail; the output
        # stops one byte past the limit. Nowhere near the 1000 MiB it would inflate to.
        assert peak < limit + 5 * len(payload), peak

    def test_bomb_in_many_frames(self) -> None:
        chunks = self.bomb(0.25)  # 256 frames, each inflating to 1 MiB
        conn = compressed_server()
        frames = [frame(BINARY, chunks[0], fin=False, rsv=RSV1)]
        frames += [frame(CONT, c, fin=False) for c in chunks[1:]]
        wire = b"".join(frames)
        tracemalloc.start()
        try:
            start = time.perf_counter()
            events = conn.receive_data(wire)
            elapsed = time.perf_counter() - start
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        close = failure(events)
        assert close.code == 1009
        assert "inflates past" in str(close.error)
        assert elapsed < 2.0
        # The first frame inflates to exactly the limit (held once, and once more while zlib's
        # output blocks are joined); the next one stops after one byte.
        assert peak < 2 * (1 << 20) + 4 * len(wire), peak

    def test_small_limit_tiny_frame(self) -> None:
        # 40 bytes on the wire, 100 kB inflated: the limit is what counts, not the ratio.
        conn = compressed_server(max_message_size=100)
        payload = RefDeflater(level=9).message(b"\0" * 100_000)
        assert len(payload) < 200
        events = conn.receive_data(frame(BINARY, payload, rsv=RSV1))
        assert failure(events).code == 1009


MIB = 1 << 20


def incompressible(n: int, seed: int = 12) -> bytes:
    return random.Random(seed).randbytes(n)


def random_text(n: int) -> bytes:
    """``n`` bytes of random 2-byte UTF-8 characters (one ASCII byte if ``n`` is odd)."""
    rng = random.Random(n)
    chars = "".join(chr(rng.randrange(0x400, 0x800)) for _ in range(n // 2))
    return (chars + "a" * (n % 2)).encode()


def worst_deflate(data: bytes) -> bytes:
    """``data`` as the least compact zlib setting sends it: fixed Huffman codes, which spend
    9 bits on each byte 144-255 (RFC 1951 §3.2.6), so random data grows by about 4 %."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15, 1, zlib.Z_FIXED)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


class TestIncompressibleMessageAtTheLimit:
    """Issue 12: a compressed frame may be longer than the data it carries. The frame limit
    leaves room for deflate's worst expansion, max_compressed_size(); the inflated size limit
    stays byte-exact."""

    @pytest.mark.parametrize("direction", ["client to server", "server to client"])
    def test_a_mib_of_random_bytes_through_our_own_compressor(self, direction: str) -> None:
        # The report: 1 MiB of random data took 1,051,142 bytes on the wire and was refused
        # with 1009 by a peer whose max_message_size was 1 MiB.
        pair = open_pair([PerMessageDeflate()], [PerMessageDeflate()], max_message_size=MIB)
        data = incompressible(MIB)
        if direction == "client to server":
            pair.client.send_binary(data)
            events = pair.to_server()
            wire = pair.wire["c2s"][-1]
        else:
            pair.server.send_binary(data)
            events = pair.to_client()
            wire = pair.wire["s2c"][-1]
        assert events == [Binary(data=data)]
        [sent] = parse_frames(wire)
        assert sent.rsv == RSV1
        assert MIB < len(sent.payload) <= max_compressed_size(MIB)

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("text", [False, True])
    @pytest.mark.parametrize("extra", [-1, 0, 1])
    def test_inflated_limit_is_byte_exact(self, role: str, text: bool, extra: int) -> None:
        # Random data through the worst zlib setting: 6 % larger on the wire than inflated.
        kw = {"max_message_size": LIMIT}
        conn = compressed_server(**kw) if role == "server" else compressed_client(**kw)
        data = random_text(LIMIT + extra) if text else incompressible(LIMIT + extra)
        payload = worst_deflate(data)
        assert len(payload) > LIMIT + LIMIT // 32
        events = conn.receive_data(peer_frame(conn, TEXT if text else BINARY, payload, rsv=RSV1))
        if extra <= 0:
            assert events == [Text(data=data.decode()) if text else Binary(data=data)]
            assert conn.state is State.OPEN
        else:
            close = failure(events)
            assert close.code == 1009
            assert data_events(events) == []
            assert close_code(parse_frames(conn.data_to_send())) == 1009

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_fragmented_incompressible_message_at_the_limit(self, role: str) -> None:
        conn = compressed_server(max_message_size=LIMIT, max_frame_size=LIMIT // 2)
        if role == "client":
            conn = compressed_client(max_message_size=LIMIT, max_frame_size=LIMIT // 2)
        data = incompressible(LIMIT)
        z = zlib.compressobj(6, zlib.DEFLATED, -15, 1, zlib.Z_FIXED)
        first = z.compress(data[: LIMIT // 2]) + z.flush(zlib.Z_SYNC_FLUSH)
        second = (z.compress(data[LIMIT // 2 :]) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
        assert len(first) > LIMIT // 2 and len(second) > LIMIT // 2
        events = feed(
            conn,
            [
                peer_frame(conn, BINARY, first, fin=False, rsv=RSV1),
                peer_frame(conn, CONT, second),
            ],
        )
        assert events == [Binary(data=data)]

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("over", [0, 1])
    def test_frame_bound_is_checked_from_the_header(self, role: str, over: int) -> None:
        # A declared length past the bound fails before its payload is buffered.
        kw = {"max_message_size": LIMIT}
        conn = compressed_server(**kw) if role == "server" else compressed_client(**kw)
        declared = max_compressed_size(LIMIT) + over
        header = peer_frame(conn, BINARY, b"\0" * declared, rsv=RSV1)[
            : 4 + (0 if conn.client else 4)
        ]
        events = conn.receive_data(header)
        if over:
            close = failure(events)
            assert close.code == 1009
            assert f"exceeds the limit of {max_compressed_size(LIMIT)} bytes" in str(close.error)
        else:
            assert events == []

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("step", [None, 1])
    def test_uncompressed_frame_is_held_to_the_message_limit(
        self, role: str, step: int | None
    ) -> None:
        # The reader lets any data frame up to the bound through (it cannot tell the
        # continuation of a compressed message by its header); the message limit still holds.
        for payload, code in [(b"x" * (LIMIT + 1), 1009), (b"\xff" + b"x" * LIMIT, 1007)]:
            kw = {"max_message_size": LIMIT}
            conn = compressed_server(**kw) if role == "server" else compressed_client(**kw)
            wire = peer_frame(conn, TEXT, payload)
            if step is None:
                events = conn.receive_data(wire)
            else:
                events = []
                for i in range(0, len(wire), 997):
                    events += conn.receive_data(wire[i : i + 997])
            assert failure(events).code == code
            assert data_events(events) == []
        conn = compressed_server(max_message_size=LIMIT)
        assert conn.receive_data(frame(BINARY, b"x" * LIMIT)) == [Binary(data=b"x" * LIMIT)]

    def test_bound_formula(self) -> None:
        assert max_compressed_size(0) == 16
        assert max_compressed_size(MIB) == MIB + MIB // 8 + MIB // 256 + MIB // 512 + 16
        for n in (0, 1, 100, 5000, 70_000):
            assert len(worst_deflate(incompressible(n))) <= max_compressed_size(n)


class TestInflationErrorMessage:
    """Issue 12: the 1009 said "inflates past the limit of 1048576 more bytes"."""

    @pytest.mark.parametrize("role", ["server", "client"])
    def test_whole_message(self, role: str) -> None:
        conn = compressed_server() if role == "server" else compressed_client()
        payload = RefDeflater().message(b"\0" * (MIB + 1))
        close = failure(conn.receive_data(peer_frame(conn, BINARY, payload, rsv=RSV1)))
        assert close.code == 1009
        message = str(close.error)
        assert "compressed message inflates past max_message_size (1048576 bytes)" in message
        assert "it reached 1048577 bytes (0 from earlier frames) when inflating stopped" in message
        assert "RFC 7692 §7.2.2" in message
        assert "RFC 6455 §10.4" in message
        assert "more bytes" not in message

    def test_fragmented_message(self) -> None:
        conn = compressed_server(max_message_size=LIMIT)
        payloads = RefDeflater().fragments([b"a" * 4000, b"b" * 7000])
        events = feed(
            conn,
            [frame(TEXT, payloads[0], fin=False, rsv=RSV1), frame(CONT, payloads[1])],
        )
        message = str(failure(events).error)
        assert f"max_message_size ({LIMIT} bytes)" in message
        assert f"reached {LIMIT + 1} bytes (4000 from earlier frames)" in message

    def test_codec_alone(self) -> None:
        codec = PerMessageDeflateCodec(
            send_window_bits=15,
            send_no_context_takeover=False,
            receive_window_bits=15,
            receive_no_context_takeover=False,
        )
        with pytest.raises(RemoteProtocolError) as info:
            codec.decode(BINARY, True, RSV1, RefDeflater().message(b"\0" * 101), 100)
        assert info.value.close_code == 1009
        assert "inflates past the 100 bytes its message may still take" in str(info.value)
        assert "RFC 7692 §7.2.2" in str(info.value)


class TestCodecDirectly:
    """The codec through the ExtensionCodec interface (what a connection calls)."""

    def test_decode_budget_exact(self) -> None:
        codec = PerMessageDeflateCodec(
            send_window_bits=15,
            send_no_context_takeover=False,
            receive_window_bits=15,
            receive_no_context_takeover=False,
        )
        payload = RefDeflater().message(sized(1000))
        assert codec.decode(BINARY, True, RSV1, payload, 1000) == sized(1000)
        with pytest.raises(RemoteProtocolError) as info:
            codec.decode(BINARY, True, RSV1, RefDeflater().message(sized(1000)), 999)
        assert info.value.close_code == 1009

    def test_history_is_bounded(self) -> None:
        # A large message is not kept alive by the codec after it was delivered.
        codec = PerMessageDeflateCodec(
            send_window_bits=15,
            send_no_context_takeover=False,
            receive_window_bits=12,
            receive_no_context_takeover=False,
        )
        peer = RefDeflater(12)
        codec.decode(BINARY, True, RSV1, peer.message(sized(500_000)), 1 << 20)
        for _ in range(3):
            codec.decode(BINARY, True, RSV1, peer.message(b"small"), 1 << 20)
        held = sum(len(h) for h in codec._history)
        assert held <= 2 << 12

    def test_encode_plain_when_window_8(self) -> None:
        codec = PerMessageDeflateCodec(
            send_window_bits=8,
            send_no_context_takeover=False,
            receive_window_bits=15,
            receive_no_context_takeover=False,
        )
        assert codec.encode(TEXT, True, b"abc" * 100) == (0, b"abc" * 100)
