"""UTF-8 validation of text messages: RFC 6455 §5.6 and §8.1 (fail the connection on invalid
text, as soon as it is known to be invalid) with the UTF-8 definition of RFC 3629 §3-§4."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsmachine.utf8 import IncrementalValidator, InvalidUTF8Error


def is_valid(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def can_become_valid(prefix: bytes) -> bool:
    """Reference oracle: some continuation makes ``prefix`` valid UTF-8.

    A code point is at most 4 bytes, so at most 3 bytes are missing; only the byte right after a
    lone lead byte has a restricted range (RFC 3629 §4), the rest may be any continuation byte.
    """
    if is_valid(prefix):
        return True
    return any(
        is_valid(prefix + bytes([second]) + b"\x80" * extra)
        for second in range(0x80, 0xC0)
        for extra in range(3)
    )


def validate_pieces(pieces: list[bytes]) -> str:
    """Feed ``pieces`` (the last one final) and return the text."""
    validator = IncrementalValidator()
    out = [validator.decode(p, False) for p in pieces[:-1]]
    out.append(validator.decode(pieces[-1] if pieces else b"", True))
    return "".join(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


# Mostly-valid UTF-8 with occasional damage: finds more interesting cases than random bytes.
def damaged_utf8() -> st.SearchStrategy[bytes]:
    def damage(args: tuple[bytes, list[tuple[int, int]]]) -> bytes:
        data, edits = args
        buf = bytearray(data)
        for pos, byte in edits:
            buf.insert(pos % (len(buf) + 1), byte)
        return bytes(buf)

    return st.tuples(
        st.text(max_size=30).map(lambda s: s.encode("utf-8")),
        st.lists(
            st.tuples(
                st.integers(0, 200),
                st.sampled_from([0x80, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xA0, 0xF0, 0xF4, 0xF5, 0xFF]),
            ),
            max_size=2,
        ),
    ).map(damage)


utf8_bytes = st.one_of(
    st.binary(max_size=40), st.text(max_size=30).map(lambda s: s.encode("utf-8")), damaged_utf8()
)


class TestAgreesWithCodec:
    """RFC 3629: the incremental result equals ``bytes.decode`` however the bytes are split."""

    @settings(max_examples=500, deadline=None)
    @given(data=utf8_bytes, cuts=st.lists(st.integers(0, 1000), max_size=8))
    @example(data=b"\xed\xa0\x80", cuts=[1, 2])
    @example(data=b"\xf0\x9f\x98\x80", cuts=[1, 2, 3])
    @example(data=b"\xe2\x82", cuts=[])
    def test_any_split(self, data: bytes, cuts: list[int]) -> None:
        pieces = split(data, cuts)
        try:
            expected = data.decode("utf-8")
        except UnicodeDecodeError:
            with pytest.raises(InvalidUTF8Error):
                validate_pieces(pieces)
        else:
            assert validate_pieces(pieces) == expected

    @settings(max_examples=300, deadline=None)
    @given(data=utf8_bytes)
    def test_fails_at_the_first_impossible_byte(self, data: bytes) -> None:
        """Fed byte by byte, it raises exactly at the first byte after which no continuation
        could make the text valid (RFC 6455 §8.1: fail as soon as invalid)."""
        validator = IncrementalValidator()
        for i in range(len(data)):
            if can_become_valid(data[: i + 1]):
                validator.decode(data[i : i + 1], False)
            else:
                with pytest.raises(InvalidUTF8Error):
                    validator.decode(data[i : i + 1], False)
                return
        if is_valid(data):
            assert validator.decode(b"", True) == ""
        else:
            with pytest.raises(InvalidUTF8Error):
                validator.decode(b"", True)


class TestSurrogates:
    """RFC 3629 §4: ED A0-BF would encode a UTF-16 surrogate (U+D800-DFFF); never valid."""

    @pytest.mark.parametrize("second", [0xA0, 0xAF, 0xB0, 0xBF])
    def test_ed_a0_in_one_piece(self, second: int) -> None:
        with pytest.raises(InvalidUTF8Error):
            IncrementalValidator().decode(bytes([0xED, second]), False)

    def test_ed_a0_split(self) -> None:
        validator = IncrementalValidator()
        assert validator.decode(b"ok\xed", False) == "ok"
        with pytest.raises(InvalidUTF8Error):
            validator.decode(b"\xa0", False)

    def test_ed_a0_after_valid_text_in_same_piece(self) -> None:
        with pytest.raises(InvalidUTF8Error):
            IncrementalValidator().decode("κόσμε".encode() + b"\xed\xbf", False)

    def test_ed_9f_is_a_valid_prefix(self) -> None:
        validator = IncrementalValidator()
        assert validator.decode(b"\xed\x9f", False) == ""
        assert validator.decode(b"\xbf", True) == "\ud7ff"

    def test_full_surrogate_fails_when_final(self) -> None:
        with pytest.raises(InvalidUTF8Error):
            IncrementalValidator().decode(b"\xed\xa0\x80", True)


IMPOSSIBLE_PREFIXES = [
    b"\x80",  # lone continuation byte
    b"\xbf",
    b"\xc0",  # C0, C1: always overlong
    b"\xc1",
    *[bytes([b]) for b in range(0xF5, 0x100)],  # F5-FF never appear
    b"\xc2\x41",  # lead byte without its continuation
    b"\xe0\x80",  # overlong 3-byte
    b"\xe0\x9f",
    b"\xe1\x80\x41",
    b"\xf0\x80",  # overlong 4-byte
    b"\xf0\x8f",
    b"\xf4\x90",  # above U+10FFFF
    b"\xf4\xbf",
    b"\xf1\x80\x80\xc0",
]
VALID_PREFIXES = [
    b"\xc2",
    b"\xdf",
    b"\xe0\xa0",
    b"\xe1\x80",
    b"\xed\x80",
    b"\xed\x9f",
    b"\xef\xbf",
    b"\xf0\x90",
    b"\xf0\x90\x80",
    b"\xf1\x80\x80",
    b"\xf4\x8f\xbf",
]


class TestFailFast:
    """RFC 6455 §8.1: an endpoint fails the connection as soon as the text cannot be valid."""

    @pytest.mark.parametrize("prefix", IMPOSSIBLE_PREFIXES, ids=lambda b: b.hex())
    def test_impossible_prefix_fails_at_its_last_byte(self, prefix: bytes) -> None:
        assert not can_become_valid(prefix)
        assert can_become_valid(b"ok" + prefix[:-1])
        validator = IncrementalValidator()
        assert validator.decode(b"ok" + prefix[:-1], False) == "ok"
        with pytest.raises(InvalidUTF8Error):
            validator.decode(prefix[-1:], False)

    @pytest.mark.parametrize("prefix", IMPOSSIBLE_PREFIXES, ids=lambda b: b.hex())
    def test_impossible_prefix_in_one_piece(self, prefix: bytes) -> None:
        with pytest.raises(InvalidUTF8Error):
            IncrementalValidator().decode(prefix, False)

    @pytest.mark.parametrize("prefix", VALID_PREFIXES, ids=lambda b: b.hex())
    def test_valid_prefix_waits(self, prefix: bytes) -> None:
        assert can_become_valid(prefix)
        validator = IncrementalValidator()
        assert validator.decode(b"a" + prefix, False) == "a"
        # ...but it is not a complete message.
        with pytest.raises(InvalidUTF8Error):
            validator.decode(b"", True)

    def test_every_2_byte_prefix_against_rfc_3629_table(self) -> None:
        # RFC 3629 §4: the allowed range of the byte after each lead byte.
        second_range: dict[int, range] = {
            0xE0: range(0xA0, 0xC0),
            0xED: range(0x80, 0xA0),
            0xF0: range(0x90, 0xC0),
            0xF4: range(0x80, 0x90),
        }
        for lead in [*range(0xC2, 0xE0), *range(0xE1, 0xED), 0xEE, 0xEF, 0xF1, 0xF2, 0xF3]:
            second_range[lead] = range(0x80, 0xC0)
        for first in range(0x80, 0x100):
            for second in range(0x100):
                ok = second in second_range.get(first, ())
                try:
                    IncrementalValidator().decode(bytes([first, second]), False)
                except InvalidUTF8Error:
                    assert not ok, f"{first:02x} {second:02x} rejected"
                else:
                    assert ok, f"{first:02x} {second:02x} accepted"

    def test_invalid_utf8_is_a_value_error(self) -> None:
        assert issubclass(InvalidUTF8Error, ValueError)


class TestPiecewiseOutput:
    """Text is returned as soon as each code point is complete."""

    def test_euro_sign_in_three_pieces(self) -> None:
        validator = IncrementalValidator()
        assert validator.decode(b"\xe2", False) == ""
        assert validator.decode(b"\x82", False) == ""
        assert validator.decode(b"\xac!", True) == "€!"

    def test_truncated_final_piece_fails(self) -> None:
        with pytest.raises(InvalidUTF8Error):
            IncrementalValidator().decode(b"abc\xe2\x82", True)

    def test_empty_message(self) -> None:
        assert IncrementalValidator().decode(b"", True) == ""

    def test_reusable_after_a_final_piece(self) -> None:
        validator = IncrementalValidator()
        assert validator.decode("héllo".encode(), True) == "héllo"
        assert validator.decode(b"\xf0\x9f", False) == ""
        assert validator.decode(b"\x98\x80", True) == "😀"


class TestReset:
    """``reset`` forgets pending bytes, ready for a new message."""

    def test_reset_drops_pending_bytes(self) -> None:
        validator = IncrementalValidator()
        assert validator.decode(b"\xe2\x82", False) == ""
        validator.reset()
        assert validator.decode(b"a", True) == "a"

    def test_without_reset_pending_bytes_matter(self) -> None:
        validator = IncrementalValidator()
        validator.decode(b"\xe2\x82", False)
        with pytest.raises(InvalidUTF8Error):
            validator.decode(b"a", True)

    def test_reset_after_surrogate_error(self) -> None:
        validator = IncrementalValidator()
        with pytest.raises(InvalidUTF8Error):
            validator.decode(b"\xed\xa0", False)
        validator.reset()
        assert validator.decode(b"x", False) == "x"
        assert validator.decode(b"\xc3\xa9", True) == "é"

    def test_reset_after_codec_error(self) -> None:
        validator = IncrementalValidator()
        with pytest.raises(InvalidUTF8Error):
            validator.decode(b"\xff", False)
        validator.reset()
        assert validator.decode(b"fine", True) == "fine"
