"""Hostile input, generated with wsmachine.testing.strategies: in either role and every state,
any mix of valid, broken and random bytes, cut into any reads, gives only documented events.

For every generated input:

* ``receive_data``, ``accept`` and ``receive_eof`` never raise;
* every event is one of the documented types; a :class:`Close` or :class:`Rejected` with an
  error carries a :class:`RemoteProtocolError`, whose code is the one reported; nothing
  follows the event that ends the connection;
* the state moves only along :data:`wsmachine.state.TRANSITIONS`;
* the limits hold: no message passes ``max_message_size``, a server's refusal is one of the
  documented statuses, and the output is bounded;
* the outcome is the same whether the bytes come whole or cut into reads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
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
    OriginPolicy,
    Ping,
    Pong,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.extensions import PerMessageDeflate
from wsmachine.extensions.permessage_deflate import PerMessageDeflateCodec
from wsmachine.state import TRANSITIONS
from wsmachine.testing import FrameBuilder
from wsmachine.testing import strategies as ws

EVENT_TYPES = (Handshake, HTTPRequest, Accepted, Rejected, Text, Binary, Ping, Pong, Close)
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MAX_MESSAGE = 64
LIMITS: dict[str, Any] = {
    "max_message_size": MAX_MESSAGE,
    "max_fragments": 6,
    "max_handshake_size": 1024,
    "max_handshake_line": 200,
    "max_handshake_headers": 24,
}
SERVER_STATUSES = {400, 403, 405, 414, 426, 431}
REQUEST = (
    "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    "Origin: https://example.com\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
).encode()

SCENARIOS = [
    "server new",
    "server new, origin policy",
    "server awaiting answer",
    "server open",
    "server open, deflate",
    "server open, stream",
    "server closing",
    "server owing close",
    "server closed",
    "server rejected",
    "client new",
    "client open",
    "client open, deflate, stream",
    "client closing",
    "client owing close",
    "client closed",
]


def _reachable() -> dict[State, set[State]]:
    reach = {state: {state} for state in State}
    changed = True
    while changed:
        changed = False
        for (source, _), target in TRANSITIONS.items():
            for seen in reach.values():
                if source in seen and target not in seen:
                    seen.add(target)
                    changed = True
    return reach


REACHABLE = _reachable()


def make(scenario: str) -> Connection:
    """A connection in the scenario's state; always the same for the same scenario."""
    deflate = "deflate" in scenario
    stream = "stream" in scenario
    if scenario.startswith("server"):
        policy = OriginPolicy(["https://example.com"]) if "origin" in scenario else None
        server = ServerConnection(
            extensions=[PerMessageDeflate()] if deflate else [],
            origin_policy=policy,
            stream=stream,
            **LIMITS,
        )
        if "new" in scenario:
            return server
        (request,) = server.receive_data(REQUEST)
        assert isinstance(request, Handshake)
        if "rejected" in scenario:
            server.reject(request)
        elif "awaiting" not in scenario:
            server.accept(request)
            if "closing" in scenario or "closed" in scenario:
                server.close()
            if "closed" in scenario:
                server.receive_data(FrameBuilder(client=True).close(1000))
        server.data_to_send()
        if "owing" in scenario:
            # The peer's Close arrived; the echo waits for the next data_to_send().
            server.receive_data(FrameBuilder(client=True).close(1001))
        return server
    client = ClientConnection(
        "example.com", stream=stream, extensions=[PerMessageDeflate()], **LIMITS
    )
    handshake = client._handshake
    assert handshake is not None
    handshake._key = KEY  # fixed, so that generated answers can be valid
    client.data_to_send()
    if "new" in scenario:
        return client
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else "")
        + "\r\n"
    ).encode()
    (accepted,) = client.receive_data(response)
    assert isinstance(accepted, Accepted), accepted
    if "closing" in scenario or "closed" in scenario:
        client.close()
    if "closed" in scenario:
        client.receive_data(FrameBuilder(client=False).close(1000))
    client.data_to_send()
    if "owing" in scenario:
        client.receive_data(FrameBuilder(client=False).close(1001))
    return client


