"""The framing layer, RFC 6455 §5: wire format, masking, parsing from arbitrary chunks, and every
framing rule a reader must enforce. Everything here drives real bytes through
``build_frame`` / ``FrameReader``; expected wire bytes come from the RFC's own examples (§5.7)
and from a naive reference encoder written independently below.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsmachine import frames as frames_module
from wsmachine.errors import RemoteProtocolError
from wsmachine.frames import FrameReader, MaskKeySource, Opcode, apply_mask, build_frame

DATA_OPCODES = (0x0, 0x1, 0x2)
CONTROL_OPCODES = (0x8, 0x9, 0xA)
ALL_OPCODES = DATA_OPCODES + CONTROL_OPCODES
UNKNOWN_OPCODES = (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
KEY = b"\x37\xfa\x21\x3d"  # the RFC 6455 §5.7 example key
NO_LIMIT = 2**63 - 1


# --------------------------------------------------------------------------------------------
# Independent reference implementations (deliberately naive).
# --------------------------------------------------------------------------------------------


def naive_mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def ref_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask_key: bytes | None = None
) -> bytes:
    """RFC 6455 §5.2 byte by byte, using struct rather than the library's arithmetic."""
    n = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask_key is not None else 0
    if n <= 125:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask_key is None:
        return head + payload
    return head + mask_key + naive_mask(payload, mask_key)


def pattern(n: int, seed: int = 0) -> bytes:
    """n deterministic, non-constant bytes (cheap even for large n)."""
    block = bytes((i * 31 + seed) & 0xFF for i in range(256))
    return (block * (n // 256 + 1))[:n]


def server_reader(max_frame_size: int = NO_LIMIT, rsv_allowed: int = 0) -> FrameReader:
    """The reader a server uses: client frames must be masked (§5.1)."""
    return FrameReader(expect_masked=True, max_frame_size=max_frame_size, rsv_allowed=rsv_allowed)


def client_reader(max_frame_size: int = NO_LIMIT, rsv_allowed: int = 0) -> FrameReader:
    """The reader a client uses: server frames must not be masked (§5.1)."""
    return FrameReader(expect_masked=False, max_frame_size=max_frame_size, rsv_allowed=rsv_allowed)


def assert_error(error: RemoteProtocolError | None, close_code: int) -> None:
    assert isinstance(error, RemoteProtocolError), error
    assert error.close_code == close_code, (error.close_code, str(error))
    assert "RFC 6455 §" in str(error), str(error)


# --------------------------------------------------------------------------------------------
# RFC 6455 §5.7: the RFC's own examples, byte for byte.
# --------------------------------------------------------------------------------------------


class TestRFCExamples:
    """RFC 6455 §5.7 examples, both built and parsed."""

    def test_unmasked_text_hello(self) -> None:
        wire = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
        assert build_frame(Opcode.TEXT, b"Hello") == wire
        assert client_reader().feed(wire) == ([(0x1, True, 0, b"Hello")], None)

    def test_masked_text_hello(self) -> None:
        wire = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        assert build_frame(Opcode.TEXT, b"Hello", mask_key=KEY) == wire
        assert server_reader().feed(wire) == ([(0x1, True, 0, b"Hello")], None)

    def test_fragmented_unmasked_text(self) -> None:
        first = bytes([0x01, 0x03, 0x48, 0x65, 0x6C])
        second = bytes([0x80, 0x02, 0x6C, 0x6F])
        assert build_frame(Opcode.TEXT, b"Hel", fin=False) == first
        assert build_frame(Opcode.CONTINUATION, b"lo") == second
        assert client_reader().feed(first + second) == (
            [(0x1, False, 0, b"Hel"), (0x0, True, 0, b"lo")],
            None,
        )

    def test_unmasked_ping_and_masked_pong(self) -> None:
        ping = bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
        pong = bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        assert build_frame(Opcode.PING, b"Hello") == ping
        assert build_frame(Opcode.PONG, b"Hello", mask_key=KEY) == pong
        assert client_reader().feed(ping) == ([(0x9, True, 0, b"Hello")], None)
        assert server_reader().feed(pong) == ([(0xA, True, 0, b"Hello")], None)

    def test_256_byte_binary_uses_16_bit_length(self) -> None:
        payload = pattern(256)
        wire = bytes([0x82, 0x7E, 0x01, 0x00]) + payload
        assert build_frame(Opcode.BINARY, payload) == wire
        assert client_reader().feed(wire) == ([(0x2, True, 0, payload)], None)

    def test_64_kib_binary_uses_64_bit_length(self) -> None:
        payload = pattern(65536)
        wire = bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]) + payload
        assert build_frame(Opcode.BINARY, payload) == wire
        assert client_reader().feed(wire) == ([(0x2, True, 0, payload)], None)


