"""Differential fuzz targets: wsmachine against ``websockets``' sans-IO protocol.

Both libraries read the same bytes: frames in the server role (masked) and the client role
(unmasked), and the opening handshake in both roles. Where both are strict by the RFC they
must agree: on the frames, on accepting or refusing, and on the close code of a refusal.
Where the RFCs leave room, or one side is knowingly stricter, the input is recognised and set
aside by a named divergence (``DIVERGENCES``), each documented in
``docs/explanation/security.rst`` with its RFC section.

Inputs use the other targets' format (``targets._reads``: the first byte picks a split, which
these targets ignore), so the frames and handshake corpora seed them.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import ProtocolError
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Close as WsClose
from websockets.frames import Opcode as WsOpcode
from websockets.http11 import Request, Response
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from tests.fuzz.targets import CLIENT_KEY, BrokenPromiseError, _reads
from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Connection,
    Handshake,
    HTTPRequest,
    Ping,
    Pong,
    Rejected,
    ServerConnection,
    Text,
)
from wsmachine.extensions import PerMessageDeflate
from wsmachine.frames import Frame, _py_parse_frames
from wsmachine.negotiation import Agreement

MAX_MESSAGE = 256
#: Divergences, by name: where the two libraries may differ on purpose (see the module doc).
DIVERGENCES = {
    "close-inside-fragmented-message": "RFC 6455 §5.4: control frames may be injected in the "
    "middle of a fragmented message; websockets refuses a Close there with 1002.",
    "control-frame-counted-in-message": "RFC 6455 §5.4: a control frame injected between "
    "the fragments of a message is not part of it; websockets counts its payload against "
    "what is left of the message's size limit and fails with 1009, wsmachine takes it.",
    "fail-fast-timing": "RFC 6455 §5.2, §8.1 set no moment for failing: each side checks some "
    "rules when the bytes arrive, the other when the frame is complete; padded to complete "
    "the frame, the waiting side must fail the same way.",
    "non-minimal-length": "RFC 6455 §5.2: the minimal length encoding MUST be used; "
    "websockets accepts any, wsmachine fails with 1002.",
    "length-top-bit": "RFC 6455 §5.2: the 64-bit length's top bit MUST be 0; wsmachine "
    "fails with 1002, websockets with 1009 (over its limit).",
    "close-code-and-reason-both-invalid": "RFC 6455 §7.4.1 and §8.1 rank neither fault; "
    "wsmachine reports the code (1002), websockets the reason (1007).",
    "several-faults-in-one-header": "RFC 6455 §5.2 ranks no fault over another: for a header "
    "that breaks a rule (1002: §5.2, or §5.4's order of fragments) and declares a payload "
    "over the limit (1009), wsmachine reports the rule, websockets the size.",
    "utf8-surrogate-prefix": "RFC 3629 §3 excludes surrogates: ED A0-BF can never become "
    "valid; wsmachine fails there (1007), Python's incremental decoder, which websockets' I/O "
    "layers use, waits for one more byte. The harness fails there too.",
    "ctl-in-field": "RFC 9110 §5.5: recipients MAY retain control characters other than "
    "CR, LF and NUL in field values; h11 (wsmachine) does, websockets refuses them.",
    "upgrade-list": "RFC 6455 §4.2.1: the Upgrade field must contain 'websocket'; wsmachine "
    "accepts it among other tokens (or repeated), websockets only alone.",
    "size-and-utf8-both-broken": "RFC 6455 §8.1 and §10.4 rank neither: a continuation "
    "frame takes a text message past the limit and breaks UTF-8; wsmachine checks the "
    "message size when the frame is complete and UTF-8 as bytes arrive (1007), websockets "
    "the size at the header (1009).",
    "http-version": "RFC 6455 §4.1: the request's HTTP version MUST be at least 1.1, and "
    "RFC 9110 §2.5 has a recipient take a later 1.x as the 1.1 it supports; wsmachine "
    "accepts HTTP/1.2 and up in both roles, websockets only HTTP/1.1.",
    "origin-field": "RFC 6454 §7: Origin holds a serialized origin or null; wsmachine "
    "answers 400 to anything else, websockets (checking no origins) accepts it.",
    "framing-field-in-101": "RFC 9112 §6.1, RFC 9110 §8.6: a server MUST NOT send "
    "Transfer-Encoding or Content-Length in a 1xx response; wsmachine (h11) refuses a 101 "
    "with a transfer coding it does not know or an invalid length, websockets ignores them.",
    "bare-lf": "RFC 9112 §2.2: a recipient MAY recognize a single LF as a line terminator; "
    "h11 (wsmachine) does, websockets refuses.",
    "request-target": "RFC 7230 §5.3.1, RFC 6455 §4.1: the request-target of an upgrade is "
    "an origin-form starting with '/', without a fragment (RFC 6455 §3); wsmachine refuses "
    "others (400), websockets accepts.",
    "host-field": "RFC 7230 §5.4: a server MUST answer 400 to a request with no Host, "
    "several, or an invalid one, and an http URI's host is never empty (RFC 9110 §4.2.1); "
    "wsmachine does, websockets accepts.",
    "interim-1xx": "RFC 7231 §6.2: a client MUST be able to parse 1xx responses before the "
    "final one; wsmachine skips them, websockets refuses.",
    "reason-phrase": "RFC 7230 §3.1.2: a client SHOULD ignore the reason-phrase; wsmachine "
    "does, websockets refuses one with control characters.",
    "ctl-in-target": "RFC 9112 §3.2, RFC 3986 §3.3: a request-target has no control "
    "characters; wsmachine refuses one (400), websockets accepts.",
    "empty-extension-list": "RFC 9110 §5.6.1.2: a recipient MUST accept empty list elements "
    "and ignore them; wsmachine reads a Sec-WebSocket-Extensions of only commas as no "
    "extension, websockets refuses it (RFC 6455 §9.1's 1#extension needs one).",
}
_QUIET = logging.getLogger("wsmachine.fuzz.websockets")
_QUIET.disabled = True  # websockets logs each failure; the outcome is compared instead

#: One message, control frame or end: ("text" | "binary", payload), ("ping" | "pong",
#: payload), ("close", code, reason), or ("fail", close code) for a refusal.
Outcome = tuple[Any, ...]


#: Set, a long run records each new kind of disagreement in this folder and goes on, rather
#: than stopping at the first (libFuzzer ends a run at its first crash).
RECORD = os.environ.get("WSMACHINE_FUZZ_RECORD")


def _shape(last: list[Outcome]) -> object:
    """An outcome without its payload: its kind, and the code of a Close or a failure."""
    return [(o[0], o[1]) if o[0] in ("close", "fail") else o[:1] for o in last]


def _disagree(what: str, ours: object, theirs: object, data: bytes) -> None:
    error = BrokenPromiseError(
        f"wsmachine and websockets disagree on {what} for {data!r}:\n"
        f"  wsmachine:  {ours!r}\n  websockets: {theirs!r}"
    )
    if not RECORD:
        raise error
    # One file per kind: what was compared and how each side ended, not the payloads.
    ends = [_shape(x[-1:]) if isinstance(x, list) else x for x in (ours, theirs)]
    kind = hashlib.sha1(repr((what, ends)).encode()).hexdigest()[:12]  # a name, not security
    path = Path(RECORD) / f"{what.rsplit(maxsplit=1)[-1]}-{kind}"
    if not path.exists():
        path.write_bytes(data)
        path.with_suffix(".txt").write_text(str(error))


# -- frames ----------------------------------------------------------------------------------


def _ours_frames(stream: bytes, server: bool) -> list[Outcome]:
    # Opened directly: the handshake is not what these targets compare.
    role = ServerConnection if server else ClientConnection
    agreed = Agreement(subprotocol=None, extensions=(), codecs=())
    conn = role.for_stream(agreed, max_message_size=MAX_MESSAGE, max_fragments=1 << 16)
    out: list[Outcome] = []
    for event in conn.receive_data(stream):
        if isinstance(event, Text):
            out.append(("text", event.data.encode()))
        elif isinstance(event, Binary):
            out.append(("binary", event.data))
        elif isinstance(event, Ping):
            out.append(("ping", event.payload))
        elif isinstance(event, Pong):
            out.append(("pong", event.payload))
        elif isinstance(event, Close):
            out.append(
                ("close", event.code, event.reason) if event.error is None else ("fail", event.code)
            )
    return out


def _theirs_frames(stream: bytes, server: bool) -> tuple[list[Outcome], str | None]:
    """websockets' outcome, and the divergence it falls under, if any."""
    proto: ServerProtocol | ClientProtocol
    if server:
        proto = ServerProtocol(state=WsState.OPEN, max_size=MAX_MESSAGE, logger=_QUIET)
    else:
        proto = ClientProtocol(
            parse_uri("ws://h/"), state=WsState.OPEN, max_size=MAX_MESSAGE, logger=_QUIET
        )
    proto.receive_data(stream)
    out: list[Outcome] = []
    kind, parts = "", []
    # websockets' sans-IO layer hands out frames and leaves UTF-8 to its I/O layers, which
    # decode each frame as it comes; the same is done here, failing with 1007 as they do.
    decoder = codecs.getincrementaldecoder("utf-8")()
    for frame in proto.events_received():
        opcode = frame.opcode
        if opcode in (WsOpcode.TEXT, WsOpcode.BINARY, WsOpcode.CONT):
            if opcode is not WsOpcode.CONT:
                kind, parts = ("text" if opcode is WsOpcode.TEXT else "binary"), []
                decoder.reset()
            parts.append(frame.data)
            if kind == "text":
                try:
                    decoder.decode(frame.data, final=frame.fin)
                except UnicodeDecodeError:
                    return [*out, ("fail", 1007)], None
                if _surrogate_prefix(decoder.getstate()[0]):
                    return [*out, ("fail", 1007)], None
            if frame.fin:
                out.append((kind, b"".join(parts)))
        elif opcode is WsOpcode.PING:
            out.append(("ping", frame.data))
        elif opcode is WsOpcode.PONG:
            out.append(("pong", frame.data))
        else:
            close = WsClose.parse(frame.data)
            out.append(("close", close.code, close.reason))
    if proto.parser_exc is not None:
        assert proto.close_sent is not None
        out.append(("fail", proto.close_sent.code))
        if "incomplete fragmented message" in str(proto.parser_exc):
            return out, "close-inside-fragmented-message"
    return out, None


