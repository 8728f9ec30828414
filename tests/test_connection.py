"""The connection after the handshake, by RFC 6455 section: framing and masking (§5.1-5.3),
fragmentation (§5.4), control frames (§5.5), data and UTF-8 (§5.6, §8.1), limits (§10.4),
closing (§7), and local misuse of the API.

Every behaviour is checked twice where the API allows: through :class:`ConnectionPair` (our
client against our server) and with raw bytes written by a naive encoder below, whose wire
output is decoded by a naive decoder, so neither side trusts the library's own framing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import pytest

from tests.conftest import _upgrade_request
from wsmachine import (
    Binary,
    ClientConnection,
    Close,
    CloseCode,
    Connection,
    LocalProtocolError,
    Ping,
    Pong,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.close_codes import CloseInfo
from wsmachine.errors import CLOSE_REASONS
from wsmachine.extensions import PerMessageDeflate
from wsmachine.frames import KEEP_SIZE, READ_SIZE
from wsmachine.testing import ConnectionPair

MakeServer = Callable[..., ServerConnection]
MakeClient = Callable[..., ClientConnection]
MakePair = Callable[..., ConnectionPair]

KEY = b"\x37\xfa\x21\x3d"  # the RFC 6455 §5.7 example masking key
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


# ------------------------------------------------------------------------------------------------
# A naive, independent encoder and decoder (RFC 6455 §5.2).
# ------------------------------------------------------------------------------------------------


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bytes | None = KEY
) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n <= 125:
        head = struct.pack("!BB", first, bit | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def to(
    conn: Connection, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
) -> bytes:
    """A frame as ``conn``'s peer must send it: masked to a server, unmasked to a client."""
    return frame(opcode, payload, fin=fin, rsv=rsv, mask=None if conn.client else KEY)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def unframe(data: bytes, *, masked: bool) -> list[tuple[int, bool, int, bytes]]:
    """Split wire bytes into (opcode, fin, rsv, payload); check the mask bit is as expected."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert bool(b1 & 0x80) == masked, "mask bit"
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos : pos + 8])
            pos += 8
        key = b""
        if masked:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        assert len(payload) == n, "truncated frame"
        pos += n
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frames.append((b0 & 0x0F, bool(b0 & 0x80), b0 & 0x70, payload))
    return frames


#: The reasons that name a kind of violation more precisely than its close code's.
EXTRA_REASONS = {"invalid UTF-8", "too many fragments", "frame too big", "invalid compressed data"}


def sent(conn: Connection) -> list[tuple[int, bool, int, bytes]]:
    """The frames ``conn`` queued, decoded; clients must mask, servers must not (§5.1)."""
    return unframe(conn.data_to_send(), masked=conn.client)


def sent_close(conn: Connection) -> tuple[int, bytes]:
    """The one Close frame ``conn`` queued: (code, reason bytes)."""
    ((opcode, fin, rsv, payload),) = sent(conn)
    assert (opcode, fin, rsv) == (CLOSE, True, 0)
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:]


def assert_failed(conn: Connection, events: Sequence[object], code: int) -> Close:
    """The peer broke the protocol: the last event is the failing Close, whose code and reason
    were queued in a Close frame, and the connection is over (RFC 6455 §7.1.7)."""
    close = events[-1]
    assert isinstance(close, Close)
    assert close.code == code
    assert isinstance(close.error, RemoteProtocolError)
    assert close.error.close_code == code
    # The reason sent is short and standard; the diagnostic stays in the error.
    assert close.reason == close.error.reason
    assert close.reason in CLOSE_REASONS.values() or close.reason in EXTRA_REASONS
    assert 0 < len(close.reason.encode()) <= 32
    # The failing Close is owed, held until the next data_to_send() (REMOTE_CLOSING).
    assert conn.state is State.REMOTE_CLOSING
    assert conn.close_expected()
    assert not conn.should_close()
    assert conn.close_sent is None
    assert conn.close_received is None  # no valid Close came from the peer
    assert conn.closed_first == "local"  # the failing Close is this side's
    assert sent_close(conn) == (code, close.reason.encode())
    assert conn.close_sent == CloseInfo(code, close.reason)
    assert conn.close_received is None
    assert conn.closed_first == "local"
    assert conn.state is State.CLOSED
    assert conn.should_close()  # a failed connection is closed at once, client or server
    assert conn.close_expected()
    # Nothing after the failure is read, answered or reported (RFC 6455 §7.1.7).
    assert conn.receive_data(to(conn, PING, b"x") + to(conn, TEXT, b"x")) == []
    assert conn.data_to_send() == b""
    return close


ROLES = ["server", "client"]


@pytest.fixture(params=ROLES)
def open_conn(
    request: pytest.FixtureRequest, open_server: MakeServer, open_client: MakeClient
) -> Callable[..., Connection]:
    """An OPEN connection of either role, reached with raw bytes."""
    make: Callable[..., Connection] = open_server if request.param == "server" else open_client
    return make


# ------------------------------------------------------------------------------------------------
# §5.1-5.3: masking and the basic framing of messages.
# ------------------------------------------------------------------------------------------------


class TestMasking:
    def test_server_sends_unmasked_rfc_5_7_example(self, open_server: MakeServer) -> None:
        server = open_server()
        server.send_text("Hello")
        assert server.data_to_send() == b"\x81\x05\x48\x65\x6c\x6c\x6f"

    def test_server_reads_masked_rfc_5_7_example(self, open_server: MakeServer) -> None:
        server = open_server()
        data = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        assert server.receive_data(data) == [Text(data="Hello")]

    def test_client_reads_unmasked_rfc_5_7_example(self, open_client: MakeClient) -> None:
        client = open_client()
        assert client.receive_data(b"\x81\x05\x48\x65\x6c\x6c\x6f") == [Text(data="Hello")]

    def test_client_masks_every_frame_with_fresh_keys(self, open_client: MakeClient) -> None:
        client = open_client()
        keys = set()
        for _ in range(20):
            client.send_text("Hello")
            data = client.data_to_send()
            assert data[:2] == b"\x81\x85"
            keys.add(data[2:6])
            assert unframe(data, masked=True) == [(TEXT, True, 0, b"Hello")]
        assert len(keys) == 20

    def test_client_masks_control_frames(self, open_client: MakeClient) -> None:
        client = open_client()
        client.ping(b"p")
        client.pong(b"q")
        client.close(1000, "r")
        assert sent(client) == [
            (PING, True, 0, b"p"),
            (PONG, True, 0, b"q"),
            (CLOSE, True, 0, close_payload(1000, b"r")),
        ]

    def test_server_fails_on_an_unmasked_frame(self, open_server: MakeServer) -> None:
        server = open_server()
        events = server.receive_data(frame(TEXT, b"hi", mask=None))
        close = assert_failed(server, events, 1002)
        assert "mask" in str(close.error)

    def test_client_fails_on_a_masked_frame(self, open_client: MakeClient) -> None:
        client = open_client()
        events = client.receive_data(frame(TEXT, b"hi", mask=KEY))
        close = assert_failed(client, events, 1002)
        assert "mask" in str(close.error)

    @pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 200_000])
    def test_lengths_both_ways_through_the_pair(self, pair: ConnectionPair, size: int) -> None:
        payload = bytes(i & 0xFF for i in range(size))
        pair.client.send_binary(payload)
        assert pair.client_to_server() == [Binary(data=payload)]
        pair.server.send_binary(payload)
        assert pair.server_to_client() == [Binary(data=payload)]

    @pytest.mark.parametrize("size", [125, 126, 0xFFFF, 0x10000])
    def test_lengths_raw(self, open_conn: Callable[..., Connection], size: int) -> None:
        conn = open_conn()
        payload = bytes(i & 0xFF for i in range(size))
        assert conn.receive_data(to(conn, BINARY, payload)) == [Binary(data=payload)]
        conn.send_binary(payload)
        assert sent(conn) == [(BINARY, True, 0, payload)]

    def test_text_round_trip_with_astral_characters(self, pair: ConnectionPair) -> None:
        text = "h\u00e9llo \u20ac \U0001f600 \u4e2d"
        pair.client.send_text(text)
        assert pair.client_to_server() == [Text(data=text)]
        pair.server.send_text(text)
        assert pair.server_to_client() == [Text(data=text)]

    def test_buffers_of_any_kind_are_accepted_and_copied(self, open_server: MakeServer) -> None:
        server = open_server()
        data = bytearray(frame(BINARY, b"abcdef"))
        assert server.receive_data(memoryview(data)[:5]) == []
        data[:5] = b"\x00" * 5  # the machine must not keep a view of the caller's buffer
        assert server.receive_data(bytearray(frame(BINARY, b"abcdef")[5:])) == [
            Binary(data=b"abcdef")
        ]
        server.send_binary(bytearray(b"xy"))
        server.send_binary(memoryview(b"zz"))
        assert sent(server) == [(BINARY, True, 0, b"xy"), (BINARY, True, 0, b"zz")]

    def test_data_to_send_returns_then_forgets(self, open_server: MakeServer) -> None:
        server = open_server()
        assert server.data_to_send() == b""
        server.send_text("a")
        server.send_text("b")
        assert server.data_to_send() == b"\x81\x01a\x81\x01b"
        assert server.data_to_send() == b""

    def test_lone_surrogate_cannot_be_sent(self, pair: ConnectionPair) -> None:
        with pytest.raises(LocalProtocolError, match="surrogate"):
            pair.client.send_text("a\ud800b")
        assert pair.client.data_to_send() == b""

    def test_role_property(self, pair: ConnectionPair) -> None:
        assert pair.client.client is True
        assert pair.server.client is False


class TestReservedBitsAndOpcodes:
    """§5.2: RSV1-3 must be 0 unless an extension says otherwise; unknown opcodes fail."""

    @pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
    @pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE])
    def test_reserved_bits_fail_with_1002(
        self, open_conn: Callable[..., Connection], rsv: int, opcode: int
    ) -> None:
        conn = open_conn()
        events = conn.receive_data(to(conn, opcode, b"", rsv=rsv))
        assert_failed(conn, events, 1002)

    def test_reserved_bits_on_a_continuation(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        data = to(conn, TEXT, b"a", fin=False) + to(conn, CONT, b"b", rsv=0x40)
        events = conn.receive_data(data)
        assert events[:-1] == []
        assert_failed(conn, events, 1002)

    @pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
    def test_unknown_opcode_fails_with_1002(
        self, open_conn: Callable[..., Connection], opcode: int
    ) -> None:
        conn = open_conn()
        assert_failed(conn, conn.receive_data(to(conn, opcode, b"x")), 1002)

    def test_frames_before_a_bad_one_are_delivered(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        data = to(conn, TEXT, b"ok") + to(conn, PING, b"p") + to(conn, BINARY, b"x", rsv=0x20)
        events = conn.receive_data(data)
        assert events[:2] == [Text(data="ok"), Ping(payload=b"p")]
        close = events[2]
        assert isinstance(close, Close)
        assert close.code == 1002
        # The Pong answering the Ping went out before the failing Close.
        assert sent(conn) == [
            (PONG, True, 0, b"p"),
            (CLOSE, True, 0, close_payload(1002, close.reason.encode())),
        ]


# ------------------------------------------------------------------------------------------------
# §5.4: fragmentation.
# ------------------------------------------------------------------------------------------------


class TestFragmentation:
    def test_rfc_5_7_fragmented_text(self, open_client: MakeClient) -> None:
        client = open_client()
        assert client.receive_data(b"\x01\x03\x48\x65\x6c") == []
        assert client.receive_data(b"\x80\x02\x6c\x6f") == [Text(data="Hello")]

    def test_binary_reassembly(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        data = to(conn, BINARY, b"ab", fin=False) + to(conn, CONT, b"", fin=False)
        assert conn.receive_data(data) == []
        assert conn.receive_data(to(conn, CONT, b"cd")) == [Binary(data=b"abcd")]
        # The next message starts afresh.
        assert conn.receive_data(to(conn, BINARY, b"e")) == [Binary(data=b"e")]

    def test_control_frames_between_fragments(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        data = (
            to(conn, TEXT, b"Hel", fin=False)
            + to(conn, PING, b"1")
            + to(conn, CONT, b"l", fin=False)
            + to(conn, PONG, b"2")
            + to(conn, CONT, b"o")
        )
        assert conn.receive_data(data) == [
            Ping(payload=b"1"),
            Pong(payload=b"2"),
            Text(data="Hello"),
        ]
        assert sent(conn) == [(PONG, True, 0, b"1")]

    def test_close_between_fragments_drops_the_partial_message(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        data = to(conn, TEXT, b"Hel", fin=False) + to(conn, CLOSE, close_payload(1001))
        assert conn.receive_data(data) == [Close(code=1001)]
        assert conn.state is State.REMOTE_CLOSING
        assert sent(conn) == [(CLOSE, True, 0, close_payload(1001))]
        assert conn.state is State.CLOSED

    def test_continuation_without_a_start_fails_1002(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        close = assert_failed(conn, conn.receive_data(to(conn, CONT, b"x")), 1002)
        assert "continuation" in str(close.error)

    def test_continuation_after_a_finished_message_fails_1002(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        events = conn.receive_data(to(conn, TEXT, b"a") + to(conn, CONT, b"b"))
        assert events[0] == Text(data="a")
        assert_failed(conn, events, 1002)

    @pytest.mark.parametrize(("first", "second"), [(TEXT, TEXT), (TEXT, BINARY), (BINARY, TEXT)])
    def test_new_message_during_a_fragmented_one_fails_1002(
        self, open_conn: Callable[..., Connection], first: int, second: int
    ) -> None:
        conn = open_conn()
        events = conn.receive_data(to(conn, first, b"a", fin=False) + to(conn, second, b"b"))
        close = assert_failed(conn, events, 1002)
        assert len(events) == 1
        assert "continuation" in str(close.error)

    @pytest.mark.parametrize(("started", "opcode"), [(True, TEXT), (True, BINARY), (False, CONT)])
    @pytest.mark.parametrize("size", [100, 1_000, 70_000])  # the 7-, 16- and 64-bit lengths
    def test_a_frame_out_of_order_fails_once_its_length_has_come(
        self, open_conn: Callable[..., Connection], started: bool, opcode: int, size: int
    ) -> None:
        """Not after its payload: a peer cannot make us buffer up to max_frame_size of a
        frame that is refused anyway. The failure is the one the whole frame gets."""
        start = to(open_conn(), TEXT, b"a", fin=False) if started else b""
        whole = open_conn()
        closes = [
            assert_failed(whole, whole.receive_data(start + to(whole, opcode, bytes(size))), 1002)
        ]
        length_end = 2 if size < 126 else 4 if size < 0x10000 else 10
        conn = open_conn()
        data = start + to(conn, opcode, bytes(size))
        assert conn.receive_data(data[: len(start) + length_end - 1]) == []
        closes.append(
            assert_failed(conn, conn.receive_data(data[len(start) + length_end - 1 :][:1]), 1002)
        )
        assert closes[0] == closes[1]
        assert str(closes[0].error) == str(closes[1].error)

    def test_fragmented_send_wire_format(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        conn.send_text("Hel", final=False)
        conn.ping(b"!")
        conn.send_text("l", final=False)
        conn.send_text("o")
        conn.send_binary(b"\x00", final=False)
        conn.send_binary(b"\x01")
        assert sent(conn) == [
            (TEXT, False, 0, b"Hel"),
            (PING, True, 0, b"!"),
            (CONT, False, 0, b"l"),
            (CONT, True, 0, b"o"),
            (BINARY, False, 0, b"\x00"),
            (CONT, True, 0, b"\x01"),
        ]

    def test_fragmented_send_through_the_pair(self, pair: ConnectionPair) -> None:
        pair.client.send_text("\u20ac", final=False)
        pair.client.ping(b"between")
        pair.client.send_text("", final=False)
        pair.client.send_text("!")
        assert pair.client_to_server() == [Ping(payload=b"between"), Text(data="\u20ac!")]
        assert pair.server_to_client() == [Pong(payload=b"between")]
        pair.server.send_binary(b"a", final=False)
        pair.server.send_binary(b"b")
        assert pair.server_to_client() == [Binary(data=b"ab")]

    @pytest.mark.parametrize("role", ROLES)
    def test_mixing_types_in_a_fragmented_send_raises(self, make_pair: MakePair, role: str) -> None:
        pair = make_pair()
        conn: Connection = getattr(pair, role)
        conn.send_text("a", final=False)
        with pytest.raises(LocalProtocolError, match="text message is being sent"):
            conn.send_binary(b"b")
        with pytest.raises(LocalProtocolError, match="text message is being sent"):
            conn.send_binary(b"b", final=False)
        conn.send_text("b")
        conn.send_binary(b"c", final=False)
        with pytest.raises(LocalProtocolError, match="binary message is being sent"):
            conn.send_text("d")
        conn.send_binary(b"d")
        conn.send_text("e")  # the type is free again
        events = pair.client_to_server() if role == "client" else pair.server_to_client()
        assert events == [Text(data="ab"), Binary(data=b"cd"), Text(data="e")]


# ------------------------------------------------------------------------------------------------
# §5.6, §8.1: text must be valid UTF-8; failures are 1007 and fail fast.
# ------------------------------------------------------------------------------------------------


INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong
    b"\xed\xa0\x80",  # surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"caf\xc3",  # truncated
    b"\x80",  # lone continuation
]


class TestUTF8:
    @pytest.mark.parametrize("payload", INVALID_UTF8)
    def test_invalid_whole_message_fails_1007(
        self, open_conn: Callable[..., Connection], payload: bytes
    ) -> None:
        conn = open_conn()
        close = assert_failed(conn, conn.receive_data(to(conn, TEXT, payload)), 1007)
        assert "UTF-8" in str(close.error)

    @pytest.mark.parametrize("payload", [b"\xff", b"\xc0\xaf", b"\xed\xa0", b"\xf4\x90", b"\x80"])
    def test_invalid_fragment_fails_at_once_even_when_not_final(
        self, open_conn: Callable[..., Connection], payload: bytes
    ) -> None:
        conn = open_conn()
        assert conn.receive_data(to(conn, TEXT, b"valid ", fin=False)) == []
        assert conn.receive_data(to(conn, CONT, b"also", fin=False)) == []
        events = conn.receive_data(to(conn, CONT, b"x" + payload, fin=False))
        assert len(events) == 1
        assert_failed(conn, events, 1007)

    def test_invalid_first_fragment_fails_at_once(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        assert_failed(conn, conn.receive_data(to(conn, TEXT, b"\xff", fin=False)), 1007)

    def test_code_points_split_across_fragments(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        euro = "\u20ac".encode()
        emoji = "\U0001f600".encode()
        data = (
            to(conn, TEXT, b"a" + euro[:1], fin=False)
            + to(conn, CONT, euro[1:2], fin=False)
            + to(conn, CONT, euro[2:] + emoji[:3], fin=False)
            + to(conn, CONT, emoji[3:])
        )
        assert conn.receive_data(data) == [Text(data="a\u20ac\U0001f600")]

    def test_message_ending_inside_a_code_point_fails_1007(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        assert conn.receive_data(to(conn, TEXT, b"ok", fin=False)) == []
        assert_failed(conn, conn.receive_data(to(conn, CONT, b"\xe2\x82")), 1007)

    def test_invalid_bytes_fail_before_their_frame_ends(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        data = to(conn, TEXT, b"hello \xff" + b"x" * 100)
        header = 2 if conn.client else 6
        assert conn.receive_data(data[: header + 6]) == []  # "hello " so far
        # The bad byte fails the message at once, 100 bytes before the frame ends.
        assert_failed(conn, conn.receive_data(data[header + 6 : header + 7]), 1007)

    def test_valid_messages_fed_byte_by_byte(self, open_conn: Callable[..., Connection]) -> None:
        # A frame that ends exactly at the end of a read must not leave its UTF-8 state behind
        # for the next frame (a regression: "é" then "abc" failed with 1007).
        conn = open_conn()
        data = (
            to(conn, TEXT, "\u00e9".encode())
            + to(conn, TEXT, b"abc")
            + to(conn, TEXT, "\u20ac".encode()[:2], fin=False)
            + to(conn, CONT, "\u20ac".encode()[2:] + b"z")
        )
        events = []
        for i in range(len(data)):
            events += conn.receive_data(data[i : i + 1])
        assert events == [Text(data="\u00e9"), Text(data="abc"), Text(data="\u20acz")]

    def test_binary_is_not_checked(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        assert conn.receive_data(to(conn, BINARY, b"\xff\xfe")) == [Binary(data=b"\xff\xfe")]

    def test_invalid_text_through_the_pair_reaches_the_sender(self, pair: ConnectionPair) -> None:
        pair.client.send_binary(b"fine")
        assert pair.client_to_server() == [Binary(data=b"fine")]
        # A raw invalid frame from the "client": the server fails, the client hears 1007.
        (close,) = pair.server.receive_data(frame(TEXT, b"\xff"))
        assert isinstance(close, Close)
        assert close.code == 1007
        (echo,) = pair.server_to_client()
        assert isinstance(echo, Close)
        assert (echo.code, echo.error) == (1007, None)


# ------------------------------------------------------------------------------------------------
# §10.4: max_message_size and max_frame_size, with 1009.
# ------------------------------------------------------------------------------------------------


class TestLimits:
    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_message_exactly_at_the_limit_passes(
        self, open_conn: Callable[..., Connection], opcode: int
    ) -> None:
        conn = open_conn(max_message_size=100)
        (event,) = conn.receive_data(to(conn, opcode, b"a" * 100))
        assert event == (Text(data="a" * 100) if opcode == TEXT else Binary(data=b"a" * 100))

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_one_byte_over_fails_1009(
        self, open_conn: Callable[..., Connection], opcode: int
    ) -> None:
        conn = open_conn(max_message_size=100)
        assert_failed(conn, conn.receive_data(to(conn, opcode, b"a" * 101)), 1009)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_fragmented_exactly_at_the_limit_passes(
        self, open_conn: Callable[..., Connection], opcode: int
    ) -> None:
        conn = open_conn(max_message_size=100)
        data = to(conn, opcode, b"a" * 60, fin=False) + to(conn, CONT, b"b" * 40)
        (event,) = conn.receive_data(data)
        expected = b"a" * 60 + b"b" * 40
        assert event == (Text(data=expected.decode()) if opcode == TEXT else Binary(data=expected))

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    @pytest.mark.parametrize("fin", [True, False])
    def test_fragmented_one_byte_over_fails_1009_at_that_fragment(
        self, open_conn: Callable[..., Connection], opcode: int, fin: bool
    ) -> None:
        conn = open_conn(max_message_size=100)
        assert conn.receive_data(to(conn, opcode, b"a" * 60, fin=False)) == []
        events = conn.receive_data(to(conn, CONT, b"b" * 41, fin=fin))
        assert len(events) == 1
        close = assert_failed(conn, events, 1009)
        assert "101" in str(close.error)

    def test_limit_applies_per_message(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(max_message_size=10)
        data = b"".join(to(conn, BINARY, bytes([i]) * 10) for i in range(5))
        assert conn.receive_data(data) == [Binary(data=bytes([i]) * 10) for i in range(5)]

    def test_max_frame_size(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(max_message_size=100, max_frame_size=10)
        data = (
            to(conn, BINARY, b"a" * 10, fin=False)
            + to(conn, CONT, b"b" * 10, fin=False)
            + to(conn, CONT, b"c" * 10)
        )
        assert conn.receive_data(data) == [Binary(data=b"a" * 10 + b"b" * 10 + b"c" * 10)]
        assert_failed(conn, conn.receive_data(to(conn, TEXT, b"d" * 11)), 1009)

    def test_frame_too_big_fails_on_its_header(self, open_server: MakeServer) -> None:
        server = open_server(max_message_size=1000)
        header = frame(BINARY, b"x" * 5000)[:8]  # 2 + 2 length bytes + 4 key bytes
        assert_failed(server, server.receive_data(header), 1009)

    def test_control_frames_are_not_limited_by_max_frame_size(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn(max_message_size=10)
        assert conn.receive_data(to(conn, PING, b"p" * 125)) == [Ping(payload=b"p" * 125)]

    def test_limits_through_the_pair(self, make_pair: MakePair) -> None:
        pair = make_pair(server={"max_message_size": 10}, client={"max_message_size": 20})
        pair.client.send_binary(b"x" * 10)
        assert pair.client_to_server() == [Binary(data=b"x" * 10)]
        pair.server.send_binary(b"y" * 20)
        assert pair.server_to_client() == [Binary(data=b"y" * 20)]
        pair.client.send_text("z" * 11)
        (close,) = pair.client_to_server()
        assert isinstance(close, Close)
        assert close.code == 1009
        (echo,) = pair.server_to_client()
        assert echo == Close(code=1009, reason=close.reason)

    @pytest.mark.parametrize(
        "settings", [{"max_message_size": 0}, {"max_frame_size": 0}, {"max_message_size": -1}]
    )
    def test_limits_must_be_positive(self, settings: dict[str, int]) -> None:
        with pytest.raises(ValueError, match="positive"):
            ServerConnection(**settings)
        with pytest.raises(ValueError, match="positive"):
            ClientConnection("h", **settings)


# ------------------------------------------------------------------------------------------------
# Streaming mode: messages delivered frame by frame.
# ------------------------------------------------------------------------------------------------


class TestStreaming:
    def test_text_pieces_with_final_flags(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(stream=True)
        assert conn.receive_data(to(conn, TEXT, b"Hel", fin=False)) == [
            Text(data="Hel", final=False)
        ]
        assert conn.receive_data(to(conn, CONT, b"", fin=False)) == [Text(data="", final=False)]
        assert conn.receive_data(to(conn, CONT, b"lo")) == [Text(data="lo", final=True)]

    def test_single_frame_message_is_one_final_piece(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn(stream=True)
        data = to(conn, TEXT, b"whole") + to(conn, BINARY, b"\x00")
        assert conn.receive_data(data) == [Text(data="whole"), Binary(data=b"\x00")]

    def test_binary_pieces(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(stream=True)
        data = to(conn, BINARY, b"a", fin=False) + to(conn, PING) + to(conn, CONT, b"b")
        assert conn.receive_data(data) == [
            Binary(data=b"a", final=False),
            Ping(payload=b""),
            Binary(data=b"b", final=True),
        ]

    def test_text_pieces_hold_back_partial_code_points(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn(stream=True)
        euro = "\u20ac".encode()
        data = to(conn, TEXT, b"a" + euro[:2], fin=False) + to(conn, CONT, euro[2:])
        assert conn.receive_data(data) == [Text(data="a", final=False), Text(data="\u20ac")]

    def test_invalid_piece_fails_1007(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(stream=True)
        events = conn.receive_data(to(conn, TEXT, b"ok", fin=False) + to(conn, CONT, b"\xff"))
        assert events[0] == Text(data="ok", final=False)
        assert_failed(conn, events, 1007)

    def test_limit_in_streaming_mode(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(stream=True, max_message_size=10)
        data = to(conn, BINARY, b"a" * 6, fin=False) + to(conn, CONT, b"b" * 4, fin=False)
        assert conn.receive_data(data) == [
            Binary(data=b"a" * 6, final=False),
            Binary(data=b"b" * 4, final=False),
        ]
        assert_failed(conn, conn.receive_data(to(conn, CONT, b"c")), 1009)

    def test_streaming_through_the_pair(self, make_pair: MakePair) -> None:
        pair = make_pair(client={"stream": True}, server={"stream": True})
        pair.client.send_text("ab", final=False)
        pair.client.send_text("c")
        assert pair.client_to_server() == [Text(data="ab", final=False), Text(data="c")]
        pair.server.send_binary(b"x")
        assert pair.server_to_client() == [Binary(data=b"x", final=True)]


# ------------------------------------------------------------------------------------------------
# §5.5.2, §5.5.3: Ping and Pong.
# ------------------------------------------------------------------------------------------------


class TestPingPong:
    @pytest.mark.parametrize("payload", [b"", b"abc", bytes(range(125))])
    def test_auto_pong_echoes_the_payload(
        self, open_conn: Callable[..., Connection], payload: bytes
    ) -> None:
        conn = open_conn()
        assert conn.receive_data(to(conn, PING, payload)) == [Ping(payload=payload)]
        assert sent(conn) == [(PONG, True, 0, payload)]

    def test_server_pong_bytes(self, open_server: MakeServer) -> None:
        server = open_server()
        server.receive_data(frame(PING, b"Hello"))
        assert server.data_to_send() == b"\x8a\x05Hello"  # RFC 6455 §5.7

    def test_one_pong_per_ping(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        events = conn.receive_data(to(conn, PING, b"1") + to(conn, PING, b"2"))
        assert events == [Ping(payload=b"1"), Ping(payload=b"2")]
        assert sent(conn) == [(PONG, True, 0, b"1"), (PONG, True, 0, b"2")]

    def test_auto_pong_off(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(auto_pong=False)
        assert conn.receive_data(to(conn, PING, b"x")) == [Ping(payload=b"x")]
        assert conn.data_to_send() == b""
        conn.pong(b"x")
        assert sent(conn) == [(PONG, True, 0, b"x")]

    def test_pong_events(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        assert conn.receive_data(to(conn, PONG, b"hb")) == [Pong(payload=b"hb")]
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("method", ["ping", "pong"])
    def test_payload_limit_125(self, open_conn: Callable[..., Connection], method: str) -> None:
        conn = open_conn()
        call = getattr(conn, method)
        call(b"x" * 125)
        assert sent(conn) == [(PING if method == "ping" else PONG, True, 0, b"x" * 125)]
        with pytest.raises(LocalProtocolError, match="126 bytes"):
            call(b"x" * 126)
        with pytest.raises(LocalProtocolError, match="126 bytes"):
            call(bytearray(126))
        assert conn.data_to_send() == b""
        assert conn.state is State.OPEN

    def test_ping_and_pong_through_the_pair(self, pair: ConnectionPair) -> None:
        pair.client.ping(b"c")
        pair.server.ping(bytearray(b"s"))
        pair.server.pong(memoryview(b"unsolicited"))
        assert pair.client_to_server() == [Ping(payload=b"c")]
        assert pair.server_to_client() == [
            Ping(payload=b"s"),
            Pong(payload=b"unsolicited"),
            Pong(payload=b"c"),
        ]
        assert pair.client_to_server() == [Pong(payload=b"s")]

    def test_pong_after_our_close_until_the_peers_close(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        # §5.5.1 forbids only data frames after our Close; §5.5.2: answer every Ping until
        # the peer's Close arrives.
        conn = open_conn()
        conn.close()
        conn.data_to_send()
        assert conn.receive_data(to(conn, PING, b"late")) == [Ping(payload=b"late")]
        assert [f[0] for f in sent(conn)] == [PONG]
        conn.pong(b"beat")
        conn.ping(b"?")
        with pytest.raises(LocalProtocolError, match="CLOSING"):
            conn.send_text("no data after our Close")
        assert conn.receive_data(to(conn, CLOSE, b"\x03\xe8")) == [Close(code=1000)]
        with pytest.raises(LocalProtocolError, match="CLOSED"):
            conn.ping()


# ------------------------------------------------------------------------------------------------
# §5.5.1, §7: the closing handshake.
# ------------------------------------------------------------------------------------------------


class TestClosing:
    def test_client_initiated_close_through_the_pair(self, pair: ConnectionPair) -> None:
        pair.client.close(1000, "bye")
        assert pair.client.state is State.CLOSING
        assert pair.client.close_expected()
        assert not pair.client.should_close()
        assert pair.client.close_sent == CloseInfo(1000, "bye")
        assert pair.client.close_received is None
        assert pair.client.closed_first == "local"
        (close,) = pair.client_to_server()
        assert close == Close(code=1000, reason="bye")
        assert isinstance(close, Close)
        assert close.error is None
        # The server owes its echo until data_to_send() hands it over.
        assert pair.server.state is State.REMOTE_CLOSING
        assert pair.server.close_expected()
        assert not pair.server.should_close()
        assert pair.server.close_received == CloseInfo(1000, "bye")
        assert pair.server.close_sent is None
        assert pair.server.closed_first == "remote"
        (echo,) = pair.server_to_client()
        assert pair.server.state is State.CLOSED
        assert pair.server.should_close()  # the server closes TCP first (§7.1.1)
        assert pair.server.close_sent == CloseInfo(1000, "")
        assert pair.server.closed_first == "remote"
        assert echo == Close(code=1000, reason="")  # the code is echoed, not the reason
        assert isinstance(echo, Close)
        assert echo.error is None
        assert pair.client.state is State.CLOSED
        assert pair.client.close_expected()
        assert not pair.client.should_close()  # the client waits for the server's FIN
        assert pair.client.close_sent == CloseInfo(1000, "bye")
        assert pair.client.close_received == CloseInfo(1000, "")
        assert pair.client.closed_first == "local"
        assert pair.client.receive_eof() == []
        assert pair.client.should_close()

    def test_server_initiated_close_through_the_pair(self, pair: ConnectionPair) -> None:
        pair.server.close(4000, "custom")
        assert pair.server.state is State.CLOSING
        assert not pair.server.should_close()
        assert pair.server.close_expected()
        assert pair.server_to_client() == [Close(code=4000, reason="custom")]
        assert pair.client.state is State.REMOTE_CLOSING
        assert pair.client.close_expected()
        assert not pair.client.should_close()
        assert pair.client.close_received == CloseInfo(4000, "custom")
        assert pair.client.close_sent is None
        assert pair.client.closed_first == "remote"
        assert pair.client_to_server() == [Close(code=4000)]
        assert pair.client.state is State.CLOSED
        assert not pair.client.should_close()  # the client waits for the server's FIN
        assert pair.client.close_sent == CloseInfo(4000, "")
        assert pair.server.state is State.CLOSED
        assert pair.server.should_close()
        assert pair.server.close_sent == CloseInfo(4000, "custom")
        assert pair.server.close_received == CloseInfo(4000, "")
        assert pair.server.closed_first == "local"

    def test_echo_bytes_from_the_server(self, open_server: MakeServer) -> None:
        server = open_server()
        events = server.receive_data(frame(CLOSE, close_payload(1001, b"going")))
        assert events == [Close(code=1001, reason="going")]
        assert server.data_to_send() == b"\x88\x02\x03\xe9"

    def test_echo_from_the_client(self, open_client: MakeClient) -> None:
        client = open_client()
        assert client.receive_data(frame(CLOSE, close_payload(3000), mask=None)) == [
            Close(code=3000)
        ]
        assert sent(client) == [(CLOSE, True, 0, close_payload(3000))]

    def test_close_without_code_is_1005_and_echoed_empty(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        assert conn.receive_data(to(conn, CLOSE)) == [Close(code=CloseCode.NO_STATUS_RCVD)]
        assert sent(conn) == [(CLOSE, True, 0, b"")]

    def test_sending_close_without_code(self, pair: ConnectionPair) -> None:
        pair.client.close(None)
        assert pair.client_to_server() == [Close(code=1005)]
        assert pair.server_to_client() == [Close(code=1005)]
        pair2 = ConnectionPair()
        pair2.handshake()
        pair2.server.close(code=None)
        assert pair2.server.data_to_send() == b"\x88\x00"

    def test_close_frame_bytes(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        conn.close()
        assert sent(conn) == [(CLOSE, True, 0, b"\x03\xe8")]

    @pytest.mark.parametrize(
        "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
    )
    def test_codes_that_may_be_sent_and_received(self, make_pair: MakePair, code: int) -> None:
        pair = make_pair()
        pair.client.close(code, "r")
        assert pair.client_to_server() == [Close(code=code, reason="r")]
        assert pair.server_to_client() == [Close(code=code)]

    @pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
    def test_codes_that_may_not_be_sent_raise(
        self, open_conn: Callable[..., Connection], code: int
    ) -> None:
        conn = open_conn()
        with pytest.raises(LocalProtocolError, match=str(code)):
            conn.close(code)
        assert conn.state is State.OPEN
        assert conn.data_to_send() == b""
        conn.close(1000)
        assert conn.state is State.CLOSING

    @pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2999, 5000])
    def test_received_codes_that_may_not_be_sent_fail_1002(
        self, open_conn: Callable[..., Connection], code: int
    ) -> None:
        conn = open_conn()
        close = assert_failed(conn, conn.receive_data(to(conn, CLOSE, close_payload(code))), 1002)
        assert str(code) in str(close.error)

    def test_one_byte_close_payload_fails_1002(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        assert_failed(conn, conn.receive_data(to(conn, CLOSE, b"\x03")), 1002)

    def test_invalid_utf8_reason_fails_1007(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        payload = close_payload(1000, b"\xff")
        assert_failed(conn, conn.receive_data(to(conn, CLOSE, payload)), 1007)

    def test_reason_limit_is_123_bytes_of_utf8(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        with pytest.raises(LocalProtocolError, match="124 bytes"):
            conn.close(1000, "x" * 124)
        with pytest.raises(LocalProtocolError, match="124 bytes"):
            conn.close(1000, "\u00e9" * 62)  # 62 characters, 124 bytes
        assert conn.state is State.OPEN
        conn.close(1000, "\u00e9" * 61 + "x")  # 123 bytes
        assert sent(conn) == [(CLOSE, True, 0, close_payload(1000, ("\u00e9" * 61 + "x").encode()))]

    def test_longest_reason_received(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        reason = "\u20ac" * 41  # 123 bytes
        payload = close_payload(1000, reason.encode())
        assert conn.receive_data(to(conn, CLOSE, payload)) == [Close(code=1000, reason=reason)]

    def test_reason_needs_a_code(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        with pytest.raises(LocalProtocolError, match="needs a code"):
            conn.close(None, "why")
        assert conn.state is State.OPEN

    def test_data_after_our_close_is_still_delivered(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        conn.close(1001)
        conn.data_to_send()
        data = to(conn, TEXT, b"late") + to(conn, PONG, b"p") + to(conn, CLOSE, close_payload(1001))
        assert conn.receive_data(data) == [
            Text(data="late"),
            Pong(payload=b"p"),
            Close(code=1001),
        ]
        assert conn.data_to_send() == b""  # no second Close
        assert conn.state is State.CLOSED

    def test_input_after_close_is_ignored(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        data = to(conn, CLOSE, close_payload(1000)) + to(conn, TEXT, b"after")
        assert conn.receive_data(data) == [Close(code=1000)]
        # Ignored while the echo is owed (REMOTE_CLOSING), and once it went out (CLOSED).
        assert conn.receive_data(to(conn, PING, b"x")) == []
        assert conn.state is State.REMOTE_CLOSING
        assert sent(conn) == [(CLOSE, True, 0, close_payload(1000))]  # no Pong
        assert conn.receive_data(to(conn, PING, b"x")) == []
        assert conn.receive_data(b"\xff\xff garbage") == []
        assert conn.data_to_send() == b""
        assert conn.state is State.CLOSED

    def test_failure_while_closing_sends_no_second_close(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        conn.close(1000)
        conn.data_to_send()
        (close,) = conn.receive_data(to(conn, CONT, b"x"))
        assert isinstance(close, Close)
        assert close.code == 1002
        assert isinstance(close.error, RemoteProtocolError)
        assert conn.data_to_send() == b""
        assert conn.state is State.CLOSED
        assert conn.should_close()

    def test_failing_close_sends_a_short_reason_not_the_diagnostic(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        (close,) = conn.receive_data(to(conn, 0x3))
        assert isinstance(close, Close)
        assert close.error is not None
        assert "opcode 0x3" in str(close.error)
        assert close.reason == "protocol error"
        assert sent_close(conn) == (1002, b"protocol error")


class TestRepliesBeforeOurClose:
    """Replies to the events of the read that ended the connection go out before this side's
    Close frame, so the output does not depend on how the input was split (``can_send``)."""

    def test_can_send_follows_the_state(self, pair: ConnectionPair) -> None:
        fresh = ConnectionPair()
        assert not fresh.client.can_send
        assert not fresh.server.can_send
        assert pair.client.can_send
        assert pair.server.can_send
        pair.client.close()
        assert not pair.client.can_send
        pair.client_to_server()
        assert pair.server.state is State.REMOTE_CLOSING
        assert pair.server.can_send
        pair.server_to_client()
        assert pair.server.state is State.CLOSED
        assert not pair.server.can_send

    @pytest.mark.parametrize("split", [False, True])
    def test_reply_to_a_message_read_with_the_close(
        self, open_conn: Callable[..., Connection], split: bool
    ) -> None:
        conn = open_conn()
        data = [to(conn, TEXT, b"q"), to(conn, CLOSE, close_payload(1000))]
        events: list[object] = []
        replies = []
        for piece in data if split else [b"".join(data)]:
            events += conn.receive_data(piece)
            for event in events[len(replies) :]:
                replies.append(event)
                if isinstance(event, Text):
                    assert conn.can_send
                    conn.send_text("a: " + event.data)
        assert events == [Text(data="q"), Close(code=1000)]
        assert conn.state is State.REMOTE_CLOSING
        assert conn.can_send
        assert sent(conn) == [(TEXT, True, 0, b"a: q"), (CLOSE, True, 0, close_payload(1000))]
        assert conn.state is State.CLOSED
        assert not conn.can_send
        with pytest.raises(LocalProtocolError, match="CLOSED"):
            conn.send_text("late")

    def test_reply_before_the_failing_close(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        events = conn.receive_data(to(conn, BINARY, b"x") + to(conn, 0x3))
        assert events[0] == Binary(data=b"x")
        assert conn.state is State.REMOTE_CLOSING
        assert conn.can_send
        conn.send_binary(b"y")
        frames = sent(conn)
        assert frames[0] == (BINARY, True, 0, b"y")
        assert frames[1][0] == CLOSE
        assert frames[1][3][:2] == b"\x03\xea"  # 1002


def records(conn: Connection) -> tuple[CloseInfo | None, CloseInfo | None, str | None]:
    """What ``conn`` recorded of the closing handshake: (close_sent, close_received,
    closed_first)."""
    return conn.close_sent, conn.close_received, conn.closed_first


class TestCloseRecords:
    """``close_sent``, ``close_received`` and ``closed_first`` on every path to the end."""

    def test_nothing_is_recorded_before_any_close(self, pair: ConnectionPair) -> None:
        fresh = ConnectionPair()
        for conn in (fresh.client, fresh.server, pair.client, pair.server):
            assert records(conn) == (None, None, None)
        pair.client.send_text("x")
        pair.client.ping(b"p")
        pair.exchange()
        assert records(pair.client) == records(pair.server) == (None, None, None)

    def test_rejected_handshake_records_nothing(self) -> None:
        pair = ConnectionPair()
        (request,) = pair.client_to_server()
        pair.server.reject(request)  # type: ignore[arg-type]
        pair.server_to_client()
        for conn in (pair.client, pair.server):
            assert conn.state is State.REJECTED
            assert records(conn) == (None, None, None)

    def test_local_close_then_the_peers_answer(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        conn.close(1001, "going")
        # Recorded when queued: close() hands the frame to the output at once.
        assert records(conn) == (CloseInfo(1001, "going"), None, "local")
        assert sent(conn) == [(CLOSE, True, 0, close_payload(1001, b"going"))]
        assert records(conn) == (CloseInfo(1001, "going"), None, "local")
        events = conn.receive_data(to(conn, CLOSE, close_payload(1000, b"ok")))
        assert events == [Close(code=1000, reason="ok")]
        assert conn.state is State.CLOSED
        assert records(conn) == (CloseInfo(1001, "going"), CloseInfo(1000, "ok"), "local")
        assert conn.data_to_send() == b""  # no second Close
        assert records(conn) == (CloseInfo(1001, "going"), CloseInfo(1000, "ok"), "local")

    def test_local_close_answered_without_a_code(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        conn.close()
        conn.data_to_send()
        assert conn.receive_data(to(conn, CLOSE)) == [Close(code=1005)]
        assert records(conn) == (CloseInfo(1000, ""), CloseInfo(1005, ""), "local")

    def test_peers_close_then_our_echo(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        events = conn.receive_data(to(conn, CLOSE, close_payload(3001, b"why")))
        assert events == [Close(code=3001, reason="why")]
        assert conn.state is State.REMOTE_CLOSING
        # The echo is owed, not yet sent.
        assert records(conn) == (None, CloseInfo(3001, "why"), "remote")
        assert sent(conn) == [(CLOSE, True, 0, close_payload(3001))]
        assert conn.state is State.CLOSED
        # The echo carries the code, not the reason (RFC 6455 §5.5.1).
        assert records(conn) == (CloseInfo(3001, ""), CloseInfo(3001, "why"), "remote")
        assert conn.data_to_send() == b""
        assert records(conn) == (CloseInfo(3001, ""), CloseInfo(3001, "why"), "remote")

    def test_peers_close_without_a_code_is_echoed_without_one(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        assert conn.receive_data(to(conn, CLOSE)) == [Close(code=1005)]
        assert records(conn) == (None, CloseInfo(1005, ""), "remote")
        assert sent(conn) == [(CLOSE, True, 0, b"")]
        assert records(conn) == (CloseInfo(1005, ""), CloseInfo(1005, ""), "remote")

    def test_both_sides_of_a_pair_agree(self, pair: ConnectionPair) -> None:
        pair.server.close(4001, "done")
        pair.exchange()
        assert records(pair.server) == (CloseInfo(4001, "done"), CloseInfo(4001, ""), "local")
        assert records(pair.client) == (CloseInfo(4001, ""), CloseInfo(4001, "done"), "remote")
        assert pair.server.close_sent == pair.client.close_received
        assert pair.client.close_sent == pair.server.close_received

    def test_simultaneous_closes_are_each_local(self, pair: ConnectionPair) -> None:
        # Both sides close before either Close arrives (RFC 6455 §7.1.3): each sent first.
        pair.client.close(1000, "c")
        pair.server.close(1001, "s")
        pair.exchange()
        assert records(pair.client) == (CloseInfo(1000, "c"), CloseInfo(1001, "s"), "local")
        assert records(pair.server) == (CloseInfo(1001, "s"), CloseInfo(1000, "c"), "local")
        assert pair.client.state is pair.server.state is State.CLOSED

    @pytest.mark.parametrize(
        ("data", "code"),
        [
            (lambda c: to(c, 0x3), 1002),
            (lambda c: to(c, TEXT, b"\xff"), 1007),
            (lambda c: to(c, CLOSE, close_payload(1006)), 1002),
            (lambda c: to(c, CLOSE, close_payload(1000, b"\xff")), 1007),
        ],
        ids=["opcode", "utf-8", "close code", "close reason"],
    )
    def test_violation_records_the_failing_close_as_sent(
        self, open_conn: Callable[..., Connection], data: Callable[[Connection], bytes], code: int
    ) -> None:
        conn = open_conn()
        (close,) = conn.receive_data(data(conn))
        assert isinstance(close, Close)
        assert close.error is not None
        assert conn.state is State.REMOTE_CLOSING
        # A bad Close frame is not a Close received: it is the violation.
        assert records(conn) == (None, None, "local")
        assert sent_close(conn) == (code, close.reason.encode())
        assert records(conn) == (CloseInfo(code, close.reason), None, "local")

    def test_violation_while_closing_sends_nothing_new(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        conn.close(1000, "bye")
        conn.data_to_send()
        (close,) = conn.receive_data(to(conn, CLOSE, close_payload(999)))
        assert isinstance(close, Close)
        assert close.code == 1002
        assert conn.state is State.CLOSED
        assert conn.data_to_send() == b""
        assert records(conn) == (CloseInfo(1000, "bye"), None, "local")

    def test_eof_without_close_records_nothing(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        assert conn.receive_eof() == [Close(code=1006)]
        assert conn.data_to_send() == b""
        assert records(conn) == (None, None, None)

    def test_eof_after_our_close_keeps_what_was_sent(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        conn.close(None)
        conn.data_to_send()
        assert conn.receive_eof() == [Close(code=1006)]
        assert conn.state is State.CLOSED
        assert records(conn) == (CloseInfo(1005, ""), None, "local")

    def test_eof_while_owing_the_close_still_sends_it(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        conn.receive_data(to(conn, CLOSE, close_payload(1000)))
        assert conn.receive_eof() == []  # the Close arrived: no abnormal closure
        assert conn.state is State.REMOTE_CLOSING
        assert not conn.should_close()  # not before the owed Close is written
        assert records(conn) == (None, CloseInfo(1000, ""), "remote")
        assert sent(conn) == [(CLOSE, True, 0, close_payload(1000))]
        assert conn.state is State.CLOSED
        assert conn.should_close()  # the stream ended: client or server closes TCP
        assert records(conn) == (CloseInfo(1000, ""), CloseInfo(1000, ""), "remote")

    def test_close_without_code_is_recorded_as_1005(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        conn.close(code=None)
        info = conn.close_sent
        assert info == CloseInfo(1005, "")
        assert info is not None
        assert info.code == CloseCode.NO_STATUS_RCVD
        assert sent(conn) == [(CLOSE, True, 0, b"")]

    def test_refused_close_records_nothing(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        with pytest.raises(LocalProtocolError):
            conn.close(1006)
        with pytest.raises(LocalProtocolError):
            conn.close(None, "reason without code")
        assert records(conn) == (None, None, None)
        conn.close(3000)
        with pytest.raises(LocalProtocolError, match="CLOSING"):
            conn.close(1000, "again")
        assert records(conn) == (CloseInfo(3000, ""), None, "local")

    def test_close_info_is_a_frozen_value(self) -> None:
        info = CloseInfo(1000)
        assert info == CloseInfo(1000, "")
        assert hash(info) == hash(CloseInfo(1000, ""))
        assert info.reason == ""
        with pytest.raises(AttributeError):
            info.code = 1001  # type: ignore[misc]


class TestEndOfStream:
    def test_eof_without_close_is_1006(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        (event,) = conn.receive_eof()
        assert event == Close(code=CloseCode.ABNORMAL_CLOSURE)
        assert isinstance(event, Close)
        assert isinstance(event.error, RemoteProtocolError)
        assert event.error.close_code == 1006
        assert conn.state is State.CLOSED
        assert conn.should_close()
        assert conn.data_to_send() == b""  # no Close frame on a dead stream
        assert conn.receive_eof() == []

    def test_eof_while_closing_is_1006(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        conn.close()
        (event,) = conn.receive_eof()
        assert event == Close(code=1006)
        assert conn.state is State.CLOSED
        assert conn.should_close()

    def test_eof_after_close_handshake_is_quiet(self, pair: ConnectionPair) -> None:
        pair.client.close()
        pair.exchange()
        assert pair.server.receive_eof() == []
        assert pair.client.receive_eof() == []
        assert pair.server.should_close()
        assert pair.client.should_close()

    def test_eof_mid_message_drops_it(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        assert conn.receive_data(to(conn, TEXT, b"part", fin=False)) == []
        assert conn.receive_eof() == [Close(code=1006)]

    def test_receive_data_after_eof_raises(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        conn.receive_eof()
        with pytest.raises(LocalProtocolError, match="receive_eof"):
            conn.receive_data(to(conn, TEXT, b"x"))
        with pytest.raises(LocalProtocolError, match="receive_eof"):
            conn.receive_data(b"")

    def test_empty_read_is_not_eof(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        assert conn.receive_data(b"") == []
        assert conn.state is State.OPEN


# ------------------------------------------------------------------------------------------------
# §9: a negotiated extension transforms data frames and claims RSV1 (permessage-deflate).
# ------------------------------------------------------------------------------------------------


class TestExtensionInTheConnection:
    @pytest.fixture
    def deflate_pair(self, make_pair: MakePair) -> ConnectionPair:
        pair: ConnectionPair = make_pair(
            client={"extensions": [PerMessageDeflate()]},
            server={"extensions": [PerMessageDeflate()]},
        )
        return pair

    def test_messages_round_trip_compressed(self, deflate_pair: ConnectionPair) -> None:
        pair = deflate_pair
        text = "compress me " * 50
        pair.client.send_text(text)
        wire = pair.client.data_to_send()
        assert wire[0] == 0x80 | 0x40 | TEXT  # FIN, RSV1 (compressed), text
        assert len(wire) < len(text) // 4
        assert pair.server.receive_data(wire) == [Text(data=text)]
        pair.server.send_binary(b"\x00" * 1000)
        assert pair.server_to_client() == [Binary(data=b"\x00" * 1000)]

    def test_fragmented_compressed_message(self, deflate_pair: ConnectionPair) -> None:
        pair = deflate_pair
        pair.server.send_text("a" * 100, final=False)
        pair.server.ping(b"between")
        pair.server.send_text("b" * 100)
        assert pair.server_to_client(7) == [
            Ping(payload=b"between"),
            Text(data="a" * 100 + "b" * 100),
        ]
        pair.client.send_binary(b"x" * 50, final=False)
        pair.client.send_binary(b"y" * 50)
        assert pair.client_to_server() == [
            Pong(payload=b"between"),  # the automatic answer to the Ping, sent first
            Binary(data=b"x" * 50 + b"y" * 50),
        ]

    def test_uncompressed_message_on_a_deflate_connection(
        self, deflate_pair: ConnectionPair
    ) -> None:
        pair = deflate_pair
        pair.server.send_text("plain", compress=False)
        assert pair.server.data_to_send() == b"\x81\x05plain"  # RSV1 clear
        pair.client.send_binary(b"raw", compress=False)
        assert pair.client_to_server() == [Binary(data=b"raw")]

    def test_rsv1_on_a_control_frame_still_fails(self, deflate_pair: ConnectionPair) -> None:
        pair = deflate_pair
        events = pair.server.receive_data(frame(PING, b"x", rsv=0x40))
        assert_failed(pair.server, events, 1002)

    def test_rsv2_still_fails(self, deflate_pair: ConnectionPair) -> None:
        pair = deflate_pair
        assert_failed(
            pair.client, pair.client.receive_data(frame(TEXT, b"x", rsv=0x20, mask=None)), 1002
        )

    def test_compressed_message_over_the_limit_fails_1009(self, make_pair: MakePair) -> None:
        pair = make_pair(
            client={"extensions": [PerMessageDeflate()]},
            server={"extensions": [PerMessageDeflate()], "max_message_size": 1000},
        )
        pair.client.send_binary(b"\x00" * 1000)
        assert pair.client_to_server() == [Binary(data=b"\x00" * 1000)]
        pair.client.send_binary(b"\x00" * 1001)  # a few bytes on the wire, 1001 inflated
        (close,) = pair.client_to_server()
        assert isinstance(close, Close)
        assert close.code == 1009


# ------------------------------------------------------------------------------------------------
# Failures: the peer's violations are reported, never raised (RFC 6455 §7.1.7).
# ------------------------------------------------------------------------------------------------


def _violations(conn: Connection) -> dict[str, tuple[bytes, int]]:
    return {
        "unknown opcode": (to(conn, 0x5), 1002),
        "fragmented ping": (to(conn, PING, b"x", fin=False), 1002),
        "ping over 125": (to(conn, PING, b"x" * 126), 1002),
        "rsv": (to(conn, TEXT, b"x", rsv=0x40), 1002),
        "bare continuation": (to(conn, CONT, b"x"), 1002),
        "bad utf-8": (to(conn, TEXT, b"\xff"), 1007),
        "bad close code": (to(conn, CLOSE, close_payload(1006)), 1002),
        "non-minimal length": (
            bytes([0x82, 126 | (0 if conn.client else 0x80)])
            + b"\x00\x05"
            + (b"" if conn.client else KEY)
            + b"abcde",
            1002,
        ),
        "too big": (to(conn, BINARY, b"x" * 101), 1009),
    }


VIOLATIONS = list(_violations(ServerConnection()))


@pytest.mark.parametrize("name", VIOLATIONS)
def test_violation_fails_the_connection_with_an_error(
    open_conn: Callable[..., Connection], name: str
) -> None:
    conn = open_conn(max_message_size=100)
    data, code = _violations(conn)[name]
    events = conn.receive_data(data)
    assert len(events) == 1
    close = assert_failed(conn, events, code)
    assert close.error is not None
    assert "RFC" in str(close.error)


@pytest.mark.parametrize("name", VIOLATIONS)
def test_violation_split_byte_by_byte_fails_the_same(
    open_conn: Callable[..., Connection], name: str
) -> None:
    conn = open_conn(max_message_size=100)
    whole = open_conn(max_message_size=100)
    data, code = _violations(conn)[name]
    events = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])
    assert events == whole.receive_data(data)
    assert_failed(conn, events, code)


def test_close_error_is_none_exactly_when_the_peer_sent_close(
    open_conn: Callable[..., Connection],
) -> None:
    by_peer = open_conn()
    (close,) = by_peer.receive_data(to(by_peer, CLOSE, close_payload(1000)))
    assert isinstance(close, Close)
    assert close.error is None
    failed = open_conn()
    (close,) = failed.receive_data(to(failed, 0x4))
    assert isinstance(close, Close)
    assert close.error is not None
    ended = open_conn()
    (close,) = ended.receive_eof()
    assert isinstance(close, Close)
    assert close.error is not None


# ------------------------------------------------------------------------------------------------
# Local misuse: calls the current state forbids raise LocalProtocolError naming the state.
# ------------------------------------------------------------------------------------------------


def _in_state(role: str, state: State) -> Connection:
    pair = ConnectionPair()
    if state is State.CONNECTING:
        return getattr(pair, role)  # type: ignore[no-any-return]
    if state is State.REJECTED:
        (request,) = pair.client_to_server()
        pair.server.reject(request)  # type: ignore[arg-type]
        (rejected,) = pair.server_to_client()
        assert isinstance(rejected, Rejected)
        conn: Connection = getattr(pair, role)
        assert conn.state is State.REJECTED
        return conn
    pair.handshake()
    conn = getattr(pair, role)
    if state is State.REMOTE_CLOSING:
        # The peer closes first; the echo stays owed until conn.data_to_send().
        if conn.client:
            pair.server.close(1001)
            assert pair.server_to_client() == [Close(code=1001)]
        else:
            pair.client.close(1001)
            assert pair.client_to_server() == [Close(code=1001)]
        assert conn.state is State.REMOTE_CLOSING
        return conn
    conn.close()
    if state is State.CLOSED:
        pair.exchange()
    assert conn.state is state
    conn.data_to_send()
    return conn


CALLS: dict[str, Callable[[Connection], None]] = {
    "send_text": lambda c: c.send_text("x"),
    "send_text fragment": lambda c: c.send_text("x", final=False),
    "send_binary": lambda c: c.send_binary(b"x"),
    "ping": lambda c: c.ping(b"x"),
    "pong": lambda c: c.pong(),
    "close": lambda c: c.close(),
    "close 4000": lambda c: c.close(4000, "r"),
    "close without code": lambda c: c.close(None),
}


# Ping and Pong may follow our Close (CLOSING, RFC 6455 §5.5.2): TestPingPong covers that.
# While the peer's Close waits for our answer (REMOTE_CLOSING) every send but close() is
# allowed: test_replies_go_out_before_the_owed_close covers them.
REPLIES = ["send_text", "send_text fragment", "send_binary", "ping", "pong"]
FORBIDDEN_CALLS = [
    (state, call)
    for state in (
        State.CONNECTING,
        State.CLOSING,
        State.REMOTE_CLOSING,
        State.CLOSED,
        State.REJECTED,
    )
    for call in CALLS
    if not (state is State.CLOSING and call in ("ping", "pong"))
    and not (state is State.REMOTE_CLOSING and call in REPLIES)
]


@pytest.mark.parametrize(("state", "call"), FORBIDDEN_CALLS)
@pytest.mark.parametrize("role", ROLES)
def test_send_calls_outside_open_raise_naming_the_state(role: str, state: State, call: str) -> None:
    conn = _in_state(role, state)
    owing = state is State.REMOTE_CLOSING
    before = b"" if owing else conn.data_to_send()
    with pytest.raises(LocalProtocolError, match=state.name):
        CALLS[call](conn)
    assert conn.state is state
    if owing:
        # The machine answers the peer's Close itself; the refused call queued nothing.
        assert sent(conn) == [(CLOSE, True, 0, close_payload(1001))]
        assert conn.state is State.CLOSED
        assert conn.close_sent == CloseInfo(1001, "")
    else:
        assert conn.data_to_send() == b""
    assert not before or state is State.CONNECTING  # only the client's request waits here


@pytest.mark.parametrize("call", REPLIES)
@pytest.mark.parametrize("role", ROLES)
def test_replies_go_out_before_the_owed_close(role: str, call: str) -> None:
    conn = _in_state(role, State.REMOTE_CLOSING)
    assert conn.can_send
    CALLS[call](conn)
    assert conn.state is State.REMOTE_CLOSING
    assert conn.close_sent is None
    frames = sent(conn)
    assert len(frames) == 2
    assert frames[0][0] != CLOSE
    assert frames[1] == (CLOSE, True, 0, close_payload(1001))
    assert conn.state is State.CLOSED
    assert conn.close_sent == CloseInfo(1001, "")
    assert conn.close_received == CloseInfo(1001, "")
    assert conn.closed_first == "remote"
    assert not conn.can_send
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        CALLS[call](conn)
    assert conn.data_to_send() == b""


def test_local_errors_are_protocol_errors() -> None:
    from wsmachine import ProtocolError

    conn = ServerConnection()
    with pytest.raises(ProtocolError):
        conn.send_text("x")


# ------------------------------------------------------------------------------------------------
# The receive-into path: get_buffer() + buffer_updated().
# ------------------------------------------------------------------------------------------------


def read_into(conn: Connection, data: bytes, sizehint: int = -1) -> list[object]:
    """Feed ``data`` as reads into the connection's own buffer would."""
    events: list[object] = []
    pos = 0
    while pos < len(data):
        view = conn.get_buffer(sizehint)
        n = min(len(view), len(data) - pos)
        view[:n] = data[pos : pos + n]
        events += conn.buffer_updated(n)
        pos += n
    return events