# --------------------------------------------------------------------------------------------
# RFC 6455 §5.2: base framing protocol, build -> parse round trips.
# --------------------------------------------------------------------------------------------

LENGTHS = (0, 1, 125, 126, 127, 65535, 65536, 1 << 20 | 3)
ROUND_TRIP_CASES = [
    (op, n)
    for op in ALL_OPCODES
    for n in LENGTHS
    if op in DATA_OPCODES or n <= 125  # control frames are at most 125 bytes (§5.5)
]


def expected_length_field(n: int) -> bytes:
    if n <= 125:
        return bytes([n])
    if n <= 0xFFFF:
        return bytes([126]) + n.to_bytes(2, "big")
    return bytes([127]) + n.to_bytes(8, "big")


class TestBaseFramingRoundTrip:
    """RFC 6455 §5.2: every opcode, every length form, both roles (§5.1 masking by role)."""

    @pytest.mark.parametrize(("opcode", "n"), ROUND_TRIP_CASES)
    def test_client_to_server_masked(self, opcode: int, n: int) -> None:
        payload = pattern(n, seed=opcode)
        wire = build_frame(opcode, payload, mask_key=KEY)
        length_field = expected_length_field(n)
        header_len = 1 + len(length_field)
        assert wire[0] == 0x80 | opcode
        assert wire[1] & 0x80 == 0x80, "client frames carry the MASK bit"
        assert bytes([wire[1] & 0x7F]) + wire[2:header_len] == length_field
        assert wire[header_len : header_len + 4] == KEY
        assert wire[header_len + 4 :] == naive_mask(payload, KEY)
        assert len(wire) == header_len + 4 + n
        reader = server_reader()
        frames, error = reader.feed(wire)
        assert error is None
        assert frames == [(opcode, True, 0, payload)]
        assert type(frames[0][3]) is bytes
        assert reader.buffered() == 0

    @pytest.mark.parametrize(("opcode", "n"), ROUND_TRIP_CASES)
    def test_server_to_client_unmasked(self, opcode: int, n: int) -> None:
        payload = pattern(n, seed=opcode)
        wire = build_frame(opcode, payload)
        length_field = expected_length_field(n)
        header_len = 1 + len(length_field)
        assert wire[0] == 0x80 | opcode
        assert wire[1] & 0x80 == 0, "server frames never carry the MASK bit"
        assert bytes([wire[1] & 0x7F]) + wire[2:header_len] == length_field
        assert wire[header_len:] == payload
        reader = client_reader()
        frames, error = reader.feed(wire)
        assert error is None
        assert frames == [(opcode, True, 0, payload)]
        assert reader.buffered() == 0

    @pytest.mark.parametrize("opcode", DATA_OPCODES)
    @pytest.mark.parametrize("rsv", [0x00, 0x10, 0x20, 0x40, 0x70])
    @pytest.mark.parametrize("fin", [True, False])
    def test_fin_and_rsv_bits_round_trip(self, opcode: int, rsv: int, fin: bool) -> None:
        wire = build_frame(opcode, b"abc", fin=fin, rsv=rsv, mask_key=KEY)
        assert wire[0] == (0x80 if fin else 0) | rsv | opcode
        frames, error = server_reader(rsv_allowed=0x70).feed(wire)
        assert error is None
        assert frames == [(opcode, fin, rsv, b"abc")]
        assert frames[0][1] is fin

    @settings(deadline=None, max_examples=200)
    @given(
        opcode=st.sampled_from(ALL_OPCODES),
        payload=st.binary(max_size=125),
        fin=st.booleans(),
        rsv=st.sampled_from([0, 0x10, 0x20, 0x40, 0x50, 0x70]),
        mask_key=st.none() | st.binary(min_size=4, max_size=4),
    )
    def test_build_frame_matches_reference_encoder(
        self, opcode: int, payload: bytes, fin: bool, rsv: int, mask_key: bytes | None
    ) -> None:
        assert build_frame(opcode, payload, fin=fin, rsv=rsv, mask_key=mask_key) == ref_frame(
            opcode, payload, fin=fin, rsv=rsv, mask_key=mask_key
        )

    @pytest.mark.parametrize("n", [126, 200, 65535, 65536, 65537, 100_000])
    def test_build_frame_matches_reference_encoder_long(self, n: int) -> None:
        payload = pattern(n, seed=n)
        for key in (None, KEY):
            assert build_frame(Opcode.BINARY, payload, mask_key=key) == ref_frame(
                0x2, payload, mask_key=key
            )

    def test_masked_wire_payload_differs_from_plaintext(self) -> None:
        payload = b"secret payload"
        wire = build_frame(Opcode.TEXT, payload, mask_key=KEY)
        assert payload not in wire


