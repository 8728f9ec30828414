"""Properties over generated input (Hypothesis).

1. Split invariance: a conversation (handshake, messages both ways, fragments, control frames,
   failures, closing, end of stream) gives the same events, states and answers whether the
   bytes arrive whole, byte by byte, or cut at random points. A sans-IO machine must not care
   how the transport happened to split its reads.
2. Robustness: any bytes fed to a client or a server in any state produce only documented
   events; ``receive_data`` and ``receive_eof`` never raise, and a connection that reported
   its end stays quiet.
3. Receive-into: the same bytes read into ``get_buffer()`` views and reported with
   ``buffer_updated()``, cut anywhere, give exactly the events and outcome ``receive_data``
   gives.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Connection,
    Event,
    Handshake,
    HTTPRequest,
    Ping,
    Pong,
    Rejected,
    ServerConnection,
    State,
    Text,
)
from wsmachine import frames as frames_module
from wsmachine.handshake import accept_key
from wsmachine.testing import ConnectionPair

EVENT_TYPES = (Handshake, HTTPRequest, Accepted, Rejected, Text, Binary, Ping, Pong, Close)
KEY = b"\x0f\xf0\xaa\x55"
RANDOM_HEADERS = {b"sec-websocket-key", b"sec-websocket-accept"}


def raw_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """RFC 6455 §5.2 written out naively; any field may be wrong on purpose."""
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if masked else 0
    n = len(payload)
    if n <= 125:
        head = struct.pack("!BB", first, bit | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not masked:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def normalized(events: Iterable[Event]) -> list[object]:
    """Drop the header fields that come from the client's random key; follow each event
    that carries an ``error`` with that error's type and text, which events leave out of
    their comparison but which must not depend on the split either."""
    out: list[object] = []
    for event in events:
        if isinstance(event, Handshake | Accepted):
            headers = tuple(h for h in event.headers if h[0] not in RANDOM_HEADERS)
            event = dataclasses.replace(event, headers=headers)
        out.append(event)
        error = getattr(event, "error", None)
        if error is not None:
            out.append((type(error).__name__, str(error), error.close_code, error.status_hint))
    return out


# ------------------------------------------------------------------------------------------------
# 1. Split invariance of whole conversations.
# ------------------------------------------------------------------------------------------------

sides = st.sampled_from(["client", "server"])
control_payloads = st.binary(max_size=125)
texts = st.text(max_size=30)
binaries = st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=300))

data_action = st.one_of(
    st.tuples(
        st.just("text"),
        sides,
        st.lists(texts, min_size=1, max_size=4),
        st.lists(st.none() | control_payloads, min_size=3, max_size=3),
    ),
    st.tuples(
        st.just("binary"),
        sides,
        st.lists(binaries, min_size=1, max_size=4),
        st.lists(st.none() | control_payloads, min_size=3, max_size=3),
    ),
)
control_action = st.tuples(st.sampled_from(["ping", "pong"]), sides, control_payloads)
deliver_action = st.tuples(st.just("deliver"), st.sampled_from(["c2s", "s2c", "both"]))
close_action = st.tuples(
    st.just("close"),
    sides,
    st.sampled_from([None, 1000, 1001, 1008, 1011, 3000, 4999]),
    st.text(max_size=20),
)
# Bytes a broken or hostile peer might send, injected on the wire to one side.
bad_frames = st.sampled_from(
    [
        ("unmasked or masked wrongly", None),
        ("rsv", 0x40),
        ("opcode", 0x3),
        ("bare continuation", 0x0),
        ("bad utf-8", 0x1),
        ("bad close code", 0x8),
    ]
)
inject_action = st.tuples(st.just("inject"), sides, bad_frames)
eof_action = st.tuples(st.just("eof"), sides)

# Weighted: mostly messages and deliveries, now and then a close, a failure or an EOF.
_ACTIONS = [data_action] * 6 + [control_action] * 2 + [deliver_action] * 4
_ACTIONS += [close_action, inject_action, eof_action]
actions = st.lists(
    st.integers(0, len(_ACTIONS) - 1).flatmap(lambda i: _ACTIONS[i]), min_size=2, max_size=16
)


def _bad_bytes(receiver: Connection, kind: tuple[str, int | None]) -> bytes:
    masked = not receiver.client
    name, opcode = kind
    if name == "unmasked or masked wrongly":
        return raw_frame(0x1, b"x", masked=not masked)
    if name == "rsv":
        return raw_frame(0x2, b"x", rsv=0x40, masked=masked)
    if name == "bad utf-8":
        return raw_frame(0x1, b"ok \xc3\x28", masked=masked)
    if name == "bad close code":
        return raw_frame(0x8, struct.pack("!H", 1005), masked=masked)
    assert opcode is not None
    return raw_frame(opcode, b"x", masked=masked)


class Conversation:
    """Plays a script on a fresh pair, cutting every delivery with ``chunks``; records all."""

    def __init__(self, chunks: int | Iterator[int] | None, stream: bool) -> None:
        settings: dict[str, Any] = {"stream": stream, "subprotocols": ["chat"]}
        self.pair = ConnectionPair(client=dict(settings), server=dict(settings))  # type: ignore[arg-type]
        self.chunks = chunks
        self.log: list[object] = []
        self.ended: set[str] = set()  # sides whose stream has ended

    def conn(self, side: str) -> Connection:
        conn: Connection = getattr(self.pair, side)
        return conn

    def snapshot(self) -> tuple[object, ...]:
        return tuple(
            (c.state, c.should_close(), c.close_expected())
            for c in (self.pair.client, self.pair.server)
        )

    def deliver(self, direction: str) -> list[Event]:
        receiver = "server" if direction == "c2s" else "client"
        if receiver in self.ended:
            sender = "client" if receiver == "server" else "server"
            self.conn(sender).data_to_send()  # the wire is gone: the bytes are lost
            return []
        if direction == "c2s":
            events = self.pair.client_to_server(self.chunks)
        else:
            events = self.pair.server_to_client(self.chunks)
        self.log.append((direction, normalized(events), self.snapshot()))
        return events

    def feed(self, side: str, data: bytes) -> None:
        conn = self.conn(side)
        events: list[Event] = []
        for piece in _cut(data, self.chunks):
            events += conn.receive_data(piece)
        self.log.append(("inject", side, normalized(events), self.snapshot()))

    def play(self, script: list[tuple[Any, ...]]) -> list[object]:
        (request,) = self.deliver("c2s")
        assert isinstance(request, Handshake)
        self.log.append(("accept", normalized(self.pair.server.accept(request))))
        self.deliver("s2c")
        for action in script:
            self.step(action)
        for _ in range(5):
            self.deliver("c2s")
            self.deliver("s2c")
        for side in ("client", "server"):
            if side not in self.ended:
                self.log.append(("eof", side, self.conn(side).receive_eof(), self.snapshot()))
        return self.log

    def step(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "deliver":
            for direction in ("c2s", "s2c") if action[1] == "both" else (action[1],):
                self.deliver(direction)
            return
        side = action[1]
        conn = self.conn(side)
        if kind == "inject":
            if side not in self.ended and conn.state in (State.OPEN, State.CLOSING):
                self.feed(side, _bad_bytes(conn, action[2]))
            return
        if kind == "eof":
            if side not in self.ended:
                self.ended.add(side)
                self.log.append(("eof", side, conn.receive_eof(), self.snapshot()))
            return
        if conn.state is not State.OPEN:
            return  # a real application stops sending once closing
        if kind in ("text", "binary"):
            pieces, pings = action[2], action[3]
            send = conn.send_text if kind == "text" else conn.send_binary
            for i, piece in enumerate(pieces):
                send(piece, final=i == len(pieces) - 1)
                if i < len(pings) and pings[i] is not None:
                    conn.ping(pings[i])
        elif kind == "ping":
            conn.ping(action[2])
        elif kind == "pong":
            conn.pong(action[2])
        elif kind == "close":
            code, reason = action[2], action[3]
            conn.close(code, reason if code is not None else "")


def _cut(data: bytes, chunks: int | Iterator[int] | None) -> list[bytes]:
    if chunks is None:
        return [data] if data else []
    sizes = itertools.repeat(chunks) if isinstance(chunks, int) else chunks
    pieces = []
    pos = 0
    while pos < len(data):
        size = next(sizes)
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


cut_sizes = st.lists(st.integers(1, 40), min_size=1, max_size=12)


@settings(deadline=None)
@given(script=actions, stream=st.booleans(), sizes=cut_sizes)
@example(
    script=[
        ("text", "client", ["h\u00e9", "", "\U0001f600"], [b"p", None, None]),
        ("binary", "server", [b"\x00" * 200, b"x"], [None, b"", None]),
        ("deliver", "both"),
        ("close", "server", 1000, "bye"),
    ],
    stream=False,
    sizes=[1, 7, 2],
)
@example(
    script=[
        ("text", "server", ["abc"], [None, None, None]),
        ("inject", "server", ("bad utf-8", 1)),
    ],
    stream=True,
    sizes=[3],
)
def test_conversation_is_split_invariant(
    script: list[tuple[Any, ...]], stream: bool, sizes: list[int]
) -> None:
    whole = Conversation(None, stream).play(script)
    assert Conversation(1, stream).play(script) == whole
    assert Conversation(itertools.cycle(sizes), stream).play(script) == whole


@settings(deadline=None, max_examples=10)
@given(sizes=cut_sizes)
def test_long_messages_are_split_invariant(sizes: list[int]) -> None:
    big = bytes(range(256)) * 300  # 76800 bytes: the 64-bit length form
    text = "\u20ac" * 30000  # 90000 bytes of 3-byte characters
    script: list[tuple[Any, ...]] = [
        ("binary", "client", [big], [None, None, None]),
        ("text", "server", [text[:12345], text[12345:]], [b"mid", None, None]),
        ("deliver", "both"),
    ]
    whole = Conversation(None, False).play(script)
    (_, events, _) = whole[3]  # type: ignore[misc]
    assert events == [Binary(data=big)]
    assert Conversation(itertools.cycle([s * 97 for s in sizes]), False).play(script) == whole


# ------------------------------------------------------------------------------------------------
# 2. Any bytes, any state: only documented events, never an exception.
# ------------------------------------------------------------------------------------------------

REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
HTTP_PIECES = [
    REQUEST,
    b"GET / HTTP/1.1\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n",
    b"HTTP/1.1 403 Forbidden\r\n",
    b"Upgrade: websocket\r\n",
    b"Connection: Upgrade\r\n",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Sec-WebSocket-Protocol: chat\r\n",
    b"\r\n",
    b"3\r\nabc\r\n0\r\n\r\n",
]

# A frame to encode once the receiver's role is known: masked as it expects, mostly.
frames = st.tuples(
    st.sampled_from([0x0, 0x0, 0x1, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xF]),
    st.one_of(
        st.binary(max_size=20),
        st.binary(min_size=60, max_size=70),  # around max_message_size=64
        st.text(max_size=10).map(str.encode),
        st.sampled_from([b"\x03\xe8", b"\xff", b"\xe2\x82", b"\xed\xa0\x80", b"\x03\xe8ok", b""]),
    ),
    st.booleans(),  # fin
    st.sampled_from([0, 0, 0, 0, 0x40, 0x10]),  # rsv
    st.sampled_from([True, True, True, True, False]),  # masked as the receiver expects
)
garbage = st.lists(
    st.one_of(st.binary(max_size=30), frames, frames, frames, st.sampled_from(HTTP_PIECES)),
    max_size=10,
)

STATES = [
    "server connecting",
    "server awaiting answer",
    "server open",
    "server closing",
    "client connecting",
    "client open",
    "client closing",
]


def _connection(state: str, with_101: bool) -> tuple[Connection, bytes]:
    """A connection in ``state`` and a prefix that makes sense to it (maybe empty)."""
    if state.startswith("server"):
        server = ServerConnection(max_message_size=64)
        if state != "server connecting":
            (request,) = server.receive_data(REQUEST)
            if state != "server awaiting answer":
                assert isinstance(request, Handshake)
                server.accept(request)
                if state == "server closing":
                    server.close()
        server.data_to_send()
        return server, b""
    client = ClientConnection("h", subprotocols=["chat"], max_message_size=64)
    head = client.data_to_send()
    key = head.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0].decode()
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )
    if state == "client connecting":
        return client, response if with_101 else b""
    (accepted,) = client.receive_data(response)
    assert isinstance(accepted, Accepted)
    if state == "client closing":
        client.close()
    client.data_to_send()
    return client, b""


Receive = Callable[[Connection, bytes], list[Event]]


def _receive_data(conn: Connection, piece: bytes) -> list[Event]:
    return conn.receive_data(piece)


def _receive_into(sizehint: int) -> Receive:
    """Feed a piece as a socket read into the machine's buffer would: ``get_buffer``, a write
    of as much as fits, ``buffer_updated``, until the piece is in."""

    def receive(conn: Connection, piece: bytes) -> list[Event]:
        events: list[Event] = []
        pos = 0
        while pos < len(piece):
            view = conn.get_buffer(sizehint)
            n = min(len(view), len(piece) - pos)
            view[:n] = piece[pos : pos + n]
            events += conn.buffer_updated(n)
            pos += n
        return events

    return receive


def _feed_all(
    conn: Connection, pieces: list[bytes], eof: bool, receive: Receive = _receive_data
) -> list[object]:
    """Feed everything; check each call's events; return the events and states seen."""
    seen: list[object] = []
    over = False
    for piece in pieces:
        before = conn.state
        events = receive(conn, piece)
        for event in events:
            assert isinstance(event, EVENT_TYPES)
        if over:
            assert events == [], "events after the connection ended"
        for event in events:
            if isinstance(event, Rejected):
                assert conn.state is State.REJECTED
                over = True
            elif isinstance(event, Close):
                # After our Close the peer's ends the connection; otherwise this side owes
                # its Close until data_to_send() (REMOTE_CLOSING).
                if before is State.CLOSING:
                    assert conn.state is State.CLOSED
                else:
                    assert conn.state is State.REMOTE_CLOSING
                if event.error is not None:
                    assert event.error.close_code == event.code
                over = True
        seen += [*events, conn.state]
        owing = conn.state is State.REMOTE_CLOSING
        conn.data_to_send()
        if owing:
            assert conn.state is State.CLOSED
            assert conn.close_sent is not None
    if eof:
        events = conn.receive_eof()
        for event in events:
            assert isinstance(event, EVENT_TYPES)
        if over:
            assert events == []
        seen += [*events, conn.state, conn.should_close()]
    return seen