#: Enough zero bytes to complete any frame header and any payload under the limit.
PADDING = b"\x00" * (14 + MAX_MESSAGE + 16)


def _surrogate_prefix(pending: bytes) -> bool:
    """Whether the decoder waits on ED A0-BF: a surrogate's first bytes, which no more bytes
    can make valid (RFC 3629 §3). Python's incremental decoder waits for the third byte;
    wsmachine fails at once, as the Autobahn cases 6.x expect."""
    return pending[:1] == b"\xed" and pending[1:2] >= b"\xa0"


def _frames(data: bytes, server: bool) -> None:
    stream, _ = _reads(data)
    theirs, divergence = _theirs_frames(stream, server)
    ours = _ours_frames(stream, server)
    if divergence is not None:
        # Up to the Close, both must have seen the same; then wsmachine takes the Close.
        # Unless wsmachine failed before it on a divergence of its own, checked on the bytes.
        if _known_frame_divergence(stream, server, ours, theirs) is None:
            _check_prefix(ours, theirs[:-1], data)
        return
    if ours == theirs:
        return
    set_aside = _known_frame_divergence(stream, server, ours, theirs)
    if set_aside is not None:
        return
    n = len(ours) if len(ours) < len(theirs) else len(theirs)
    if ours[:n] != theirs[:n]:
        _disagree("frames", ours, theirs, data)
    # One side failed on a frame the other still waits for the rest of: each checks some
    # rules as soon as their bytes arrive (fail-fast timing). With the frame completed, the
    # waiting side must fail the same way.
    if len(ours) > n:
        padded = _ours_frames(stream + PADDING, server)
        if padded[: len(ours)] != ours:
            _disagree("frames (websockets waiting)", padded, theirs, data)
    else:
        padded, _ = _theirs_frames(stream + PADDING, server)
        if padded[: len(theirs)] != theirs:
            _disagree("frames (wsmachine waiting)", ours, padded, data)


