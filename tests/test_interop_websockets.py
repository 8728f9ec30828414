"""Interop with the ``websockets`` library, permessage-deflate on (RFC 7692).

* In memory: websockets' sans-IO ``ServerProtocol`` / ``ClientProtocol`` with its
  permessage-deflate factories (several parameter combinations) against our
  ``ClientConnection`` / ``ServerConnection``; compressed text and binary messages, whole and
  fragmented, both ways, with the frames' RSV1 bits checked on the wire.
* On loopback: websockets' threading client against a small thread server built on our
  ``ServerConnection``, and our client against websockets' threading server.

Every loop is bounded by a deadline and every thread is joined.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate as WsPerMessageDeflate,
)
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve
from websockets.uri import parse_uri

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Event,
    Handshake,
    ServerConnection,
    State,
    Text,
)
from wsmachine.extensions import PerMessageDeflate

RSV1 = 0x40
CONT, TEXT, BINARY, CLOSE = 0x0, 0x1, 0x2, 0x8
TIMEOUT = 5.0
BLOCK = random.Random(7692).randbytes(3000)

#: (kind, pieces): one message, sent in as many frames as pieces.
MESSAGES: list[tuple[str, list[Any]]] = [
    ("text", ["Hello"]),
    ("text", ["ünïcødé ✓ " * 300]),
    ("binary", [BLOCK]),
    ("binary", [BLOCK]),  # context takeover: this one is back-references
    ("binary", [b"\0" * 65536]),
    ("text", ["frag-" * 100, "", "ment-€", "ed"]),
    ("binary", [b"a" * 1000, b"b" * 10, b""]),
    ("text", [""]),
    ("binary", [b""]),
]


def joined(kind: str, pieces: Sequence[Any]) -> Text | Binary:
    if kind == "text":
        return Text(data="".join(pieces))
    return Binary(data=b"".join(pieces))


class WireFrame(NamedTuple):
    fin: bool
    rsv: int
    opcode: int
    size: int


def wire_frames(data: bytes) -> list[WireFrame]:
    """The frame headers in ``data`` (whole frames only), RFC 6455 §5.2."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        pos += 2
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        pos += 4 if b1 & 0x80 else 0
        pos += n
        out.append(WireFrame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, n))
    assert pos == len(data)
    return out


def check_rsv(frames: Sequence[WireFrame], compressed: bool, refers: bool) -> None:
    """One frame per piece of MESSAGES; RSV1 on first frames only, when compressing.

    ``refers``: the sender keeps its context with a window of at least 2**12 bytes, so the
    second copy of BLOCK (3000 bytes) is sent as back-references."""
    data = [f for f in frames if f.opcode in (CONT, TEXT, BINARY)]
    assert len(data) == sum(len(pieces) for _, pieces in MESSAGES)
    i = 0
    for _, pieces in MESSAGES:
        first, rest = data[i], data[i + 1 : i + len(pieces)]
        assert first.rsv == (RSV1 if compressed else 0)
        assert all(f.rsv == 0 and f.opcode == CONT for f in rest)
        i += len(pieces)
    sizes = [f.size for f in data]
    if compressed:
        assert (sizes[3] < 40) is refers, sizes[3]
        assert sizes[4] < 1000, "64 KiB of zeros compress"
    else:
        assert sizes[3] == len(BLOCK) and sizes[4] == 65536


# -- websockets' side, sans-IO -----------------------------------------------------------------


class WsSide:
    """Drives a websockets sans-IO protocol and collects whole messages from its frames."""

    def __init__(self, protocol: ServerProtocol | ClientProtocol) -> None:
        self.p = protocol
        self.parts: list[WsFrame] = []

    def out(self) -> bytes:
        return b"".join(self.p.data_to_send())

    def feed(self, data: bytes) -> list[Text | Binary | Close]:
        self.p.receive_data(data)
        result: list[Text | Binary | Close] = []
        for event in self.p.events_received():
            assert isinstance(event, WsFrame), event
            if event.opcode is Opcode.CLOSE:
                result.append(Close(code=int.from_bytes(event.data[:2], "big")))
                continue
            if event.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                continue
            self.parts.append(event)
            if event.fin:
                data = b"".join(bytes(f.data) for f in self.parts)
                first = self.parts[0].opcode
                self.parts = []
                result.append(
                    Text(data=data.decode()) if first is Opcode.TEXT else Binary(data=data)
                )
        return result

    def send(self, kind: str, pieces: Sequence[Any]) -> None:
        for i, piece in enumerate(pieces):
            data = piece.encode() if kind == "text" else piece
            fin = i == len(pieces) - 1
            if i:
                self.p.send_continuation(data, fin=fin)
            elif kind == "text":
                self.p.send_text(data, fin=fin)
            else:
                self.p.send_binary(data, fin=fin)


