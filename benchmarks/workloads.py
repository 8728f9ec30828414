"""The workloads: inputs built once, a timed call per library, and a check of what it produced.

A workload's :meth:`~Workload.prepare` does the untimed work (a fresh connection opened by a
real handshake) and returns the call to time; :meth:`~Workload.verify` then checks the result
(message count, total size, last message or output bytes) and raises :class:`VerificationError`.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from .adapters import REQUEST, Adapter, Handshakes, Received, Sent
from .wire import (
    CLIENT_KEY,
    OP_BINARY,
    OP_TEXT,
    accept_key,
    build_frame,
    fragment_frames,
    header_value,
    parse_frames,
    split,
)

__all__ = ["Sizes", "VerificationError", "Workload", "make_workloads"]

KIB = 1024
MIB = 1024 * 1024

#: Bytes handed to ``receive_data`` per call: a large socket read, many frames in each.
CHUNK = 64 * KIB

#: A JSON-ish ASCII 125-byte text payload (the largest that fits a 7-bit length).
TEXT_125 = (
    '{"type":"tick","seq":123456,"symbol":"EURUSD","bid":1.08421,"ask":1.08433,'
    '"ts":"2024-05-01T12:00:00.000Z","flags":["a","b"]}'
).ljust(125, " ")

#: 1 MiB of text with 1-, 2- and 3-byte UTF-8 characters, so 1 KiB fragment boundaries split
#: characters and each library's incremental UTF-8 handling is exercised.
_UTF8_UNIT = "héllo wörld — ünïcode ✓ "


def _utf8_text(size: int) -> str:
    """A str whose UTF-8 encoding is exactly ``size`` bytes."""
    unit = _UTF8_UNIT.encode()
    raw = unit * (size // len(unit)) + b"x" * (size % len(unit))
    return raw.decode()


class VerificationError(Exception):
    """A library produced the wrong events or bytes: its timing is void."""


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work one timed run does; ``--quick`` uses smaller numbers."""

    small: int
    binary_1m: int
    fragmented_1m: int
    send_small: int
    send_1m: int
    handshakes: int
    copies: int

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        """The sizes for a quick or a full run."""
        if quick:
            return cls(
                small=15_000,
                binary_1m=8,
                fragmented_1m=3,
                send_small=20_000,
                send_1m=10,
                handshakes=600,
                copies=100,
            )
        return cls(
            small=60_000,
            binary_1m=32,
            fragmented_1m=8,
            send_small=80_000,
            send_1m=32,
            handshakes=2_000,
            copies=300,
        )


class Workload(ABC):
    """One benchmark row."""

    #: Short identifier (``--only``, JSON).
    name: str
    #: Human description for the table.
    title: str
    #: ``"msg/s"``, ``"hs/s"`` or ``"MB/s"`` (MB = 10**6 bytes of payload).
    unit: str
    #: A reference row measures no library (``prepare`` gets ``None``).
    reference: bool = False

    @property
    @abstractmethod
    def work(self) -> float:
        """Units of work per timed run (messages, handshakes, or megabytes)."""

    def build(self) -> None:  # noqa: B027 - optional hook
        """Build the inputs (once, before any timing)."""

    def release(self) -> None:  # noqa: B027 - optional hook
        """Drop the inputs after the workload has run."""

    @abstractmethod
    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """Untimed setup (fresh OPEN connection); return the call to time."""

    @abstractmethod
    def verify(self, result: object) -> None:
        """Raise :class:`VerificationError` unless ``result`` is exactly what was expected."""


def _need(adapter: Adapter | None) -> Adapter:
    if adapter is None:
        raise TypeError("this workload measures a library")
    return adapter


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise VerificationError(message)