@settings(deadline=None)
@given(
    state=st.sampled_from(STATES),
    items=garbage,
    with_101=st.booleans(),
    eof=st.booleans(),
    sizes=cut_sizes,
)
@example(state="server connecting", items=[b""], with_101=False, eof=False, sizes=[1])
@example(state="client connecting", items=[b"", b"HTTP/1.1 "], with_101=False, eof=True, sizes=[1])
@example(  # issue 17: h11's text for a bad chunk footer showed the bytes of the last read
    state="client connecting",
    items=[b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxA", b"B\r\n"],
    with_101=False,
    eof=False,
    sizes=[40],
)
@example(  # a continuation past max_message_size that is also bad UTF-8: 1007 however split
    state="server open",
    items=[(0x1, b"a" * 40, False, 0, True), (0x0, b"\xff" + b"b" * 39, True, 0, True)],
    with_101=False,
    eof=False,
    sizes=[1],
)
def test_any_bytes_in_any_state_give_only_events(
    state: str, items: list[Any], with_101: bool, eof: bool, sizes: list[int]
) -> None:
    to_server = state.startswith("server")
    chunks = [
        item
        if isinstance(item, bytes)
        else raw_frame(*item[:2], fin=item[2], rsv=item[3], masked=item[4] == to_server)
        for item in items
    ]
    conn, prefix = _connection(state, with_101)
    seen = _feed_all(conn, [prefix, *chunks], eof)
    # The same bytes cut differently give the same events and the same final state.
    data = prefix + b"".join(chunks)
    whole_conn, prefix = _connection(state, with_101)
    data = prefix + b"".join(chunks)  # the 101, if any, answers this client's own key
    whole = _events(_feed_all(whole_conn, [data], eof))
    assert _events(seen) == whole
    split_conn, prefix = _connection(state, with_101)
    data = prefix + b"".join(chunks)
    assert _events(_feed_all(split_conn, _cut(data, itertools.cycle(sizes)), eof)) == whole
    assert _outcome(conn) == _outcome(whole_conn)
    assert _outcome(split_conn) == _outcome(whole_conn)


def _outcome(conn: Connection) -> tuple[object, ...]:
    """The final state, and what each side's Close said: none of it depends on the split."""
    return (
        conn.state,
        conn.should_close(),
        conn.close_expected(),
        conn.close_sent,
        conn.close_received,
        conn.closed_first,
    )


def _events(seen: list[object]) -> list[object]:
    return normalized(e for e in seen if isinstance(e, EVENT_TYPES))


# ------------------------------------------------------------------------------------------------
# 3. Receive-into: get_buffer() + buffer_updated() give what receive_data() gives.
# ------------------------------------------------------------------------------------------------

sizehints = st.sampled_from([-1, 0, 1, 2, 3, 7, 64, 1000, 1 << 30])


@settings(deadline=None)
@given(
    state=st.sampled_from(STATES),
    items=garbage,
    with_101=st.booleans(),
    eof=st.booleans(),
    sizes=cut_sizes,
    sizehint=sizehints,
)
def test_receive_into_gives_the_events_of_receive_data(  # noqa: PLR0917 - hypothesis's
    state: str, items: list[Any], with_101: bool, eof: bool, sizes: list[int], sizehint: int
) -> None:
    to_server = state.startswith("server")
    chunks = [
        item
        if isinstance(item, bytes)
        else raw_frame(*item[:2], fin=item[2], rsv=item[3], masked=item[4] == to_server)
        for item in items
    ]
    by_data, prefix = _connection(state, with_101)
    pieces = _cut(prefix + b"".join(chunks), itertools.cycle(sizes))
    expected = _events(_feed_all(by_data, pieces, eof))
    by_into, prefix = _connection(state, with_101)
    pieces = _cut(prefix + b"".join(chunks), itertools.cycle(sizes))  # this client's own key
    assert _events(_feed_all(by_into, pieces, eof, _receive_into(sizehint))) == expected
    assert _outcome(by_into) == _outcome(by_data)


# Long data frames, masked, fragmented or not, now and then broken (bad UTF-8 anywhere in a
# text, a bad opcode): reads cut them anywhere, so frames arrive in many pieces and the
# unfinished head frame is unmasked in place and its text checked as it comes.
long_frames = st.tuples(
    st.sampled_from([0x0, 0x1, 0x1, 0x2, 0x2, 0x9, 0xB]),
    st.one_of(
        st.binary(min_size=100, max_size=3000),
        st.text(min_size=30, max_size=1000).map(str.encode),
        st.tuples(st.text(min_size=30, max_size=600), st.integers(0, 2000)).map(
            lambda t: t[0].encode()[: t[1]] + b"\xc3\x28" + t[0].encode()[t[1] :]
        ),
        st.binary(max_size=125),
    ),
    st.booleans(),  # fin
)


def _open_server() -> ServerConnection:
    """An OPEN server whose limits let long messages through."""
    server = ServerConnection(max_message_size=1 << 20)
    (request,) = server.receive_data(REQUEST)
    assert isinstance(request, Handshake)
    server.accept(request)
    server.data_to_send()
    return server


# Whole messages, mostly valid: a first frame and its continuations.
long_messages = st.tuples(
    st.sampled_from([0x1, 0x2]), st.lists(long_frames, min_size=1, max_size=4)
).map(
    lambda m: [
        (m[0] if i == 0 else 0x0, payload, i == len(m[1]) - 1)
        for i, (_, payload, _) in enumerate(m[1])
    ]
)


@settings(deadline=None, max_examples=200)
@given(
    frames=st.lists(
        st.one_of(long_messages, long_messages, long_frames.map(lambda f: [f])), min_size=1
    ).map(lambda lists: [f for frames in lists for f in frames][:10]),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
    sizehint=sizehints,
    eof=st.booleans(),
)
def test_receive_into_long_frames_gives_the_events_of_receive_data(
    frames: list[tuple[int, bytes, bool]], sizes: list[int], sizehint: int, eof: bool
) -> None:
    data = b"".join(
        raw_frame(op, payload[:125] if op & 8 else payload, fin=fin or bool(op & 8))
        for op, payload, fin in frames
    )
    expected = _events(_feed_all(_open_server(), [data], eof))
    pieces = _cut(data, itertools.cycle(sizes))
    by_data = _open_server()
    assert _events(_feed_all(by_data, pieces, eof)) == expected
    by_into = _open_server()
    assert _events(_feed_all(by_into, pieces, eof, _receive_into(sizehint))) == expected
    assert _outcome(by_into) == _outcome(by_data)


def _receive_mixed(choices: Iterator[int], sizehint: int) -> Receive:
    """Feed each piece one of four ways: ``receive_data`` with ``bytes``, a ``bytearray`` or a
    ``memoryview``, or a read into the machine's buffer."""
    into = _receive_into(sizehint)

    def receive(conn: Connection, piece: bytes) -> list[Event]:
        way = next(choices)
        if way == 0:
            return conn.receive_data(piece)
        if way == 1:
            return conn.receive_data(bytearray(piece))
        if way == 2:
            return conn.receive_data(memoryview(piece))
        return into(conn, piece)

    return receive


@settings(deadline=None, max_examples=200)
@given(
    frames=st.lists(
        st.one_of(long_messages, long_frames.map(lambda f: [f])), min_size=1, max_size=4
    ).map(lambda lists: [f for frames in lists for f in frames][:10]),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
    ways=st.lists(st.integers(0, 3), min_size=1, max_size=8),
    sizehint=sizehints,
    eof=st.booleans(),
)
def test_large_binary_frames_kept_as_reads_give_the_same_events(
    frames: list[tuple[int, bytes, bool]],
    sizes: list[int],
    ways: list[int],
    sizehint: int,
    eof: bool,
) -> None:
    # A binary frame with a large rest keeps receive_data's reads as they come and unmasks them
    # into the payload in one pass; lowered here so that every binary frame does.
    data = b"".join(
        raw_frame(op, payload[:125] if op & 8 else payload, fin=fin or bool(op & 8))
        for op, payload, fin in frames
    )
    expected = _events(_feed_all(_open_server(), [data], eof))
    pieces = _cut(data, itertools.cycle(sizes))
    with mock.patch.object(frames_module, "_PIECES_MIN", 1):
        conn = _open_server()
        mixed = _receive_mixed(itertools.cycle(ways), sizehint)
        assert _events(_feed_all(conn, pieces, eof, mixed)) == expected