def _known_frame_divergence(
    stream: bytes, server: bool, ours: list[Outcome], theirs: list[Outcome]
) -> str | None:
    """The divergence that explains ``ours != theirs``, checked on the bytes, else ``None``."""
    frames, pos, fault = _py_parse_frames(stream, server, MAX_MESSAGE, 0x70)
    past = _past_the_limit(frames, stream[pos:] if fault is None else b"", server)
    if (
        past == "control"
        and theirs[-1:] == [("fail", 1009)]
        and theirs[:-1] == ours[: len(theirs) - 1]
    ):
        return "control-frame-counted-in-message"
    before, last = ours[:-1], ours[-1] if ours else None
    if past == "new-message" and last == ("fail", 1002) and theirs == [*before, ("fail", 1009)]:
        return "several-faults-in-one-header"
    if last == ("fail", 1007) and theirs == [*before, ("fail", 1009)]:
        return "size-and-utf8-both-broken" if _text_breaks_utf8(stream, server) else None
    closes = [payload for opcode, _, _, payload in frames if opcode == 0x8]
    if closes:
        # Nothing after the first Close counts. A Close whose code and reason are both
        # invalid: §7.4.1 (code, 1002) and §8.1 (UTF-8, 1007) rank neither; wsmachine checks
        # the code first, websockets the reason.
        payload = closes[0]
        if last == ("fail", 1002) and theirs == [*before, ("fail", 1007)]:
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                try:
                    WsClose.parse(payload[:2])
                except ProtocolError:
                    return "close-code-and-reason-both-invalid"
        return None
    if fault is None or last != ("fail", 1002):
        return None
    # wsmachine refused the complete header at ``pos``: which rule, checked on the bytes.
    head = stream[pos : pos + 10]
    size = head[1] & 0x7F
    if size == 126 and int.from_bytes(head[2:4]) < 126:
        nonminimal = True
    elif size == 127:
        length = int.from_bytes(head[2:10])
        if length >> 63:
            # §5.2: the top bit must be 0 (wsmachine: 1002); websockets reads a length over
            # its limit (1009), or fails the mask bit first (1002).
            if theirs[:-1] == before and theirs[-1:] in ([("fail", 1009)], [("fail", 1002)]):
                return "length-top-bit"
            return None
        nonminimal = length < 0x10000
    else:
        nonminimal = False
    if nonminimal:
        # §5.2: "the minimal number of bytes MUST be used"; websockets reads any form.
        return "non-minimal-length" if theirs[: len(before)] == before else None
    if _broken(head) and theirs == [*before, ("fail", 1009)]:
        return "several-faults-in-one-header"
    return None


