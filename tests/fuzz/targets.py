"""The fuzz targets: plain functions of one ``bytes`` input, shared by atheris and pytest.

Each target raises only when wsmachine misbehaves: an exception other than the documented
ones escapes, an event of an unknown type appears, the outcome depends on how the input was
split into reads, or a limit is passed. ``tests/fuzz/test_corpus.py`` replays the stored
corpus through them as regular tests; ``python -m tests.fuzz.run`` fuzzes them with atheris.

Inputs: the first byte chooses how the rest is cut into reads (``_reads``), so the fuzzer
explores splits as well as contents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Connection,
    Event,
    Handshake,
    HTTPRequest,
    OriginPolicy,
    Ping,
    Pong,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine import frames as frames_module
from wsmachine.extensions import PerMessageDeflate
from wsmachine.extensions.permessage_deflate import PerMessageDeflateCodec
from wsmachine.handshake import accept_key
from wsmachine.headers import (
    build_extension_header,
    parse_extension_list,
    parse_token_list,
)
from wsmachine.negotiation import Agreement

EVENT_TYPES = (Handshake, HTTPRequest, Accepted, Rejected, Text, Binary, Ping, Pong, Close)
#: The client's key in the fuzzed handshakes, fixed so the corpus can hold valid answers.
CLIENT_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MAX_MESSAGE = 256
UPGRADE_REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + CLIENT_KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)
ACCEPT_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + accept_key(CLIENT_KEY).encode() + b"\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)
_RANDOM_HEADERS = {b"sec-websocket-key", b"sec-websocket-accept"}
ORIGINS = OriginPolicy(
    ["https://example.com", "http://localhost:8000", re.compile(r"https://[a-z]+\.example\.org")],
    allow_missing=True,
    allow_same_host=True,
)


class BrokenPromiseError(AssertionError):
    """wsmachine broke one of its promises on this input."""


def _check(condition: bool, message: str, *args: object) -> None:
    """Raise with ``message % args`` unless ``condition``: formatted only on failure, since
    the targets check on every execution (an eager f-string cost a third of frames_client's
    time)."""
    if not condition:
        raise BrokenPromiseError(message % args if args else message)


def _reads(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split an input into (the stream, the stream cut into reads) by its first byte."""
    if not data:
        return b"", []
    head, stream = data[0], data[1:]
    sizes = [1 + (head & 0x0F), 1 + (head >> 4) * 3]  # alternate two read sizes
    pieces = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = sizes[i & 1]
        pieces.append(stream[pos : pos + size])
        pos += size
        i += 1
    return stream, pieces


def _normalized(event: Event) -> object:
    if isinstance(event, Handshake | Accepted):
        headers = tuple(h for h in event.headers if h[0] not in _RANDOM_HEADERS)
        event = dataclasses.replace(event, headers=headers)
    error = getattr(event, "error", None)
    return (event, None if error is None else type(error))


def _run(conn: Connection, pieces: list[bytes], accept: bool) -> tuple[list[object], object]:
    """Feed the pieces and then the end of the stream; check each call's events."""
    seen: list[object] = []
    ended = False
    for piece in pieces:
        before = conn.state
        events = conn.receive_data(piece)
        if accept:
            for event in list(events):
                if isinstance(event, Handshake) and isinstance(conn, ServerConnection):
                    events += conn.accept(event)
        _check_events(conn, events, ended, before)
        ended = ended or any(isinstance(e, Close | Rejected) for e in events)
        seen += map(_normalized, events)
        owing = conn.state is State.REMOTE_CLOSING
        conn.data_to_send()
        _check(not owing or conn.state is State.CLOSED, "data_to_send() kept the owed Close")
    before = conn.state
    events = conn.receive_eof()
    _check_events(conn, events, ended, before)
    seen += map(_normalized, events)
    records = (conn.close_sent, conn.close_received, conn.closed_first)
    return seen, (conn.state, conn.should_close(), conn.close_expected(), records)


def _check_events(conn: Connection, events: list[Event], ended: bool, before: State) -> None:
    for event in events:
        _check(isinstance(event, EVENT_TYPES), "unknown event %r", event)
        _check(not ended, "event %r after the connection ended", event)
        if isinstance(event, Close) and event.error is not None:
            _check(isinstance(event.error, RemoteProtocolError), repr(event.error))
            _check(event.error.close_code == event.code, "code mismatch in %r", event)
        if isinstance(event, Text | Binary):
            _check(len(event.data) <= MAX_MESSAGE * 4, "a message passed max_message_size")
        if isinstance(event, Rejected) and event.error is not None:
            _check(isinstance(event.error, RemoteProtocolError), repr(event.error))
    last = events[-1] if events else None
    if isinstance(last, Close):
        # The peer's Close or a violation after the handshake leaves this side's Close owed
        # until data_to_send() (REMOTE_CLOSING); after our Close (CLOSING), or when the
        # stream ended (1006), the connection is over at once.
        over = last.code == 1006 or before is State.CLOSING
        expected = State.CLOSED if over else State.REMOTE_CLOSING
        _check(
            conn.state is expected,
            "Close event from %s: state %s, not %s",
            before.name,
            conn.state.name,
            expected.name,
        )


