"""Close codes and the Close frame payload: RFC 6455 §5.5.1 (payload layout), §7.1.5 (no code
means 1005), §7.4.1 (defined codes), §7.4.2 (reserved ranges) and the IANA registry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsmachine.close_codes import (
    MAX_REASON_BYTES,
    CloseCode,
    build_close_payload,
    check_code_to_send,
    is_wire_code,
    parse_close_payload,
)
from wsmachine.errors import LocalProtocolError, RemoteProtocolError

# Written out independently of the module: the codes a Close frame may carry.
WIRE_CODES = frozenset(
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, *range(3000, 5000)]
)


def payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


class TestRegisteredCodes:
    """RFC 6455 §7.4.1 and the IANA "WebSocket Close Code Number Registry"."""

    def test_values(self) -> None:
        assert {c.name: int(c) for c in CloseCode} == {
            "NORMAL_CLOSURE": 1000,
            "GOING_AWAY": 1001,
            "PROTOCOL_ERROR": 1002,
            "UNSUPPORTED_DATA": 1003,
            "NO_STATUS_RCVD": 1005,
            "ABNORMAL_CLOSURE": 1006,
            "INVALID_FRAME_PAYLOAD_DATA": 1007,
            "POLICY_VIOLATION": 1008,
            "MESSAGE_TOO_BIG": 1009,
            "MANDATORY_EXTENSION": 1010,
            "INTERNAL_ERROR": 1011,
            "SERVICE_RESTART": 1012,
            "TRY_AGAIN_LATER": 1013,
            "BAD_GATEWAY": 1014,
            "TLS_HANDSHAKE": 1015,
        }

    @pytest.mark.parametrize("code", [1004, 1005, 1006, 1015])
    def test_local_only_and_reserved_codes_are_not_wire_codes(self, code: int) -> None:
        assert not is_wire_code(code)


class TestClassification:
    """RFC 6455 §7.4.1-§7.4.2: exactly 1000-1003, 1007-1014 and 3000-4999 may be sent or
    received; 0-999 unused, 1004-1006/1015 reserved or local, 1016-2999 for the RFC's
    extensions, 5000+ undefined."""

    def test_every_code_0_to_5999_is_classified(self) -> None:
        for code in range(6000):
            expected = code in WIRE_CODES
            assert is_wire_code(code) is expected, code
            wire = payload(code, b"why")
            if expected:
                assert check_code_to_send(code, "why") == b"why"
                assert parse_close_payload(wire) == (code, "why")
            else:
                with pytest.raises(LocalProtocolError, match=str(code)):
                    check_code_to_send(code, "why")
                with pytest.raises(RemoteProtocolError, match=str(code)) as info:
                    parse_close_payload(wire)
                assert info.value.close_code == 1002

    def test_every_16_bit_code_above_5999_is_refused_on_receipt(self) -> None:
        for code in range(6000, 65536):
            with pytest.raises(RemoteProtocolError) as info:
                parse_close_payload(payload(code))
            assert info.value.close_code == 1002

    def test_boundaries(self) -> None:
        allowed = [1000, 1003, 1007, 1014, 3000, 4999]
        refused = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
        assert [is_wire_code(c) for c in allowed] == [True] * len(allowed)
        assert [is_wire_code(c) for c in refused] == [False] * len(refused)


class TestReasonLength:
    """RFC 6455 §5.5: a control payload is at most 125 bytes, so a reason is at most 123 bytes
    of UTF-8 (bytes, not characters)."""

    def test_limit_constant(self) -> None:
        assert MAX_REASON_BYTES == 123

    @pytest.mark.parametrize(
        "reason",
        ["", "a" * 123, "é" * 61, "é" * 61 + "a", "€" * 41, "😀" * 30 + "abc"],
    )
    def test_up_to_123_bytes(self, reason: str) -> None:
        encoded = reason.encode("utf-8")
        assert len(encoded) <= 123
        assert check_code_to_send(1000, reason) == encoded
        assert len(build_close_payload(1000, encoded)) <= 125

    @pytest.mark.parametrize(
        "reason",
        ["a" * 124, "é" * 62, "€" * 41 + "a", "😀" * 31, "😀" * 30 + "abcd", "x" * 1000],
    )
    def test_over_123_bytes(self, reason: str) -> None:
        assert len(reason.encode("utf-8")) > 123
        with pytest.raises(LocalProtocolError, match="123"):
            check_code_to_send(1000, reason)

    def test_counts_bytes_not_characters(self) -> None:
        # 62 characters is under 123, but 124 bytes is over.
        reason = "é" * 62
        assert len(reason) < 123
        with pytest.raises(LocalProtocolError):
            check_code_to_send(4000, reason)


class TestParsePayload:
    """RFC 6455 §5.5.1: empty, or a 2-byte big-endian code then a UTF-8 reason."""

    def test_empty_payload_is_1005(self) -> None:
        code, reason = parse_close_payload(b"")
        assert code == 1005 == CloseCode.NO_STATUS_RCVD
        assert reason == ""

    @pytest.mark.parametrize("byte", [0x00, 0x03, 0xE8, 0xFF])
    def test_one_byte_payload_is_1002(self, byte: int) -> None:
        with pytest.raises(RemoteProtocolError) as info:
            parse_close_payload(bytes([byte]))
        assert info.value.close_code == 1002

    def test_code_without_reason(self) -> None:
        assert parse_close_payload(b"\x03\xe8") == (1000, "")
        assert parse_close_payload(b"\x0f\xa0") == (4000, "")

    def test_code_is_big_endian(self) -> None:
        assert parse_close_payload(b"\x03\xe9") == (1001, "")
        with pytest.raises(RemoteProtocolError):
            parse_close_payload(b"\xe8\x03")  # 59395 little-endian would be 1000

    def test_utf8_reason(self) -> None:
        reason = "Grüße, 世界 😀"
        assert parse_close_payload(b"\x03\xe8" + reason.encode()) == (1000, reason)

    @pytest.mark.parametrize(
        "reason",
        [
            b"\xff",
            b"\x80",
            b"abc\xc3",  # truncated 2-byte sequence
            b"\xe2\x82",  # truncated 3-byte sequence
            b"\xed\xa0\x80",  # UTF-16 surrogate
            b"\xc0\xaf",  # overlong
            b"\xf4\x90\x80\x80",  # above U+10FFFF
        ],
    )
    def test_invalid_utf8_reason_is_1007(self, reason: bytes) -> None:
        with pytest.raises(RemoteProtocolError) as info:
            parse_close_payload(b"\x03\xe8" + reason)
        assert info.value.close_code == 1007

    def test_bad_code_is_reported_before_bad_reason(self) -> None:
        with pytest.raises(RemoteProtocolError) as info:
            parse_close_payload(payload(1005, b"\xff"))
        assert info.value.close_code == 1002


class TestBuildPayload:
    """RFC 6455 §5.5.1: building the Close payload."""

    def test_no_code(self) -> None:
        assert build_close_payload(None) == b""

    def test_code_and_reason(self) -> None:
        assert build_close_payload(1000) == b"\x03\xe8"
        assert build_close_payload(4999, b"bye") == b"\x13\x87bye"
        assert build_close_payload(CloseCode.GOING_AWAY, b"") == b"\x03\xe9"

    @given(
        code=st.sampled_from(sorted(WIRE_CODES)),
        # At most 4 bytes per character: 30 characters always fit; ASCII up to the limit.
        reason=st.text(max_size=30)
        | st.text(alphabet=st.characters(max_codepoint=127), max_size=123),
    )
    def test_round_trip(self, code: int, reason: str) -> None:
        encoded = check_code_to_send(code, reason)
        assert encoded == reason.encode("utf-8")
        built = build_close_payload(code, encoded)
        assert len(built) == 2 + len(encoded) <= 125
        assert parse_close_payload(built) == (code, reason)

    def test_empty_round_trip(self) -> None:
        assert parse_close_payload(build_close_payload(None)) == (1005, "")
