"""The I/O-free session: timeouts, keepalive, Pong matching, the held Close, the TCP close
decisions and the close record, driven with real bytes and a fake clock."""

from __future__ import annotations

import pytest

from wsmachine import ClientConnection, Close, HTTPRequest, ServerConnection, State, Text
from wsmachine.adapters import ClientOptions, ConnectionClosed, HTTPResponse, ServerOptions, Session
from wsmachine.adapters.options import resolve
from wsmachine.testing import FrameBuilder

HOST = "example.com"


def open_server(**settings: object) -> tuple[Session, ClientConnection]:
    """A server session opened at time 0 by a bare client machine."""
    session = Session.server(resolve(ServerOptions, None, settings), 0.0)
    peer = ClientConnection(HOST, "/")
    (request,) = session.receive_data(peer.data_to_send(), 0.0)
    session.accept(request, 0.0)  # type: ignore[arg-type]
    peer.receive_data(session.data_to_send())
    assert session.opened and peer.state is State.OPEN
    return session, peer


def open_client(**settings: object) -> tuple[Session, ServerConnection]:
    """A client session opened at time 0 against a bare server machine."""
    session = Session.client(resolve(ClientOptions, None, settings), HOST, "/", 0.0)
    peer = ServerConnection()
    (request,) = peer.receive_data(session.data_to_send())
    peer.accept(request)  # type: ignore[arg-type]
    session.receive_data(peer.data_to_send(), 0.0)
    assert session.opened
    return session, peer


def frames(peer: ClientConnection | ServerConnection, data: bytes) -> list[object]:
    return list(peer.receive_data(data))


class TestKeepalive:
    def test_ping_at_interval_pong_measures_latency_and_rearms(self) -> None:
        session, peer = open_server(ping_interval=5.0, ping_timeout=2.0)
        assert session.next_deadline() == 5.0
        session.tick(4.9)
        assert session.data_to_send() == b""
        session.tick(5.0)
        (ping,) = frames(peer, session.data_to_send())
        assert session.next_deadline() == 7.0  # the Pong's deadline
        session.receive_data(peer.data_to_send(), 5.25)  # the machine's auto Pong
        assert session.latency == pytest.approx(0.25)
        assert session.next_deadline() == pytest.approx(10.25)
        assert session.error is None
        del ping

    def test_no_pong_closes_with_1011_and_records_a_timeout(self) -> None:
        session, peer = open_server(ping_interval=1.0, ping_timeout=2.0, auto_pong=False)
        session.tick(1.0)
        peer.receive_data(session.data_to_send())
        session.tick(3.0)
        (close,) = frames(peer, session.data_to_send())
        assert isinstance(close, Close) and close.code == 1011
        assert isinstance(session.error, TimeoutError)
        assert session.conn.state is State.CLOSING

    def test_no_keepalive_without_interval(self) -> None:
        session, _ = open_server()
        assert session.next_deadline() is None


class TestPings:
    def test_a_pong_answers_its_ping_and_every_earlier_one(self) -> None:
        session, _ = open_server()
        peer = FrameBuilder(client=True)
        answers: list[tuple[str, float | None]] = []
        session.ping(1.0, b"a", lambda t: answers.append(("a", t)))
        session.ping(2.0, b"b", lambda t: answers.append(("b", t)))
        session.ping(3.0, b"c", lambda t: answers.append(("c", t)))
        session.receive_data(peer.frame(0xA, b"b"), 4.0)  # answers a too, not c
        assert answers == [("a", 3.0), ("b", 2.0)]
        assert session.latency == 2.0

    def test_default_payloads_are_unique_and_duplicates_refused(self) -> None:
        session, _ = open_server()
        payloads = {session.ping(0.0) for _ in range(50)}
        assert len(payloads) == 50 and all(len(p) == 4 for p in payloads)
        with pytest.raises(ValueError, match="still waiting"):
            session.ping(0.0, next(iter(payloads)))

    def test_waiting_pings_hear_none_when_the_connection_ends(self) -> None:
        session, peer = open_server()
        answers: list[float | None] = []
        session.ping(0.0, b"x", answers.append)
        peer.close()
        session.receive_data(peer.data_to_send(), 1.0)
        assert answers == [None]
        with pytest.raises(ConnectionClosed):
            session.ping(1.0)


