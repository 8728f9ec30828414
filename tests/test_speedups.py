"""The optional compiled speed-ups give exactly what the pure-Python code gives.

``wsmachine._speedups`` (masking, unmasking in place, the frame-parsing loop) is built when a
compiler is there; without it wsmachine uses the Python versions in ``wsmachine.frames``. Both
paths are checked here side by side on generated input, and the whole machine is run once on
the pure-Python path, so a machine without a compiler is tested too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsmachine import Binary, Close, Ping, Text, frames
from wsmachine.frames import (
    _py_apply_mask,
    _py_masked_frame,
    _py_parse_frames,
    _py_parse_span,
    _py_unmask,
    _py_unmask_inplace,
    build_frame,
)
from wsmachine.testing import ConnectionPair


def _compiled() -> ModuleType:
    """The extension; a skip without it, but a failure where its build was required (CI)."""
    try:
        import wsmachine._speedups as module
    except ImportError as exc:
        if os.environ.get("WSMACHINE_BUILD_EXTENSION") == "required":
            pytest.fail(f"WSMACHINE_BUILD_EXTENSION=required, but the C extension is gone: {exc}")
        pytest.skip("the C extension was not built", allow_module_level=True)
    return module


speedups = _compiled()

keys = st.binary(min_size=4, max_size=4)


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=3000), key=keys)
def test_apply_mask_matches(data: bytes, key: bytes) -> None:
    assert speedups.apply_mask(data, key) == _py_apply_mask(data, key)
    assert speedups.apply_mask(bytearray(data), key) == _py_apply_mask(data, key)


@settings(deadline=None, max_examples=200)
@given(header=st.binary(max_size=14), data=st.binary(max_size=3000), key=keys)
def test_masked_frame_matches(header: bytes, data: bytes, key: bytes) -> None:
    assert speedups.masked_frame(header, key, data) == _py_masked_frame(header, key, data)


@settings(deadline=None, max_examples=300)
@given(data=st.binary(min_size=4, max_size=600), cut=st.data())
def test_unmask_in_place_matches(data: bytes, cut: st.DataObject) -> None:
    start = cut.draw(st.integers(4, len(data)))
    end = cut.draw(st.integers(start, len(data)))
    buffer = bytearray(data)
    assert speedups.unmask(buffer, start, end) == _py_unmask(buffer, start, end)


def test_apply_mask_long_memoryview() -> None:
    # Past the translate threshold a memoryview is copied first: its slices cannot translate.
    data = memoryview(bytes(range(256)) * 12)
    assert _py_apply_mask(data, b"abcd") == speedups.apply_mask(data, b"abcd")


@pytest.mark.parametrize("unmask", [speedups.unmask, _py_unmask])
def test_unmask_refuses_offsets_outside_the_buffer(unmask: Callable[..., bytes]) -> None:
    for start, end in [(3, 5), (6, 5), (4, 11), (0, 0), (-1, 2), (1 << 64, 1 << 65)]:
        with pytest.raises(ValueError, match="unmask"):
            unmask(bytearray(10), start, end)


@pytest.mark.parametrize("apply_mask", [speedups.apply_mask, _py_apply_mask])
@pytest.mark.parametrize("size", [0, 3, 3000])
def test_apply_mask_refuses_a_short_key(apply_mask: Callable[..., bytes], size: int) -> None:
    # Issue 14: Python returned bytes (or IndexError at 3,000 bytes) for a 3-byte key.
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"x" * size, b"key")


def frame_streams() -> st.SearchStrategy[bytes]:
    """Byte streams of valid frames, and then any bytes at all (to reach every fault)."""
    one = st.builds(
        lambda opcode, payload, fin, rsv, masked, key: build_frame(
            opcode, payload, fin=fin, rsv=rsv, mask_key=key if masked else None
        ),
        st.sampled_from([0, 1, 2, 3, 8, 9, 10, 11]),
        st.binary(max_size=300),
        st.booleans(),
        st.sampled_from([0, 0, 0, 0x40, 0x20, 0x10]),
        st.booleans(),
        keys,
    )
    return st.builds(
        lambda parts, tail: b"".join(parts) + tail,
        st.lists(one, max_size=6),
        st.binary(max_size=20),
    )


@settings(deadline=None, max_examples=500)
@given(
    stream=frame_streams(),
    expect_masked=st.booleans(),
    max_size=st.sampled_from([0, 1, 125, 126, 300, 1 << 20]),
    rsv_forbidden=st.sampled_from([0x70, 0x30, 0x00]),
)
def test_parse_frames_matches(
    stream: bytes, expect_masked: bool, max_size: int, rsv_forbidden: int
) -> None:
    buffer = bytearray(stream)
    compiled = speedups.parse_frames(buffer, expect_masked, max_size, rsv_forbidden)
    python = _py_parse_frames(buffer, expect_masked, max_size, rsv_forbidden)
    assert compiled == python


@pytest.mark.parametrize(
    "header",
    [
        b"\x82\x7e\x00\x05",  # 16-bit length form for 5 bytes: not the shortest
        b"\x82\x7f" + (1 << 63).to_bytes(8, "big"),  # most significant bit set
        b"\x82\x7f" + (70_000).to_bytes(8, "big")[:7],  # incomplete 64-bit length
        b"\x82\xff" + (1 << 40).to_bytes(8, "big"),  # 2**40 declared: over any limit
        b"\x89\x7e\x00\x80",  # 128-byte Ping
        b"\x09\x80",  # fragmented Ping
    ],
)
@pytest.mark.parametrize("expect_masked", [True, False])
def test_parse_frames_matches_on_edge_headers(header: bytes, expect_masked: bool) -> None:
    buffer = bytearray(header + b"\x00" * 8)
    assert speedups.parse_frames(buffer, expect_masked, 1 << 20, 0x70) == _py_parse_frames(
        buffer, expect_masked, 1 << 20, 0x70
    )


@pytest.mark.parametrize(
    "max_size", [(1 << 63) - 1, 1 << 63, 1 << 64, 1 << 100, -1, -(1 << 64), -(1 << 100)]
)
def test_parse_frames_matches_for_any_int_limit(max_size: int) -> None:
    # Issue 17: 2**64 raised OverflowError in C only; now the twins agree on every int. A
    # limit past 64 bits limits nothing, a negative one refuses every data frame.
    buffer = bytearray(b"\x82\x7e\x01\x00" + b"x" * 256 + b"\x89\x01p" + b"\x82\x00")
    compiled = speedups.parse_frames(buffer, False, max_size, 0x70)
    assert compiled == _py_parse_frames(buffer, False, max_size, 0x70)
    assert compiled[1:] == ((len(buffer), None) if max_size > 0 else (0, (9, 256)))


@settings(deadline=None, max_examples=400)
@given(stream=frame_streams(), cut=st.data(), prefix=st.binary(max_size=8))
def test_unmasking_in_place_then_parsing_gives_the_frames(
    stream: bytes, cut: st.DataObject, prefix: bytes
) -> None:
    """The receive-into path: the head frame unmasked in place up to a mark (as its bytes
    arrived, in pieces), then the stream parsed from behind the mark, gives the very frames a
    parse of the untouched stream gives; on both twins, which leave the same bytes behind."""
    whole = _py_parse_frames(stream, True, 1 << 20, 0x70)
    start = len(prefix)
    buffer = bytearray(prefix + stream)
    mark = start
    first = _head_payload_start(stream)
    if first is not None and whole[0]:
        marks = sorted(cut.draw(st.lists(st.integers(first, len(stream)), max_size=3)))
        end_of_head = first + len(whole[0][0][3])
        for stop in marks:
            stop = min(stop, end_of_head)
            if stop > mark - start:
                twin = bytearray(buffer)
                speedups.unmask_inplace(
                    buffer, start + first, max(mark, start + first), start + stop
                )
                _py_unmask_inplace(twin, start + first, max(mark, start + first), start + stop)
                assert buffer == twin
                mark = start + stop
    end = len(buffer)
    compiled = speedups.parse_span(buffer, start, end, mark, True, 1 << 20, 0x70)
    assert compiled == _py_parse_span(buffer, start, end, mark, True, 1 << 20, 0x70)
    frames, pos, fault = compiled
    assert (frames, pos - start, fault) == whole


def _head_payload_start(stream: bytes) -> int | None:
    """Where the first frame's payload starts, when it is masked and its header is whole."""
    if len(stream) < 2 or not stream[1] & 0x80:
        return None
    size = stream[1] & 0x7F
    header = (2 if size < 126 else 4 if size == 126 else 10) + 4
    return header if len(stream) >= header else None


