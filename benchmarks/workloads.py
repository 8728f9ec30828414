"""The workloads: inputs built once, a timed call per library, and a check of what it produced.

A workload's :meth:`~Workload.prepare` does the untimed work (a fresh connection opened by a
real handshake) and returns the call to time; :meth:`~Workload.verify` then checks the result
(message count, total size, last message or output bytes) and raises :class:`VerificationError`.

Most rows time the sans-IO layers in this process. Four kinds reach further: the pure-Python
rows run wsmachine with its compiled speed-ups switched off, the permessage-deflate rows reuse
``benchmarks/compression.py``, the loopback echo rows talk to server subprocesses started by
``benchmarks/echo_loopback.py``, and the memory row counts bytes with :mod:`tracemalloc`.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from .adapters import REQUEST, Adapter, Handshakes, Received, Sent
from .machine import start_server, stop_server
from .targets import Target, at_most, fraction, ratio
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

__all__ = ["Sizes", "VerificationError", "Workload", "make_workloads", "pure_python"]

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
    deflate_1k: int
    deflate_64k: int
    #: Length of one timed loopback echo run, in seconds.
    echo_seconds: float
    #: Connections per measured batch of the memory row.
    idle_connections: int

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
                deflate_1k=1_000,
                deflate_64k=50,
                echo_seconds=0.2,
                idle_connections=150,
            )
        return cls(
            small=60_000,
            binary_1m=32,
            fragmented_1m=8,
            send_small=80_000,
            send_1m=32,
            handshakes=2_000,
            copies=300,
            deflate_1k=4_000,
            deflate_64k=200,
            echo_seconds=0.5,
            idle_connections=400,
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
    #: The libraries this row measures; ``None``: every library that loaded.
    libraries: tuple[str, ...] | None = None
    #: False when a smaller number is better (memory): ratios are then theirs / wsmachine's.
    higher_is_better: bool = True
    #: At most this many measured rounds (a row whose number does not vary needs few).
    max_rounds: int | None = None
    #: What issue 5 asks of this row.
    targets: tuple[Target, ...] = ()

    @property
    @abstractmethod
    def work(self) -> float:
        """Units of work per timed run (messages, handshakes, or megabytes)."""

    def value(self, elapsed: float, result: object) -> float:
        """The number a timed run reports: by default work per second."""
        return self.work / elapsed

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
        into: bool = False,
    ) -> None:
        self.name, self.title, self.unit = name, title, unit
        self.message, self.count, self.fragment = message, count, fragment
        #: wsmachine reads into its own buffer (get_buffer/buffer_updated); the others, which
        #: have no such path, take the same reads with receive_data.
        self.into = into
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
        if self.into and hasattr(lib, "receive_into"):
            return lambda: lib.receive_into(conn, chunks)
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


# -- the pure-Python path ------------------------------------------------------------------------

#: wsmachine.frames' compiled functions and their pure-Python twins (``_py_<name>``), swapped as
#: ``pytest --pure-python`` does (tests/conftest.py).
_COMPILED = (
    "apply_mask",
    "unmask",
    "unmask_inplace",
    "join_unmask",
    "parse_frames",
    "parse_span",
    "masked_frame",
)


@contextmanager
def pure_python() -> Iterator[None]:
    """Run wsmachine as if its optional C extension had not been built, then restore it."""
    from wsmachine import frames

    # Only the names this wsmachine has (an older tree, measured for a before/after, lacks some).
    saved = {name: getattr(frames, name) for name in _COMPILED if hasattr(frames, name)}
    try:
        for name in saved:
            setattr(frames, name, getattr(frames, f"_py_{name}"))
        yield
    finally:
        for name, function in saved.items():
            setattr(frames, name, function)


class PurePython(Workload):
    """Another row run with wsmachine's compiled speed-ups off, against pure-Python wsproto.

    The swap covers the untimed setup and the timed call; the inputs and the checks are the
    other row's.
    """

    libraries = ("wsmachine", "wsproto")

    def __init__(self, inner: Workload, name: str, title: str) -> None:
        self.inner, self.name, self.title, self.unit = inner, name, title, inner.unit

    @property
    def work(self) -> float:
        """The other row's work."""
        return self.inner.work

    def build(self) -> None:
        """The other row's inputs."""
        self.inner.build()

    def release(self) -> None:
        """Free them."""
        self.inner.release()

    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """wsmachine: set up and time inside :func:`pure_python`; wsproto: as in the other row."""
        lib = _need(adapter)
        if lib.name != "wsmachine":
            return self.inner.prepare(lib)
        with pure_python():
            call = self.inner.prepare(lib)

        def timed() -> object:
            with pure_python():
                return call()

        return timed

    def verify(self, result: object) -> None:
        """The other row's check."""
        self.inner.verify(result)