class TestHeldClose:
    """Replies to messages received before the peer's Close (or violation) go first."""

    def bad_read(self, peer: ClientConnection) -> bytes:
        peer.send_text("echo me")
        return peer.data_to_send() + FrameBuilder(client=True).frame(0x3, b"")  # reserved opcode

    def test_close_waits_until_the_application_came_back(self) -> None:
        session, peer = open_server()
        session.receive_data(self.bad_read(peer), 1.0)
        assert session.conn.state is State.REMOTE_CLOSING
        assert session.data_to_send() == b""  # the message was not taken yet
        message = session.next_message()
        assert message == Text(data="echo me")
        session.send(message.data)
        assert session.data_to_send() == b""  # the application may answer more
        assert session.next_message() is None  # it came back: done
        events = frames(peer, session.data_to_send())
        assert events[0] == Text(data="echo me")
        assert isinstance(events[1], Close) and events[1].code == 1002
        closed = session.closed()
        assert closed.local is not None and closed.local.code == 1002
        assert closed.remote is None

    def test_reply_timeout_bounds_the_wait(self) -> None:
        session, peer = open_server(reply_timeout=0.5)
        session.receive_data(self.bad_read(peer), 1.0)
        assert session.next_deadline() == 1.5
        session.tick(1.4)
        assert session.data_to_send() == b""
        session.tick(1.5)
        (close,) = frames(peer, session.data_to_send())
        assert isinstance(close, Close) and close.code == 1002
        assert session.queued == 1  # the message stays readable

    def test_close_lets_the_owed_close_go_at_once(self) -> None:
        session, peer = open_server()
        session.receive_data(self.bad_read(peer), 1.0)
        session.close(1.0)
        (close,) = frames(peer, session.data_to_send())
        assert isinstance(close, Close) and close.code == 1002

    def test_nothing_held_when_no_message_waits(self) -> None:
        session, peer = open_server()
        peer.close(1000, "bye")
        session.receive_data(peer.data_to_send(), 1.0)
        (close,) = frames(peer, session.data_to_send())
        assert isinstance(close, Close) and close.code == 1000
        closed = session.closed()
        assert closed.ok and closed.remote is not None and closed.remote.reason == "bye"


class TestTakeMessage:
    """``take_message``: what a waiting ``recv()`` of every adapter is told."""

    def test_none_while_open_then_the_queue_drains_before_the_close_is_raised(self) -> None:
        session, peer = open_server()
        assert session.take_message() is None  # open: wait and ask again
        peer.send_text("last words")
        peer.close(1001, "going")
        session.receive_data(peer.data_to_send(), 1.0)
        assert not session.may_receive
        assert session.take_message() == Text(data="last words")  # queued before the Close
        with pytest.raises(ConnectionClosed) as raised:
            session.take_message()
        remote = raised.value.remote
        assert remote is not None and (remote.code, remote.reason) == (1001, "going")

    def test_the_adapter_done_raises_though_the_machine_is_open(self) -> None:
        session, peer = open_server()
        peer.send_text("kept")
        session.receive_data(peer.data_to_send(), 1.0)
        assert session.may_receive
        assert session.take_message(transport_done=True) == Text(data="kept")
        with pytest.raises(ConnectionClosed):
            session.take_message(transport_done=True)
        assert session.take_message() is None  # the session alone still waits

    def test_the_peers_end_of_stream_raises_with_the_abnormal_close(self) -> None:
        session, _ = open_client()
        session.receive_eof(1.0)
        with pytest.raises(ConnectionClosed) as raised:
            session.take_message()
        assert not raised.value.ok and raised.value.remote is None


