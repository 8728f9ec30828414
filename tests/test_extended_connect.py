"""The extended CONNECT opening (RFC 8441 §4-5, RFC 9220 §3) on header lists, both roles,
and the stream's end mapped onto the machine; no HTTP/2 library involved."""

from __future__ import annotations

import pytest

from wsmachine import (
    Accepted,
    Binary,
    Close,
    Handshake,
    HTTPRequest,
    LocalProtocolError,
    OriginPolicy,
    Ping,
    Pong,
    Rejected,
    RemoteProtocolError,
    State,
    Text,
)
from wsmachine.connection import ClientConnection, ServerConnection
from wsmachine.errors import InvalidArgumentError
from wsmachine.extended_connect import (
    SETTINGS_ENABLE_CONNECT_PROTOCOL,
    ClientOpening,
    accept,
    accept_extended_connect,
    error_response,
    read_request,
    response_headers,
)
from wsmachine.extensions.permessage_deflate import PerMessageDeflate
from wsmachine.negotiation import Agreement

REQUEST = [
    (b":method", b"CONNECT"),
    (b":protocol", b"websocket"),
    (b":scheme", b"https"),
    (b":path", b"/chat?room=1"),
    (b":authority", b"server.example.com"),
    (b"sec-websocket-protocol", b"chat, superchat"),
    (b"sec-websocket-version", b"13"),
    (b"origin", b"http://www.example.com"),
]


def replace(headers, name, value=None):
    """``headers`` with ``name`` set to ``value`` (dropped when ``None``), in place."""
    out = []
    done = False
    for key, old in headers:
        if key == name:
            if value is not None and not done:
                out.append((key, value))
            done = True
        else:
            out.append((key, old))
    if not done and value is not None:
        out.append((name, value))
    return out


def pair(**server_kwargs):
    """A client opening and the server's answer to it, joined in memory."""
    extensions = server_kwargs.pop("client_extensions", ())
    opening = ClientOpening(
        "server.example.com",
        "/chat",
        subprotocols=["chat"],
        extensions=extensions,
        origin="http://www.example.com",
    )
    server, response = accept_extended_connect(opening.headers, **server_kwargs)
    event = opening.receive_response(response)
    assert isinstance(event, Accepted)
    assert opening.connection is not None
    return opening.connection, server, event


def carry(sender, receiver):
    return receiver.receive_data(sender.data_to_send())


# -- the request ----------------------------------------------------------------------------


def test_rfc8441_example_request_is_a_handshake():
    """RFC 8441 §5.1's example: a WebSocket opening with no key, host from :authority."""
    request = read_request(REQUEST)
    assert isinstance(request, Handshake)
    assert request.path == "/chat?room=1"
    assert request.host == "server.example.com"
    assert request.origin == "http://www.example.com"
    assert request.subprotocols == ("chat", "superchat")
    assert (b":protocol", b"websocket") in request.headers


def test_str_headers_are_accepted():
    request = read_request([(k.decode(), v.decode()) for k, v in REQUEST])
    assert isinstance(request, Handshake)


def test_setting_identifier_is_8():
    """RFC 8441 §3 and RFC 9220 §3: SETTINGS_ENABLE_CONNECT_PROTOCOL is 0x08 in both."""
    assert SETTINGS_ENABLE_CONNECT_PROTOCOL == 8