class ReceiveWorkload(Workload):
    """A server reads ``count`` masked client messages fed in :data:`CHUNK`-byte reads."""

    def __init__(
        self,
        name: str,
        title: str,
        *,
        message: str | bytes,
        count: int,
        fragment: int | None = None,
        unit: str = "msg/s",
    ) -> None:
        self.name, self.title, self.unit = name, title, unit
        self.message, self.count, self.fragment = message, count, fragment
        self.chunks: list[bytes] = []

    @property
    def payload(self) -> bytes:
        """The message as it goes on the wire."""
        return self.message.encode() if isinstance(self.message, str) else self.message

    @property
    def work(self) -> float:
        """Messages, or payload megabytes when the unit is MB/s."""
        if self.unit == "MB/s":
            return self.count * len(self.payload) / 1e6
        return float(self.count)

    def build(self) -> None:
        """All frames back to back (a fresh mask key each), then cut into reads."""
        rng = random.Random(6455)
        opcode = OP_TEXT if isinstance(self.message, str) else OP_BINARY
        payload = self.payload
        if self.fragment is None:
            frames = [build_frame(opcode, payload, key=rng.randbytes(4)) for _ in range(self.count)]
        else:
            frames = [
                f
                for _ in range(self.count)
                for f in fragment_frames(opcode, payload, self.fragment, rng)
            ]
        self.chunks = split(b"".join(frames), CHUNK)

    def release(self) -> None:
        """Free the input bytes."""
        self.chunks = []

    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """A fresh OPEN server connection; the timed call feeds every chunk."""
        lib = _need(adapter)
        conn, chunks = lib.server(), self.chunks
        return lambda: lib.receive(conn, chunks)

    def verify(self, result: object) -> None:
        """Count, total length, type and content of the last message."""
        _expect(isinstance(result, Received), f"not a Received: {result!r}")
        assert isinstance(result, Received)
        _expect(result.count == self.count, f"{result.count} messages, expected {self.count}")
        expected_total = self.count * len(self.message)
        _expect(result.total == expected_total, f"{result.total} total, expected {expected_total}")
        last = result.last
        if isinstance(self.message, str):
            _expect(isinstance(last, str), f"text delivered as {type(last).__name__}, not str")
            _expect(last == self.message, "last text message differs from what was sent")
        else:
            _expect(
                isinstance(last, bytes | bytearray),
                f"binary delivered as {type(last).__name__}, not bytes",
            )
            _expect(last == self.message, "last binary message differs from what was sent")


class SendWorkload(Workload):
    """A connection sends ``count`` messages, taking the output after each."""

    def __init__(
        self,
        name: str,
        title: str,
        *,
        message: str | bytes,
        count: int,
        client: bool,
        unit: str = "msg/s",
    ) -> None:
        self.name, self.title, self.unit = name, title, unit
        self.message, self.count, self.client = message, count, client

    @property
    def payload(self) -> bytes:
        """The message as it goes on the wire."""
        return self.message.encode() if isinstance(self.message, str) else self.message

    @property
    def work(self) -> float:
        """Messages, or payload megabytes when the unit is MB/s."""
        if self.unit == "MB/s":
            return self.count * len(self.payload) / 1e6
        return float(self.count)

    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """A fresh OPEN connection in the workload's role; the timed call sends."""
        lib = _need(adapter)
        conn = lib.client() if self.client else lib.server()
        message, count = self.message, self.count
        if isinstance(message, str):
            return lambda: lib.send_text(conn, message, count)
        return lambda: lib.send_binary(conn, message, count)

    def verify(self, result: object) -> None:
        """Total output size, and the last output read back frame by frame."""
        _expect(isinstance(result, Sent), f"not a Sent: {result!r}")
        assert isinstance(result, Sent)
        payload = self.payload
        frame_size = len(build_frame(OP_BINARY, payload, key=b"\0" * 4 if self.client else None))
        _expect(
            result.total == self.count * frame_size,
            f"{result.total} bytes out, expected {self.count} frames of {frame_size}",
        )
        frames = list(parse_frames(b"".join(result.last)))
        _expect(len(frames) == 1, f"last output holds {len(frames)} frames, expected 1")
        frame = frames[0]
        opcode = OP_TEXT if isinstance(self.message, str) else OP_BINARY
        _expect(frame.fin and frame.opcode == opcode, f"wrong frame header: {frame!r:.80}")
        _expect(frame.masked == self.client, "client frames must be masked, server frames not")
        _expect(frame.payload == payload, "last frame's payload differs from the message")