class TestTransportDecisions:
    def test_server_ends_tcp_first_then_lingers(self) -> None:
        session, peer = open_server(linger_timeout=2.0)
        session.close(1.0)
        peer.receive_data(session.data_to_send())
        assert not session.should_send_eof()
        session.receive_data(peer.data_to_send(), 1.5)
        assert session.data_to_send() == b""
        assert session.should_send_eof()
        session.eof_sent(1.5)
        assert not session.should_close()
        assert session.reading()  # to see the peer's end of stream
        assert session.next_deadline() == 3.5
        session.tick(3.5)
        assert session.should_close()
        assert session.error is None

    def test_peer_eof_after_ours_closes_at_once(self) -> None:
        session, peer = open_server()
        session.close(0.0)
        peer.receive_data(session.data_to_send())
        session.receive_data(peer.data_to_send(), 0.0)
        session.eof_sent(0.0)
        session.receive_eof(0.1)
        assert session.should_close()

    def test_client_waits_for_the_server_then_closes_without_error(self) -> None:
        session, peer = open_client(close_timeout=3.0)
        session.close(1.0)
        peer.receive_data(session.data_to_send())
        session.receive_data(peer.data_to_send(), 1.2)
        assert session.conn.state is State.CLOSED
        assert not session.should_send_eof() and not session.should_close()
        session.tick(4.0)  # the server never ended TCP
        assert session.should_close()
        assert session.error is None and session.closed().ok

    def test_close_timeout_aborts_with_a_timeout(self) -> None:
        session, _ = open_server(close_timeout=3.0)
        session.close(1.0)
        session.tick(4.0)
        assert session.should_close()
        assert isinstance(session.error, TimeoutError)

    def test_open_timeout(self) -> None:
        session = Session.server(ServerOptions(open_timeout=2.0), 0.0)
        assert session.next_deadline() == 2.0
        session.tick(2.0)
        assert session.should_close() and not session.opened
        assert isinstance(session.error, TimeoutError)

    def test_back_pressure_at_max_queue(self) -> None:
        session, peer = open_server(max_queue=2)
        for text in ("a", "b"):
            peer.send_text(text)
        session.receive_data(peer.data_to_send(), 0.0)
        assert not session.reading()
        assert session.next_message() == Text(data="a")
        assert session.reading()

    def test_abort_records_the_first_error_only(self) -> None:
        session, _ = open_server()
        session.abort(OSError("reset"))
        session.abort(TimeoutError("later"))
        assert session.should_close() and isinstance(session.error, OSError)
        assert session.data_to_send() == b""
        with pytest.raises(ConnectionClosed):
            session.send("x")


class TestHTTPAnswer:
    def request(self, session: Session) -> HTTPRequest:
        (event,) = session.receive_data(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
        assert isinstance(event, HTTPRequest)
        return event

    def test_none_answers_426(self) -> None:
        session = Session.server(ServerOptions(), 0.0)
        session.respond(self.request(session), None, 0.0)
        assert session.data_to_send().startswith(b"HTTP/1.1 426 ")
        assert session.should_send_eof()

    def test_a_page(self) -> None:
        session = Session.server(ServerOptions(), 0.0)
        session.respond(self.request(session), HTTPResponse(200, [], b"ok"), 0.0)
        data = session.data_to_send()
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nok")


class TestOptions:
    def test_unknown_setting_is_named(self) -> None:
        with pytest.raises(TypeError, match="max_size"):
            resolve(ServerOptions, None, {"max_size": 1})

    def test_out_of_range(self) -> None:
        with pytest.raises(ValueError, match="close_timeout"):
            ServerOptions(close_timeout=0)
        with pytest.raises(ValueError, match="write_limit"):
            ClientOptions(write_high_water=10, write_limit=5)

    @pytest.mark.parametrize(
        ("options", "machine"),
        [(ServerOptions, ServerConnection), (ClientOptions, ClientConnection)],
    )
    def test_every_setting_of_the_machine_is_an_option(
        self, options: type[ServerOptions | ClientOptions], machine: type[object]
    ) -> None:
        import dataclasses
        import inspect

        fields = {field.name for field in dataclasses.fields(options)}
        parameters = inspect.signature(machine).parameters
        settings = {name for name in parameters if name not in ("host", "path")}
        assert settings <= fields, settings - fields

    def test_every_machine_setting_reaches_the_machine(self) -> None:
        conn = ServerOptions(max_message_size=1000, max_fragments=7, stream=True).connection()
        assert conn._max_message_size == 1000 and conn._max_fragments == 7 and conn._stream
        client = ClientOptions(origin="http://here", extra_headers=[("x-a", "b")])
        request = client.connection(HOST, "/chat").data_to_send().lower()
        assert b"origin: http://here\r\n" in request and b"x-a: b\r\n" in request
