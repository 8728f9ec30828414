"""What embedders (ASGI servers, proxies) rely on: short failing-Close reasons, rejections
that can be retried after bad arguments, distinct argument errors, the pending request."""

from __future__ import annotations

import h11
import pytest

from tests.test_handshake import handshake_of, parse_response, request
from wsmachine import (
    ClientConnection,
    Close,
    Handshake,
    HTTPRequest,
    InvalidArgumentError,
    LocalProtocolError,
    ServerConnection,
    State,
)
from wsmachine.adapters.options import ClientOptions, ServerOptions
from wsmachine.close_codes import CloseInfo
from wsmachine.errors import RemoteProtocolError
from wsmachine.extensions import PerMessageDeflate
from wsmachine.testing import ConnectionPair
from wsmachine.testing.frames import FrameBuilder

CLIENT = FrameBuilder(client=True)
SERVER = FrameBuilder(client=False)


def open_server(**settings: object) -> ServerConnection:
    server = ServerConnection(**settings)  # type: ignore[arg-type]
    server.accept(handshake_of(server))
    server.data_to_send()
    return server


def failing_close(server: ServerConnection, data: bytes) -> tuple[Close, bytes]:
    events = server.receive_data(data)
    close = events[-1]
    assert isinstance(close, Close) and close.error is not None
    return close, server.data_to_send()


# -- 1. the reason of a failing Close -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "settings", "code", "reason"),
    [
        (CLIENT.text(b"\xff"), {}, 1007, "invalid UTF-8"),
        (CLIENT.close(1000, b"\xff"), {}, 1007, "invalid UTF-8"),
        (b"\x83\x80" + b"\0" * 4, {}, 1002, "protocol error"),  # unknown opcode 3
        (CLIENT.binary(b"x" * 200), {"max_message_size": 100}, 1009, "frame too big"),
        (
            CLIENT.binary(b"x" * 60, fin=False) + CLIENT.continuation(b"y" * 60),
            {"max_message_size": 100},
            1009,
            "message too big",
        ),
        (
            CLIENT.binary(b"x", fin=False) + CLIENT.continuation(b"y", fin=False) * 3,
            {"max_fragments": 2},
            1009,
            "too many fragments",
        ),
    ],
)
def test_failing_close_reason_is_short_and_standard(
    data: bytes, settings: dict[str, object], code: int, reason: str
) -> None:
    server = open_server(**settings)
    close, out = failing_close(server, data)
    assert (close.code, close.reason) == (code, reason)
    assert close.error is not None and close.error.reason == reason
    # What went on the wire is the short reason: no limit, offset or RFC section.
    assert out == bytes([0x88, 2 + len(reason)]) + code.to_bytes(2, "big") + reason.encode()
    assert server.close_sent == CloseInfo(code, reason)
    assert len(reason.encode()) <= 32
    # The full diagnostic stays in the error.
    assert str(close.error) != reason and "RFC" in str(close.error)


def test_limit_never_reaches_the_peer() -> None:
    server = open_server(max_message_size=12345)
    close, out = failing_close(server, CLIENT.binary(b"x" * 20000))
    assert b"12345" not in out and "12345" in str(close.error)


def test_invalid_deflate_data_has_its_own_reason() -> None:
    pair = ConnectionPair(
        server={"extensions": [PerMessageDeflate()]}, client={"extensions": [PerMessageDeflate()]}
    )
    pair.handshake()
    # RSV1 set on a text frame whose payload is no DEFLATE data.
    bad = CLIENT.frame(0x1, b"\xff\xff\xff\xff", rsv=0x40)
    close, out = failing_close(pair.server, bad)
    assert (close.code, close.reason) == (1007, "invalid compressed data")
    assert out.endswith(b"invalid compressed data")