def _text_breaks_utf8(stream: bytes, server: bool) -> bool:
    """Whether the text message that passes the size limit, up to the frame that takes it
    past (completed with zeros), or else the last one in the stream, is not UTF-8:
    wsmachine's 1007 is real, only the size check came later. A Close before that ends the
    stream: neither side reads past it."""
    frames, _, _ = _py_parse_frames(_completed(stream, server), server, 1 << 62, 0x70)
    message: list[bytes] = []
    for opcode, _, _, payload in frames:
        if opcode == 0x8:
            return False
        if opcode == 0x1:
            message = [payload]
        elif opcode == 0x0 and message:
            message.append(payload)
            if sum(map(len, message)) > MAX_MESSAGE:
                break
        elif opcode == 0x2:
            message = []
    try:
        b"".join(message).decode()
    except UnicodeDecodeError:
        return True
    return False


def _completed(stream: bytes, server: bool) -> bytes:
    """``stream`` with the zeros that complete its last frame, if it lacks at most 64 KiB.

    Only the missing bytes: zeros past them would parse as thousands of empty frames, which
    cost the instrumented parser about a second per input.
    """
    _, pos, fault = _py_parse_frames(stream, server, 1 << 62, 0x70)
    rest = stream[pos:]
    if fault is not None or not rest:
        return stream
    head = rest + bytes(13)  # completed with zeros, as the padding would complete it
    extra = {126: 2, 127: 8}.get(head[1] & 0x7F, 0)
    length = _declared_length(head)
    assert length is not None
    missing = 2 + extra + (4 if head[1] & 0x80 else 0) + length - len(rest)
    return stream + bytes(missing) if missing <= 1 << 16 else stream


def _past_the_limit(frames: list[Frame], rest: bytes, server: bool) -> str | None:
    """What first takes a fragmented message past what is left of its limit, before another
    fault or a Close ends the stream, among ``frames`` or as the header that starts ``rest``
    (websockets checks the size as soon as it has the header): ``"control"``, a valid control
    frame, which websockets counts in the message; ``"new-message"``, a text or binary frame,
    which breaks §5.4's order (wsmachine: 1002) and which websockets sizes first (1009)."""
    size: int | None = None  # of the fragmented message in progress
    heads = [(0x80 * fin | rsv | opcode, len(payload)) for opcode, fin, rsv, payload in frames]
    if (length := _declared_length(rest)) is not None and (rest[1] & 0x80) == 0x80 * server:
        heads.append((rest[0], length))
    for first, length in heads:
        opcode = first & 0x0F
        past = size is not None and size + length > MAX_MESSAGE
        if opcode >= 0x8:
            if past and first & 0xF0 == 0x80 and length <= 125:
                return "control"
            if opcode == 0x8:
                return None  # neither side reads past a Close
        elif opcode in (0x1, 0x2):
            if size is not None:  # §5.4's order broken: both sides stop here
                return "new-message" if past else None
            size = None if first & 0x80 else length
        elif size is None or past:
            return None  # a continuation with no message, or a data frame past the limit
        else:
            size = None if first & 0x80 else size + length
    return None