def _split_invariant(
    make: Callable[[], tuple[Connection, bytes]], data: bytes, accept: bool
) -> None:
    stream, pieces = _reads(data)
    conn, prefix = make()
    whole = _run(conn, [prefix + stream] if prefix or stream else [], accept)
    conn, prefix = make()
    split = _run(conn, [prefix, *pieces] if prefix else pieces, accept)
    _check(whole == split, "outcome depends on the split:\n%s\n%s", whole, split)


def _codec() -> PerMessageDeflateCodec:
    return PerMessageDeflateCodec(
        send_window_bits=15,
        send_no_context_takeover=False,
        receive_window_bits=15,
        receive_no_context_takeover=False,
    )


def _agreed() -> Agreement:
    return Agreement(subprotocol=None, extensions=(), codecs=(_codec(),))


def _open_server() -> tuple[Connection, bytes]:
    # Opened directly, not through a handshake: h11 would take most of each execution.
    server = ServerConnection.for_stream(_agreed(), max_message_size=MAX_MESSAGE, max_fragments=8)
    return server, b""


def _new_client() -> ClientConnection:
    client = ClientConnection(
        "h",
        max_message_size=MAX_MESSAGE,
        extensions=[PerMessageDeflate()],
        max_handshake_size=2048,
        max_handshake_line=256,
        max_handshake_headers=16,
        max_rejection_body=64,
    )
    handshake = client._handshake
    assert handshake is not None
    handshake._key = CLIENT_KEY  # so that the corpus can hold a valid answer
    client.data_to_send()
    return client


def _open_client() -> tuple[Connection, bytes]:
    return ClientConnection.for_stream(_agreed(), max_message_size=MAX_MESSAGE, stream=True), b""


# -- the targets ------------------------------------------------------------------------------


def frames_server(data: bytes) -> None:
    """Frames from a client to an OPEN server with permessage-deflate on."""
    _split_invariant(_open_server, data, accept=False)


def frames_client(data: bytes) -> None:
    """Frames from a server to an OPEN client with permessage-deflate on."""
    _split_invariant(_open_client, data, accept=False)


def handshake_server(data: bytes) -> None:
    """Anything a client may send to a new server: the request, then early frames."""

    def make() -> tuple[Connection, bytes]:
        return (
            ServerConnection(
                max_message_size=MAX_MESSAGE,
                extensions=[PerMessageDeflate()],
                origin_policy=ORIGINS,
                max_handshake_size=2048,
                max_handshake_line=256,
                max_handshake_headers=16,
            ),
            b"",
        )

    _split_invariant(make, data, accept=True)


def handshake_client(data: bytes) -> None:
    """Anything a server may answer a client with: 1xx, 101, refusals with bodies, frames."""
    _split_invariant(lambda: (_new_client(), b""), data, accept=False)


def extension_headers(data: bytes) -> None:
    """The header-list grammar (RFC 7230 §7, RFC 6455 §9.1) and permessage-deflate's checks."""
    text = data.decode("latin-1")
    try:
        offers = parse_extension_list([text])
    except RemoteProtocolError:
        offers = None
    if offers is not None:
        again = parse_extension_list([build_extension_header(offers)])
        _check(again == offers, "round trip changed %r into %r", offers, again)
        deflate = [o for o in offers if o.name == "permessage-deflate"]
        PerMessageDeflate().accept_offers(deflate)
        PerMessageDeflate(client_max_window_bits=10).accept_offers(deflate)
        for offer in deflate[:4]:
            with contextlib.suppress(RemoteProtocolError):
                PerMessageDeflate().accept_response(offer)
    for header, slash in (("Sec-WebSocket-Protocol", False), ("Upgrade", True)):
        try:
            tokens = parse_token_list([text], header, allow_slash=slash)
        except RemoteProtocolError:
            continue
        _check(all(tokens), "an empty token")


