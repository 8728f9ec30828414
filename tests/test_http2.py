"""WebSockets over HTTP/2 (RFC 8441): the selector server's HTTP/2 side against a plain ``h2``
client and against our own :class:`~wsmachine.adapters.http2.Client`, on loopback sockets."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

h2_connection = pytest.importorskip("h2.connection")

import h2.config  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

from wsmachine import Binary, Close, Ping, Pong, Text  # noqa: E402
from wsmachine.adapters._common import HTTPResponse  # noqa: E402
from wsmachine.adapters.http2 import Client, Server  # noqa: E402
from wsmachine.adapters.selector import Handler  # noqa: E402
from wsmachine.connection import ClientConnection  # noqa: E402
from wsmachine.extended_connect import ClientOpening  # noqa: E402
from wsmachine.extensions.permessage_deflate import PerMessageDeflate  # noqa: E402

TIMEOUT = 10.0


class Echo(Handler):
    """Echoes; ``big N`` answers N bytes; records every stream's end."""

    def __init__(self):
        self.closed = {}
        self.errors = []
        self.done = threading.Event()

    def on_message(self, peer, message):
        if isinstance(message, str) and message.startswith("big "):
            peer.send(b"x" * int(message[4:]))
        elif message == "close-4001":
            peer.close(4001, "asked")
        else:
            peer.send(message)

    def on_http(self, request):
        return HTTPResponse(
            200, [("content-type", "text/plain")], f"page {request.path}\n".encode()
        )

    def on_close(self, peer, closed):
        self.closed[getattr(peer, "stream_id", None)] = closed
        self.done.set()

    def on_error(self, peer, error):
        self.errors.append(error)


@pytest.fixture
def served(request):
    settings = getattr(request, "param", {})
    handler = Echo()
    server = Server(handler, "127.0.0.1", 0, extensions=[PerMessageDeflate()], **settings)
    thread = server.start()
    yield server, handler
    server.stop(5)
    thread.join(5)
    assert not thread.is_alive()


