"""wsmachine.testing.ConnectionPair: a client and a server joined by an in-memory wire."""

from __future__ import annotations

import pytest

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Event,
    Handshake,
    LocalProtocolError,
    Ping,
    Pong,
    Rejected,
    ServerConnection,
    State,
    Text,
)
from wsmachine.testing import ConnectionPair, Exchanged


class Recorder:
    """Stands in for a connection on the receiving end and records the pieces it is fed."""

    def __init__(self, conn: ClientConnection | ServerConnection) -> None:
        self.conn = conn
        self.pieces: list[bytes] = []

    def receive_data(self, data: bytes) -> list[Event]:
        self.pieces.append(bytes(data))
        return self.conn.receive_data(data)

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()


class TestConstruction:
    def test_starts_connecting_with_the_request_queued(self) -> None:
        pair = ConnectionPair()
        assert isinstance(pair.client, ClientConnection)
        assert isinstance(pair.server, ServerConnection)
        assert pair.client.state is State.CONNECTING
        assert pair.server.state is State.CONNECTING
        (event,) = pair.client_to_server()
        assert isinstance(event, Handshake)
        assert (event.host, event.path) == ("example.com", "/")

    def test_host_and_path(self) -> None:
        pair = ConnectionPair(host="h.example:8080", path="/room?id=1")
        request, _ = pair.handshake()
        assert (request.host, request.path) == ("h.example:8080", "/room?id=1")

    def test_settings_reach_each_side(self) -> None:
        pair = ConnectionPair(
            client={"subprotocols": ["chat", "v2"], "origin": "https://o", "stream": True},
            server={"subprotocols": ["v2"], "max_message_size": 4, "auto_pong": False},
        )
        request, accepted = pair.handshake()
        assert request.subprotocols == ("chat", "v2")
        assert request.origin == "https://o"
        assert accepted.subprotocol == "v2"
        # The server's auto_pong=False and max_message_size=4, the client's stream=True.
        pair.client.ping(b"x")
        assert pair.client_to_server() == [Ping(payload=b"x")]
        assert pair.server.data_to_send() == b""
        pair.server.send_text("ab", final=False)
        pair.server.send_text("c")
        assert pair.server_to_client() == [Text(data="ab", final=False), Text(data="c")]
        pair.client.send_binary(b"12345")
        (close,) = pair.client_to_server()
        assert isinstance(close, Close)
        assert close.code == 1009

    def test_slots_and_repr(self) -> None:
        pair = ConnectionPair()
        assert not hasattr(pair, "__dict__")
        assert repr(pair) == "<ConnectionPair client=CONNECTING server=CONNECTING>"
        pair.handshake()
        assert repr(pair) == "<ConnectionPair client=OPEN server=OPEN>"


class TestHandshake:
    def test_returns_both_events(self) -> None:
        pair = ConnectionPair()
        request, accepted = pair.handshake()
        assert isinstance(request, Handshake)
        assert isinstance(accepted, Accepted)
        assert accepted.subprotocol is None
        assert pair.client.state is State.OPEN
        assert pair.server.state is State.OPEN
        assert pair.client.data_to_send() == b""
        assert pair.server.data_to_send() == b""

    def test_subprotocol_and_extra_headers(self) -> None:
        pair = ConnectionPair(client={"subprotocols": ["a", "b"]})
        _, accepted = pair.handshake(subprotocol="b", extra_headers=[("X-Test", "1")])
        assert accepted.subprotocol == "b"
        assert (b"x-test", b"1") in accepted.headers

    def test_unoffered_subprotocol_raises(self) -> None:
        pair = ConnectionPair()
        with pytest.raises(LocalProtocolError, match="not offered"):
            pair.handshake(subprotocol="chat")
        assert pair.server.state is State.CONNECTING

    def test_refused_request_is_an_assertion_error(self) -> None:
        pair = ConnectionPair(server={"max_handshake_size": 64})
        with pytest.raises(AssertionError, match="Rejected"):
            pair.handshake()
        assert pair.server.state is State.REJECTED

    def test_invalid_101_is_an_assertion_error(self) -> None:
        pair = ConnectionPair(client={"max_handshake_size": 40})
        with pytest.raises(AssertionError, match="Rejected"):
            pair.handshake()
        assert pair.client.state is State.REJECTED

    def test_twice_is_an_assertion_error(self) -> None:
        pair = ConnectionPair()
        pair.handshake()
        with pytest.raises(AssertionError, match=r"got \[\]"):
            pair.handshake()

    def test_rejection_by_hand(self) -> None:
        pair = ConnectionPair()
        (request,) = pair.client_to_server()
        assert isinstance(request, Handshake)
        pair.server.reject(request, status=401, body=b"login first")
        (rejected,) = pair.server_to_client()
        assert isinstance(rejected, Rejected)
        assert (rejected.status_code, rejected.body, rejected.error) == (401, b"login first", None)
        assert pair.client.state is State.REJECTED
        assert pair.server.should_close()
        assert pair.client.should_close()