def send_ours(conn: ClientConnection | ServerConnection, kind: str, pieces: Sequence[Any]) -> None:
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        if kind == "text":
            conn.send_text(piece, final=final)
        else:
            conn.send_binary(piece, final=final)


def converse(
    ours: ClientConnection | ServerConnection,
    ws: WsSide,
    *,
    ours_compresses: bool,
    ours_refer: bool,
    ws_refers: bool,
    ws_compresses: bool = True,
    rounds: int = 3,
) -> None:
    """MESSAGES both ways, ``rounds`` times, then a clean close started by us."""
    expected = [joined(kind, pieces) for kind, pieces in MESSAGES]
    for _ in range(rounds):
        for kind, pieces in MESSAGES:
            send_ours(ours, kind, pieces)
        wire = ours.data_to_send()
        check_rsv(wire_frames(wire), ours_compresses, ours_refer)
        assert ws.feed(wire) == expected
        for kind, pieces in MESSAGES:
            ws.send(kind, pieces)
        wire = ws.out()
        check_rsv(wire_frames(wire), ws_compresses, ws_refers)
        assert ours.receive_data(wire) == expected
    ours.close(1000)
    assert ws.feed(ours.data_to_send()) == [Close(code=1000)]
    events = ours.receive_data(ws.out())
    assert events == [Close(code=1000)]
    assert ours.state is State.CLOSED
    assert ws.p.state is WsState.CLOSING or ws.p.state is WsState.CLOSED


# -- in memory: websockets server, our client ------------------------------------------------


class Case(NamedTuple):
    ws_kwargs: dict[str, Any]  # websockets' factory
    our_kwargs: dict[str, Any]  # our PerMessageDeflate
    response: str  # the server's Sec-WebSocket-Extensions
    we_compress: bool  # our window is above 8 bits
    we_refer: bool  # we keep context with a window of 2**12 or more (ours is capped at 12)
    ws_refers: bool  # websockets does


WS_SERVER_CASES = [
    Case({}, {}, "permessage-deflate", True, True, True),
    Case(
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {},
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        True,
        False,
        False,
    ),
    Case(
        {"server_max_window_bits": 10, "client_max_window_bits": 9},
        {},
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
        True,
        False,
        False,
    ),
    Case(
        {"compress_settings": {"memLevel": 4, "level": 9}},
        {
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
            "server_max_window_bits": 11,
            "client_max_window_bits": 12,
        },
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=11; client_max_window_bits=12",
        True,
        False,
        False,
    ),
    Case(
        {"client_max_window_bits": 12},
        {"client_max_window_bits": 10, "window_bits": 15, "compress_level": 1},
        "permessage-deflate; client_max_window_bits=10",
        True,
        False,
        True,
    ),
    # websockets limits our client to an 8-bit window: we send uncompressed (RSV1 clear).
    Case(
        {"client_max_window_bits": 8},
        {},
        "permessage-deflate; client_max_window_bits=8",
        False,
        False,
        True,
    ),
]


@pytest.mark.parametrize("case", WS_SERVER_CASES, ids=lambda c: c.response)
def test_websockets_server_sansio(case: Case) -> None:
    ws_kwargs, our_kwargs, response = case.ws_kwargs, case.our_kwargs, case.response
    proto = ServerProtocol(extensions=[ServerPerMessageDeflateFactory(**ws_kwargs)])
    ws = WsSide(proto)
    ours = ClientConnection("localhost", "/", extensions=[PerMessageDeflate(**our_kwargs)])
    ws.p.receive_data(ours.data_to_send())
    [request] = ws.p.events_received()
    assert isinstance(request, Request)
    proto.send_response(proto.accept(request))
    assert ws.p.handshake_exc is None
    [accepted] = ours.receive_data(ws.out())
    assert isinstance(accepted, Accepted)
    header = dict(accepted.headers)[b"sec-websocket-extensions"].decode()
    assert header == response
    [ext] = ws.p.extensions
    assert isinstance(ext, WsPerMessageDeflate)
    converse(
        ours,
        ws,
        ours_compresses=case.we_compress,
        ours_refer=case.we_refer,
        ws_refers=case.ws_refers,
    )


