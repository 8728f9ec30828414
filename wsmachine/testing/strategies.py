"""Hypothesis strategies for WebSocket traffic, valid and hostile.

Needs the ``hypothesis`` package (``pip install hypothesis``); nothing else in wsmachine
imports this module. Every strategy yields plain values (``bytes``, ``str``, lists of sizes)
ready to feed to any WebSocket implementation, not only wsmachine::

    from hypothesis import given
    from wsmachine.testing import FrameBuilder, strategies as ws

    @given(message=ws.messages(), sizes=ws.fragmentations(), reads=ws.read_sizes())
    def test_echo(message, sizes, reads):
        wire = FrameBuilder(client=True).message(message, sizes)
        for piece in ws.split(wire, reads):
            ...  # feed the server under test

Frames are built by :class:`~wsmachine.testing.FrameBuilder`; ``masked=True`` gives frames as a
client sends them (what a server receives), ``masked=False`` as a server sends them.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Sequence

from hypothesis import strategies as st

from ..headers import ExtensionOffer, build_extension_header
from .frames import FrameBuilder

__all__ = [
    "chunkings",
    "extension_headers",
    "extension_offers",
    "fragmentations",
    "fragmented_messages",
    "frames",
    "handshake_requests",
    "handshake_responses",
    "invalid_frames",
    "messages",
    "permessage_deflate_offers",
    "read_sizes",
    "split",
]

_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: RFC 7230 tokens: header names, subprotocols, extension names and parameters.
tokens = st.text(alphabet=_TCHAR, min_size=1, max_size=12)


def _builder(masked: bool) -> st.SearchStrategy[FrameBuilder]:
    return st.binary(min_size=4, max_size=4).map(
        lambda key: FrameBuilder(client=masked, mask_key=key)
    )


# -- messages and frames ----------------------------------------------------------------


def messages(*, max_size: int = 200) -> st.SearchStrategy[str | bytes]:
    """Whole messages: ``str`` for text (any code points UTF-8 can carry), ``bytes`` for
    binary. Sizes up to ``max_size`` characters or bytes, biased to the length boundaries."""
    edges = [n for n in (0, 1, 125, 126) if n <= max_size]
    sizes = st.one_of(st.integers(0, max_size), st.sampled_from(edges))
    characters = st.characters(exclude_categories=["Cs"])  # no lone surrogates
    text: st.SearchStrategy[str | bytes] = sizes.flatmap(
        lambda n: st.text(characters, min_size=n, max_size=n)
    )
    binary: st.SearchStrategy[str | bytes] = sizes.flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    )
    return st.one_of(text, binary)


def fragmentations(*, max_fragments: int = 6, max_size: int = 64) -> st.SearchStrategy[list[int]]:
    """Fragment payload sizes for :meth:`FrameBuilder.message
    <wsmachine.testing.FrameBuilder.message>`: each fragment in turn, empty ones included;
    what is left of the message after them goes in one last fragment."""
    return st.lists(st.integers(0, max_size), max_size=max_fragments - 1)


def fragmented_messages(
    *, masked: bool, max_size: int = 200, control_frames: bool = True
) -> st.SearchStrategy[tuple[str | bytes, bytes]]:
    """``(message, wire bytes)``: a message cut into fragments, possibly with Pings and Pongs
    between them (RFC 6455 §5.4 allows control frames inside a fragmented message)."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str | bytes, bytes]:
        message = draw(messages(max_size=max_size))
        builder = draw(_builder(masked))
        sizes = draw(fragmentations())
        between = b""
        if control_frames and draw(st.booleans()):
            payload = draw(st.binary(max_size=125))
            between = builder.ping(payload) if draw(st.booleans()) else builder.pong(payload)
        return message, builder.message(message, sizes, between=between)

    return build()