@pytest.mark.parametrize("role", ["server", "client"])
def test_close_reasons_false_sends_the_code_alone(role: str) -> None:
    pair = ConnectionPair(
        server={"close_reasons": role != "server"}, client={"close_reasons": role != "client"}
    )
    pair.handshake()
    conn = pair.server if role == "server" else pair.client
    peer_frames = CLIENT if role == "server" else SERVER
    (close,) = conn.receive_data(peer_frames.text(b"\xff"))
    assert isinstance(close, Close)
    assert (close.code, close.reason) == (1007, "")
    assert close.error is not None and "UTF-8" in str(close.error)
    delivered = pair.server_to_client() if role == "server" else pair.client_to_server()
    assert delivered == [Close(code=1007, reason="")]
    assert conn.close_sent == CloseInfo(1007, "")


def test_close_reasons_is_an_option_that_reaches_the_machine() -> None:
    assert ServerOptions().close_reasons is True
    assert ServerOptions(close_reasons=False).connection()._close_reasons is False
    assert ClientOptions(close_reasons=False).connection("example.com")._close_reasons is False


def test_remote_error_reason_defaults_to_the_codes_and_is_bounded() -> None:
    assert RemoteProtocolError("x").reason == "protocol error"
    assert RemoteProtocolError("x", close_code=1009).reason == "message too big"
    assert RemoteProtocolError("x", close_code=1007, reason="invalid UTF-8").reason == (
        "invalid UTF-8"
    )
    with pytest.raises(ValueError, match="32"):
        RemoteProtocolError("x", reason="a" * 33)


# -- 2 and 3. reject(): arguments checked before anything changes; which statuses -----------------


def waiting(raw: bytes | None = None) -> tuple[ServerConnection, Handshake | HTTPRequest]:
    server = ServerConnection()
    (event,) = server.receive_data(raw or request())
    assert isinstance(event, Handshake | HTTPRequest)
    return server, event


@pytest.mark.parametrize(
    "bad",
    [
        {"status": 99},
        {"status": 600},
        {"headers": [("Bad Name", "v")]},
        {"headers": [("X-A", "a\r\nInjected: 1")]},
        {"headers": [("Content-Length", "3")], "body": b"abcdef"},  # too long
        {"headers": [("Content-Length", "10")], "body": b"abc"},  # too short
        {"status": 204, "body": b"no body allowed"},
        {"status": 304, "body": b"no body allowed"},
    ],
)
def test_bad_reject_changes_nothing_and_a_good_one_follows(bad: dict[str, object]) -> None:
    server, event = waiting()
    with pytest.raises(InvalidArgumentError):
        server.reject(event, **bad)  # type: ignore[arg-type]
    assert server.state is State.CONNECTING
    assert server.request is event
    assert server.data_to_send() == b""
    server.reject(event, status=403, body=b"no")
    response = parse_response(server.data_to_send())
    assert (response.status, response.body) == (403, b"no")
    assert server.state is State.REJECTED


def test_body_matching_a_given_content_length_is_sent() -> None:
    server, event = waiting()
    server.reject(event, status=500, headers=[("Content-Length", "3")], body=b"abc")
    response = parse_response(server.data_to_send())
    assert (response.status, response.body) == (500, b"abc")
    assert response.get(b"content-length") == [b"3"]


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_get_no_content_length(status: int) -> None:
    server, event = waiting()
    server.reject(event, status=status)
    out = server.data_to_send()
    assert b"content-length" not in out.lower()
    assert parse_response(out).status == status


@pytest.mark.parametrize("status", [100, 102, 103, 199])
def test_informational_statuses_are_refused(status: int) -> None:
    server, event = waiting()
    with pytest.raises(InvalidArgumentError, match="informational"):
        server.reject(event, status=status)


def test_101_is_refused_pointing_at_accept() -> None:
    server, event = waiting()
    with pytest.raises(InvalidArgumentError, match=r"accept\(\)"):
        server.reject(event, status=101)
    assert server.state is State.CONNECTING


