"""The frame reader's rarer paths, driven with real frames: a caller that keeps a slice of a
receive view against the contract (the reader moves to a new buffer, nothing is lost), the pool
when full, the handshake read into a view, and the pure-Python twins' long and partial inputs
compared with the C functions."""

from __future__ import annotations

import os

import pytest

from wsmachine import Text, frames
from wsmachine.frames import MAX_READ_SIZE, Opcode, build_frame
from wsmachine.testing import ConnectionPair

KEY = b"\x11\x22\x33\x44"


def masked(payload: bytes, opcode: int = Opcode.BINARY) -> bytes:
    return build_frame(opcode, payload, mask_key=KEY)


def open_pair() -> ConnectionPair:
    pair = ConnectionPair()
    pair.handshake()
    return pair


def read_into(conn, data: bytes) -> list[object]:  # type: ignore[no-untyped-def]
    """Give ``data`` through get_buffer/buffer_updated, as a socket read would; return events."""
    events: list[object] = []
    while data:
        view = conn.get_buffer()
        n = min(len(view), len(data))
        view[:n] = data[:n]
        events += conn.buffer_updated(n)
        data = data[n:]
    return events


def test_the_handshake_read_into_a_view() -> None:
    pair = ConnectionPair()
    request = pair.client.data_to_send()
    events = read_into(pair.server, request)
    assert type(events[0]).__name__ == "Handshake"


def test_a_kept_slice_makes_the_reader_move_when_bytes_come_by_receive_data() -> None:
    """An unfinished frame in a buffer the caller still sees a slice of; receive_data brings
    more than its spare room: the reader copies to a new buffer instead of failing."""
    conn = open_pair().server
    first = "t" * (2 * frames.READ_SIZE)  # text: a large binary frame would go by pieces
    wire = masked(first.encode(), Opcode.TEXT) + masked(b"next" * 100)  # past the spare room
    view = conn.get_buffer()
    view[:100] = wire[:100]
    kept = view[:10]  # against the contract: an export of the buffer outlives the call
    assert conn.buffer_updated(100) == []
    view2 = conn.get_buffer()
    kept2 = view2[:1]  # and one of the buffer the reader now reads into
    del view2
    events = conn.receive_data(wire[100:])
    assert [event.data for event in events] == [first, b"next" * 100]  # type: ignore[attr-defined]
    kept.release()
    kept2.release()


def test_a_kept_slice_makes_the_reader_move_when_it_drops_a_parsed_frame() -> None:
    conn = open_pair().server
    wire = masked(b"a" * 300) + masked(b"b" * 300)
    view = conn.get_buffer()
    view[:200] = wire[:200]
    assert conn.buffer_updated(200) == []
    view = conn.get_buffer()
    kept = view[:1]  # held while receive_data parses the first frame and keeps the second's start
    del view
    events = conn.receive_data(wire[200:500])
    assert [event.data for event in events] == [b"a" * 300]  # type: ignore[attr-defined]
    assert [event.data for event in conn.receive_data(wire[500:])] == [b"b" * 300]  # type: ignore[attr-defined]
    kept.release()


def test_a_kept_slice_makes_the_reader_move_when_it_gives_room_back() -> None:
    """After a large frame the reader gives back room past MAX_READ_SIZE; with a slice of the
    buffer still held it moves instead."""
    conn = open_pair().server
    big = os.urandom(4 * MAX_READ_SIZE)
    wire = masked(big) + masked(b"tail-frame-payload")
    kept = None
    events: list[object] = []
    sent = 0
    while sent < len(wire) - 5:
        view = conn.get_buffer()
        n = min(len(view), len(wire) - 5 - sent)
        view[:n] = wire[sent : sent + n]
        if kept is not None:
            kept.release()
        kept = view[:1]  # each read's buffer stays seen past buffer_updated
        del view
        events += conn.buffer_updated(n)
        sent += n
    assert [event.data for event in events] == [big]  # type: ignore[attr-defined]
    assert [event.data for event in conn.receive_data(wire[sent:])] == [b"tail-frame-payload"]  # type: ignore[attr-defined]
    assert kept is not None
    kept.release()