# -- permessage-deflate (benchmarks/compression.py) ----------------------------------------------


class DeflateWorkload(Workload):
    """Compressed text messages sent or received, wsmachine against websockets.

    The inputs, the connection setup (a fresh compression context per timed run, the same
    zlib settings on both sides), the loops and the checks are ``benchmarks/compression.py``'s.
    """

    libraries = ("wsmachine", "websockets")
    unit = "msg/s"

    def __init__(self, name: str, title: str, *, size: int, count: int, send: bool) -> None:
        self.name, self.title = name, title
        self.size, self.count, self.send = size, count, send
        self._runs: dict[str, Any] = {}
        self._check: Callable[[Any], None] | None = None

    @property
    def work(self) -> float:
        """Messages."""
        return float(self.count)

    def build(self) -> None:
        """The texts, and for receiving the compressed client stream both libraries read."""
        from . import compression

        make = compression.send_workload if self.send else compression.receive_workload
        self._runs = make(self.size, self.count).runs

    def release(self) -> None:
        """Drop the inputs."""
        self._runs = {}

    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """A fresh compressed connection pair (untimed); the timed call is the loop."""
        setup, loop, check = self._runs[_need(adapter).name]
        args = setup()
        self._check = check
        return lambda: loop(*args)

    def verify(self, result: object) -> None:
        """Received texts equal the sent ones; sent frames inflate to them with plain zlib."""
        assert self._check is not None
        try:
            self._check(result)
        except RuntimeError as exc:
            raise VerificationError(str(exc)) from exc


# -- loopback echo (benchmarks/echo_loopback.py) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundTrips:
    """What one timed echo run measured (its own clock: the client stops after a time)."""

    rate: float