# -- in memory: websockets client, our server ------------------------------------------------

WS_CLIENT_CASES = [
    Case({}, {}, "permessage-deflate", True, True, True),
    Case({"client_max_window_bits": None}, {}, "permessage-deflate", True, True, True),
    Case(
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {},
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        True,
        False,
        False,
    ),
    Case(
        {"server_max_window_bits": 10, "client_max_window_bits": 11},
        {},
        "permessage-deflate; server_max_window_bits=10",
        True,
        False,
        False,
    ),
    Case(
        {},
        {"server_max_window_bits": 9, "client_max_window_bits": 9, "mem_level": 8},
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
        True,
        False,
        False,
    ),
    Case(
        {"compress_settings": {"level": 1}},
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        True,
        False,
        False,
    ),
    # websockets asks for an 8-bit server window: we accept and send uncompressed.
    Case(
        {"server_max_window_bits": 8},
        {},
        "permessage-deflate; server_max_window_bits=8",
        False,
        False,
        True,
    ),
]


@pytest.mark.parametrize("case", WS_CLIENT_CASES, ids=lambda c: c.response)
def test_websockets_client_sansio(case: Case) -> None:
    ws_kwargs, our_kwargs, response = case.ws_kwargs, case.our_kwargs, case.response
    client = ClientProtocol(
        parse_uri("ws://localhost/"), extensions=[ClientPerMessageDeflateFactory(**ws_kwargs)]
    )
    client.send_request(client.connect())
    ws = WsSide(client)
    ours = ServerConnection(extensions=[PerMessageDeflate(**our_kwargs)])
    [handshake] = ours.receive_data(ws.out())
    assert isinstance(handshake, Handshake)
    assert ours.accept(handshake) == []
    ws.p.receive_data(ours.data_to_send())
    [answer] = ws.p.events_received()
    assert isinstance(answer, Response)
    assert ws.p.handshake_exc is None, ws.p.handshake_exc
    assert ws.p.state is WsState.OPEN
    assert answer.headers["Sec-WebSocket-Extensions"] == response
    converse(
        ours,
        ws,
        ours_compresses=case.we_compress,
        ours_refer=case.we_refer,
        ws_refers=case.ws_refers,
    )


def test_websockets_without_compression_meets_ours() -> None:
    client = ClientProtocol(parse_uri("ws://localhost/"))
    client.send_request(client.connect())
    ws = WsSide(client)
    ours = ServerConnection(extensions=[PerMessageDeflate()])
    [handshake] = ours.receive_data(ws.out())
    assert isinstance(handshake, Handshake) and handshake.extensions == ()
    ours.accept(handshake)
    ws.p.receive_data(ours.data_to_send())
    [answer] = ws.p.events_received()
    assert isinstance(answer, Response) and "Sec-WebSocket-Extensions" not in answer.headers
    assert ws.p.handshake_exc is None
    converse(
        ours, ws, ours_compresses=False, ours_refer=False, ws_refers=False, ws_compresses=False
    )


# -- on loopback -------------------------------------------------------------------------------