class TestReceiveInto:
    def test_messages_read_into_the_buffer(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(max_message_size=1 << 21)
        big = bytes(range(256)) * 4096  # 1 MiB
        data = to(conn, TEXT, "h\u00e9llo".encode()) + to(conn, BINARY, big)
        data += to(conn, TEXT, b"frag", fin=False) + to(conn, PING, b"p") + to(conn, CONT, b"ment")
        assert read_into(conn, data) == [
            Text(data="h\u00e9llo"),
            Binary(data=big),
            Ping(payload=b"p"),
            Text(data="fragment"),
        ]

    def test_the_handshake_read_into_a_buffer(self) -> None:
        server = ServerConnection()
        data = _upgrade_request() + frame(TEXT, b"early")
        (handshake,) = read_into(server, data, sizehint=7)
        assert server.accept(handshake) == [Text(data="early")]  # type: ignore[arg-type]

    def test_a_large_frame_gets_a_buffer_for_its_rest(self, open_server: MakeServer) -> None:
        server = open_server(max_message_size=1 << 21)
        payload = b"x" * (1 << 20)
        data = frame(BINARY, payload)
        view = server.get_buffer()
        assert len(view) == READ_SIZE  # no hint: one usual read
        view[:] = data[: len(view)]
        assert server.buffer_updated(len(view)) == []
        view = server.get_buffer()
        rest = len(data) - READ_SIZE
        # The rest of the frame, where it will stay, and room for one more read behind it.
        assert len(view) == rest + READ_SIZE
        view[:rest] = data[READ_SIZE:]
        assert server.buffer_updated(rest) == [Binary(data=payload)]

    def test_a_trickled_large_frame_does_not_reserve_its_whole_size(
        self, open_server: MakeServer
    ) -> None:
        server = open_server(max_message_size=1 << 21)
        data = frame(BINARY, b"x" * (1 << 20))
        assert read_into(server, data[:100], sizehint=100) == []
        assert len(server.get_buffer(100)) <= READ_SIZE  # 100 bytes in: not 1 MiB

    def test_an_idle_connection_holds_no_buffer(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn(max_message_size=1 << 21)
        assert read_into(conn, to(conn, BINARY, b"x" * 300_000)) == [Binary(data=b"x" * 300_000)]
        reader = conn._reader
        assert reader is not None
        assert reader.capacity() == 0
        assert read_into(conn, to(conn, BINARY, b"y" * 10)[:5]) == []
        assert reader.capacity() == KEEP_SIZE  # a small unfinished frame keeps a small buffer

    def test_the_view_is_released_after_buffer_updated(self, open_server: MakeServer) -> None:
        server = open_server()
        view = server.get_buffer()
        view[:2] = frame(PING)[:2]
        assert server.buffer_updated(2) == []
        with pytest.raises(ValueError, match="released"):
            view[0] = 1

    def test_buffer_updated_without_get_buffer(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        with pytest.raises(LocalProtocolError, match="without a view from get_buffer"):
            conn.buffer_updated(1)
        conn.get_buffer()
        conn.buffer_updated(1)  # a zero byte: an incomplete frame header
        with pytest.raises(LocalProtocolError, match="without a view"):
            conn.buffer_updated(1)  # reported once only

    @pytest.mark.parametrize("nbytes", [0, -1, READ_SIZE + 1])
    def test_buffer_updated_out_of_range(
        self, open_conn: Callable[..., Connection], nbytes: int
    ) -> None:
        conn = open_conn()
        view = conn.get_buffer()
        message = "end of the stream" if nbytes == 0 else f"holds {READ_SIZE} bytes"
        with pytest.raises(LocalProtocolError, match=message):
            conn.buffer_updated(nbytes)
        with pytest.raises(ValueError, match="released"):
            len(view)  # released even so
        with pytest.raises(LocalProtocolError, match="without a view"):
            conn.buffer_updated(1)
        assert conn.state is State.OPEN

    def test_buffer_updated_takes_an_int(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        conn.get_buffer()
        with pytest.raises(TypeError, match="int"):
            conn.buffer_updated(1.0)  # type: ignore[arg-type]

    def test_a_new_get_buffer_or_receive_call_drops_the_view(
        self, open_conn: Callable[..., Connection]
    ) -> None:
        conn = open_conn()
        first = conn.get_buffer()
        second = conn.get_buffer()
        with pytest.raises(ValueError, match="released"):
            first[0] = 1
        second[:2] = to(conn, PING)[:2]
        assert conn.receive_data(to(conn, PING, b"p")) == [Ping(payload=b"p")]  # dropped
        with pytest.raises(ValueError, match="released"):
            second[0] = 1
        with pytest.raises(LocalProtocolError, match="without a view"):
            conn.buffer_updated(2)
        conn.get_buffer()
        assert len(conn.receive_eof()) == 1
        with pytest.raises(LocalProtocolError, match="after receive_eof"):
            conn.get_buffer()

    def test_input_after_the_close_is_ignored(self, open_conn: Callable[..., Connection]) -> None:
        conn = open_conn()
        data = to(conn, CLOSE, close_payload(1000)) + to(conn, TEXT, b"late")
        (close,) = read_into(conn, data)
        assert isinstance(close, Close)
        conn.data_to_send()
        assert read_into(conn, to(conn, TEXT, b"later")) == []

    def test_a_caller_that_keeps_a_slice_cannot_break_the_buffer(
        self, open_server: MakeServer
    ) -> None:
        # Against the contract, a slice of the view outlives buffer_updated(): the reader
        # moves to a new buffer rather than fail, and the events are still right.
        server = open_server(max_message_size=1 << 21)
        data = frame(BINARY, b"z" * 200_000) + frame(TEXT, b"ok")
        view = server.get_buffer()
        kept = view[:10]
        view[:65536] = data[:65536]
        assert server.buffer_updated(65536) == []
        events = read_into(server, data[65536:])
        assert events == [Binary(data=b"z" * 200_000), Text(data="ok")]
        kept.release()

    def test_read_sized_buffers_are_shared_between_idle_readers(
        self, open_server: MakeServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from wsmachine import frames as frames_module

        monkeypatch.setattr(frames_module, "_POOL", [])
        pool = frames_module._POOL
        one, two = open_server(), open_server()
        view = one.get_buffer()
        view[:7] = frame(PING, b"p")[:7]
        assert one.buffer_updated(7) == [Ping(payload=b"p")]
        assert len(pool) == 1  # a message per read: the buffer is given back
        buffer = pool[0]
        view = two.get_buffer()
        assert view.obj is buffer and not pool  # and taken by the next reader
        kept = view[:1]  # against the contract: a slice outlives buffer_updated()
        view[:7] = frame(PING, b"q")[:7]
        assert two.buffer_updated(7) == [Ping(payload=b"q")]
        assert pool == [buffer]
        assert one.get_buffer().obj is not buffer  # a buffer someone still sees is not shared
        assert not pool
        kept.release()