class HandshakeWorkload(Workload):
    """``count`` server handshakes: request bytes → new connection → accept → response bytes."""

    name = "handshake"
    title = "server handshake (request -> 101)"
    unit = "hs/s"

    def __init__(self, count: int) -> None:
        self.count = count

    @property
    def work(self) -> float:
        """Handshakes."""
        return float(self.count)

    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """Nothing to open: each handshake makes its own connection."""
        lib, count = _need(adapter), self.count
        return lambda: lib.handshakes(REQUEST, count)

    def verify(self, result: object) -> None:
        """Count, status line and the Sec-WebSocket-Accept value."""
        _expect(isinstance(result, Handshakes), f"not a Handshakes: {result!r}")
        assert isinstance(result, Handshakes)
        _expect(result.count == self.count, f"{result.count} handshakes, expected {self.count}")
        _expect(result.last.startswith(b"HTTP/1.1 101 "), f"status: {result.last[:40]!r}")
        _expect(result.last.endswith(b"\r\n\r\n"), "response head not terminated")
        got = header_value(result.last, "Sec-WebSocket-Accept")
        _expect(got == accept_key(CLIENT_KEY), f"Sec-WebSocket-Accept {got!r} is wrong")


class CopyReference(Workload):
    """A plain copy of a 1 MiB bytes object: the memory bandwidth ceiling, no library."""

    name = "copy_1m"
    title = "  reference: plain 1 MiB bytes copy"
    unit = "MB/s"
    reference = True

    def __init__(self, count: int) -> None:
        self.count = count
        self.data = b""

    @property
    def work(self) -> float:
        """Megabytes copied."""
        return self.count * MIB / 1e6

    def build(self) -> None:
        """1 MiB of random bytes."""
        self.data = random.Random(1).randbytes(MIB)

    def release(self) -> None:
        """Free the source bytes."""
        self.data = b""

    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """The timed call copies the buffer ``count`` times."""
        data, count = self.data, self.count

        def copy() -> int:
            total = 0
            for _ in range(count):
                total += len(bytearray(data))
            return total

        return copy

    def verify(self, result: object) -> None:
        """Every copy had the full size."""
        _expect(result == self.count * MIB, f"copied {result!r} bytes")


def make_workloads(quick: bool) -> list[Workload]:
    """Every row of the table, in order."""
    n = Sizes.for_mode(quick)
    binary_1m = random.Random(2).randbytes(MIB)
    return [
        ReceiveWorkload(
            "recv_text_125",
            "server recv 125 B text (masked, to str)",
            message=TEXT_125,
            count=n.small,
        ),
        ReceiveWorkload(
            "recv_binary_16",
            "server recv 16 B binary (masked)",
            message=b"0123456789abcdef",
            count=n.small,
        ),
        ReceiveWorkload(
            "recv_binary_1m",
            "server recv 1 MiB binary (masked)",
            message=binary_1m,
            count=n.binary_1m,
            unit="MB/s",
        ),
        CopyReference(n.copies),
        ReceiveWorkload(
            "recv_fragmented_1m",
            "server recv 1 MiB text in 1 KiB fragments",
            message=_utf8_text(MIB),
            count=n.fragmented_1m,
            fragment=KIB,
            unit="MB/s",
        ),
        SendWorkload(
            "send_text_125",
            "server send 125 B text",
            message=TEXT_125,
            count=n.send_small,
            client=False,
        ),
        SendWorkload(
            "client_send_1m",
            "client send 1 MiB binary (masked)",
            message=binary_1m,
            count=n.send_1m,
            client=True,
            unit="MB/s",
        ),
        HandshakeWorkload(n.handshakes),
    ]