@pytest.fixture
def pure_python(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Run the machine as if the extension had not been built; count the calls to each twin."""
    calls = dict.fromkeys(
        (
            "apply_mask",
            "unmask",
            "unmask_inplace",
            "join_unmask",
            "masked_frame",
            "parse_frames",
            "parse_span",
        ),
        0,
    )

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any) -> Any:
            calls[name] += 1
            return function(*args)

        return spy

    for name in calls:
        monkeypatch.setattr(frames, name, counted(name, getattr(frames, f"_py_{name}")))
    yield calls


def test_machine_on_the_pure_python_path(pure_python: dict[str, int]) -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.client.send_text("héllo")
    pair.client.send_binary(bytes(range(256)) * 300)  # long enough for the translate path
    pair.client.send_text("frag", final=False)
    pair.client.ping(b"p")
    pair.client.send_text("ment")
    events = pair.client_to_server(chunks=7)
    assert events == [
        Text(data="héllo"),
        Binary(data=bytes(range(256)) * 300),
        Ping(payload=b"p"),
        Text(data="fragment"),
    ]
    # The client masked every frame, and the server parsed every read, through the Python
    # twins: the fixture's patch was really on the path the machine takes.
    assert pure_python["masked_frame"] == 5
    assert pure_python["parse_span"] >= 7
    assert pure_python["unmask_inplace"] >= 1  # a text frame cut by a read, checked in place

    # A broken frame fails the same way: RSV2 with no extension, 1002.
    (close,) = pair.server.receive_data(b"\xa1\x80abcd")
    assert isinstance(close, Close)
    assert close.code == 1002
    assert "reserved bits 0x20" in str(close.error)