class TestMovingBytes:
    def test_nothing_pending_gives_no_events(self, pair: ConnectionPair) -> None:
        assert pair.client_to_server() == []
        assert pair.server_to_client() == []

    def test_each_direction_returns_the_receivers_events(self, pair: ConnectionPair) -> None:
        pair.client.send_text("to server")
        pair.server.send_binary(b"to client")
        assert pair.client_to_server() == [Text(data="to server")]
        assert pair.server_to_client() == [Binary(data=b"to client")]

    def test_fixed_chunk_size(self, pair: ConnectionPair) -> None:
        recorder = Recorder(pair.server)
        pair.server = recorder  # type: ignore[assignment]
        pair.client.send_binary(b"x" * 10)  # 2 + 4 + 10 = 16 bytes on the wire
        assert pair.client_to_server(5) == [Binary(data=b"x" * 10)]
        assert [len(p) for p in recorder.pieces] == [5, 5, 5, 1]

    def test_chunk_sizes_in_turn_then_the_rest(self, pair: ConnectionPair) -> None:
        recorder = Recorder(pair.client)
        pair.client = recorder  # type: ignore[assignment]
        pair.server.send_binary(b"y" * 18)  # 20 bytes on the wire
        assert pair.server_to_client([1, 2, 3]) == [Binary(data=b"y" * 18)]
        assert [len(p) for p in recorder.pieces] == [1, 2, 3, 14]
        assert b"".join(recorder.pieces) == b"\x82\x12" + b"y" * 18

    def test_chunk_sizes_longer_than_the_data(self, pair: ConnectionPair) -> None:
        recorder = Recorder(pair.client)
        pair.client = recorder  # type: ignore[assignment]
        pair.server.send_text("abc")
        assert pair.server_to_client(iter([2, 100, 7])) == [Text(data="abc")]
        assert [len(p) for p in recorder.pieces] == [2, 3]

    @pytest.mark.parametrize("chunks", [0, -1, [1, 0], [-5]])
    def test_chunk_sizes_must_be_positive(
        self, pair: ConnectionPair, chunks: int | list[int]
    ) -> None:
        pair.client.send_text("abc")
        with pytest.raises(ValueError, match="positive"):
            pair.client_to_server(chunks)

    def test_byte_by_byte_gives_the_same_events(self, pair: ConnectionPair) -> None:
        for chunks in (None, 1, [3, 1, 4, 1, 5]):
            pair.client.send_text("h\u00e9", final=False)
            pair.client.ping(b"p")
            pair.client.send_text("llo")
            assert pair.client_to_server(chunks) == [Ping(payload=b"p"), Text(data="h\u00e9llo")]
            assert pair.server_to_client(chunks) == [Pong(payload=b"p")]


class TestExchange:
    def test_pumps_until_quiet(self, pair: ConnectionPair) -> None:
        pair.client.ping(b"1")
        pair.server.ping(b"2")
        pair.client.send_text("hi")
        result = pair.exchange()
        assert result == Exchanged(
            server=[Ping(payload=b"1"), Text(data="hi"), Pong(payload=b"2")],
            client=[Ping(payload=b"2"), Pong(payload=b"1")],
        )
        assert result.server is result[0]
        assert pair.client.data_to_send() == b""
        assert pair.server.data_to_send() == b""

    def test_quiet_pair_exchanges_nothing(self, pair: ConnectionPair) -> None:
        assert pair.exchange() == Exchanged(server=[], client=[])

    def test_closing_handshake(self, pair: ConnectionPair) -> None:
        pair.client.close(1000, "done")
        server_events, client_events = pair.exchange()
        assert server_events == [Close(code=1000, reason="done")]
        assert client_events == [Close(code=1000)]
        assert pair.client.state is State.CLOSED
        assert pair.server.state is State.CLOSED

    def test_opening_handshake_by_exchange(self) -> None:
        pair = ConnectionPair()
        server_events, client_events = pair.exchange()
        (request,) = server_events
        assert isinstance(request, Handshake)
        assert client_events == []
        pair.server.accept(request)
        server_events, client_events = pair.exchange()
        assert server_events == []
        assert [type(e) for e in client_events] == [Accepted]

    def test_bounded(self, pair: ConnectionPair) -> None:
        pair.client.ping(b"x")  # needs a second round for the Pong to be seen as the end
        with pytest.raises(RuntimeError, match="after 1 rounds"):
            pair.exchange(max_rounds=1)


def test_exports() -> None:
    from wsmachine import testing

    assert testing.__all__ == ["ConnectionPair", "Exchanged", "FrameBuilder", "InvalidFrame"]
    assert testing.ConnectionPair.__doc__
    for name in ["client_to_server", "server_to_client", "exchange", "handshake"]:
        assert getattr(testing.ConnectionPair, name).__doc__