@pytest.mark.parametrize("status", [200, 201, 299, 301, 404, 426, 500, 599])
def test_final_statuses_are_accepted(status: int) -> None:
    server, event = waiting()
    server.reject(event, status=status)
    assert parse_response(server.data_to_send()).status == status


def test_plain_request_can_be_answered_after_a_bad_attempt() -> None:
    server, event = waiting(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(event, HTTPRequest)
    with pytest.raises(InvalidArgumentError):
        server.reject(event, status=200, headers=[("Content-Length", "1")], body=b"ok")
    server.reject(event, status=200, body=b"ok")
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/health", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(server.data_to_send())
    head = conn.next_event()
    assert isinstance(head, h11.Response) and head.status_code == 200
    assert conn.next_event() == h11.Data(data=b"ok")


# -- 2b. a streamed rejection: head, body pieces, end ---------------------------------------------


def test_streamed_rejection_sends_each_piece_as_it_comes_and_ends_the_connection() -> None:
    server, event = waiting()
    server.reject_start(event, status=401, headers=[("Content-Type", "text/plain")])
    assert server.state is State.REJECTING
    assert server.request is None
    head = server.data_to_send()
    assert head.startswith(b"HTTP/1.1 401 ") and head.endswith(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Connection: close" in head
    assert not server.should_close() and not server.close_expected()
    server.reject_body(b"den")
    assert server.data_to_send() == b"3\r\nden\r\n"
    assert server.state is State.REJECTING and not server.should_close()
    server.reject_body(b"ied", end=True)
    tail = server.data_to_send()
    assert server.state is State.REJECTED and server.should_close()
    response = parse_response(head + b"3\r\nden\r\n" + tail)
    assert (response.status, response.body) == (401, b"denied")


def test_streamed_rejection_with_a_content_length() -> None:
    server, event = waiting()
    server.reject_start(event, status=403, headers=[("Content-Length", "6")])
    server.reject_body(b"for")
    with pytest.raises(InvalidArgumentError):
        server.reject_body(b"bidden")  # past the Content-Length
    with pytest.raises(InvalidArgumentError):
        server.reject_body(b"b", end=True)  # ends short of it
    assert server.state is State.REJECTING  # nothing changed: a fitting piece may follow
    server.reject_body(b"bid", end=True)
    response = parse_response(server.data_to_send())
    assert (response.status, response.body) == (403, b"forbid")
    assert server.should_close()


def test_streamed_rejection_checks_its_arguments_before_writing() -> None:
    server, event = waiting()
    for status in (101, 199, 600):
        with pytest.raises(InvalidArgumentError):
            server.reject_start(event, status=status)
    with pytest.raises(InvalidArgumentError):
        server.reject_start(event, headers=[("Bad Name", "v")])
    assert server.state is State.CONNECTING and server.data_to_send() == b""
    server.reject_start(event, status=404)  # a valid one still goes out
    assert server.data_to_send().startswith(b"HTTP/1.1 404 ")


def test_streamed_rejection_calls_out_of_order_are_state_errors() -> None:
    server, event = waiting()
    with pytest.raises(LocalProtocolError) as before:
        server.reject_body(b"x")
    assert not isinstance(before.value, ValueError)
    server.reject_start(event)
    with pytest.raises(LocalProtocolError):
        server.accept(event)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        server.reject_start(event)
    server.reject_body(end=True)
    with pytest.raises(LocalProtocolError):
        server.reject_body(b"more")


def test_streamed_rejection_to_head_sends_no_body() -> None:
    server, event = waiting(b"HEAD /page HTTP/1.1\r\nHost: x\r\n\r\n")
    server.reject_start(event, status=200)
    server.reject_body(b"not for HEAD", end=True)
    assert b"not for HEAD" not in server.data_to_send()


def test_streamed_rejection_goes_on_after_the_peer_half_closes() -> None:
    """The peer's end of stream while the body streams is a half-close: the body goes on,
    and the session closes only once it has ended."""
    from wsmachine.adapters.session import Session

    session = Session.server(ServerOptions(), 0.0)
    (event,) = session.receive_data(request(), 0.0)
    assert isinstance(event, Handshake)
    session.respond_start(event, 403, [], 0.0)
    session.receive_eof(0.0)
    assert not session.should_close()
    session.respond_body(b"late", 0.0, end=True)
    data = session.data_to_send()
    assert data.endswith(b"4\r\nlate\r\n0\r\n\r\n")
    assert session.should_send_eof() or session.should_close()


# -- 4. argument errors are ValueErrors, state errors are not ---------------------------------


def test_invalid_argument_is_a_local_error_and_a_value_error() -> None:
    assert issubclass(InvalidArgumentError, LocalProtocolError)
    assert issubclass(InvalidArgumentError, ValueError)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.close(1005),
        lambda c: c.close(1000, "x" * 124),
        lambda c: c.close(None, "why"),
        lambda c: c.ping(b"x" * 126),
        lambda c: c.pong(b"x" * 126),
        lambda c: c.send_text("\ud800"),
    ],
)
def test_bad_arguments_raise_invalid_argument(call: object) -> None:
    server = open_server()
    with pytest.raises(ValueError) as info:
        call(server)  # type: ignore[operator]
    assert isinstance(info.value, InvalidArgumentError)
    assert server.state is State.OPEN
    assert server.data_to_send() == b""


