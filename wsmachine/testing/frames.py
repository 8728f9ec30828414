"""Frame bytes for tests, valid or deliberately broken (RFC 6455 §5).

:class:`FrameBuilder` writes any frame a peer could send, including the ones a correct peer
never sends: unmasked or wrongly masked frames, reserved bits, unknown opcodes, oversize or
fragmented control frames, invalid UTF-8, bad close codes, non-minimal length encodings and
lengths that do not match the payload. :meth:`FrameBuilder.invalid_frames` lists one frame of
each kind with the close code a conforming receiver answers it with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ..frames import Opcode, apply_mask

__all__ = ["FrameBuilder", "InvalidFrame"]

#: The masking key of the example in RFC 6455 §5.7; any fixed key keeps test output stable.
DEFAULT_MASK_KEY = b"\x37\xfa\x21\x3d"


class InvalidFrame(NamedTuple):
    """A frame (or frames) a conforming receiver must refuse, and how it answers."""

    #: A short name for test ids, e.g. ``"unmasked"``.
    name: str
    #: The bytes to send after the handshake.
    data: bytes
    #: The close code the receiver fails the connection with (RFC 6455 §7.4.1).
    close_code: int
    #: What is wrong, with the RFC section.
    reason: str


class FrameBuilder:
    """Build frames as a client (masked) or a server (unmasked) sends them, or broken ones.

    :param client: build frames as a client sends them (masked, RFC 6455 §5.3); ``False``
        for a server's (unmasked). Each method can override the masking.
    :param mask_key: the 4-byte key used for masked frames.

    Every method returns ``bytes``, ready for ``receive_data`` or a socket::

        build = FrameBuilder(client=True)
        server.receive_data(build.text("hi", fin=False) + build.ping() + build.continuation("!"))
    """

    __slots__ = ("client", "mask_key")

    def __init__(self, *, client: bool, mask_key: bytes = DEFAULT_MASK_KEY) -> None:
        if len(mask_key) != 4:
            raise ValueError(f"a masking key is 4 bytes, not {len(mask_key)}")
        #: Whether frames are masked by default.
        self.client = client
        #: The masking key of masked frames.
        self.mask_key = bytes(mask_key)

    def frame(
        self,
        opcode: int,
        payload: bytes | bytearray | memoryview = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        masked: bool | None = None,
        mask_key: bytes | None = None,
        length: int | None = None,
        length_form: int | None = None,
    ) -> bytes:
        """Any frame, valid or not; every header field is taken as given.

        :param opcode: 0-15, known or not (``wsmachine.frames.Opcode`` names the known ones).
        :param payload: the payload, before masking.
        :param fin: the FIN bit.
        :param rsv: the RSV bits as they sit in the first byte: 0x40, 0x20, 0x10 or a mix.
        :param masked: set the MASK bit and mask the payload; by default as the role does.
        :param mask_key: the key for this frame (default: the builder's).
        :param length: the payload length to declare, if not ``len(payload)``: a lie, or a
            huge value with a short payload to test that a receiver refuses before buffering.
        :param length_form: the length encoding, 0 (7-bit), 2 (16-bit) or 8 (64-bit); by default
            the shortest, as RFC 6455 §5.2 requires. A longer form is invalid.
        """
        data = bytes(payload)
        declared = len(data) if length is None else length
        if not 0 <= opcode <= 15 or rsv & ~0x70:
            raise ValueError("opcode is 0-15 and rsv a mix of 0x40, 0x20 and 0x10")
        if length_form is None:
            length_form = 0 if declared < 126 else 2 if declared < 0x10000 else 8
        if masked is None:
            masked = self.client
        mask_bit = 0x80 if masked else 0
        head = bytearray(((0x80 if fin else 0) | rsv | opcode,))
        if length_form == 0:
            if declared > 125:
                raise ValueError(f"length {declared} does not fit the 7-bit form")
            head.append(mask_bit | declared)
        elif length_form == 2:
            head.append(mask_bit | 126)
            head += declared.to_bytes(2, "big")
        elif length_form == 8:
            head.append(mask_bit | 127)
            head += declared.to_bytes(8, "big")
        else:
            raise ValueError(f"length_form is 0, 2 or 8, not {length_form}")
        if not masked:
            return bytes(head) + data
        key = self.mask_key if mask_key is None else mask_key
        return bytes(head) + key + apply_mask(data, key)

    # -- valid frames -------------------------------------------------------------------

    def text(self, data: str | bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
        """A text frame; ``bytes`` are sent as given (so they may be invalid UTF-8)."""
        payload = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        return self.frame(Opcode.TEXT, payload, fin=fin, rsv=rsv)

    def binary(self, data: bytes | bytearray | memoryview, *, fin: bool = True) -> bytes:
        """A binary frame."""
        return self.frame(Opcode.BINARY, data, fin=fin)

    def continuation(self, data: str | bytes, *, fin: bool = True) -> bytes:
        """A continuation frame (``str`` is encoded as UTF-8)."""
        payload = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        return self.frame(Opcode.CONTINUATION, payload, fin=fin)

    def ping(self, payload: bytes = b"") -> bytes:
        """A Ping (any length: over 125 bytes it is invalid)."""
        return self.frame(Opcode.PING, payload)

    def pong(self, payload: bytes = b"") -> bytes:
        """A Pong (any length: over 125 bytes it is invalid)."""
        return self.frame(Opcode.PONG, payload)

    def close(self, code: int | None = 1000, reason: str | bytes = b"") -> bytes:
        """A Close with any code (``None``: an empty payload) and any reason bytes."""
        if code is None:
            return self.frame(Opcode.CLOSE, b"")
        raw = reason.encode("utf-8", "surrogatepass") if isinstance(reason, str) else reason
        return self.frame(Opcode.CLOSE, code.to_bytes(2, "big") + raw)

    def message(
        self, data: str | bytes, sizes: Iterable[int] | None = None, *, between: bytes = b""
    ) -> bytes:
        """A whole message, text for ``str`` and binary for ``bytes``, cut into fragments.

        :param sizes: the payload size of each fragment in turn (0 is allowed); what is left
            after them is one last fragment. ``None``: one frame.
        :param between: bytes put between fragments, e.g. a :meth:`ping` (RFC 6455 §5.4).
        """
        payload = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        opcode = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
        pieces = list(_cut(payload, sizes))
        out = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            out.append(self.frame(opcode if i == 0 else Opcode.CONTINUATION, piece, fin=last))
            if not last:
                out.append(between)
        return b"".join(out)

    # -- invalid frames -----------------------------------------------------------------

    def invalid_frames(self) -> list[InvalidFrame]:
        """One frame (or short sequence) of every kind a receiver must refuse, with the close
        code RFC 6455 prescribes for it. Send each on a fresh connection."""
        wrong_mask = not self.client
        found = [
            InvalidFrame(
                "unmasked" if self.client else "masked",
                self.frame(Opcode.TEXT, b"hi", masked=wrong_mask),
                1002,
                "clients mask every frame, servers none (§5.1)",
            ),
            InvalidFrame("rsv1", self.frame(Opcode.TEXT, b"hi", rsv=0x40), 1002, "RSV1 (§5.2)"),
            InvalidFrame("rsv2", self.frame(Opcode.BINARY, b"", rsv=0x20), 1002, "RSV2 (§5.2)"),
            InvalidFrame("rsv3", self.frame(Opcode.PING, b"", rsv=0x10), 1002, "RSV3 (§5.2)"),
            InvalidFrame("opcode-3", self.frame(0x3, b"x"), 1002, "reserved opcode (§5.2)"),
            InvalidFrame("opcode-b", self.frame(0xB, b""), 1002, "reserved opcode (§5.2)"),
            InvalidFrame(
                "ping-126", self.ping(b"p" * 126), 1002, "control payload over 125 (§5.5)"
            ),
            InvalidFrame(
                "close-126", self.close(1000, b"r" * 124), 1002, "control payload over 125 (§5.5)"
            ),
            InvalidFrame(
                "fragmented-ping",
                self.frame(Opcode.PING, b"p", fin=False),
                1002,
                "control frames are not fragmented (§5.5)",
            ),
            InvalidFrame(
                "lone-continuation",
                self.continuation(b"x"),
                1002,
                "a continuation with no message to continue (§5.4)",
            ),
            InvalidFrame(
                "interleaved-message",
                self.text("a", fin=False) + self.text("b"),
                1002,
                "a new message before the fragmented one ended (§5.4)",
            ),
            InvalidFrame(
                "non-minimal-16",
                self.frame(Opcode.BINARY, b"x", length_form=2),
                1002,
                "length in the 16-bit form when 7 bits suffice (§5.2)",
            ),
            InvalidFrame(
                "non-minimal-64",
                self.frame(Opcode.BINARY, b"x" * 200, length_form=8),
                1002,
                "length in the 64-bit form when 16 bits suffice (§5.2)",
            ),
            InvalidFrame(
                "length-msb",
                self.frame(Opcode.BINARY, b"", length=1 << 63),
                1002,
                "the 64-bit length has its most significant bit set (§5.2)",
            ),
            InvalidFrame(
                "bad-utf8", self.text(b"ok \xc3\x28"), 1007, "text that is not UTF-8 (§8.1)"
            ),
            InvalidFrame(
                "surrogate-utf8",
                self.text(b"\xed\xa0\x80"),
                1007,
                "an encoded surrogate is not UTF-8 (§8.1)",
            ),
            InvalidFrame(
                "bad-utf8-fragments",
                self.text(b"\xce", fin=False) + self.continuation(b"\xff"),
                1007,
                "invalid UTF-8 across fragments (§8.1)",
            ),
            InvalidFrame(
                "close-1-byte",
                self.frame(Opcode.CLOSE, b"\x03"),
                1002,
                "a Close payload of one byte (§5.5.1)",
            ),
            InvalidFrame("close-999", self.close(999), 1002, "close code below 1000 (§7.4.2)"),
            InvalidFrame("close-1005", self.close(1005), 1002, "1005 is never sent (§7.4.1)"),
            InvalidFrame("close-1006", self.close(1006), 1002, "1006 is never sent (§7.4.1)"),
            InvalidFrame("close-1015", self.close(1015), 1002, "1015 is never sent (§7.4.1)"),
            InvalidFrame("close-5000", self.close(5000), 1002, "close code above 4999 (§7.4.2)"),
            InvalidFrame(
                "close-bad-utf8",
                self.close(1000, b"\xff"),
                1007,
                "a close reason that is not UTF-8 (§5.5.1)",
            ),
        ]
        return found

    def __repr__(self) -> str:
        return f"FrameBuilder(client={self.client}, mask_key={self.mask_key!r})"


def _cut(payload: bytes, sizes: Iterable[int] | None) -> Iterator[bytes]:
    if sizes is None:
        yield payload
        return
    pos = 0
    for size in sizes:
        if size < 0:
            raise ValueError(f"fragment sizes are not negative, not {size}")
        yield payload[pos : pos + size]
        pos += size
    if pos < len(payload) or pos == 0:
        yield payload[pos:]