def _declared_length(head: bytes) -> int | None:
    """The payload length a frame header declares, or ``None`` before its length is whole."""
    if len(head) < 2:
        return None
    size = head[1] & 0x7F
    extra = {126: 2, 127: 8}.get(size, 0)
    if len(head) < 2 + extra:
        return None
    return int.from_bytes(head[2 : 2 + extra]) if extra else size


def _broken(head: bytes) -> bool:
    """Whether a complete frame header breaks a §5.2 or §5.5 rule (RSV bits, control frame
    too long or fragmented) that websockets checks only after its size limit. Its limit for
    a control frame inside a fragmented message is what is left of the message's."""
    length = _declared_length(head)
    assert length is not None  # a complete header
    opcode = head[0] & 0x0F
    return bool(head[0] & 0x70) or (opcode >= 8 and (length > 125 or not head[0] & 0x80))


def _check_prefix(ours: list[Outcome], theirs: list[Outcome], data: bytes) -> None:
    if ours[: len(theirs)] != theirs:
        _disagree("the frames before a divergence", ours, theirs, data)


def diff_frames_server(data: bytes) -> None:
    """A client's frames to a server: wsmachine and websockets agree (differential)."""
    _frames(data, server=True)


def diff_frames_client(data: bytes) -> None:
    """A server's frames to a client: wsmachine and websockets agree (differential)."""
    _frames(data, server=False)


# -- the opening handshake ---------------------------------------------------------------------

ACCEPT, REFUSE, PENDING = "accept", "refuse", "pending"


def _our_decision(conn: Connection, stream: bytes) -> str:
    """Accept or refuse after the stream, and if still undecided, after its end."""
    for events in (conn.receive_data(stream), conn.receive_eof()):
        for event in events:
            if isinstance(event, Handshake | Accepted):
                return ACCEPT
            if isinstance(event, HTTPRequest | Rejected | Close):
                return REFUSE
    return PENDING


def _ours_handshake_server(stream: bytes) -> str:
    conn = ServerConnection(max_message_size=MAX_MESSAGE, extensions=[PerMessageDeflate()])
    return _our_decision(conn, stream)


def _ours_handshake_client(stream: bytes) -> str:
    conn = ClientConnection(
        "h", "/chat", max_message_size=MAX_MESSAGE, extensions=[PerMessageDeflate()]
    )
    assert conn._handshake is not None
    conn._handshake._key = CLIENT_KEY  # the corpus holds answers to this key
    conn.data_to_send()
    return _our_decision(conn, stream)


def _their_decision(proto: ServerProtocol | ClientProtocol, stream: bytes) -> str:
    for feed in (lambda: proto.receive_data(stream), proto.receive_eof):
        feed()
        if proto.handshake_exc is not None:
            return REFUSE
        for event in proto.events_received():
            if isinstance(event, Request):
                assert isinstance(proto, ServerProtocol)
                return ACCEPT if proto.accept(event).status_code == 101 else REFUSE
            if isinstance(event, Response):
                return ACCEPT  # handshake_exc is None: the 101 passed every check
    return PENDING


def _theirs_handshake_server(stream: bytes) -> str:
    proto = ServerProtocol(
        max_size=MAX_MESSAGE, extensions=[ServerPerMessageDeflateFactory()], logger=_QUIET
    )
    return _their_decision(proto, stream)


def _theirs_handshake_client(stream: bytes) -> str:
    proto = ClientProtocol(
        parse_uri("ws://h/chat"),
        max_size=MAX_MESSAGE,
        extensions=[ClientPerMessageDeflateFactory()],  # the same offer as PerMessageDeflate()
        logger=_QUIET,
    )
    proto.send_request(proto.connect())
    proto.key = CLIENT_KEY
    proto.data_to_send()
    return _their_decision(proto, stream)