def frames(*, masked: bool, max_size: int = 200) -> st.SearchStrategy[bytes]:
    """Single valid frames that stand alone: an unfragmented text or binary message, a Ping
    or a Pong. (A Close ends the connection and a continuation needs a message before it;
    see :func:`fragmented_messages` and :func:`invalid_frames`.)"""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        builder = draw(_builder(masked))
        kind = draw(st.sampled_from(["message", "message", "ping", "pong"]))
        if kind == "message":
            message = draw(messages(max_size=max_size))
            return builder.message(message)
        payload = draw(st.binary(max_size=125))
        return builder.ping(payload) if kind == "ping" else builder.pong(payload)

    return build()


def invalid_frames(*, masked: bool) -> st.SearchStrategy[tuple[str, bytes, int]]:
    """``(name, wire bytes, close code)``: frames a conforming receiver must refuse (see
    :meth:`FrameBuilder.invalid_frames <wsmachine.testing.FrameBuilder.invalid_frames>`),
    with random masking keys, sometimes after valid frames."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, bytes, int]:
        builder = draw(_builder(masked))
        case = draw(st.sampled_from(builder.invalid_frames()))
        before = b"".join(draw(st.lists(frames(masked=masked, max_size=20), max_size=2)))
        return case.name, before + case.data, case.close_code

    return build()


def read_sizes(*, max_size: int = 64) -> st.SearchStrategy[list[int]]:
    """Sizes of successive reads, to cut any byte stream with :func:`split` (used in turn,
    cycling), when the stream is not known before the test runs."""
    return st.lists(st.integers(1, max_size), min_size=1, max_size=8)


def split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """Cut ``data`` into reads of ``sizes[0]``, ``sizes[1]``, ... bytes, cycling through
    ``sizes``; the last read may be shorter. Not a strategy: a helper for :func:`read_sizes`."""
    if not sizes or min(sizes) < 1:
        raise ValueError("read sizes are positive, and there is at least one")
    pieces = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        pieces.append(data[pos : pos + size])
        pos += size
        i += 1
    return pieces


def chunkings(data: bytes, *, max_pieces: int = 12) -> st.SearchStrategy[list[bytes]]:
    """The ways to split ``data`` into non-empty reads, as a network may deliver it; draw
    it inside a test with ``st.data()`` when ``data`` is itself generated."""
    if len(data) <= 1:
        return st.just([data] if data else [])
    cuts = st.lists(
        st.integers(1, len(data) - 1), unique=True, max_size=min(max_pieces - 1, len(data) - 1)
    )
    return cuts.map(lambda points: _cut(data, sorted(points)))


def _cut(data: bytes, points: Sequence[int]) -> list[bytes]:
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- the opening handshake ------------------------------------------------------------------


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324


def _case(draw: st.DrawFn, name: str) -> str:
    style = draw(st.sampled_from(["title", "lower", "upper"]))
    return name.lower() if style == "lower" else name.upper() if style == "upper" else name


_PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%?"


@st.composite
def _request_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    key = base64.b64encode(draw(st.binary(min_size=16, max_size=16))).decode()
    connection = draw(st.sampled_from(["Upgrade", "upgrade", "keep-alive, Upgrade", "Upgrade,"]))
    headers = [
        (_case(draw, "Host"), draw(st.sampled_from(["example.com", "h:8080", "[::1]:9000"]))),
        (
            _case(draw, "Upgrade"),
            draw(st.sampled_from(["websocket", "WebSocket", "websocket, h2c"])),
        ),
        (_case(draw, "Connection"), connection),
        (_case(draw, "Sec-WebSocket-Key"), key),
        (_case(draw, "Sec-WebSocket-Version"), "13"),
    ]
    if draw(st.booleans()):
        headers.append(("Origin", draw(st.sampled_from(["https://example.com", "null"]))))
    protocols = draw(st.lists(tokens, max_size=3, unique=True))
    if protocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    offers = draw(st.lists(extension_offers(), max_size=2))
    if offers:
        headers.append(("Sec-WebSocket-Extensions", build_extension_header(offers)))
    extra = draw(st.lists(st.tuples(tokens.map(lambda t: "X-" + t), tokens), max_size=3))
    headers += extra
    return draw(st.permutations(headers))


def _head(first: str, headers: list[tuple[str, str]], ows: str = " ") -> bytes:
    lines = [first, *(f"{name}:{ows}{value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def handshake_requests(*, valid: bool = True) -> st.SearchStrategy[bytes]:
    """Upgrade requests (RFC 6455 §4.1). Valid ones vary the header case, order and
    optional headers, ``Connection`` lists and offers; a server must answer them with 101
    (or a deliberate refusal). Invalid ones break one rule a server must answer with 400,
    405 or 426: wrong method or version, missing or bad key, a body, bad header grammar."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        path = "/" + draw(st.text(alphabet=_PATH_CHARS, max_size=20))
        headers = draw(_request_headers())
        ows = draw(st.sampled_from([" ", "", "  ", "\t"]))
        if valid:
            return _head(f"GET {path} HTTP/1.1", headers, ows)
        flaw = draw(
            st.sampled_from(
                [
                    "method",
                    "http/1.0",
                    "no connection",
                    "no key",
                    "short key",
                    "two keys",
                    "version",
                    "body",
                    "extensions",
                    "protocols",
                    "no colon",
                ]
            )
        )
        first = f"GET {path} HTTP/1.1"
        names = [name.lower() for name, _ in headers]

        def drop(name: str) -> None:
            del headers[names.index(name)]
            names.remove(name)

        def replace(name: str, value: str) -> None:
            headers[names.index(name)] = (name, value)

        if flaw == "method":
            first = f"{draw(st.sampled_from(['POST', 'PUT', 'HEAD']))} {path} HTTP/1.1"
        elif flaw == "http/1.0":
            first = f"GET {path} HTTP/1.0"
        elif flaw == "no connection":
            replace("connection", "keep-alive")
        elif flaw == "no key":
            drop("sec-websocket-key")
        elif flaw == "short key":
            replace("sec-websocket-key", base64.b64encode(draw(st.binary(max_size=15))).decode())
        elif flaw == "two keys":
            headers.append(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
        elif flaw == "version":
            replace("sec-websocket-version", draw(st.sampled_from(["8", "12", "", "13, 8"])))
        elif flaw == "body":
            headers.append(("Content-Length", "3"))
        elif flaw == "extensions":
            headers.append(("Sec-WebSocket-Extensions", draw(extension_headers(valid=False))))
        elif flaw == "protocols":
            headers.append(("Sec-WebSocket-Protocol", "chat, v/2"))
        else:
            headers.append(("X-Broken header line", ""))
        return _head(first, headers, ows)

    return build()


def handshake_responses(
    key: str, *, valid: bool = True, subprotocols: Sequence[str] = ()
) -> st.SearchStrategy[bytes]:
    """Answers to a client whose ``Sec-WebSocket-Key`` is ``key`` (RFC 6455 §4.2.2).

    Valid ones are 101 responses the client must accept, choosing one of ``subprotocols`` or
    none. Invalid ones are 101 responses a client must fail the connection on: a wrong or
    missing accept key, a missing ``Upgrade`` or ``Connection``, a subprotocol or an
    extension the client did not offer, or a malformed status line.
    """

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        headers = [
            (_case(draw, "Upgrade"), draw(st.sampled_from(["websocket", "WebSocket"]))),
            (_case(draw, "Connection"), draw(st.sampled_from(["Upgrade", "upgrade"]))),
            (_case(draw, "Sec-WebSocket-Accept"), _accept(key)),
        ]
        choose: bool = draw(st.booleans())
        if subprotocols and choose:
            headers.append(("Sec-WebSocket-Protocol", draw(st.sampled_from(list(subprotocols)))))
        headers += draw(st.lists(st.tuples(tokens.map(lambda t: "X-" + t), tokens), max_size=3))
        headers = draw(st.permutations(headers))
        first = "HTTP/1.1 101 " + draw(st.sampled_from(["Switching Protocols", "OK", ""]))
        if valid:
            return _head(first.rstrip(" ") if draw(st.booleans()) else first, headers)
        flaw = draw(
            st.sampled_from(["accept", "no accept", "upgrade", "connection", "protocol", "ext"])
        )
        names = [name.lower() for name, _ in headers]
        if flaw == "accept":
            wrong = _accept(key + "x")
            headers[names.index("sec-websocket-accept")] = ("Sec-WebSocket-Accept", wrong)
        elif flaw == "no accept":
            del headers[names.index("sec-websocket-accept")]
        elif flaw == "upgrade":
            headers[names.index("upgrade")] = ("Upgrade", "h2c")
        elif flaw == "connection":
            headers[names.index("connection")] = ("Connection", "close")
        elif flaw == "protocol":
            headers = [h for h in headers if h[0] != "Sec-WebSocket-Protocol"]
            unknown = draw(tokens.filter(lambda t: t not in subprotocols))
            headers.append(("Sec-WebSocket-Protocol", unknown))
        else:
            headers.append(("Sec-WebSocket-Extensions", "x-never-offered"))
        return _head(first, headers)

    return build()


# -- extension negotiation ------------------------------------------------------------------


def extension_offers(*, name: str | None = None) -> st.SearchStrategy[ExtensionOffer]:
    """Offers as ``Sec-WebSocket-Extensions`` elements: a token name (or ``name``) and
    parameters, each bare or with a token value (RFC 6455 §9.1)."""
    params = st.lists(st.tuples(tokens, st.none() | tokens), max_size=4).map(tuple)
    names = st.just(name) if name is not None else tokens
    return st.builds(ExtensionOffer, names, params)


def permessage_deflate_offers(*, valid: bool = True) -> st.SearchStrategy[ExtensionOffer]:
    """permessage-deflate offers (RFC 7692 §7.1). Valid ones use each parameter at most once
    with a legal value; invalid ones repeat a parameter, give a bad value or an unknown one."""
    flags = ["server_no_context_takeover", "client_no_context_takeover"]
    bits = st.integers(8, 15).map(str)

    @st.composite
    def build(draw: st.DrawFn) -> ExtensionOffer:
        params: list[tuple[str, str | None]] = [
            (flag, None) for flag in flags if draw(st.booleans())
        ]
        if draw(st.booleans()):
            params.append(("server_max_window_bits", draw(bits)))
        if draw(st.booleans()):
            params.append(("client_max_window_bits", draw(st.none() | bits)))
        if not valid:
            flaw = draw(st.sampled_from(["repeat", "value", "unknown", "flag value"]))
            if flaw == "repeat":
                params += [("client_no_context_takeover", None)] * 2
            elif flaw == "value":
                value = draw(st.sampled_from(["7", "16", "08", "x", "1.5"]))
                params.append(("server_max_window_bits", value))
            elif flaw == "unknown":
                params.append(("x_" + draw(tokens), None))
            else:
                params.append(("server_no_context_takeover", "1"))
        return ExtensionOffer("permessage-deflate", tuple(draw(st.permutations(params))))

    return build()


def extension_headers(*, valid: bool = True) -> st.SearchStrategy[str]:
    """``Sec-WebSocket-Extensions`` values. Valid ones vary spacing, quoting of parameter
    values and empty list elements; invalid ones break the grammar (RFC 7230 §7, RFC 6455
    §9.1): a missing name, an unterminated quote, a quoted non-token, a stray separator."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        offers = draw(st.lists(extension_offers(), min_size=1, max_size=3))
        ows = st.sampled_from(["", " ", "  ", "\t"])
        parts = []
        for offer in offers:
            text = offer.name
            for key, value in offer.params:
                text += f"{draw(ows)};{draw(ows)}{key}"
                if value is not None:
                    quoted = draw(st.booleans())
                    text += f"={draw(ows)}" + (f'"{value}"' if quoted else value)
            parts.append(text)
        sep = draw(ows) + "," + draw(ows)
        header = sep.join(parts)
        if draw(st.booleans()):
            header = ", " + header + " ,"  # empty list elements are allowed
        if valid:
            return header
        flaw = draw(st.sampled_from(["no name", "quote", "non-token", "separator", "space"]))
        if flaw == "no name":
            return "; x=1, " + header
        if flaw == "quote":
            return header + '; q="unterminated'
        if flaw == "non-token":
            return header + '; q="a b"'
        if flaw == "separator":
            return header + "; ; x"
        return header + " junk junk"

    return build()