def test_request_without_protocol_is_plain_http():
    request = read_request([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")])
    assert request == HTTPRequest(method="GET", path="/", headers=request.headers)
    tunnel = read_request([(b":method", b"CONNECT"), (b":authority", b"example.com:443")])
    assert isinstance(tunnel, HTTPRequest)
    assert tunnel.path == "example.com:443"


BAD_REQUESTS = {
    "unknown protocol": (replace(REQUEST, b":protocol", b"webtransport"), 501),
    "protocol on GET": (replace(REQUEST, b":method", b"GET"), 400),
    "no method": (replace(REQUEST, b":method"), 400),
    "no scheme": (replace(REQUEST, b":scheme"), 400),
    "no path": (replace(REQUEST, b":path"), 400),
    "empty path": (replace(REQUEST, b":path", b""), 400),
    "no authority": (replace(REQUEST, b":authority"), 400),
    "bad scheme": (replace(REQUEST, b":scheme", b"ftp"), 400),
    "path not origin form": (replace(REQUEST, b":path", b"chat"), 400),
    "path with fragment": (replace(REQUEST, b":path", b"/chat#x"), 400),
    "authority with userinfo": (replace(REQUEST, b":authority", b"u@example.com"), 400),
    "bad authority": (replace(REQUEST, b":authority", b"exa mple.com"), 400),
    "no version": (replace(REQUEST, b"sec-websocket-version"), 426),
    "version 8": (replace(REQUEST, b"sec-websocket-version", b"8"), 426),
    "two versions": ([*REQUEST, (b"sec-websocket-version", b"13")], 426),
    "upgrade header": ([*REQUEST, (b"upgrade", b"websocket")], 400),
    "connection header": ([*REQUEST, (b"connection", b"upgrade")], 400),
    "uppercase name": ([*REQUEST, (b"Origin", b"x")], 400),
    "unknown pseudo-header": ([(b":foo", b"x"), *REQUEST], 400),
    "repeated pseudo-header": ([(b":method", b"CONNECT"), *REQUEST], 400),
    "pseudo after regular": ([*REQUEST, (b":status", b"200")], 400),
    "two origins": ([*REQUEST, (b"origin", b"http://b.example")], 400),
    "bad subprotocol list": (replace(REQUEST, b"sec-websocket-protocol", b"a b"), 400),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_gets_its_status_and_no_websocket(name):
    headers, status = BAD_REQUESTS[name]
    with pytest.raises(RemoteProtocolError) as info:
        accept_extended_connect(headers)
    assert info.value.status_hint == status
    assert "RFC" in str(info.value)
    answer, body = error_response(info.value)
    assert answer[0] == (b":status", str(status).encode())
    assert body.startswith(str(status).encode())


def test_426_lists_version_13():
    with pytest.raises(RemoteProtocolError) as info:
        read_request(replace(REQUEST, b"sec-websocket-version", b"8"))
    answer, _ = error_response(info.value)
    assert (b"sec-websocket-version", b"13") in answer


def test_key_is_not_needed_nor_checked():
    """RFC 8441 §5: Sec-WebSocket-Key and -Accept are not used."""
    _, response = accept_extended_connect([*REQUEST, (b"sec-websocket-key", b"junk")])
    assert response[0] == (b":status", b"200")
    assert not any(name == b"sec-websocket-accept" for name, _ in response)


def test_non_connect_to_websocket_resource_is_405_and_tunnel_501():
    with pytest.raises(RemoteProtocolError) as info:
        accept_extended_connect([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")])
    assert info.value.status_hint == 405
    with pytest.raises(RemoteProtocolError) as info:
        accept_extended_connect([(b":method", b"CONNECT"), (b":authority", b"example.com:443")])
    assert info.value.status_hint == 501


def test_origin_policy_refuses_with_403():
    policy = OriginPolicy(["https://good.example"])
    with pytest.raises(RemoteProtocolError) as info:
        read_request(REQUEST, origin_policy=policy)
    assert info.value.status_hint == 403
    good = replace(REQUEST, b"origin", b"https://good.example")
    assert isinstance(read_request(good, origin_policy=policy), Handshake)


# -- the answer and the open connection --------------------------------------------------


def test_accept_answers_200_and_opens():
    conn, response = accept_extended_connect(REQUEST, subprotocols=["superchat", "chat"])
    assert response == [(b":status", b"200"), (b"sec-websocket-protocol", b"superchat")]
    assert isinstance(conn, ServerConnection)
    assert conn.state is State.OPEN
    assert conn.subprotocol == "superchat"
    assert conn.data_to_send() == b""  # nothing queued: no 101 exists here


def test_accept_with_chosen_subprotocol_and_extra_headers():
    request = read_request(REQUEST)
    assert isinstance(request, Handshake)
    conn, response = accept(
        request, subprotocol="chat", extra_headers=[("Set-Cookie", "a=b")], max_message_size=10
    )
    assert (b"set-cookie", b"a=b") in response
    assert conn.subprotocol == "chat"
    with pytest.raises(InvalidArgumentError):
        accept(request, subprotocol="other")
    with pytest.raises(InvalidArgumentError):
        accept(request, extra_headers=[("connection", "close")])


def test_response_headers_refuse_bad_status_and_fields():
    assert response_headers(403, [("Content-Type", "text/plain")]) == [
        (b":status", b"403"),
        (b"content-type", b"text/plain"),
    ]
    with pytest.raises(InvalidArgumentError):
        response_headers(101)
    with pytest.raises(InvalidArgumentError):
        response_headers(200, [("upgrade", "websocket")])


def test_frames_as_rfc6455_client_masks_server_does_not():
    client, server, _ = pair(subprotocols=["chat"])
    assert client.state is State.OPEN and client.client
    assert client.subprotocol == "chat"
    client.send_text("héllo")
    wire = client.data_to_send()
    assert wire[1] & 0x80  # the client masks (RFC 6455 §5.3)
    assert server.receive_data(wire) == [Text(data="héllo")]
    server.send_binary(b"\x00\x01")
    wire = server.data_to_send()
    assert not wire[1] & 0x80  # the server does not
    assert client.receive_data(wire) == [Binary(data=b"\x00\x01")]
    client.ping(b"p")
    assert carry(client, server) == [Ping(payload=b"p")]
    assert carry(server, client) == [Pong(payload=b"p")]


def test_unmasked_client_frame_fails_1002():
    _, server, _ = pair()
    events = server.receive_data(b"\x81\x02hi")  # unmasked text from a client
    assert isinstance(events[-1], Close) and events[-1].code == 1002


def test_permessage_deflate_negotiated_with_same_extension_objects():
    client, server, accepted = pair(
        extensions=[PerMessageDeflate()], client_extensions=[PerMessageDeflate()]
    )
    assert [e.name for e in accepted.extensions] == ["permessage-deflate"]
    assert [e.name for e in server.extensions] == ["permessage-deflate"]
    client.send_text("a" * 1000)
    wire = client.data_to_send()
    assert wire[0] & 0x40 and len(wire) < 100  # RSV1: compressed (RFC 7692 §6)
    assert server.receive_data(wire) == [Text(data="a" * 1000)]
    server.send_text("b" * 1000)
    assert carry(server, client) == [Text(data="b" * 1000)]


def test_close_handshake_and_stream_end_mapping():
    """END_STREAM is the TCP half-close: should_close() says when to send it, receive_eof()
    takes the peer's (RFC 8441 §5; RFC 6455 §7.1.1: the server ends first)."""
    client, server, _ = pair()
    client.close(1000, "bye")
    assert carry(client, server) == [Close(code=1000, reason="bye")]
    assert carry(server, client) == [Close(code=1000)]
    assert server.should_close()  # server: END_STREAM now
    assert not client.should_close()  # client: waits for the server's END_STREAM
    assert client.receive_eof() == []
    assert client.should_close()  # and answers with its own
    assert server.receive_eof() == []


def test_reset_stream_is_1006():
    """RST_STREAM (HTTP/3: H3_REQUEST_CANCELLED) is an abnormal closure, as a dropped TCP
    connection: the stream's end without a Close frame (RFC 8441 §5, RFC 9220 §3)."""
    client, server, _ = pair()
    (event,) = server.receive_eof()
    assert isinstance(event, Close)
    assert event.code == 1006
    assert event.error is not None
    assert server.state is State.CLOSED and server.should_close()
    (event,) = client.receive_eof()
    assert event.code == 1006


# -- the client's checks ---------------------------------------------------------------


def test_client_request_headers():
    opening = ClientOpening(
        "example.com:8443",
        "/ws?x=1",
        scheme="https",
        subprotocols=["a", "b"],
        extensions=[PerMessageDeflate()],
        origin="https://example.com",
        extra_headers=[("Cookie", "k=v")],
    )
    headers = dict(opening.headers)
    assert opening.headers[:5] == [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/ws?x=1"),
        (b":authority", b"example.com:8443"),
    ]
    assert headers[b"sec-websocket-version"] == b"13"
    assert headers[b"sec-websocket-protocol"] == b"a, b"
    assert headers[b"sec-websocket-extensions"].startswith(b"permessage-deflate")
    assert headers[b"origin"] == b"https://example.com"
    assert headers[b"cookie"] == b"k=v"
    assert b"sec-websocket-key" not in headers


@pytest.mark.parametrize(
    "kwargs",
    [
        {"authority": "a b"},
        {"authority": "u@host"},
        {"path": "chat"},
        {"scheme": "ws"},
        {"subprotocols": ["a", "a"]},
        {"extra_headers": [("Upgrade", "websocket")]},
    ],
)
def test_client_refuses_bad_arguments(kwargs):
    args = {"authority": "example.com", **kwargs}
    with pytest.raises(InvalidArgumentError):
        ClientOpening(**args)


def test_client_other_status_is_a_refusal_with_the_status():
    opening = ClientOpening("example.com")
    event = opening.receive_response([(b":status", b"403"), (b"content-type", b"text/plain")])
    assert isinstance(event, Rejected)
    assert event.status_code == 403 and event.error is None
    assert opening.connection is None
    with pytest.raises(LocalProtocolError):
        opening.receive_response([(b":status", b"200")])


def test_client_waits_past_1xx_and_fails_other_2xx_and_missing_status():
    opening = ClientOpening("example.com")
    assert opening.receive_response([(b":status", b"103")]) is None
    event = opening.receive_response([(b":status", b"204")])
    assert isinstance(event, Rejected) and event.error is not None
    event = ClientOpening("example.com").receive_response([(b"content-type", b"x")])
    assert isinstance(event, Rejected) and event.status_code == 0 and event.error is not None


def test_client_fails_subprotocol_not_offered():
    opening = ClientOpening("example.com", subprotocols=["chat"])
    event = opening.receive_response([(b":status", b"200"), (b"sec-websocket-protocol", b"x")])
    assert isinstance(event, Rejected) and event.status_code == 200
    assert "RFC 6455 §4.1" in str(event.error)
    assert opening.connection is None


def test_client_fails_extension_not_offered():
    opening = ClientOpening("example.com")
    response = [(b":status", b"200"), (b"sec-websocket-extensions", b"permessage-deflate")]
    event = opening.receive_response(response)
    assert isinstance(event, Rejected) and event.error is not None
    assert opening.connection is None


def test_for_stream_constructors_start_open():
    agreement = Agreement(None, (), ())
    server = ServerConnection.for_stream(agreement, max_message_size=5)
    client = ClientConnection.for_stream(agreement)
    assert server.state is State.OPEN and client.state is State.OPEN
    assert server.request is None
    client.send_binary(b"123456")
    events = server.receive_data(client.data_to_send())
    assert isinstance(events[-1], Close) and events[-1].code == 1009