class EchoWorkload(Workload):
    """One client echoing binary messages over loopback with the selector adapter's server
    (the ``wsmachine`` column) or websockets' asyncio server, each in its own process.

    The client is the same bare wsmachine machine on a blocking socket for both servers and
    checks every echo; a row's number is round trips per second of one timed run.
    """

    libraries = ("wsmachine", "websockets")
    unit = "rt/s"

    def __init__(self, name: str, title: str, *, size: int, seconds: float) -> None:
        self.name, self.title = name, title
        self.payload = random.Random(size).randbytes(size)
        self.seconds = seconds
        self._processes: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}

    @property
    def work(self) -> float:
        """Unused: the client measures its own rate."""
        return 1.0

    def value(self, elapsed: float, result: object) -> float:
        """The client's round trips per second."""
        assert isinstance(result, RoundTrips)
        return result.rate

    def build(self) -> None:
        """Start both servers, connect a client to each, warm both up."""
        from . import echo_loopback

        try:
            for name in echo_loopback.SERVERS:
                self._processes[name] = start_server("benchmarks.echo_loopback", name)
            for name, (_, port) in self._processes.items():
                self._clients[name] = echo_loopback.Client(port)
            for client in self._clients.values():
                client.round_trips(b"w" * 64, 0.1)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Close the clients, stop the servers."""
        for client in self._clients.values():
            with suppress(OSError):
                client.close()
        for process, _ in self._processes.values():
            stop_server(process)
        self._clients, self._processes = {}, {}

    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """The timed call echoes for ``seconds`` through the server named like the adapter."""
        client, payload, seconds = self._clients[_need(adapter).name], self.payload, self.seconds

        def echo() -> RoundTrips:
            try:
                return RoundTrips(client.round_trips(payload, seconds))
            except AssertionError as exc:  # the client's own check of every echo
                raise VerificationError(str(exc)) from exc

        return echo

    def verify(self, result: object) -> None:
        """The client checked every echo while timing; here only that it ran."""
        _expect(isinstance(result, RoundTrips) and result.rate > 0, f"no round trips: {result!r}")


# -- memory of an idle connection -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Footprint:
    """Bytes per connection, and the connections (kept alive until checked)."""

    per_connection: float
    connections: list[Any]


class MemoryWorkload(Workload):
    """Bytes allocated per idle OPEN server connection, without compression (tracemalloc).

    Each connection is opened by a real handshake (read the request, accept, take the 101) and
    kept. Under tracemalloc a first batch absorbs one-time costs (caches, free lists); the number
    is the growth of traced memory over a second batch of as many connections, divided by their
    count: what each further connection costs, all it keeps alive included.
    """

    name = "memory_idle"
    title = "idle OPEN server connection (tracemalloc)"
    unit = "B/conn"
    higher_is_better = False
    max_rounds = 3

    def __init__(self, count: int) -> None:
        self.count = count

    @property
    def work(self) -> float:
        """Unused: the number is bytes, not a rate."""
        return 1.0

    def value(self, elapsed: float, result: object) -> float:
        """Bytes per connection."""
        assert isinstance(result, Footprint)
        return result.per_connection

    def prepare(self, adapter: Adapter | None) -> Callable[[], object]:
        """The measured call opens ``2 * count`` connections under tracemalloc."""
        lib, n = _need(adapter), self.count

        def footprint() -> Footprint:
            connections: list[Any] = [None] * (2 * n)
            tracemalloc.start()
            try:
                for i in range(n):
                    connections[i] = lib.server()
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
                for i in range(n, 2 * n):
                    connections[i] = lib.server()
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            return Footprint((after - before) / n, connections)

        return footprint

    def verify(self, result: object) -> None:
        """Every connection still OPEN, and a plausible number."""
        _expect(isinstance(result, Footprint), f"not a Footprint: {result!r}")
        assert isinstance(result, Footprint)
        _expect(len(result.connections) == 2 * self.count, "connections missing")
        states = {getattr(getattr(c, "state", None), "name", None) for c in result.connections}
        _expect(states == {"OPEN"}, f"connection states after the handshakes: {states}")
        _expect(result.per_connection > 0, f"{result.per_connection} bytes per connection")


# -- the table -----------------------------------------------------------------------------------


def _aim(workload: Workload, *targets: Target) -> Workload:
    workload.targets = targets
    return workload


def make_workloads(quick: bool) -> list[Workload]:
    """Every row of the table, in the order of issue 5's table."""
    n = Sizes.for_mode(quick)
    binary_1m = random.Random(2).randbytes(MIB)

    def recv_binary_1m() -> ReceiveWorkload:
        return ReceiveWorkload(
            "recv_binary_1m",
            "server recv 1 MiB binary (masked)",
            message=binary_1m,
            count=n.binary_1m,
            unit="MB/s",
        )

    def client_send_1m() -> SendWorkload:
        return SendWorkload(
            "client_send_1m",
            "client send 1 MiB binary (masked)",
            message=binary_1m,
            count=n.send_1m,
            client=True,
            unit="MB/s",
        )

    binary_64k = binary_1m[: 64 * KIB]
    text_1m, text_64k = _utf8_text(MIB), _utf8_text(64 * KIB)

    def recv(name: str, title: str, message: str | bytes, count: int, into: bool) -> Workload:
        return ReceiveWorkload(name, title, message=message, count=count, unit="MB/s", into=into)

    def large_receives() -> list[Workload]:
        """Issue 13's large receive rows: 1 MiB / 64 KiB masked binary and text (decoded),
        through receive_data(bytes) and through the receive-into path, compiled and pure."""
        rows: list[Workload] = []
        sizes = (
            ("1m", "1 MiB", binary_1m, text_1m, n.binary_1m),
            ("64k", "64 KiB", binary_64k, text_64k, n.binary_1m * 16),
        )
        for label, size, binary, text, count in sizes:
            for kind, message in (("binary", binary), ("text", text)):
                for into in (False, True):
                    if (label, kind, into) == ("1m", "binary", False):
                        continue  # recv_binary_1m, issue 5's row, above
                    name = f"recv_{kind}_{label}" + ("_into" if into else "")
                    how = "receive-into" if into else "receive_data"
                    title = f"server recv {size} {kind} (masked), {how}"
                    targets = (
                        (ratio(websockets, 2.0), fraction(CopyReference.name, 0.40, "copy"))
                        if kind == "binary" and into
                        else (ratio(websockets, 2.0),)
                        if kind == "binary"
                        else (ratio(websockets, 1.5),)
                    )
                    rows.append(_aim(recv(name, title, message, count, into), *targets))
            for kind, message in (("binary", binary), ("text", text)):
                if (label, kind) == ("1m", "binary"):
                    continue  # recv_binary_1m_pure, issue 5's row, below
                inner = recv(f"recv_{kind}_{label}", "", message, count, False)
                title = f"server recv {size} {kind}, pure Python"
                pure = PurePython(inner, f"recv_{kind}_{label}_pure", title)
                rows.append(_aim(pure, ratio(wsproto, 1.0)))
        return rows

    websockets, wsproto = "websockets", "wsproto"
    return [
        _aim(
            ReceiveWorkload(
                "recv_text_125",
                "server recv 125 B text (masked, to str)",
                message=TEXT_125,
                count=n.small,
            ),
            ratio(websockets, 2.0),
            ratio(wsproto, 8.0),
        ),
        _aim(
            ReceiveWorkload(
                "recv_binary_16",
                "server recv 16 B binary (masked)",
                message=b"0123456789abcdef",
                count=n.small,
            ),
            ratio(websockets, 2.0),
        ),
        _aim(
            recv_binary_1m(),
            ratio(websockets, 2.0),
            fraction(CopyReference.name, 0.25, "copy"),
        ),
        CopyReference(n.copies),
        _aim(
            PurePython(
                recv_binary_1m(), "recv_binary_1m_pure", "server recv 1 MiB binary, pure Python"
            ),
            ratio(wsproto, 1.0),
        ),
        *large_receives(),
        _aim(
            SendWorkload(
                "send_text_125",
                "server send 125 B text",
                message=TEXT_125,
                count=n.send_small,
                client=False,
            ),
            ratio(websockets, 1.5),
        ),
        _aim(client_send_1m(), ratio(websockets, 1.0)),
        _aim(
            PurePython(
                client_send_1m(), "client_send_1m_pure", "client send 1 MiB binary, pure Python"
            ),
            ratio(wsproto, 1.0),
        ),
        _aim(
            ReceiveWorkload(
                "recv_fragmented_1m",
                "server recv 1 MiB text in 1 KiB fragments",
                message=_utf8_text(MIB),
                count=n.fragmented_1m,
                fragment=KIB,
                unit="MB/s",
            ),
            ratio(websockets, 2.0),
        ),
        _aim(HandshakeWorkload(n.handshakes), ratio(websockets, 1.5)),
        *(
            _aim(
                DeflateWorkload(
                    f"deflate_{verb}_{label}",
                    f"deflate: server {verb} {size // KIB} KiB text",
                    size=size,
                    count=count,
                    send=verb == "send",
                ),
                ratio(websockets, 1.0),
            )
            for verb in ("send", "recv")
            for label, size, count in (("1k", KIB, n.deflate_1k), ("64k", 64 * KIB, n.deflate_64k))
        ),
        *(
            _aim(
                EchoWorkload(
                    f"echo_{label}",
                    f"loopback echo {text}, selector vs asyncio",
                    size=size,
                    seconds=n.echo_seconds,
                ),
                ratio(websockets, 2.0),
            )
            for label, text, size in (("16", "16 B", 16), ("1k", "1 KiB", KIB))
        ),
        _aim(MemoryWorkload(n.idle_connections), at_most(1000, "B")),
    ]