class RawH2:
    """A plain ``h2`` client on a blocking socket; events are kept per stream."""

    def __init__(self, port, *, window=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        # Unchecked output: the tests send bad requests on purpose.
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
        self.h2 = h2_connection.H2Connection(config)
        if window is not None:
            self.h2.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        self.h2.initiate_connection()
        self.events = {}
        self.settings = None
        self.auto_ack = set()  # streams whose data is acknowledged (others: connection only)
        self.flush()
        self.pump(lambda: self.settings is not None)

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, until, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            assert left > 0, "timed out"
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                return
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    self.settings = {k: v.new_value for k, v in event.changed_settings.items()}
                if isinstance(event, h2.events.DataReceived):
                    size = event.flow_controlled_length
                    if event.stream_id in self.auto_ack:
                        self.h2.acknowledge_received_data(size, event.stream_id)
                    elif size:
                        self.h2.increment_flow_control_window(size)  # connection window only
                stream_id = getattr(event, "stream_id", None)
                if stream_id:
                    self.events.setdefault(stream_id, []).append(event)
            self.flush()

    def request(self, headers, *, end_stream=False):
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        self.auto_ack.add(stream_id)
        self.flush()
        return stream_id

    def response(self, stream_id):
        self.pump(lambda: self.of(stream_id, h2.events.ResponseReceived))
        return dict(self.of(stream_id, h2.events.ResponseReceived)[0].headers)

    def of(self, stream_id, kind):
        return [e for e in self.events.get(stream_id, []) if isinstance(e, kind)]

    def body(self, stream_id):
        self.pump(lambda: self.of(stream_id, h2.events.StreamEnded))
        return b"".join(e.data for e in self.of(stream_id, h2.events.DataReceived))

    def close(self):
        self.h2.close_connection()
        self.flush()
        self.sock.close()


class RawWebSocket:
    """A WebSocket on one stream of a :class:`RawH2`, with our client machine."""

    def __init__(self, raw, path="/", extensions=(), subprotocols=()):
        self.raw = raw
        opening = ClientOpening(
            "127.0.0.1", path, scheme="http", extensions=extensions, subprotocols=subprotocols
        )
        self.stream_id = raw.request(opening.headers)
        self.accepted = opening.receive_response(list(raw.response(self.stream_id).items()))
        self.conn: ClientConnection = opening.connection
        self.seen = 0
        self.pending = []

    def send(self, message):
        if isinstance(message, str):
            self.conn.send_text(message)
        else:
            self.conn.send_binary(message)
        self.flush()

    def flush(self):
        self.raw.h2.send_data(self.stream_id, self.conn.data_to_send())
        self.raw.flush()

    def event(self):
        def ready():
            datas = self.raw.of(self.stream_id, h2.events.DataReceived)
            for e in datas[self.seen :]:
                self.pending += self.conn.receive_data(e.data)
            self.seen = len(datas)
            return bool(self.pending)

        self.raw.pump(ready)
        return self.pending.pop(0)


def test_settings_advertise_extended_connect(served):
    server, _ = served
    raw = RawH2(server.port)
    assert raw.settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
    raw.close()


def test_several_streams_text_binary_deflate_ping_close_codes(served):
    server, handler = served
    raw = RawH2(server.port)
    deflated = RawWebSocket(raw, "/a", extensions=[PerMessageDeflate()])
    plain = RawWebSocket(raw, "/b")
    assert deflated.accepted.extensions[0].name == "permessage-deflate"
    assert plain.accepted.extensions == ()
    deflated.send("é" * 3000)
    plain.send(b"\x00\xff" * 10)
    assert plain.event() == Binary(data=b"\x00\xff" * 10)
    assert deflated.event() == Text(data="é" * 3000)
    assert len(server.streams) == 2
    plain.conn.ping(b"hi")
    plain.flush()
    assert plain.event() == Pong(payload=b"hi")
    deflated.send("close-4001")  # the server closes this one with 4001
    assert deflated.event() == Close(code=4001, reason="asked")
    deflated.flush()  # our echo of the Close
    raw.pump(lambda: raw.of(deflated.stream_id, h2.events.StreamEnded))  # server ends first
    plain.conn.close(1000, "bye")
    plain.flush()
    assert plain.event() == Close(code=1000)
    raw.pump(lambda: raw.of(plain.stream_id, h2.events.StreamEnded))
    raw.h2.end_stream(plain.stream_id)
    raw.h2.end_stream(deflated.stream_id)
    raw.flush()
    deadline = time.monotonic() + TIMEOUT
    while len(handler.closed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handler.closed[deflated.stream_id].local.code == 4001
    assert handler.closed[plain.stream_id].code == 1000
    assert handler.closed[plain.stream_id].ok
    raw.close()


def test_server_ping_gets_pong(served):
    server, _ = served
    raw = RawH2(server.port)
    ws = RawWebSocket(raw, "/p")
    stream = server.streams[0]
    server.call_soon_threadsafe(lambda: stream.ping(b"srv"))
    assert ws.event() == Ping(payload=b"srv")
    raw.close()


def test_stream_reset_is_1006(served):
    server, handler = served
    raw = RawH2(server.port)
    ws = RawWebSocket(raw, "/r")
    other = RawWebSocket(raw, "/still-here")
    raw.h2.reset_stream(ws.stream_id, h2.errors.ErrorCodes.CANCEL)
    raw.flush()
    assert handler.done.wait(TIMEOUT)
    closed = handler.closed[ws.stream_id]
    assert closed.code == 1006 and isinstance(closed.error, ConnectionResetError)
    other.send("alive")  # the other stream is untouched
    assert other.event() == Text(data="alive")
    raw.close()


@pytest.mark.parametrize(
    "served", [{"write_limit": 200_000, "write_high_water": 50_000}], indirect=True
)
def test_flow_control_stall_one_stream_other_flows(served):
    """A stream whose reader never opens its window holds its own output; another stream on
    the same connection goes on; past write_limit the stalled one is reset (CANCEL, 1006)."""
    server, handler = served
    raw = RawH2(server.port, window=1000)
    stalled = RawWebSocket(raw, "/slow")
    flowing = RawWebSocket(raw, "/fast")
    raw.auto_ack.discard(stalled.stream_id)  # never acknowledge this stream's data
    stalled.send("big 20000")
    for i in range(20):
        flowing.send(f"msg {i}")
        assert flowing.event() == Text(data=f"msg {i}")
    got = sum(len(e.data) for e in raw.of(stalled.stream_id, h2.events.DataReceived))
    assert got <= 1000  # only its window's worth
    assert server.streams[0].buffered > 0 or server.streams[1].buffered > 0
    for _ in range(12):
        stalled.send("big 20000")  # piles up past write_limit
    raw.pump(lambda: raw.of(stalled.stream_id, h2.events.StreamReset))
    (reset,) = raw.of(stalled.stream_id, h2.events.StreamReset)
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL
    assert handler.done.wait(TIMEOUT)
    closed = handler.closed[stalled.stream_id]
    assert closed.code == 1006 and isinstance(closed.error, BufferError)
    flowing.send("after")
    assert flowing.event() == Text(data="after")
    raw.close()


BASE = [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http")]
BASE += [(b":path", b"/"), (b":authority", b"127.0.0.1"), (b"sec-websocket-version", b"13")]


def _without(name, value=None):
    out = [(k, v) for k, v in BASE if k != name]
    return (
        out if value is None else [*out, (name, value)] if name[0] != 58 else [(name, value), *out]
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (_without(b":protocol", b"webtransport"), b"501"),
        (_without(b":method", b"POST"), b"400"),
        (_without(b"sec-websocket-version", b"8"), b"426"),
        (_without(b"sec-websocket-version"), b"426"),
        (_without(b":path", b"nopath"), b"400"),
        (_without(b":scheme", b"ftp"), b"400"),
        ([(b":method", b"CONNECT"), (b":authority", b"example.com:443")], b"501"),
    ],
    ids=[
        "unknown-protocol",
        "not-connect",
        "version-8",
        "no-version",
        "bad-path",
        "bad-scheme",
        "classic-connect",
    ],
)
def test_bad_connect_gets_status_and_no_websocket(served, headers, status):
    server, _ = served
    raw = RawH2(server.port)
    stream_id = raw.request(headers)
    assert raw.response(stream_id)[b":status"] == status
    assert raw.body(stream_id).startswith(status) or status == b"501"
    assert server.streams == []
    ok = RawWebSocket(raw, "/fine")  # the connection is still good
    ok.send("x")
    assert ok.event() == Text(data="x")
    raw.close()


def test_plain_get_page_over_http2(served):
    server, _ = served
    raw = RawH2(server.port)
    get = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":path", b"/index"),
        (b":authority", b"h"),
    ]
    stream_id = raw.request(get, end_stream=True)
    response = raw.response(stream_id)
    assert response[b":status"] == b"200"
    assert raw.body(stream_id) == b"page /index\n"
    raw.close()


