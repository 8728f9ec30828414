"""WebSockets over HTTP/3 (RFC 9220): an aioquic client and server joined in memory (both are
sans-IO), the same extended CONNECT opening and framing machine as HTTP/2, with
permessage-deflate, the closing handshake over the stream's FIN, and a reset as 1006."""

from __future__ import annotations

import pytest

pytest.importorskip("aioquic")

from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamReset
from cryptography.hazmat.primitives.serialization import Encoding

from tests.certs import self_signed
from wsmachine import Accepted, Close, Text
from wsmachine.extended_connect import (
    SETTINGS_ENABLE_CONNECT_PROTOCOL,
    ClientOpening,
    accept_extended_connect,
)
from wsmachine.extensions.permessage_deflate import PerMessageDeflate

CLIENT_ADDR = ("10.0.0.1", 4433)
SERVER_ADDR = ("10.0.0.2", 443)


class Wire:
    """An aioquic client and server H3 connection, datagrams carried in memory."""

    def __init__(self):
        cert, key = self_signed()
        server_config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        server_config.certificate = cert
        server_config.private_key = key
        client_config = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, server_name="localhost"
        )
        client_config.cadata = cert.public_bytes(Encoding.PEM)
        self.now = 1000.0
        self.client_quic = QuicConnection(configuration=client_config)
        self.server_quic = QuicConnection(
            configuration=server_config,
            original_destination_connection_id=self.client_quic.original_destination_connection_id,
        )
        self.client = H3Connection(self.client_quic)
        self.server = H3Connection(self.server_quic)
        self.client_events = []
        self.server_events = []
        self.client_quic.connect(SERVER_ADDR, now=self.now)
        self.run()

    def run(self, rounds=50):
        """Carry datagrams both ways until both sides are quiet (bounded)."""
        for _ in range(rounds):
            moved = False
            for quic, other, addr in (
                (self.client_quic, self.server_quic, CLIENT_ADDR),
                (self.server_quic, self.client_quic, SERVER_ADDR),
            ):
                for data, _ in quic.datagrams_to_send(now=self.now):
                    other.receive_datagram(data, addr, now=self.now)
                    moved = True
            for quic, h3, events in (
                (self.client_quic, self.client, self.client_events),
                (self.server_quic, self.server, self.server_events),
            ):
                event = quic.next_event()
                while event is not None:
                    if isinstance(event, StreamReset):
                        events.append(event)
                    events.extend(h3.handle_event(event))
                    event = quic.next_event()
                    moved = True
            self.now += 0.01
            if not moved:
                return
        raise AssertionError("the in-memory QUIC exchange did not settle")

    @staticmethod
    def take(events, kind, stream_id):
        found = [e for e in events if isinstance(e, kind) and e.stream_id == stream_id]
        for e in found:
            events.remove(e)
        return found


def _open(wire):
    """Open a WebSocket over an HTTP/3 request stream, with permessage-deflate."""
    opening = ClientOpening(
        "localhost", "/chat", subprotocols=["chat"], extensions=[PerMessageDeflate()]
    )
    stream_id = wire.client_quic.get_next_available_stream_id()
    wire.client.send_headers(stream_id, opening.headers)
    wire.run()
    (request,) = wire.take(wire.server_events, HeadersReceived, stream_id)
    server, response = accept_extended_connect(
        request.headers, subprotocols=["chat"], extensions=[PerMessageDeflate()]
    )
    wire.server.send_headers(stream_id, response)
    wire.run()
    (answer,) = wire.take(wire.client_events, HeadersReceived, stream_id)
    accepted = opening.receive_response(answer.headers)
    assert isinstance(accepted, Accepted)
    return stream_id, opening.connection, server


def _carry(wire, stream_id, conn, receiver, *, end=False):
    """Send ``conn``'s bytes on the stream (and the FIN if ``end``); feed them to ``receiver``."""
    h3, events = (
        (wire.client, wire.server_events) if conn.client else (wire.server, wire.client_events)
    )
    wire_bytes = conn.data_to_send()
    h3.send_data(stream_id, wire_bytes, end_stream=end)
    wire.run()
    out = []
    for event in wire.take(events, DataReceived, stream_id):
        if event.data:
            out += receiver.receive_data(event.data)
        if event.stream_ended:
            out += receiver.receive_eof()
    return out


def test_server_advertises_extended_connect():
    wire = Wire()
    settings = wire.client._received_settings or {}  # aioquic keeps the peer's SETTINGS here
    assert settings.get(SETTINGS_ENABLE_CONNECT_PROTOCOL) == 1


def test_websocket_with_deflate_over_http3_stream():
    wire = Wire()
    stream_id, client, server = _open(wire)
    assert client.subprotocol == "chat"
    assert [e.name for e in client.extensions] == ["permessage-deflate"]
    client.send_text("héllo " * 200)
    events = _carry(wire, stream_id, client, server)
    assert events == [Text(data="héllo " * 200)]
    server.send_text("back " * 200)
    events = _carry(wire, stream_id, server, client)
    assert events == [Text(data="back " * 200)]
    # Closing handshake; the FIN is the TCP half-close, the server's first (RFC 9220 §3).
    client.close(1000, "bye")
    assert _carry(wire, stream_id, client, server) == [Close(code=1000, reason="bye")]
    events = _carry(wire, stream_id, server, client, end=True)
    assert server.should_close()  # once its Close is written: the FIN went with it
    assert events == [Close(code=1000)]
    assert client.should_close()
    assert _carry(wire, stream_id, client, server, end=True) == []


def test_stream_reset_is_1006():
    """H3_REQUEST_CANCELLED on the stream is an abnormal closure (RFC 9220 §3)."""
    wire = Wire()
    stream_id, _client, server = _open(wire)
    wire.client_quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
    wire.run()
    resets = [e for e in wire.server_events if isinstance(e, StreamReset)]
    assert resets and resets[0].error_code == ErrorCode.H3_REQUEST_CANCELLED
    (event,) = server.receive_eof()
    assert event.code == 1006 and event.error is not None