# --------------------------------------------------------------------------------------------
# RFC 6455 §5.3: client-to-server masking.
# --------------------------------------------------------------------------------------------

THRESHOLD = 2048
MASK_LENGTHS = sorted(
    {*range(0, 70), *range(THRESHOLD - 20, THRESHOLD + 20), 4095, 4096, 4097, 10_001}
)


class TestMasking:
    """RFC 6455 §5.3: ``apply_mask`` XORs with the key repeated, and is its own inverse."""

    @pytest.mark.parametrize("n", MASK_LENGTHS)
    def test_matches_naive_xor_at_every_length(self, n: int) -> None:
        data = pattern(n, seed=n)
        for key in (KEY, b"\x00\x00\x00\x00", b"\xff\x01\x80\x7f"):
            masked = apply_mask(data, key)
            assert type(masked) is bytes
            assert masked == naive_mask(data, key)
            assert apply_mask(masked, key) == data
            assert apply_mask(bytearray(data), key) == masked

    @settings(deadline=None, max_examples=300)
    @given(
        data=st.one_of(
            st.binary(max_size=64),
            st.binary(min_size=THRESHOLD - 8, max_size=THRESHOLD + 8),
            st.binary(max_size=5000),
        ),
        key=st.binary(min_size=4, max_size=4),
        as_bytearray=st.booleans(),
    )
    @example(data=b"", key=b"\x01\x02\x03\x04", as_bytearray=False)
    @example(data=b"\x00" * (THRESHOLD - 1), key=b"\x01\x02\x03\x04", as_bytearray=False)
    @example(data=b"\x00" * THRESHOLD, key=b"\x01\x02\x03\x04", as_bytearray=True)
    def test_mask_property(self, data: bytes, key: bytes, as_bytearray: bool) -> None:
        source = bytearray(data) if as_bytearray else data
        masked = apply_mask(source, key)
        assert masked == naive_mask(data, key)
        assert len(masked) == len(data)
        assert apply_mask(masked, key) == data
        assert source == data, "apply_mask must not modify its input"

    def test_zero_key_is_identity_and_key_is_repeated(self) -> None:
        assert apply_mask(b"abcdefgh", b"\x00\x00\x00\x00") == b"abcdefgh"
        assert apply_mask(b"\x00" * 10, b"ABCD") == b"ABCDABCDAB"
        assert apply_mask(b"\x00" * 4099, b"WXYZ") == (b"WXYZ" * 1025)[:4099]


