"""Close codes (RFC 6455 §7.4 and the IANA registry) and the Close frame payload (§5.5.1)."""

from __future__ import annotations

import dataclasses
import enum

from .errors import InvalidArgumentError, RemoteProtocolError

__all__ = [
    "CloseCode",
    "CloseInfo",
    "build_close_payload",
    "check_code_to_send",
    "parse_close_payload",
]


class CloseCode(enum.IntEnum):
    """Registered close codes (RFC 6455 §7.4.1, IANA "WebSocket Close Code Number Registry")."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    #: Never on the wire: a Close frame without a code (§7.1.5).
    NO_STATUS_RCVD = 1005
    #: Never on the wire: the stream ended without a Close frame (§7.1.5).
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    #: Never on the wire: the TLS handshake failed (§7.4.1).
    TLS_HANDSHAKE = 1015


@dataclasses.dataclass(frozen=True, slots=True)
class CloseInfo:
    """What one Close frame carried: its code (1005 when it had none) and its reason."""

    #: The close code; 1005 (``NO_STATUS_RCVD``) for a Close frame without one.
    code: int
    #: The close reason, ``""`` when none.
    reason: str = ""


# Codes below 3000 that may appear in a Close frame: the registered ones minus the three that
# only report local conditions (1005, 1006, 1015). 1004 is reserved. 3000-4999 are for
# libraries and applications (§7.4.2).
_WIRE_CODES_BELOW_3000 = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

#: Longest reason: a control payload is at most 125 bytes, two of them the code (§5.5).
MAX_REASON_BYTES = 123


def is_wire_code(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame (RFC 6455 §7.4)."""
    return code in _WIRE_CODES_BELOW_3000 or 3000 <= code <= 4999


def check_code_to_send(code: int, reason: str) -> bytes:
    """Check a code and reason the local user wants to send; return the encoded reason.

    :raises InvalidArgumentError: the code may not be sent, or the reason is too long.
    """
    if not is_wire_code(code):
        raise InvalidArgumentError(
            f"close code {code} may not be sent: expected 1000-1003, 1007-1014 or 3000-4999 "
            "(RFC 6455 §7.4.1, §7.4.2)"
        )
    try:
        encoded = reason.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            "close reason holds a lone surrogate, which UTF-8 cannot encode (RFC 6455 §5.5.1)"
        ) from None
    if len(encoded) > MAX_REASON_BYTES:
        raise InvalidArgumentError(
            f"close reason is {len(encoded)} bytes in UTF-8; at most {MAX_REASON_BYTES} fit in a "
            "control frame (RFC 6455 §5.5)"
        )
    return encoded


def build_close_payload(code: int | None, reason: bytes = b"") -> bytes:
    """Return the payload of a Close frame; ``code=None`` gives the empty payload."""
    if code is None:
        return b""
    return code.to_bytes(2, "big") + reason


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Parse a received Close payload into ``(code, reason)``.

    An empty payload gives ``(1005, "")`` (RFC 6455 §7.1.5).

    :raises RemoteProtocolError: a one-byte payload or a code that may not be sent (1002),
        or a reason that is not valid UTF-8 (1007).
    """
    n = len(payload)
    if n == 0:
        return int(CloseCode.NO_STATUS_RCVD), ""
    if n == 1:
        raise RemoteProtocolError(
            "Close frame payload is 1 byte: expected none, or a 2-byte code (RFC 6455 §5.5.1)",
            close_code=CloseCode.PROTOCOL_ERROR,
        )
    code = int.from_bytes(payload[:2], "big")
    if not is_wire_code(code):
        raise RemoteProtocolError(
            f"Close frame carries code {code}: expected 1000-1003, 1007-1014 or 3000-4999 "
            "(RFC 6455 §7.4)",
            close_code=CloseCode.PROTOCOL_ERROR,
        )
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(
            "Close frame reason is not valid UTF-8 (RFC 6455 §5.5.1)",
            close_code=CloseCode.INVALID_FRAME_PAYLOAD_DATA,
            reason="invalid UTF-8",
        ) from None
    return code, reason