def test_a_small_unfinished_frame_with_the_pool_full() -> None:
    """The pool takes back at most _POOL_SIZE buffers; past that, the big one is let go."""
    saved = list(frames._POOL)
    try:
        conn = open_pair().server
        wire = masked("héllo".encode(), Opcode.TEXT)
        view = conn.get_buffer()  # a pool-sized buffer
        frames._POOL[:] = [bytearray(frames.READ_SIZE) for _ in range(frames._POOL_SIZE)]
        view[:3] = wire[:3]
        del view
        assert conn.buffer_updated(3) == []  # kept small, the big buffer not pooled
        assert len(frames._POOL) == frames._POOL_SIZE
        assert read_into(conn, wire[3:]) == [Text(data="héllo")]
    finally:
        frames._POOL[:] = saved


@pytest.mark.skipif(frames.unmask_inplace is frames._py_unmask_inplace, reason="needs C")
@pytest.mark.parametrize("offset", [4, 5, 7])
def test_long_in_place_unmasking_matches_c(offset: int) -> None:
    data = bytearray(KEY + os.urandom(3 * frames._TRANSLATE_THRESHOLD))
    python, c = bytearray(data), bytearray(data)
    frames._py_unmask_inplace(python, 4, offset, len(data))
    frames.unmask_inplace(c, 4, offset, len(data))
    assert python == c
    assert bytes(python[offset:]) != bytes(data[offset:])


@pytest.mark.skipif(frames.parse_span is frames._py_parse_span, reason="needs C")
@pytest.mark.parametrize(
    "head",
    [
        b"\x82\xfe",
        b"\x82\xfe\x01",
        b"\x82\xff\x00\x00\x00",
        b"\x82\xff" + bytes(7),
        b"\x82\xfe\x00\x05" + bytes(5),  # 5 in the 16-bit form: not minimal
        b"\x82\xff" + (300).to_bytes(8, "big") + bytes(300),  # not minimal either
        b"\x82\xff\x80" + bytes(7),  # the top bit of the 64-bit length set
    ],
)
def test_a_partial_extended_length_waits_in_both_twins(head: bytes) -> None:
    for expect_masked in (False, True):
        args = (head, 0, len(head), 0, expect_masked, 1 << 20, 0x70)
        python, c = frames._py_parse_span(*args), frames.parse_span(*args)
        assert python == c
        if (head[1] & 0x7F == 126 and len(head) < 4) or (head[1] & 0x7F == 127 and len(head) < 10):
            assert c == ([], 0, None)  # waits for the rest of the header
        else:
            assert c[2] is not None  # refused: the length breaks a rule of §5.2


@pytest.mark.parametrize("pattern", ["one-byte", "mixed"])
def test_a_large_frame_trickled_in_keeps_few_pieces_and_counts_them(pattern: str) -> None:
    """A large binary frame fed by small reads: the reader copies a read under
    _PIECE_MIN_READ into its buffer rather than keeping one object per read, and what it
    reports as buffered is every byte fed so far (kept as a count, not summed per read: summing
    made 65,550 one-byte reads of a 64 KiB frame take 83 s, 131,086 take 326 s)."""
    payload = os.urandom(3 * frames._PIECES_MIN)
    wire = masked(payload)
    if pattern == "one-byte":
        sizes = [1] * 20_000
    else:  # large and small reads in turn, so the kept pieces are joined and started again
        sizes = [frames._PIECE_MIN_READ, 1, 5_000, 3, frames._PIECE_MIN_READ - 1, 40_000, 7]
    reader = frames.FrameReader(expect_masked=True, max_frame_size=len(payload))
    pos = 0
    most = 0
    for i, size in enumerate(sizes * 8):
        if pos + size >= len(wire):
            break
        if i % 2:  # a buffer the caller reuses after feed(): what the reader keeps is a copy
            chunk = bytearray(wire[pos : pos + size])
            assert reader.feed(memoryview(chunk)) == ([], None)
            chunk[:] = bytes(size)
        else:
            assert reader.feed(wire[pos : pos + size]) == ([], None)
        pos += size
        assert reader.buffered() == pos
        most = max(most, len(reader._pieces or ()))
    assert most <= pos // frames._PIECE_MIN_READ
    assert (most > 0) == (pattern == "mixed")  # large reads were kept as they came
    assert reader.feed(wire[pos:]) == ([(Opcode.BINARY, True, 0, payload)], None)
    assert reader.buffered() == 0