def test_subprotocol_not_offered_is_an_argument_error() -> None:
    server = ServerConnection()
    event = handshake_of(server, request(extra=(("Sec-WebSocket-Protocol", "chat"),)))
    with pytest.raises(InvalidArgumentError, match="not offered"):
        server.accept(event, subprotocol="other")
    server.accept(event, subprotocol="chat")
    assert server.state is State.OPEN


def test_client_host_and_path_are_argument_errors() -> None:
    with pytest.raises(InvalidArgumentError):
        ClientConnection("bad host")
    with pytest.raises(InvalidArgumentError):
        ClientConnection("example.com", "no-slash")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.send_text("hi"),
        lambda c: c.ping(),
        lambda c: c.close(),
    ],
)
def test_state_errors_are_not_argument_errors(call: object) -> None:
    server = ServerConnection()
    with pytest.raises(LocalProtocolError) as info:
        call(server)  # type: ignore[operator]
    assert not isinstance(info.value, InvalidArgumentError)
    assert not isinstance(info.value, ValueError)


def test_answering_twice_is_a_state_error() -> None:
    server, event = waiting()
    server.reject(event)
    with pytest.raises(LocalProtocolError) as info:
        server.reject(event)
    assert not isinstance(info.value, ValueError)
    open_ = open_server()
    with pytest.raises(LocalProtocolError) as info:
        open_.send_text("a", final=False)
        open_.send_binary(b"b")
    assert not isinstance(info.value, ValueError)


# -- 5. the pending request ---------------------------------------------------------------------


def test_request_is_the_event_waiting_for_an_answer() -> None:
    server = ServerConnection()
    assert server.request is None
    assert server.receive_data(request()[:10]) == []
    assert server.request is None
    (event,) = server.receive_data(request()[10:])
    assert server.request is event
    server.accept(event)  # type: ignore[arg-type]
    assert server.request is None


def test_request_is_a_plain_http_request_too_and_clears_on_reject() -> None:
    server, event = waiting(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(server.request, HTTPRequest) and server.request is event
    server.reject(event, status=200)
    assert server.request is None


def test_request_is_none_after_the_machine_refused_or_the_stream_ended() -> None:
    server = ServerConnection()
    server.receive_data(b"BAD\r\n\r\n")
    assert server.state is State.REJECTED
    assert server.request is None
    server, _ = waiting()
    server.receive_eof()
    assert server.request is None
