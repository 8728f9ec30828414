"""Benchmark permessage-deflate: wsmachine against websockets' sans-IO layer, in one process.

Usage::

    python -m benchmarks.compression [--quick] [--reps N]

Four workloads, compressed text messages of 1 KiB and 64 KiB, sent (server role: ``send_text``
then taking the output) and received (server role: client frames, masked and compressed, fed
one message at a time; messages delivered as ``str``). Both libraries compress with the same
settings: LZ77 window 2**12, memory level 5, level 6, context takeover. Both receivers read
the very same bytes.

Each workload runs on a fresh connection per round (its compression context starts empty), the
libraries interleaved and rotated (A B, B A, ...), garbage collection off while timing. The
table shows medians. "ratio" is wsmachine / websockets of the medians, "best ratio" of the
best rounds (steadier on a busy machine); > 1 means wsmachine is faster. "spread" is the widest
(max - min) / median of the two libraries' rounds: the run's noise. Every timed run is checked
afterwards: received messages must equal the sent ones, and sent frames must inflate to them
with an independent zlib decompressor.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

import wsmachine
from wsmachine import Accepted, ClientConnection, Handshake, ServerConnection, Text
from wsmachine.extensions import PerMessageDeflate

__all__ = ["main"]

WINDOW_BITS = 12
MEM_LEVEL = 5
LEVEL = 6
MAX_SIZE = 1 << 24
TAIL = b"\x00\x00\xff\xff"

_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "user session event click view scroll purchase cart item price currency region "
    "status ok error retry timeout latency server client request response header "
    "body alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia "
    "peggy"
).split()


def make_texts(size: int, count: int, seed: int) -> list[str]:
    """``count`` distinct JSON-like ASCII texts of exactly ``size`` characters."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        length = 0
        while length < size:
            record = (
                f'{{"id":{rng.randrange(10**9)},"user":"{rng.choice(_WORDS)}",'
                f'"event":"{rng.choice(_WORDS)}","ts":{rng.uniform(1.7e9, 1.8e9):.3f},'
                f'"tags":["{rng.choice(_WORDS)}","{rng.choice(_WORDS)}"],'
                f'"value":{rng.gauss(100, 30):.2f}}}\n'
            )
            parts.append(record)
            length += len(record)
        texts.append("".join(parts)[:size])
    return texts


# -- connections, brought to OPEN by real in-memory handshakes (not timed) ---------------------


def _our_extension() -> PerMessageDeflate:
    return PerMessageDeflate(
        server_max_window_bits=WINDOW_BITS,
        client_max_window_bits=WINDOW_BITS,
        compress_level=LEVEL,
        mem_level=MEM_LEVEL,
        window_bits=WINDOW_BITS,
    )


def ours_pair() -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection(
        "bench", "/", extensions=[_our_extension()], max_message_size=MAX_SIZE
    )
    server = ServerConnection(extensions=[_our_extension()], max_message_size=MAX_SIZE)
    [handshake] = server.receive_data(client.data_to_send())
    assert isinstance(handshake, Handshake)
    server.accept(handshake)
    [accepted] = client.receive_data(server.data_to_send())
    assert isinstance(accepted, Accepted) and accepted.extensions, accepted
    return client, server


def ws_pair() -> tuple[ClientProtocol, ServerProtocol]:
    settings = {"memLevel": MEM_LEVEL, "level": LEVEL}
    client = ClientProtocol(
        parse_uri("ws://bench/"),
        extensions=[
            ClientPerMessageDeflateFactory(
                client_max_window_bits=WINDOW_BITS, compress_settings=settings
            )
        ],
        max_size=MAX_SIZE,
    )
    server = ServerProtocol(
        extensions=[
            ServerPerMessageDeflateFactory(
                server_max_window_bits=WINDOW_BITS, compress_settings=settings
            )
        ],
        max_size=MAX_SIZE,
    )
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    [request] = server.events_received()
    assert isinstance(request, Request)
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    [response] = client.events_received()
    assert (
        isinstance(response, Response)
        and response.status_code == 101
        and server.extensions
        and client.extensions
    )
    return client, server


# -- timed loops -------------------------------------------------------------------------------


def ours_send(server: ServerConnection, texts: Sequence[str], n: int) -> list[bytes]:
    out = []
    k = len(texts)
    for i in range(n):
        server.send_text(texts[i % k])
        out.append(server.data_to_send())
    return out


def ws_send(server: ServerProtocol, texts: Sequence[str], n: int) -> list[bytes]:
    out = []
    k = len(texts)
    for i in range(n):
        server.send_text(texts[i % k].encode())  # websockets takes bytes: encoding is work
        out.append(b"".join(server.data_to_send()))
    return out


def ours_receive(server: ServerConnection, chunks: Sequence[bytes]) -> list[str]:
    got = []
    for chunk in chunks:
        for event in server.receive_data(chunk):
            if not isinstance(event, Text):
                raise RuntimeError(f"wsmachine: unexpected {event!r}")
            got.append(event.data)
    return got


def ws_receive(server: ServerProtocol, chunks: Sequence[bytes]) -> list[str]:
    text = Opcode.TEXT
    got = []
    for chunk in chunks:
        server.receive_data(chunk)
        frame: Any
        for frame in server.events_received():
            if frame.opcode is not text or not frame.fin:
                raise RuntimeError(f"websockets: unexpected {frame!r}")
            got.append(str(frame.data, "utf-8"))  # websockets hands bytes: decoding is work
    return got


# -- checks ------------------------------------------------------------------------------------