_BARE_LF = re.compile(rb"(?<!\r)\n")
#: RFC 3986 host (reg-name or IP literal) and optional port, as RFC 7230 §5.4 requires.
_HOST = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*|\[[0-9A-Fa-f:.]+\]")
_PORT = re.compile(rb"(?::[0-9]*)?")
_LATER_HTTP = re.compile(rb"HTTP/1\.[2-9]")
#: RFC 6454 §7: one serialized origin, or "null".
_ORIGIN = re.compile(rb"null|[A-Za-z][A-Za-z0-9+.\-]*://[\x21-\x7e]+")
_CTL = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TARGET_CTL = re.compile(rb"[\x00-\x1f\x7f]")
_REASON = re.compile(rb"[\t \x21-\x7e\x80-\xff]*")


def _known_http_divergence(stream: bytes, ours: str, theirs: str, server: bool) -> str | None:
    """The divergence that explains the two decisions, checked on the bytes, else ``None``."""
    end = stream.find(b"\r\n\r\n")
    head = stream if end < 0 else stream[: end + 4]
    if theirs == REFUSE and _BARE_LF.search(head):
        return "bare-lf"
    lines = head.split(b"\r\n")
    start = lines[0].split(b" ", 2)
    fields = [line.partition(b":") for line in lines[1:]]
    upgrade = [
        token.strip(b" \t").lower()
        for name, _, value in fields
        if name.lower() == b"upgrade"
        for token in value.split(b",")
    ]
    if (ours, theirs) == (ACCEPT, REFUSE) and len(upgrade) > 1 and b"websocket" in upgrade:
        return "upgrade-list"
    version = start[-1] if server else start[0]  # request line last, status line first
    if (ours, theirs) == (ACCEPT, REFUSE) and _LATER_HTTP.fullmatch(version):
        return "http-version"
    if server and (ours, theirs) == (REFUSE, ACCEPT):
        if len(start) == 3 and (not start[1].startswith(b"/") or b"#" in start[1]):
            return "request-target"
        if len(start) == 3 and _TARGET_CTL.search(start[1]):
            return "ctl-in-target"
        origins = [value.strip(b" \t") for name, _, value in fields if name.lower() == b"origin"]
        if any(not _ORIGIN.fullmatch(origin) for origin in origins):
            return "origin-field"
        hosts = [value.strip(b" \t") for name, _, value in fields if name.lower() == b"host"]
        if len(hosts) != 1 or not _valid_host(hosts[0]):
            return "host-field"
    framing = {b"transfer-encoding", b"content-length"}
    if (
        not server
        and (ours, theirs) == (REFUSE, ACCEPT)
        and any(name.strip().lower() in framing for name, _, _ in fields)
    ):
        return "framing-field-in-101"
    if not server and (ours, theirs) == (ACCEPT, REFUSE) and len(start) >= 2:
        if start[1][:1] == b"1" and start[1] != b"101":
            return "interim-1xx"
        if len(start) == 3 and not _REASON.fullmatch(start[2]):
            return "reason-phrase"
    if (ours, theirs) == (ACCEPT, REFUSE) and _CTL.search(head):
        return "ctl-in-field"
    extension_values = [
        value for name, _, value in fields if name.strip().lower() == b"sec-websocket-extensions"
    ]
    if (ours, theirs) == (ACCEPT, REFUSE) and any(
        not value.replace(b",", b"").strip(b" \t") for value in extension_values
    ):
        return "empty-extension-list"
    return None


def _valid_host(value: bytes) -> bool:
    host = _HOST.match(value)
    # An http URI's host is never empty (RFC 9110 §4.2.1), so neither is an upgrade's Host.
    return bool(host and host.end()) and _PORT.fullmatch(value, host.end()) is not None


def diff_handshake_server(data: bytes) -> None:
    """A client's opening request: both servers accept it or both refuse it (differential)."""
    stream, _ = _reads(data)
    ours, theirs = _ours_handshake_server(stream), _theirs_handshake_server(stream)
    if ours != theirs and _known_http_divergence(stream, ours, theirs, True) is None:
        _disagree("the upgrade request", ours, theirs, data)


def diff_handshake_client(data: bytes) -> None:
    """A server's answer: both clients accept it or both refuse it (differential)."""
    stream, _ = _reads(data)
    ours, theirs = _ours_handshake_client(stream), _theirs_handshake_client(stream)
    if ours != theirs and _known_http_divergence(stream, ours, theirs, False) is None:
        _disagree("the upgrade response", ours, theirs, data)


DIFFERENTIAL_TARGETS = {
    "diff_frames_server": diff_frames_server,
    "diff_frames_client": diff_frames_client,
    "diff_handshake_server": diff_handshake_server,
    "diff_handshake_client": diff_handshake_client,
}