class ThreadServer:
    """A one-connection server on 127.0.0.1 built on our ServerConnection: echoes messages."""

    def __init__(self, extensions: Sequence[PerMessageDeflate]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.extensions = extensions
        self.received = bytearray()  # every byte the client sent
        self.events: list[Event] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except BaseException as exc:  # reported to the test
            self.errors.append(exc)
            return
        with sock:
            sock.settimeout(TIMEOUT)
            conn = ServerConnection(extensions=self.extensions)
            deadline = time.monotonic() + TIMEOUT
            try:
                while time.monotonic() < deadline:
                    data = sock.recv(65536)
                    self.received += data
                    pending = conn.receive_data(data) if data else conn.receive_eof()
                    while pending:
                        event = pending.pop(0)
                        self.events.append(event)
                        if isinstance(event, Handshake):
                            pending += conn.accept(event)
                        elif isinstance(event, Text):
                            conn.send_text(event.data)
                        elif isinstance(event, Binary):
                            conn.send_binary(event.data)
                    out = conn.data_to_send()
                    if out:
                        sock.sendall(out)
                    if conn.should_close() or not data:
                        return
                raise TimeoutError("the server loop ran out of time")
            except BaseException as exc:  # reported to the test
                self.errors.append(exc)

    def stop(self) -> None:
        self.thread.join(TIMEOUT)
        self.listener.close()
        assert not self.thread.is_alive()
        assert self.errors == []


def test_loopback_websockets_client_our_server() -> None:
    server = ThreadServer([PerMessageDeflate()])
    try:
        with ws_connect(
            f"ws://127.0.0.1:{server.port}/",
            compression="deflate",
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
        ) as ws:
            [ext] = ws.protocol.extensions
            assert isinstance(ext, WsPerMessageDeflate)
            for kind, pieces in MESSAGES * 2:
                message = joined(kind, pieces)
                if len(pieces) > 1:
                    ws.send(iter(pieces))  # a fragmented message
                else:
                    ws.send(pieces[0])
                assert ws.recv(timeout=TIMEOUT) == message.data
    finally:
        server.stop()
    [handshake] = [e for e in server.events if isinstance(e, Handshake)]
    assert handshake.extensions[0].name == "permessage-deflate"
    close = server.events[-1]
    assert isinstance(close, Close) and close.code == 1000 and close.error is None
    # What websockets sent, after its request: compressed frames (RSV1 on first frames).
    head_end = server.received.index(b"\r\n\r\n") + 4
    frames = wire_frames(bytes(server.received[head_end:]))
    firsts = [f for f in frames if f.opcode in (TEXT, BINARY)]
    assert len(firsts) == 2 * len(MESSAGES)
    assert all(f.rsv == RSV1 for f in firsts)


def run_client(
    port: int, body: Callable[[Callable[[], list[Event]], ClientConnection], None]
) -> bytes:
    """Connect our client to 127.0.0.1:``port``; ``body(pump, conn)`` runs the conversation.

    Returns every byte the server sent after its 101 response."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        conn = ClientConnection(f"127.0.0.1:{port}", "/", extensions=[PerMessageDeflate()])
        sock.sendall(conn.data_to_send())

        def pump() -> list[Event]:
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            data = sock.recv(65536)
            received.extend(data)
            return conn.receive_data(data) if data else conn.receive_eof()

        body(pump, conn)
    head_end = received.index(b"\r\n\r\n") + 4
    return bytes(received[head_end:])


def test_loopback_our_client_websockets_server() -> None:
    negotiated: list[object] = []

    def handler(ws: Any) -> None:
        negotiated.extend(ws.protocol.extensions)
        for message in ws:
            ws.send(message)

    server = ws_serve(handler, "127.0.0.1", 0, compression="deflate", close_timeout=TIMEOUT)
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    expected = [joined(kind, pieces) for kind, pieces in MESSAGES * 2]
    got: list[Event] = []

    def body(pump: Callable[[], list[Event]], conn: ClientConnection) -> None:
        deadline = time.monotonic() + TIMEOUT
        events: list[Event] = []
        while not events and time.monotonic() < deadline:
            events = pump()
        [accepted] = events
        assert isinstance(accepted, Accepted)
        assert [e.name for e in accepted.extensions] == ["permessage-deflate"]
        for kind, pieces in MESSAGES * 2:
            send_ours(conn, kind, pieces)
            before = len(got)
            while len(got) == before and time.monotonic() < deadline:
                got.extend(pump())
        conn.close(1000)
        while conn.state is not State.CLOSED and time.monotonic() < deadline:
            got.extend(pump())
        # The server closes TCP first (RFC 6455 §7.1.1): wait for its EOF.
        while not conn.should_close() and time.monotonic() < deadline:
            got.extend(pump())
        assert conn.should_close()

    try:
        from_server = run_client(port, body)
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert got[:-1] == expected
    assert got[-1] == Close(code=1000)
    [ext] = negotiated
    assert isinstance(ext, WsPerMessageDeflate)
    frames = wire_frames(from_server)
    firsts = [f for f in frames if f.opcode in (TEXT, BINARY)]
    assert len(firsts) == len(expected)
    assert all(f.rsv == RSV1 for f in firsts)