def inflate_server_frames(chunks: Sequence[bytes]) -> list[str]:
    """Unmasked single-frame compressed messages → texts, with plain zlib (RFC 7692 §7.2.2)."""
    z = zlib.decompressobj(-WINDOW_BITS)
    texts = []
    for data in chunks:
        b0, b1 = data[0], data[1]
        if b0 != 0xC1:  # FIN, RSV1, TEXT
            raise RuntimeError(f"expected one compressed text frame, got first byte {b0:#x}")
        n, pos = b1 & 0x7F, 2
        if n == 126:
            n, pos = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, pos = int.from_bytes(data[2:10], "big"), 10
        if pos + n != len(data):
            raise RuntimeError("one frame per message expected")
        texts.append(z.decompress(data[pos:] + TAIL).decode())
    return texts


# -- workloads ---------------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    size: int
    texts: list[str]
    n: int
    #: library -> (setup returning the loop's arguments, loop, check)
    runs: dict[str, tuple[Callable[[], Any], Callable[..., Any], Callable[[Any], None]]]
    wire_bytes: dict[str, int]


def _expected(texts: Sequence[str], n: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(n)]


def send_workload(size: int, n: int) -> Workload:
    texts = make_texts(size, 64 if size <= 4096 else 8, seed=size)
    expected = _expected(texts, n)
    sizes: dict[str, int] = {}

    def check(name: str) -> Callable[[Any], None]:
        def verify(out: list[bytes]) -> None:
            if inflate_server_frames(out) != expected:
                raise RuntimeError(f"{name}: sent frames do not inflate to the messages")
            sizes[name] = sum(map(len, out))

        return verify

    return Workload(
        f"send {size // 1024} KiB text",
        size,
        texts,
        n,
        {
            "wsmachine": (lambda: (ours_pair()[1], texts, n), ours_send, check("wsmachine")),
            "websockets": (lambda: (ws_pair()[1], texts, n), ws_send, check("websockets")),
        },
        sizes,
    )


def receive_workload(size: int, n: int) -> Workload:
    texts = make_texts(size, 64 if size <= 4096 else 8, seed=size + 1)
    expected = _expected(texts, n)
    # The client stream, produced once by a client compressing as both servers negotiated
    # (context takeover, a 2**12 window): both receivers read these exact bytes.
    client, _ = ours_pair()
    chunks = []
    for text in expected:
        client.send_text(text)
        chunks.append(client.data_to_send())
    wire = sum(map(len, chunks))

    def verify(got: list[str]) -> None:
        if got != expected:
            raise RuntimeError("received messages differ from the sent ones")

    return Workload(
        f"receive {size // 1024} KiB text",
        size,
        texts,
        n,
        {
            "wsmachine": (lambda: (ours_pair()[1], chunks), ours_receive, verify),
            "websockets": (lambda: (ws_pair()[1], chunks), ws_receive, verify),
        },
        {"wsmachine": wire, "websockets": wire},
    )


def time_once(setup: Callable[[], Any], loop: Callable[..., Any]) -> tuple[float, Any]:
    args = setup()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        result = loop(*args)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed, result


def measure(workload: Workload, reps: int, warmup: int) -> dict[str, list[float]]:
    names = list(workload.runs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(warmup + reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            setup, loop, check = workload.runs[name]
            elapsed, result = time_once(setup, loop)
            check(result)
            if rep >= warmup:
                samples[name].append(workload.n / elapsed)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compression", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (a smoke run)")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per library")
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 9)
    scale = 10 if args.quick else 1
    workloads = [
        send_workload(1024, 4000 // scale),
        send_workload(65536, 200 // scale),
        receive_workload(1024, 4000 // scale),
        receive_workload(65536, 200 // scale),
    ]
    print(
        f"# permessage-deflate: wsmachine {wsmachine.__version__} vs websockets "
        f"{version('websockets')} (sans-IO); Python {platform.python_version()} "
        f"({platform.python_implementation()}), zlib {zlib.ZLIB_RUNTIME_VERSION}, "
        f"{platform.machine()}"
    )
    print(
        f"# window 2**{WINDOW_BITS}, memLevel {MEM_LEVEL}, level {LEVEL}, context takeover; "
        f"{reps} timed rounds, medians; ratio > 1: wsmachine faster"
    )
    print()
    header = (
        f"| {'workload':<19} | {'wsmachine msg/s':>15} | {'websockets msg/s':>16} | "
        f"{'ratio':>5} | {'best ratio':>10} | {'wsm MB/s':>8} | {'spread':>6} | "
        f"{'wire/msg':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for workload in workloads:
        samples = measure(workload, reps, warmup=1)
        mine = statistics.median(samples["wsmachine"])
        theirs = statistics.median(samples["websockets"])
        best = max(samples["wsmachine"]) / max(samples["websockets"])
        spread = max((max(s) - min(s)) / statistics.median(s) for s in samples.values())
        wire = workload.wire_bytes
        if wire["wsmachine"] == wire["websockets"]:
            per_msg = f"{wire['wsmachine'] / workload.n:,.0f}"
        else:
            per_msg = (
                f"{wire['wsmachine'] / workload.n:,.0f}/{wire['websockets'] / workload.n:,.0f}"
            )
        print(
            f"| {workload.name:<19} | {mine:>15,.0f} | {theirs:>16,.0f} | "
            f"{mine / theirs:>5.2f} | {best:>10.2f} | {mine * workload.size / 1e6:>8.1f} | "
            f"{spread:>6.0%} | "
            f"{per_msg:>9} |"
        )
    print()
    print("wire/msg: bytes on the wire per message (send: wsmachine/websockets when they differ)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