class TestMaskKeySource:
    """RFC 6455 §5.3, §10.3: masking keys are 4 fresh, unpredictable bytes per frame."""

    def test_keys_are_4_bytes_and_vary(self) -> None:
        source = MaskKeySource()
        keys = [source.next_key() for _ in range(1000)]  # about four batches of 256
        assert all(type(k) is bytes and len(k) == 4 for k in keys)
        # 1000 random 32-bit keys collide with probability ~1e-4; allow one collision anyway.
        assert len(set(keys)) >= 999
        assert b"".join(keys) != b"\x00" * 4000

    def test_refills_past_its_batch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[int] = []

        def fake_urandom(size: int) -> bytes:
            calls.append(size)
            return bytes((len(calls) * 16 + i) & 0xFF for i in range(size))

        monkeypatch.setattr(frames_module.os, "urandom", fake_urandom)
        source = MaskKeySource()
        first_pool_keys = 0
        keys = []
        while len(calls) <= 1:
            keys.append(source.next_key())
            if len(calls) == 1:
                first_pool_keys = len(keys)
        batch = calls[0]
        assert batch >= 4
        assert first_pool_keys == batch // 4, "every key of the first pool is used before refill"
        assert len(calls) == 2 and calls[1] == batch
        pool1 = bytes((16 + i) & 0xFF for i in range(batch))
        pool2 = bytes((32 + i) & 0xFF for i in range(batch))
        assert keys[: batch // 4] == [pool1[i : i + 4] for i in range(0, batch, 4)]
        assert keys[batch // 4] == pool2[:4]
        assert source.next_key() == pool2[4:8]

    def test_keys_from_source_produce_valid_frames(self) -> None:
        source = MaskKeySource()
        reader = server_reader()
        wire = b"".join(
            build_frame(Opcode.BINARY, pattern(i), mask_key=source.next_key()) for i in range(300)
        )
        frames, error = reader.feed(wire)
        assert error is None
        assert [f[3] for f in frames] == [pattern(i) for i in range(300)]


# --------------------------------------------------------------------------------------------
# RFC 6455 §5.2 / §5.4: a byte stream split anywhere parses to the same frames.
# --------------------------------------------------------------------------------------------


def frame_strategy() -> st.SearchStrategy[tuple[int, bool, int, bytes]]:
    data = st.tuples(
        st.sampled_from(DATA_OPCODES),
        st.booleans(),
        st.sampled_from([0, 0x40]),
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from([126, 65535, 65536, 70_000]).map(pattern),
        ),
    )
    control = st.tuples(
        st.sampled_from(CONTROL_OPCODES), st.just(True), st.just(0), st.binary(max_size=125)
    )
    return st.one_of(data, control)


def build_stream(frames: list[tuple[int, bool, int, bytes]], masked: bool, key: bytes) -> bytes:
    return b"".join(
        build_frame(op, p, fin=fin, rsv=rsv, mask_key=key if masked else None)
        for op, fin, rsv, p in frames
    )


def feed_chunks(reader: FrameReader, chunks: list[bytes]) -> list[tuple[int, bool, int, bytes]]:
    out = []
    for chunk in chunks:
        got, error = reader.feed(chunk)
        assert error is None, error
        out.extend(got)
    return out


class TestIncrementalParsing:
    """RFC 6455 §5.2: frames arrive over a stream; chunk boundaries carry no meaning."""

    @pytest.mark.parametrize("masked", [True, False])
    def test_byte_by_byte_every_length_form(self, masked: bool) -> None:
        sent = [
            (0x1, False, 0, b"Hel"),
            (0x9, True, 0, b""),
            (0x0, True, 0, b"lo"),
            (0x2, True, 0, b""),
            (0x2, True, 0, pattern(125)),
            (0x2, True, 0, pattern(126)),
            (0xA, True, 0, pattern(125)),
            (0x2, True, 0, pattern(65535)),
            (0x2, True, 0, pattern(65536)),
            (0x8, True, 0, b"\x03\xe8bye"),
        ]
        wire = build_stream(sent, masked, KEY)
        reader = server_reader(rsv_allowed=0x40) if masked else client_reader(rsv_allowed=0x40)
        received = []
        for i in range(len(wire)):
            got, error = reader.feed(wire[i : i + 1])
            assert error is None
            received.extend(got)
            # A frame is reported exactly when its last byte arrives, never earlier.
            if got:
                assert reader.buffered() == 0
        assert received == sent
        assert reader.buffered() == 0

    def test_partial_frame_is_buffered_not_reported(self) -> None:
        wire = build_frame(Opcode.TEXT, b"Hello", mask_key=KEY)
        reader = server_reader()
        assert reader.feed(wire[:6]) == ([], None)
        assert reader.buffered() == 6
        assert reader.feed(wire[6:-1]) == ([], None)
        assert reader.buffered() == len(wire) - 1
        assert reader.feed(wire[-1:]) == ([(0x1, True, 0, b"Hello")], None)
        assert reader.buffered() == 0

    @pytest.mark.parametrize(("size", "length_end"), [(125, 2), (126, 4), (65536, 10)])
    def test_head_checked_turns_true_where_feed_checks_the_header(
        self, size: int, length_end: int
    ) -> None:
        # The connection checks §5.4's order on a partial frame once head_checked() says
        # feed() has checked its header: that must be the byte where a bad header fails.
        good = build_frame(Opcode.BINARY, pattern(size), mask_key=KEY)
        reader = server_reader()
        for i in range(len(good) - 1):
            assert reader.feed(good[i : i + 1]) == ([], None)
            assert reader.head_checked() == (i + 1 >= length_end)
        assert reader.feed(good[-1:])[0] == [(0x2, True, 0, pattern(size))]
        assert not reader.head_checked()  # nothing pending
        bad = build_frame(Opcode.BINARY, pattern(size), rsv=0x20, mask_key=KEY)
        reader = server_reader()
        for i in range(length_end - 1):
            assert reader.feed(bad[i : i + 1]) == ([], None)
        frames, error = reader.feed(bad[length_end - 1 : length_end])
        assert frames == []
        assert_error(error, 1002)

    def test_empty_feed_is_harmless(self) -> None:
        reader = client_reader()
        assert reader.feed(b"") == ([], None)
        assert reader.feed(b"\x81") == ([], None)
        assert reader.feed(b"") == ([], None)
        assert reader.feed(b"\x01A") == ([(0x1, True, 0, b"A")], None)

    def test_accepts_bytearray_and_memoryview(self) -> None:
        wire = build_frame(Opcode.BINARY, b"payload", mask_key=KEY)
        for make in (bytes, bytearray, memoryview):
            reader = server_reader()
            assert reader.feed(make(wire[:3])) == ([], None)
            assert reader.feed(make(wire[3:])) == ([(0x2, True, 0, b"payload")], None)

    def test_caller_may_reuse_its_buffer(self) -> None:
        wire = build_frame(Opcode.BINARY, b"0123456789", mask_key=KEY)
        reader = server_reader()
        buf = bytearray(wire[:8])
        assert reader.feed(buf) == ([], None)
        buf[:] = b"\xee" * 8  # overwrite after feeding: the reader must have copied
        buf2 = bytearray(wire[8:])
        frames, error = reader.feed(memoryview(buf2))
        buf2[:] = b"\xee" * len(buf2)
        assert error is None
        assert frames == [(0x2, True, 0, b"0123456789")]

    @settings(deadline=None, max_examples=150)
    @given(
        sent=st.lists(frame_strategy(), max_size=8),
        masked=st.booleans(),
        key=st.binary(min_size=4, max_size=4),
        cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=25),
    )
    def test_random_split_points_yield_the_same_frames(
        self,
        sent: list[tuple[int, bool, int, bytes]],
        masked: bool,
        key: bytes,
        cuts: list[int],
    ) -> None:
        wire = build_stream(sent, masked, key)
        points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
        chunks = [wire[a:b] for a, b in itertools.pairwise(points)]
        assert b"".join(chunks) == wire

        def make() -> FrameReader:
            return (server_reader if masked else client_reader)(rsv_allowed=0x40)

        whole_reader = make()
        whole, error = whole_reader.feed(wire)
        assert error is None
        assert whole == sent
        split_reader = make()
        assert feed_chunks(split_reader, chunks) == sent
        assert split_reader.buffered() == 0

    @settings(deadline=None, max_examples=60)
    @given(
        sent=st.lists(
            st.tuples(
                st.sampled_from(ALL_OPCODES),
                st.just(True),
                st.just(0),
                st.binary(max_size=40),
            ),
            max_size=5,
        ),
        masked=st.booleans(),
    )
    def test_byte_by_byte_property(
        self, sent: list[tuple[int, bool, int, bytes]], masked: bool
    ) -> None:
        wire = build_stream(sent, masked, KEY)
        reader = server_reader() if masked else client_reader()
        assert feed_chunks(reader, [wire[i : i + 1] for i in range(len(wire))]) == sent