def inflate(data: bytes) -> None:
    """permessage-deflate inflation: bounded output, only RemoteProtocolError on bad data,
    and compress → inflate is the identity."""
    if len(data) < 2:
        return
    control, rest = data[0], data[1:]
    bits = 9 + control % 7
    reset = bool(control & 0x80)
    limit = 1 + (control >> 3) % 8 * 64
    codec = PerMessageDeflateCodec(
        send_window_bits=bits,
        send_no_context_takeover=reset,
        receive_window_bits=bits,
        receive_no_context_takeover=reset,
    )
    # The input as compressed frames of up to 3 messages, cut at its 0xFF bytes.
    frames = rest.split(b"\xff")
    opcode, rsv = 0x2, 0x40
    try:
        budget = limit
        for i, payload in enumerate(frames):
            fin = i == len(frames) - 1 or (payload[:1] == b"\x00")
            out = codec.decode(opcode, fin, rsv, payload, budget)
            _check(len(out) <= budget, "inflated %d bytes past the budget %d", len(out), budget)
            budget -= len(out)
            opcode, rsv = (0x2, 0x40) if fin else (0x0, 0)
            if fin:
                budget = limit
    except RemoteProtocolError as error:
        _check(error.close_code in (1002, 1007, 1009), "close code %d", error.close_code)
    # Identity: what we compress, a fresh peer inflates back, message after message.
    sender = PerMessageDeflateCodec(
        send_window_bits=bits,
        send_no_context_takeover=reset,
        receive_window_bits=bits,
        receive_no_context_takeover=reset,
    )
    receiver = PerMessageDeflateCodec(
        send_window_bits=bits,
        send_no_context_takeover=reset,
        receive_window_bits=bits,
        receive_no_context_takeover=reset,
    )
    for message in rest.split(b"\xfe")[:4]:
        rsv_bits, wire = sender.encode(0x2, True, message)
        out = receiver.decode(0x2, True, rsv_bits, wire, len(message))
        _check(out == message, "compress then inflate changed the message")


def frame_parser(data: bytes) -> None:
    """The compiled frame parser and masking against their pure-Python twins (differential):
    same frames, same offset, same fault, for any buffer and settings."""
    if len(data) < 2:
        return
    control, buf = data[0], data[1:]
    expect_masked = bool(control & 1)
    max_size = (1, 125, 126, 65535, 65536, 1 << 20, (1 << 63) - 1)[(control >> 1) % 7]
    rsv_forbidden = 0x70 & ~((control >> 4) << 4)
    python = frames_module._py_parse_frames(buf, expect_masked, max_size, rsv_forbidden)
    compiled = frames_module.parse_frames(buf, expect_masked, max_size, rsv_forbidden)
    _check(compiled == python, "C and Python parsers differ:\n%r\n%r", compiled, python)
    key = (buf + b"\x00\x00\x00\x00")[:4]
    _check(
        frames_module.apply_mask(buf, key) == frames_module._py_apply_mask(buf, key),
        "C and Python masking differ",
    )
    if len(buf) >= 4:  # unmask reads its key from the 4 bytes before start
        start = min(len(buf), 4 + control % 8)
        end = max(start, len(buf) - control % 5)
        _check(
            frames_module.unmask(buf, start, end) == frames_module._py_unmask(buf, start, end),
            "C and Python unmask differ",
        )
        # The receive-into path: part of the buffer unmasked in place, then parsed past it.
        offset = min(end, start + control % 3)
        in_c, in_python = bytearray(buf), bytearray(buf)
        frames_module.unmask_inplace(in_c, start, offset, end)
        frames_module._py_unmask_inplace(in_python, start, offset, end)
        _check(in_c == in_python, "C and Python unmask_inplace differ")
        rules = (expect_masked, max_size, rsv_forbidden)
        span = (control % 3, len(buf), min(len(buf), control % 3 + control % 17))
        _check(
            frames_module.parse_span(in_c, *span, *rules)
            == frames_module._py_parse_span(in_c, *span, *rules),
            "C and Python parse_span differ",
        )
    parts = [buf[: control % 7], buf[control % 7 : control % 23], buf[control % 23 :]]
    for mask in (key, b""):
        _check(
            frames_module.join_unmask(parts, mask) == frames_module._py_join_unmask(parts, mask),
            "C and Python join_unmask differ",
        )
    header = buf[:14]
    _check(
        frames_module.masked_frame(header, key, buf)
        == frames_module._py_masked_frame(header, key, buf),
        "C and Python masked_frame differ",
    )


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames_server": frames_server,
    "frames_client": frames_client,
    "handshake_server": handshake_server,
    "handshake_client": handshake_client,
    "extension_headers": extension_headers,
    "inflate": inflate,
    "frame_parser": frame_parser,
}
