"""Wire-format helpers: the bytes the benchmarks feed, built outside the timed region.

Everything here is written independently of the libraries under test (RFC 6455 §5.2 framing,
§5.3 masking, §4.2.2 accept key), so a bug in one library cannot hide in the inputs.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "OP_BINARY",
    "OP_CONT",
    "OP_TEXT",
    "ParsedFrame",
    "accept_key",
    "build_frame",
    "fragment_frames",
    "handshake_request",
    "handshake_response",
    "header_value",
    "mask",
    "parse_frames",
    "split",
]

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The sample nonce of RFC 6455 §1.3; every benchmark handshake uses it.
CLIENT_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (RFC 6455 §5.3); its own inverse."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * ((n + 3) // 4))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def build_frame(
    opcode: int, payload: bytes, *, fin: bool = True, key: bytes | None = None
) -> bytes:
    """Return one frame's bytes; ``key`` (4 bytes) masks it, as a client must."""
    b0 = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if key is not None else 0
    n = len(payload)
    if n < 126:
        header = bytes((b0, mask_bit | n))
    elif n < 1 << 16:
        header = bytes((b0, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((b0, mask_bit | 127)) + n.to_bytes(8, "big")
    if key is None:
        return header + payload
    return header + key + mask(payload, key)


def fragment_frames(
    opcode: int, payload: bytes, fragment_size: int, rng: random.Random
) -> Iterator[bytes]:
    """Yield one message as masked frames of ``fragment_size`` payload bytes each."""
    pieces = [payload[i : i + fragment_size] for i in range(0, len(payload), fragment_size)]
    for index, piece in enumerate(pieces):
        yield build_frame(
            opcode if index == 0 else OP_CONT,
            piece,
            fin=index == len(pieces) - 1,
            key=rng.randbytes(4),
        )


def split(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into chunks of ``size`` bytes, as reads off a socket would (mid-frame too)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def accept_key(client_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1(client_key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_request(key: str = CLIENT_KEY) -> bytes:
    """A browser-like upgrade request (RFC 6455 §4.1), without extension offers."""
    lines = [
        "GET /chat?room=bench HTTP/1.1",
        "Host: server.example.com",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Accept: */*",
        "Accept-Language: en-US,en;q=0.5",
        "Accept-Encoding: gzip, deflate, br",
        "Sec-WebSocket-Version: 13",
        "Origin: https://server.example.com",
        f"Sec-WebSocket-Key: {key}",
        "Connection: keep-alive, Upgrade",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "Upgrade: websocket",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def header_value(message: bytes, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive) in an HTTP message head."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    wanted = name.lower()
    for line in head.split("\r\n")[1:]:
        field, _, value = line.partition(":")
        if field.strip().lower() == wanted:
            return value.strip()
    return None


def handshake_response(request: bytes) -> bytes:
    """A minimal valid 101 answer to a client's upgrade ``request``."""
    key = header_value(request, "Sec-WebSocket-Key")
    if key is None:
        raise ValueError("the client request carries no Sec-WebSocket-Key")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    """One frame read back from a library's output, payload already unmasked."""

    fin: bool
    opcode: int
    masked: bool
    payload: bytes


def parse_frames(data: bytes) -> Iterable[ParsedFrame]:
    """Read back every complete frame in ``data`` (to check what a library sent)."""
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        key = None
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        if len(payload) != n:
            raise ValueError(f"truncated frame: {len(payload)} of {n} payload bytes")
        pos += n
        yield ParsedFrame(
            fin=bool(b0 & 0x80),
            opcode=b0 & 0x0F,
            masked=key is not None,
            payload=payload if key is None else mask(payload, key),
        )