# --------------------------------------------------------------------------------------------
# RFC 6455 §5.1, §5.2, §5.5, §10.4: violations, each with the close code to send.
# --------------------------------------------------------------------------------------------


class TestMaskingRules:
    """RFC 6455 §5.1: a client masks every frame; a server masks none."""

    @pytest.mark.parametrize("opcode", ALL_OPCODES)
    def test_unmasked_frame_from_client(self, opcode: int) -> None:
        wire = build_frame(opcode, b"hi")
        frames, error = server_reader().feed(wire)
        assert frames == []
        assert_error(error, 1002)
        assert "mask" in str(error)

    @pytest.mark.parametrize("opcode", ALL_OPCODES)
    def test_masked_frame_from_server(self, opcode: int) -> None:
        wire = build_frame(opcode, b"hi", mask_key=KEY)
        frames, error = client_reader().feed(wire)
        assert frames == []
        assert_error(error, 1002)
        assert "mask" in str(error)

    def test_detected_from_the_first_two_bytes(self) -> None:
        # Only the header's first two bytes: no payload, no key needed to know it is wrong.
        assert_error(server_reader().feed(b"\x82\x05")[1], 1002)
        assert_error(client_reader().feed(b"\x82\x85")[1], 1002)

    def test_one_byte_alone_is_not_yet_an_error(self) -> None:
        assert server_reader().feed(b"\x82") == ([], None)
        assert client_reader().feed(b"\x82") == ([], None)

    def test_unmasked_empty_frame_from_client(self) -> None:
        frames, error = server_reader().feed(b"\x88\x00")
        assert frames == []
        assert_error(error, 1002)


