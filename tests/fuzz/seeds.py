"""Hand-made seed inputs for the fuzz targets (written to the corpus by ``--seed-corpus``).

Each input starts with the byte that chooses how the rest is cut into reads (see
``targets._reads``): 0x00 means reads of 1 byte and 1 byte, 0x35 of 6 and 10, 0xFF of 16 and 46.
"""

from __future__ import annotations

from tests.fuzz.targets import ACCEPT_RESPONSE, UPGRADE_REQUEST
from wsmachine.extensions.permessage_deflate import PerMessageDeflateCodec
from wsmachine.testing import FrameBuilder

SPLITS = (b"\x00", b"\x35", b"\xff")


def _compressed(message: bytes, masked: bool) -> bytes:
    codec = PerMessageDeflateCodec(
        send_window_bits=15,
        send_no_context_takeover=False,
        receive_window_bits=15,
        receive_no_context_takeover=False,
    )
    rsv, payload = codec.encode(0x2, True, message)
    return FrameBuilder(client=masked).frame(0x2, payload, rsv=rsv)


def _frames(masked: bool) -> list[bytes]:
    b = FrameBuilder(client=masked)
    valid = [
        b.text("hello") + b.binary(b"\x00\x01") + b.ping(b"p") + b.pong(),
        b.message("fragmented ✓", [3, 0, 4], between=b.ping()),
        b.binary(b"x" * 200) + b.close(1000, "bye"),
        _compressed(b"compressed " * 10, masked) + b.text("after"),
        b.close(None),
    ]
    invalid = [case.data for case in b.invalid_frames()]
    return [split + data for data in valid + invalid for split in SPLITS[:2]]


def _responses() -> list[bytes]:
    b = FrameBuilder(client=False)
    responses = [
        ACCEPT_RESPONSE,
        ACCEPT_RESPONSE + b.text("early") + b.close(1001),
        b"HTTP/1.1 100 Continue\r\n\r\n" + ACCEPT_RESPONSE,
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!",
        b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 401 No\r\nConnection: close\r\n\r\nbody until the end",
        ACCEPT_RESPONSE.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        ACCEPT_RESPONSE.replace(b"deflate", b"deflate; server_max_window_bits=10"),
    ]
    return [split + data for data in responses for split in SPLITS]


def _requests() -> list[bytes]:
    b = FrameBuilder(client=True)
    requests = [
        UPGRADE_REQUEST,
        UPGRADE_REQUEST + b.text("early") + b.ping(),
        UPGRADE_REQUEST.replace(b"13", b"8"),
        UPGRADE_REQUEST.replace(b"GET", b"POST"),
        UPGRADE_REQUEST.replace(
            b"permessage-deflate", b'permessage-deflate; client_max_window_bits="10", x'
        ),
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        UPGRADE_REQUEST.replace(b"Host: h\r\n", b"Host: h\r\nOrigin: https://example.com\r\n"),
        UPGRADE_REQUEST.replace(b"Host: h\r\n", b"X: " + b"y" * 300 + b"\r\n"),
        *(
            UPGRADE_REQUEST.replace(b"Host: h\r\n", b"Host: h\r\nOrigin: " + origin + b"\r\n")
            for origin in (
                b"https://evil.com",
                b"https://app.example.org",
                b"HTTPS://EXAMPLE.COM:443",
                b"http://h",
                b"http://[::1]:80",
                b"null",
            )
        ),
    ]
    return [split + data for data in requests for split in SPLITS]


SEEDS: dict[str, list[bytes]] = {
    "frames_server": _frames(masked=True),
    "frames_client": _frames(masked=False),
    "handshake_server": _requests(),
    "handshake_client": _responses(),
    "extension_headers": [
        b"permessage-deflate; client_max_window_bits",
        b'permessage-deflate; server_max_window_bits="10"; client_no_context_takeover, x-foo',
        b', ,a;b=c;d, e ;f = "g"',
        b'x; q="unterminated',
        b"websocket, h2c/1.1, Upgrade",
    ],
    "frame_parser": [
        bytes([control]) + data[1:]
        for control in (0x00, 0x01, 0x0B, 0x41)
        for data in _frames(masked=bool(control & 1))[::6]
    ],
    "inflate": [
        b"\x06" + _compressed(b"hello hello hello", False)[2:],
        b"\x86" + b"\xf2\x48\xcd\xc9\xc9\x07\x00\xff" + b"\x00",
        b"\x38" + b"\x00\x05\x00\xfa\xffhello\xfeworld",
        b"\x01\xff\xff\xff\xff",
    ],
}