def test_http11_on_the_same_port(served):
    server, _ = served
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    conn = ClientConnection(f"127.0.0.1:{server.port}", "/")
    sock.sendall(conn.data_to_send())
    events = []
    while not any(isinstance(e, Text) for e in events):
        events += conn.receive_data(sock.recv(65536))
        if conn.state.name == "OPEN" and not any(isinstance(e, Text) for e in events):
            conn.send_text("over 1.1")
            sock.sendall(conn.data_to_send())
    assert Text(data="over 1.1") in events
    sock.close()


def test_our_client_several_streams(served):
    server, _ = served
    sock = socket.create_connection(("127.0.0.1", server.port))
    with Client(sock, f"127.0.0.1:{server.port}", extensions=[PerMessageDeflate()]) as client:
        streams = [client.open(f"/s{i}") for i in range(5)]
        for i, stream in enumerate(streams):
            stream.send(f"hello {i}" if i % 2 else bytes([i]) * 100)
        for i, stream in enumerate(reversed(streams)):
            j = 4 - i
            assert stream.recv() == (f"hello {j}" if j % 2 else bytes([j]) * 100)
        assert len(server.streams) == 5
        assert streams[0].close(1000, "done").code == 1000


def test_our_client_sees_refusal_status(served):
    server, _ = served

    class Refuse(Echo):
        def on_handshake(self, peer, handshake):
            return HTTPResponse(403, [("content-type", "text/plain")], b"no\n")

    server.handler = Refuse()
    sock = socket.create_connection(("127.0.0.1", server.port))
    with Client(sock, f"127.0.0.1:{server.port}") as client:
        from wsmachine.adapters import HandshakeError

        with pytest.raises(HandshakeError) as info:
            client.open("/")
        assert info.value.status_code == 403


CLIENT_100 = textwrap.dedent(
    """
    import socket, sys
    sys.path.insert(0, sys.argv[2])
    from wsmachine.adapters.http2 import Client
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    client = Client(sock, "127.0.0.1", timeout=20)
    streams = [client.open(f"/n{i}") for i in range(100)]
    for i, s in enumerate(streams):
        s.send(f"m{i}")
    assert [s.recv() for s in streams] == [f"m{i}" for i in range(100)]
    print("open", flush=True)
    sys.stdin.readline()
    for s in streams:
        s.close()
    client.close()
    print("closed", flush=True)
    """
)


def test_100_streams_on_one_connection_memory(served):
    """One h2 connection holding 100 WebSockets (echoed once each); the server's memory per
    stream, by tracemalloc, with the client in another process."""
    server, _ = served
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        root = str(pathlib.Path(__file__).parents[1])
        with subprocess.Popen(
            [sys.executable, "-c", CLIENT_100, str(server.port), root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as child:
            try:
                assert child.stdout.readline().strip() == "open"
                assert len(server.streams) == 100
                after = tracemalloc.get_traced_memory()[0]
                per_stream = (after - before) / 100
                print(f"\n100 WebSocket streams on one HTTP/2 connection: {per_stream:.0f} B each")
                assert per_stream < 64 * 1024
                child.stdin.write("\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == "closed"
                assert child.wait(TIMEOUT) == 0
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait(TIMEOUT)
    finally:
        tracemalloc.stop()