class TestReservedBits:
    """RFC 6455 §5.2: RSV1-3 must be 0 unless a negotiated extension defines them (§9)."""

    @pytest.mark.parametrize("rsv", [0x10, 0x20, 0x40, 0x30, 0x50, 0x60, 0x70])
    @pytest.mark.parametrize("masked", [True, False])
    def test_rsv_without_extension_fails(self, rsv: int, masked: bool) -> None:
        wire = build_frame(Opcode.TEXT, b"x", rsv=rsv, mask_key=KEY if masked else None)
        reader = server_reader() if masked else client_reader()
        frames, error = reader.feed(wire)
        assert frames == []
        assert_error(error, 1002)

    @pytest.mark.parametrize("opcode", [0x0, 0x1, 0x2, 0x9])
    def test_rsv1_allowed_when_an_extension_claims_it(self, opcode: int) -> None:
        wire = build_frame(opcode, b"x", rsv=0x40, mask_key=KEY)
        assert server_reader(rsv_allowed=0x40).feed(wire) == ([(opcode, True, 0x40, b"x")], None)

    @pytest.mark.parametrize("rsv", [0x10, 0x20, 0x50, 0x60])
    def test_unclaimed_bits_still_fail_when_rsv1_is_claimed(self, rsv: int) -> None:
        wire = build_frame(Opcode.BINARY, b"x", rsv=rsv, mask_key=KEY)
        frames, error = server_reader(rsv_allowed=0x40).feed(wire)
        assert frames == []
        assert_error(error, 1002)

    def test_all_bits_allowed_when_all_claimed(self) -> None:
        wire = build_frame(Opcode.BINARY, b"x", rsv=0x70)
        assert client_reader(rsv_allowed=0x70).feed(wire) == ([(0x2, True, 0x70, b"x")], None)


class TestOpcodes:
    """RFC 6455 §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved; receiving one fails (1002)."""

    def test_known_opcodes(self) -> None:
        assert {int(o) for o in Opcode} == {0x0, 0x1, 0x2, 0x8, 0x9, 0xA}

    @pytest.mark.parametrize("opcode", UNKNOWN_OPCODES)
    @pytest.mark.parametrize("masked", [True, False])
    def test_unknown_opcode_fails(self, opcode: int, masked: bool) -> None:
        wire = build_frame(opcode, b"", mask_key=KEY if masked else None)
        reader = server_reader() if masked else client_reader()
        frames, error = reader.feed(wire)
        assert frames == []
        assert_error(error, 1002)
        assert f"0x{opcode:x}" in str(error)