def _compressed(message: bytes, masked: bool) -> bytes:
    codec = PerMessageDeflateCodec(
        send_window_bits=15,
        send_no_context_takeover=False,
        receive_window_bits=15,
        receive_no_context_takeover=False,
    )
    rsv, payload = codec.encode(0x2, True, message)
    return FrameBuilder(client=masked).frame(0x2, payload, rsv=rsv)


def pieces_for(scenario: str, masked: bool) -> st.SearchStrategy[bytes]:
    """One piece of hostile input that means something to a connection in ``scenario``."""
    build = FrameBuilder(client=masked)
    options: list[st.SearchStrategy[bytes]] = [
        st.binary(max_size=40),
        ws.frames(masked=masked, max_size=80),
        ws.invalid_frames(masked=masked).map(lambda case: case[1]),
        ws.fragmented_messages(masked=masked, max_size=80).map(lambda case: case[1]),
        st.binary(max_size=MAX_MESSAGE * 3).map(lambda data: _compressed(data, masked)),
        st.sampled_from(
            [
                build.frame(2, b"", length=1 << 40),  # declares a terabyte, sends nothing
                build.binary(b"", fin=False) + build.continuation(b"", fin=False) * 20,
                build.frame(2, b"x" * (MAX_MESSAGE + 1)),
                build.ping(b"p") * 30,
                _compressed(b"\x00" * 100_000, masked),  # a small bomb: 100 kB from 100 B
            ]
        ),
    ]
    if scenario == "client new":
        options += [
            ws.handshake_responses(KEY, valid=True),
            ws.handshake_responses(KEY, valid=False),
            st.just(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope"),
            st.just(b"HTTP/1.1 100 Continue\r\n\r\n"),
        ]
    elif "new" in scenario:
        options += [ws.handshake_requests(valid=True), ws.handshake_requests(valid=False)]
        options.append(st.just(REQUEST))
    return st.one_of(options)


@st.composite
def hostile_inputs(draw: st.DrawFn) -> tuple[str, list[bytes], list[int], bool]:
    scenario = draw(st.sampled_from(SCENARIOS))
    masked = scenario.startswith("server")
    if draw(st.integers(0, 9)) == 0:
        masked = not masked  # now and then, frames of the wrong role
    items = draw(st.lists(pieces_for(scenario, masked), min_size=1, max_size=6))
    return scenario, items, draw(ws.read_sizes(max_size=50)), draw(st.booleans())


def feed(scenario: str, reads: list[bytes], eof: bool) -> tuple[list[object], object]:
    """Feed the reads to a fresh connection, checking every call; return the events seen
    and the final state."""
    conn = make(scenario)
    seen: list[object] = []
    ended = conn.state in (State.REMOTE_CLOSING, State.CLOSED, State.REJECTED)
    for piece in reads:
        ended = _step(conn, lambda piece=piece: conn.receive_data(piece), ended, seen)
    pending = [e for e in seen if isinstance(e, tuple) and isinstance(e[0], Handshake)]
    if (
        isinstance(conn, ServerConnection)
        and pending
        and conn.state is State.CONNECTING
        and not ended
    ):
        event = pending[-1][1]
        assert isinstance(event, Handshake)
        ended = _step(conn, lambda: conn.accept(event), ended, seen)
    if eof:
        _step(conn, conn.receive_eof, ended, seen)
    return _events(seen), (conn.state, conn.should_close(), conn.close_expected())


def _step(conn: Connection, call: Any, ended: bool, seen: list[object]) -> bool:
    before = conn.state
    events: list[Event] = call()
    assert isinstance(events, list)
    after = conn.state
    assert after in REACHABLE[before], f"{before} -> {after} is not in the transition table"
    for event in events:
        assert isinstance(event, EVENT_TYPES), event
        assert not ended, f"{event!r} after the connection ended"
        if isinstance(event, Close):
            ended = True
            # The peer's Close, or its violation, in OPEN leaves this side's Close owed until
            # data_to_send() (REMOTE_CLOSING); after our Close, or at the end of the stream
            # (1006), the connection is over at once.
            if event.code == 1006 or before is State.CLOSING:
                assert after is State.CLOSED
            else:
                assert after is State.REMOTE_CLOSING
            if event.error is None:
                assert 1000 <= event.code <= 4999 or event.code == 1005
            else:
                assert isinstance(event.error, RemoteProtocolError)
                assert event.error.close_code == event.code
                assert event.code in (1002, 1006, 1007, 1008, 1009, 1010, 1011)
        elif isinstance(event, Rejected):
            ended = True
            assert after is State.REJECTED
            if event.error is not None:
                assert isinstance(event.error, RemoteProtocolError)
            if not conn.client:
                assert event.status_code in SERVER_STATUSES, event
                assert event.error is not None
        elif isinstance(event, Text | Binary):
            size = len(event.data.encode()) if isinstance(event, Text) else len(event.data)
            assert size <= MAX_MESSAGE
        elif isinstance(event, HTTPRequest):
            ended = True  # the application answers it; this test answers nothing
    out = conn.data_to_send()
    assert isinstance(out, bytes)
    if after is State.REMOTE_CLOSING:
        # The owed Close went out, last.
        assert conn.state is State.CLOSED
        assert conn.closed_first is not None
        _assert_ends_with_close(conn, out)
    else:
        assert conn.state is after
    assert len(out) <= 64 * 1024, "output grew past any reply the input could call for"
    if events and isinstance(events[-1], Rejected) and not conn.client:
        assert out.startswith(b"HTTP/1.1 4")
    seen.extend(_normalized(e) for e in events)
    seen.append((after, conn.should_close(), conn.close_expected()))
    return ended


def _assert_ends_with_close(conn: Connection, out: bytes) -> None:
    """``out`` ends with the Close frame recorded in ``conn.close_sent``."""
    info = conn.close_sent
    assert info is not None
    payload = b"" if info.code == 1005 else info.code.to_bytes(2, "big") + info.reason.encode()
    n = len(payload)
    if conn.client:  # masked: the header, the key, the masked payload
        assert out[-(n + 6) : -(n + 4)] == bytes([0x88, 0x80 | n])
    else:
        assert out.endswith(bytes([0x88, n]) + payload)


def _normalized(event: Event) -> object:
    if isinstance(event, Handshake):
        return (dataclasses.replace(event, headers=()), event)  # the event, for accept()
    if isinstance(event, Accepted):
        return dataclasses.replace(event, headers=())
    error = getattr(event, "error", None)
    return (event, None if error is None else type(error))


def _events(seen: list[object]) -> list[object]:
    """The events, without the states, and without the raw Handshake kept for accept()."""
    out: list[object] = []
    for item in seen:
        if isinstance(item, tuple) and len(item) == 3:
            continue  # a state snapshot
        if isinstance(item, tuple) and isinstance(item[0], Handshake):
            item = item[0]
        out.append(item)
    return out


@settings(max_examples=120, deadline=None)
@given(case=hostile_inputs())
def test_hostile_input_gives_only_documented_events(
    case: tuple[str, list[bytes], list[int], bool],
) -> None:
    scenario, items, sizes, eof = case
    stream = b"".join(items)
    whole = feed(scenario, [stream] if stream else [], eof)
    assert feed(scenario, ws.split(stream, sizes), eof) == whole


@settings(max_examples=50, deadline=None)
@given(scenario=st.sampled_from(SCENARIOS), data=st.binary(max_size=300), eof=st.booleans())
def test_random_bytes_in_every_state(scenario: str, data: bytes, eof: bool) -> None:
    whole = feed(scenario, [data] if data else [], eof)
    assert feed(scenario, ws.split(data, [1]), eof) == whole


def test_every_scenario_is_in_its_state() -> None:
    expected = {
        "new": State.CONNECTING,
        "awaiting": State.CONNECTING,
        "open": State.OPEN,
        "closing": State.CLOSING,
        "owing": State.REMOTE_CLOSING,
        "closed": State.CLOSED,
        "rejected": State.REJECTED,
    }
    for scenario in SCENARIOS:
        word = next(w for w in expected if w in scenario)
        assert make(scenario).state is expected[word], scenario
