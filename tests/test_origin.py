"""OriginPolicy: the defence against cross-site WebSocket hijacking (RFC 6455 §10.2)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import RFC_KEY
from wsmachine import (
    Handshake,
    HTTPRequest,
    OriginPolicy,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
)
from wsmachine.testing import ConnectionPair


def request(origin: str | None, host: str = "example.com") -> bytes:
    lines = [
        "GET / HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {RFC_KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


POLICY = OriginPolicy(
    [
        "https://example.com",
        "http://localhost:8000",
        re.compile(r"https://[a-z0-9-]+\.example\.org"),
    ]
)


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",
        "HTTPS://EXAMPLE.COM",
        "https://example.com:443",
        "https://example.com:0443",
        "http://localhost:8000",
        "https://app.example.org",
        "https://APP.example.org",
    ],
)
def test_allowed(origin: str) -> None:
    assert POLICY.allows(origin)
    server = ServerConnection(origin_policy=POLICY)
    (event,) = server.receive_data(request(origin))
    assert isinstance(event, Handshake)
    assert event.origin == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.com",
        "http://example.com",  # another scheme is another origin
        "https://example.com:8443",
        "https://example.com.evil.com",
        "https://example.com/",
        "https://user@example.com",
        "http://localhost",
        "http://localhost:8001",
        "https://a.b.example.org",  # the pattern allows one label only
        "https://example.org",
        "https://xexample.org",
        "null",
        "",
        "garbage",
        "https://[::1",
    ],
)
def test_refused_with_403(origin: str) -> None:
    assert not POLICY.allows(origin)
    server = ServerConnection(origin_policy=POLICY)
    (rejected,) = server.receive_data(request(origin))
    assert isinstance(rejected, Rejected)
    assert rejected.status_code == 403
    assert isinstance(rejected.error, RemoteProtocolError)
    assert rejected.error.status_hint == 403
    assert rejected.error.close_code == 1008
    assert "origin policy" in str(rejected.error)
    assert server.state is State.REJECTED
    assert server.should_close()
    response = server.data_to_send()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"content-type: text/plain; charset=utf-8" in head.lower()
    assert body == rejected.body
    assert body.startswith(b"403 ")


def test_missing_origin() -> None:
    (rejected,) = ServerConnection(origin_policy=POLICY).receive_data(request(None))
    assert isinstance(rejected, Rejected) and rejected.status_code == 403
    assert "no Origin header" in str(rejected.error)
    lenient = OriginPolicy(["https://example.com"], allow_missing=True)
    (event,) = ServerConnection(origin_policy=lenient).receive_data(request(None))
    assert isinstance(event, Handshake)
    assert not lenient.allows("https://evil.com")


def test_no_policy_accepts_anything() -> None:
    (event,) = ServerConnection().receive_data(request("https://evil.com"))
    assert isinstance(event, Handshake)


def test_null_origin_only_when_listed() -> None:
    assert OriginPolicy(["null"]).allows("null")
    assert not OriginPolicy([re.compile(".*example.*")]).allows("null")


def test_same_host() -> None:
    policy = OriginPolicy(allow_same_host=True)
    assert policy.allows("https://example.com", "example.com")
    assert policy.allows("https://example.com", "EXAMPLE.com:443")
    assert policy.allows("http://example.com:8080", "example.com:8080")
    assert policy.allows("http://[::1]:8080", "[::1]:8080")
    assert not policy.allows("https://example.com", "example.com:8443")
    assert not policy.allows("https://evil.com", "example.com")
    assert not policy.allows("https://example.com", None)
    assert not policy.allows("https://example.com", "bad:host:")
    assert not policy.allows(None, "example.com")
    server = ServerConnection(origin_policy=policy)
    (event,) = server.receive_data(request("https://chat.example", host="chat.example"))
    assert isinstance(event, Handshake)
    (rejected,) = ServerConnection(origin_policy=policy).receive_data(
        request("https://evil.example", host="chat.example")
    )
    assert isinstance(rejected, Rejected) and rejected.status_code == 403


def test_split_invariant() -> None:
    data = request("https://evil.com")
    whole = ServerConnection(origin_policy=POLICY)
    split = ServerConnection(origin_policy=POLICY)
    events = whole.receive_data(data)
    pieces = [e for i in range(len(data)) for e in split.receive_data(data[i : i + 1])]
    assert pieces == events
    assert split.data_to_send() == whole.data_to_send()


def test_malformed_request_answered_before_the_origin() -> None:
    bad = request("https://evil.com").replace(b"Version: 13", b"Version: 8")
    (rejected,) = ServerConnection(origin_policy=POLICY).receive_data(bad)
    assert isinstance(rejected, Rejected) and rejected.status_code == 426


def test_plain_http_requests_are_not_checked() -> None:
    data = b"GET / HTTP/1.1\r\nHost: example.com\r\nOrigin: https://evil.com\r\n\r\n"
    (event,) = ServerConnection(origin_policy=POLICY).receive_data(data)
    assert isinstance(event, HTTPRequest)


def test_with_a_connection_pair() -> None:
    pair = ConnectionPair(
        client={"origin": "https://example.com"}, server={"origin_policy": POLICY}
    )
    pair.handshake()
    refused = ConnectionPair(
        client={"origin": "https://evil.com"}, server={"origin_policy": POLICY}
    )
    (rejected,) = refused.client_to_server()
    assert isinstance(rejected, Rejected)
    (client_view,) = refused.server_to_client()
    assert isinstance(client_view, Rejected)
    assert client_view.status_code == 403
    assert client_view.error is None  # a well-formed refusal, as far as the client knows


@pytest.mark.parametrize(
    "bad", ["example.com", "https://example.com/path", "https://", "https://a@b", "://x", "h s://x"]
)
def test_construction_refuses_non_origins(bad: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        OriginPolicy([bad])


def test_construction_type_check_and_repr() -> None:
    with pytest.raises(TypeError):
        OriginPolicy([b"https://example.com"])  # type: ignore[list-item]
    text = repr(OriginPolicy(["https://Example.com:443", re.compile("x")], allow_missing=True))
    assert text == (
        "OriginPolicy(['https://example.com', 'x'], allow_missing=True, allow_same_host=False)"
    )


def test_policy_called_on_a_handshake() -> None:
    (event,) = ServerConnection().receive_data(request("https://evil.com"))
    assert isinstance(event, Handshake)
    assert POLICY(event) is False
    (event,) = ServerConnection().receive_data(request("https://example.com"))
    assert isinstance(event, Handshake)
    assert POLICY(event) is True


def test_same_host_accepts_a_written_default_port() -> None:
    """The adapters' old ``same_origin`` refused this pair; the one policy accepts it."""
    policy = OriginPolicy(allow_missing=True, allow_same_host=True)
    assert policy.allows("https://example.com:443", "example.com")
    assert policy.allows("http://example.com", "example.com:80")
    assert not policy.allows("https://example.com:8443", "example.com")
