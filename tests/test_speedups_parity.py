"""One truth for C and Python: the compiled speed-ups and their pure-Python twins give the same
result or raise the same exception for every argument, valid or not.

The domain is every argument a caller could pass, not only the ones wsmachine passes: buffers
of any kind (bytes, bytearray, memoryviews of any format, shape and contiguity), integers of
any size and sign, and objects that are neither. A result must be equal and of the same type;
an exception must be of the same type, and a ``ValueError`` (the twins' own) must say the same.
"""

from __future__ import annotations

import array
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_speedups import frame_streams, speedups
from wsmachine.frames import (
    FaultKind,
    _fault_error,
    _py_apply_mask,
    _py_join_unmask,
    _py_masked_frame,
    _py_parse_frames,
    _py_parse_span,
    _py_unmask,
    _py_unmask_inplace,
)


class BadBool:
    """An object whose truth value cannot be taken."""

    def __bool__(self) -> bool:
        raise ZeroDivisionError("no truth value")


class Index:
    """A non-int integer (``__index__``), as numpy's scalars are."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def _buffer_makers(data: bytes) -> st.SearchStrategy[Callable[[], object]]:
    """Makers of ``data`` as every kind of buffer object, read-only or writable, contiguous or
    not: each call makes a fresh one, so an in-place function can run on two equal copies."""
    kinds: list[Callable[[], object]] = [
        lambda: data,
        lambda: bytearray(data),
        lambda: memoryview(data),
        lambda: memoryview(bytearray(data)),
        lambda: memoryview(data)[::2],  # non-contiguous: BufferError on both sides
        lambda: memoryview(data)[::-1],
        lambda: memoryview(bytearray(data))[::2],  # writable, non-contiguous
    ]
    if len(data) % 2 == 0:
        kinds.append(lambda: array.array("H", data))  # 2-byte items: still len(data) bytes
    if data and len(data) % 2 == 0:
        kinds.append(lambda: memoryview(data).cast("B", shape=[2, len(data) // 2]))  # 2-D
    if len(data) % 4 == 0:
        kinds.append(lambda: memoryview(bytearray(data)).cast("I"))
        kinds.append(lambda: array.array("I", data))  # writable, 4-byte items
    # Indices, not the objects: hypothesis hashes what it samples, and a writable view cannot.
    return st.integers(0, len(kinds) - 1).map(lambda i: kinds[i])


def _buffers(data: bytes) -> st.SearchStrategy[object]:
    """``data`` as every kind of buffer object, contiguous or not."""
    return _buffer_makers(data).map(lambda make: make())


NOT_BUFFERS = st.sampled_from(["abcd", 1234, None, [1, 2, 3, 4], 4.0, object()])


def buffers(max_size: int = 64, **kwargs: int) -> st.SearchStrategy[object]:
    """Any buffer of any kind, or now and then something that is not one."""
    any_buffer = st.binary(max_size=max_size, **kwargs).flatmap(_buffers)
    return st.one_of(any_buffer, any_buffer, any_buffer, NOT_BUFFERS)


def keys() -> st.SearchStrategy[object]:
    """Masking keys: mostly 4 bytes, but also every other length and non-buffers."""
    return st.one_of(
        st.binary(min_size=4, max_size=4).flatmap(_buffers),
        st.binary(max_size=8).flatmap(_buffers),
        NOT_BUFFERS,
    )


def integers() -> st.SearchStrategy[object]:
    """Ints of any size (past 64 bits too), bools, __index__ objects, and non-integers."""
    return st.one_of(
        st.integers(-8, 80),
        st.integers(),
        st.sampled_from([(1 << 63) - 1, 1 << 63, 1 << 64, -(1 << 63), -(1 << 64), 1 << 100]),
        st.booleans(),
        st.integers(-8, 80).map(Index),
        st.sampled_from([4.0, "4", None]),
    )


def outcome(function: Callable[..., Any], *args: object) -> tuple[object, ...]:
    try:
        result = function(*args)
    except Exception as exc:  # the exception is the outcome being compared
        message = str(exc) if type(exc) is ValueError else None
        return ("raised", type(exc), message)
    return ("returned", type(result), result)


def same(compiled: Callable[..., Any], python: Callable[..., Any], *args: object) -> None:
    expected = outcome(python, *args)
    assert outcome(compiled, *args) == expected, f"C and Python differ on {args!r}"


@settings(max_examples=600, deadline=None)
@given(data=buffers(max_size=5000), key=keys())
def test_apply_mask_same_on_any_arguments(data: object, key: object) -> None:
    # Issue 14: a 3-byte key was a ValueError in C and bytes (or IndexError) in Python.
    same(speedups.apply_mask, _py_apply_mask, data, key)


@settings(max_examples=600, deadline=None)
@given(buffer=buffers(max_size=80), start=integers(), end=integers())
def test_unmask_same_on_any_arguments(buffer: object, start: object, end: object) -> None:
    # Issue 14: start < 4 was a ValueError in C and bytes in Python.
    same(speedups.unmask, _py_unmask, buffer, start, end)


@settings(max_examples=400, deadline=None)
@given(header=buffers(max_size=16), key=keys(), payload=buffers(max_size=3000))
def test_masked_frame_same_on_any_arguments(header: object, key: object, payload: object) -> None:
    same(speedups.masked_frame, _py_masked_frame, header, key, payload)


@settings(max_examples=800, deadline=None)
@given(
    stream=frame_streams().flatmap(_buffers) | NOT_BUFFERS,
    expect_masked=st.one_of(st.booleans(), st.sampled_from([0, 1, None, "", "x", BadBool()])),
    max_size=integers(),
    rsv_forbidden=integers(),
)
def test_parse_frames_same_on_any_arguments(
    stream: object, expect_masked: object, max_size: object, rsv_forbidden: object
) -> None:
    same(speedups.parse_frames, _py_parse_frames, stream, expect_masked, max_size, rsv_forbidden)


def _contents(buffer: object) -> bytes | None:
    """What a buffer holds now (``None`` for an object without the buffer protocol)."""
    try:
        return memoryview(buffer).tobytes()  # type: ignore[arg-type]
    except TypeError:
        return None


def same_in_place(
    compiled: Callable[..., Any], python: Callable[..., Any], make: Callable[[], object], *args: Any
) -> None:
    """Each twin on its own fresh copy of the buffer: the same outcome and the same bytes left
    in the buffer afterwards."""
    on_python = make()
    expected = (outcome(python, on_python, *args), _contents(on_python))
    on_compiled = make()
    got = (outcome(compiled, on_compiled, *args), _contents(on_compiled))
    assert got == expected, f"C and Python differ on {make()!r}, {args!r}"


@settings(max_examples=600, deadline=None)
@given(
    make=st.binary(max_size=3000).flatmap(_buffer_makers) | NOT_BUFFERS.map(lambda x: lambda: x),
    data=st.data(),
)
def test_unmask_inplace_same_on_any_arguments(
    make: Callable[[], object], data: st.DataObject
) -> None:
    # Offsets mostly inside the buffer (to reach the masking), sometimes anything at all.
    size = len(_contents(make()) or b"")
    offsets = st.one_of(st.integers(0, size), st.integers(0, size), integers())
    start, offset, end = data.draw(offsets), data.draw(offsets), data.draw(offsets)
    if data.draw(st.booleans()):
        start, offset, end = sorted((start, offset, end), key=_sort_key)
    same_in_place(speedups.unmask_inplace, _py_unmask_inplace, make, start, offset, end)


def _sort_key(value: object) -> int:
    return value if type(value) is int else 0  # type: ignore[return-value]


@settings(max_examples=800, deadline=None)
@given(
    stream=frame_streams().flatmap(_buffers) | NOT_BUFFERS,
    data=st.data(),
    expect_masked=st.one_of(st.booleans(), st.sampled_from([0, 1, None, "", "x", BadBool()])),
    max_size=integers(),
    rsv_forbidden=integers(),
)
def test_parse_span_same_on_any_arguments(
    stream: object,
    data: st.DataObject,
    expect_masked: object,
    max_size: object,
    rsv_forbidden: object,
) -> None:
    size = len(_contents(stream) or b"")
    offsets = st.one_of(st.integers(0, size), st.integers(0, size), integers())
    start, unmasked, end = data.draw(offsets), data.draw(offsets), data.draw(offsets)
    if data.draw(st.booleans()):
        start, unmasked, end = sorted((start, unmasked, end), key=_sort_key)
    args = (stream, start, end, unmasked, expect_masked, max_size, rsv_forbidden)
    same(speedups.parse_span, _py_parse_span, *args)


@settings(max_examples=600, deadline=None)
@given(
    parts=st.one_of(
        st.lists(st.binary(max_size=3000).flatmap(_buffers), max_size=5),
        st.lists(st.binary(max_size=40).flatmap(_buffers) | NOT_BUFFERS, max_size=4),
        NOT_BUFFERS,
        st.binary(max_size=8),  # iterable, but of ints
    ),
    key=st.one_of(keys(), st.just(b"")),
)
def test_join_unmask_same_on_any_arguments(parts: object, key: object) -> None:
    same(speedups.join_unmask, _py_join_unmask, parts, key)


def test_wrong_argument_counts_and_keywords_fail_alike() -> None:
    pairs = [
        (speedups.apply_mask, _py_apply_mask, (b"ab", b"1234")),
        (speedups.unmask, _py_unmask, (b"12345678", 4, 6)),
        (speedups.masked_frame, _py_masked_frame, (b"\x82\x02", b"1234", b"ab")),
        (speedups.parse_frames, _py_parse_frames, (b"\x82\x00", False, 10, 0x70)),
        (speedups.parse_span, _py_parse_span, (b"\x82\x00", 0, 2, 0, False, 10, 0x70)),
        (speedups.unmask_inplace, _py_unmask_inplace, (bytearray(b"12345678"), 4, 5, 6)),
        (speedups.join_unmask, _py_join_unmask, ([b"ab", b"cd"], b"1234")),
    ]
    for compiled, python, args in pairs:
        same(compiled, python, *args)
        same(compiled, python, *args[:-1])
        same(compiled, python, *args, None)
        # Positional only on both sides: a keyword is a TypeError.
        for function in (compiled, python):
            with pytest.raises(TypeError):
                function(*args[:-1], x=args[-1])


def test_fault_numbering_is_one_table() -> None:
    # The C module exports the table its enum is generated from; Python's enum must equal it.
    assert {kind.name: kind.value for kind in FaultKind} == speedups.FAULT_KINDS


def test_every_fault_kind_has_its_own_error() -> None:
    messages = {str(_fault_error((kind.value, 200), True, 100)) for kind in FaultKind}
    assert len(messages) == len(FaultKind)