class TestControlFrames:
    """RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented."""

    @pytest.mark.parametrize("opcode", CONTROL_OPCODES)
    @pytest.mark.parametrize("n", [126, 127, 65535, 65536])
    def test_control_frame_over_125_bytes(self, opcode: int, n: int) -> None:
        wire = build_frame(opcode, pattern(n), mask_key=KEY)
        frames, error = server_reader().feed(wire)
        assert frames == []
        assert_error(error, 1002)

    @pytest.mark.parametrize("opcode", CONTROL_OPCODES)
    def test_control_frame_too_long_detected_from_header(self, opcode: int) -> None:
        # 16-bit length 126: the header alone (4 bytes) already breaks the rule.
        frames, error = server_reader().feed(bytes([0x80 | opcode, 0x80 | 126, 0, 126]))
        assert frames == []
        assert_error(error, 1002)

    @pytest.mark.parametrize("opcode", CONTROL_OPCODES)
    def test_control_frame_of_125_bytes_is_fine(self, opcode: int) -> None:
        wire = build_frame(opcode, pattern(125), mask_key=KEY)
        assert server_reader().feed(wire) == ([(opcode, True, 0, pattern(125))], None)

    @pytest.mark.parametrize("opcode", CONTROL_OPCODES)
    @pytest.mark.parametrize("masked", [True, False])
    def test_fragmented_control_frame(self, opcode: int, masked: bool) -> None:
        wire = build_frame(opcode, b"x", fin=False, mask_key=KEY if masked else None)
        reader = server_reader() if masked else client_reader()
        frames, error = reader.feed(wire)
        assert frames == []
        assert_error(error, 1002)

    def test_control_frame_length_checked_even_with_a_small_max_frame_size(self) -> None:
        # The §5.5 rule wins over the size limit: 1002, not 1009.
        frames, error = server_reader(max_frame_size=10).feed(
            build_frame(Opcode.PING, pattern(200), mask_key=KEY)
        )
        assert frames == []
        assert_error(error, 1002)


class TestPayloadLength:
    """RFC 6455 §5.2: 7-bit, 16-bit and 64-bit lengths, minimal form, top bit clear."""

    def test_64_bit_length_with_top_bit_set(self) -> None:
        header = b"\x82\xff" + (1 << 63).to_bytes(8, "big")
        frames, error = server_reader().feed(header + KEY)
        assert frames == []
        assert_error(error, 1002)

    def test_64_bit_length_with_top_bit_set_beats_size_limit(self) -> None:
        header = b"\x82\x7f" + (2**64 - 1).to_bytes(8, "big")
        frames, error = client_reader(max_frame_size=100).feed(header)
        assert frames == []
        assert_error(error, 1002)

    @pytest.mark.parametrize("n", [0, 1, 125])
    def test_non_minimal_16_bit_length(self, n: int) -> None:
        wire = bytes([0x82, 126]) + n.to_bytes(2, "big") + pattern(n)
        frames, error = client_reader().feed(wire)
        assert frames == []
        assert_error(error, 1002)

    @pytest.mark.parametrize("n", [0, 1, 125, 126, 65535])
    def test_non_minimal_64_bit_length(self, n: int) -> None:
        wire = bytes([0x82, 127]) + n.to_bytes(8, "big") + pattern(n)
        frames, error = client_reader().feed(wire)
        assert frames == []
        assert_error(error, 1002)

    def test_minimal_boundaries_are_accepted(self) -> None:
        # Hand-built: 126 in the 16-bit form, 65536 in the 64-bit form are the shortest forms.
        wire = (
            bytes([0x82, 125]) + pattern(125)
            + bytes([0x82, 126, 0, 126]) + pattern(126)
            + bytes([0x82, 126, 0xFF, 0xFF]) + pattern(65535)
            + bytes([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]) + pattern(65536)
        )  # fmt: skip
        frames, error = client_reader().feed(wire)
        assert error is None
        assert [len(f[3]) for f in frames] == [125, 126, 65535, 65536]
        assert [f[3] for f in frames] == [pattern(n) for n in (125, 126, 65535, 65536)]


class TestMaxFrameSize:
    """RFC 6455 §10.4: a frame above the configured limit fails with 1009 (Message Too Big),
    as soon as its header says so, before any payload is buffered."""

    def test_header_of_a_2_to_the_40_frame_fails_at_once(self) -> None:
        header = b"\x82\xff" + (2**40).to_bytes(8, "big")  # masked, 64-bit length, no key yet
        reader = server_reader(max_frame_size=1 << 20)
        for i in range(len(header) - 1):
            assert reader.feed(header[i : i + 1]) == ([], None), f"byte {i}: too early"
        frames, error = reader.feed(header[-1:])
        assert frames == []
        assert_error(error, 1009)
        assert str(2**40) in str(error)

    def test_header_of_a_2_to_the_40_frame_fails_even_with_key(self) -> None:
        header = b"\x82\x7f" + (2**40).to_bytes(8, "big")
        frames, error = client_reader(max_frame_size=1 << 30).feed(header)
        assert frames == []
        assert_error(error, 1009)

    @pytest.mark.parametrize("limit", [0, 10, 125, 126, 1000, 65535, 65536])
    def test_exact_limit_accepted_one_more_refused(self, limit: int) -> None:
        ok = build_frame(Opcode.BINARY, pattern(limit), mask_key=KEY)
        assert server_reader(max_frame_size=limit).feed(ok) == (
            [(0x2, True, 0, pattern(limit))],
            None,
        )
        too_big = build_frame(Opcode.BINARY, pattern(limit + 1), mask_key=KEY)
        # Only the header is needed: 2, 4 or 10 bytes.
        header_len = 2 if limit + 1 <= 125 else 4 if limit + 1 <= 0xFFFF else 10
        frames, error = server_reader(max_frame_size=limit).feed(too_big[:header_len])
        assert frames == []
        assert_error(error, 1009)

    @pytest.mark.parametrize("opcode", DATA_OPCODES)
    def test_every_data_opcode_is_limited(self, opcode: int) -> None:
        frames, error = client_reader(max_frame_size=5).feed(build_frame(opcode, b"123456"))
        assert frames == []
        assert_error(error, 1009)


class TestFramesBeforeAnError:
    """Frames before a bad one are returned with the error, so no earlier data is lost."""

    @pytest.mark.parametrize(
        ("bad", "code"),
        [
            (build_frame(Opcode.TEXT, b"x"), 1002),  # unmasked from a client
            (build_frame(0x3, b"x", mask_key=KEY), 1002),  # unknown opcode
            (build_frame(Opcode.TEXT, b"x", rsv=0x20, mask_key=KEY), 1002),  # RSV2
            (build_frame(Opcode.PING, b"x", fin=False, mask_key=KEY), 1002),  # fragmented ping
            (build_frame(Opcode.BINARY, pattern(2000), mask_key=KEY), 1009),  # too big
            (b"\x82\xfe\x00\x05" + KEY + b"12345", 1002),  # non-minimal length
        ],
    )
    def test_good_frames_then_bad(self, bad: bytes, code: int) -> None:
        good = [(0x1, False, 0, b"one"), (0x9, True, 0, b"p"), (0x0, True, 0, b"two")]
        wire = build_stream(good, True, KEY)
        after = build_frame(Opcode.BINARY, b"never", mask_key=KEY)
        frames, error = server_reader(max_frame_size=1000).feed(wire + bad + after)
        assert frames == good
        assert_error(error, code)

    def test_good_frames_in_earlier_feed_and_same_feed(self) -> None:
        reader = server_reader()
        first = build_frame(Opcode.TEXT, b"a", mask_key=KEY)
        second = build_frame(Opcode.TEXT, b"b", mask_key=KEY)
        assert reader.feed(first + second[:3]) == ([(0x1, True, 0, b"a")], None)
        frames, error = reader.feed(second[3:] + b"\x8f\x80")
        assert frames == [(0x1, True, 0, b"b")]
        assert_error(error, 1002)
